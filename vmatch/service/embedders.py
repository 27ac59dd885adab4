"""The service's models: a registry name to its ModelSpec, and one embedder per model per process.

Where it sits: routes (``app``) and banks (``banks``) name models; jobs (``engine``) embed with
:class:`Embedders`, built once per app by :class:`~vmatch.service.state.ServiceState`.
"""

from __future__ import annotations

import threading

from vmatch.errors import UsageError


def resolve_model(name: str, *, allow_test: bool = True):
    """The ModelSpec of a registry name, or of ``fake-thumbnail`` (the weight-free test embedder of
    :class:`vmatch.embed.FakeEmbedder`, for tests and demos) when ``allow_test``. UsageError names
    the known ones."""
    from vmatch.embed import FAKE_MODEL_NAME, FakeEmbedder
    from vmatch.models import get_model_spec, list_models

    if name == FAKE_MODEL_NAME:
        if allow_test:
            return FakeEmbedder().spec
        raise UsageError(f"model {name!r} is the weight-free test embedder, allowed only on a server started for tests "
                         f"(ServiceConfig.allow_test_models); choose one of {', '.join(list_models())}")
    try:
        return get_model_spec(name)
    except UsageError:
        known = [*list_models(), *([FAKE_MODEL_NAME] if allow_test else [])]
        raise UsageError(f"unknown model {name!r}; choose one of {', '.join(known)}") from None


class Embedders:
    """One embedder per model in the process, built on first use and shared by every bank and job."""

    def __init__(self, device: str, threads: int) -> None:
        self.device = device
        self.threads = threads
        self._lock = threading.Lock()
        self._by_model: dict[str, object] = {}

    def get(self, spec):
        from vmatch.embed import make_embedder, tune_cpu_allocator
        from vmatch.match import calibration_for

        if isinstance(spec, str):
            spec = resolve_model(spec)
        with self._lock:
            emb = self._by_model.get(spec.model_id)
            if emb is None:
                tune_cpu_allocator()
                emb = make_embedder(spec, device=self.device, threads=self.threads)
                calibration_for(emb)  # built once here, not raced by the first jobs
                self._by_model[spec.model_id] = emb
            return emb

    def loaded(self) -> list[str]:
        with self._lock:
            return sorted(self._by_model)

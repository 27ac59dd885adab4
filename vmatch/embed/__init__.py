"""Frame embedders: uint8 RGB frames in, L2-normalised float32 descriptors out.

Where it sits: decode -> sample -> **embed** -> bank -> search -> align -> report. The sampler resizes frames to
``embedder.spec.input_size``; the embedder returns one row per frame, and its ``spec.model_id`` travels with the
rows into :class:`vmatch.types.VideoEmbedding` and the bank.

- :class:`TorchEmbedder`: EfficientNet-Lite0 (:mod:`vmatch.effnet`), GeM pooling of the 1280-channel head map,
  optional horizontal-flip averaging, optional PCA/whitening projection, L2 normalisation. CPU or CUDA.
- :class:`FakeEmbedder`: a deterministic, weight-free stand-in for pipeline tests.
- :func:`tune_cpu_allocator`: keep large activation buffers on the glibc heap (call it once from the CLI).

torch is imported only when a :class:`TorchEmbedder` is built, so importing this package stays cheap.

The stage, one concept a module:

- :mod:`~vmatch.embed.batches`: the :class:`Embedder` protocol, the frame-batch check, the one batching loop;
- :mod:`~vmatch.embed.runtime`: device, precision (:func:`resolve_precision`, :func:`cpu_has_native_bf16`),
  the CPU allocator;
- :mod:`~vmatch.embed.pooling`: GeM pooling and the projection;
- :mod:`~vmatch.embed.torch_embedder`: :class:`TorchEmbedder`;
- :mod:`~vmatch.embed.fake`: :class:`FakeEmbedder`;
- here: :func:`make_embedder`, the embedder that implements a spec.

Example:
    >>> emb = TorchEmbedder(get_model_spec("effnet-lite0-gem"), device="auto", batch_size=32)
    >>> feats = emb.embed(frames)          # frames: uint8 [N, 224, 224, 3] RGB
    >>> feats.shape, feats.dtype
    ((N, 256), dtype('float32'))
"""

from __future__ import annotations

from pathlib import Path

from vmatch.embed.batches import Embedder, check_frames
from vmatch.embed.fake import FAKE_MODEL_NAME, FakeEmbedder
from vmatch.embed.runtime import (
    PRECISIONS,
    cpu_has_native_bf16,
    resolve_device,
    resolve_precision,
    tune_cpu_allocator,
)
from vmatch.embed.torch_embedder import TorchEmbedder
from vmatch.errors import UsageError
from vmatch.models import DEFAULT_MODEL, ModelSpec, get_model_spec

__all__ = [
    "FAKE_MODEL_NAME",
    "Embedder",
    "FakeEmbedder",
    "PRECISIONS",
    "TorchEmbedder",
    "cpu_has_native_bf16",
    "check_frames",
    "make_embedder",
    "resolve_device",
    "resolve_precision",
    "tune_cpu_allocator",
]


def make_embedder(
    spec: ModelSpec | str | None = None,
    *,
    device: str = "auto",
    batch_size: int = 32,
    models_dir: str | Path | None = None,
    threads: int | None = None,
    compile: bool = False,
    precision: str = "auto",
) -> TorchEmbedder | FakeEmbedder:
    """Build the embedder that implements ``spec`` (e.g. the model recorded in a bank).

    Args:
        spec: A :class:`~vmatch.models.ModelSpec`, a registry name, or ``None`` for the default model.
        device: For :class:`TorchEmbedder`: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        batch_size: For :class:`TorchEmbedder`: frames per forward pass.
        models_dir: For :class:`TorchEmbedder`: folder of the projection artifact (default: repo ``models/``).
        threads: For :class:`TorchEmbedder`: torch threads while it embeds, if given (see there).
        compile: For :class:`TorchEmbedder`: run the network through ``torch.compile``.
        precision: For :class:`TorchEmbedder`: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``
            (:func:`resolve_precision`).

    Returns:
        A :class:`FakeEmbedder` for ``"fake-thumbnail"`` specs, else a :class:`TorchEmbedder`.

    Raises:
        UsageError: unknown registry name or bad option.
        ModelError: no embedder implements ``spec``, or its weights/artifacts are missing.
    """
    if spec is None or isinstance(spec, str):
        spec = get_model_spec(DEFAULT_MODEL if spec is None else spec)
    if not isinstance(spec, ModelSpec):
        raise UsageError(f"spec must be a ModelSpec or a model name, got {spec!r}")
    if spec.name == FAKE_MODEL_NAME:
        return FakeEmbedder.from_spec(spec)
    return TorchEmbedder(spec, device=device, batch_size=batch_size, models_dir=models_dir, threads=threads,
                         compile=compile, precision=precision)

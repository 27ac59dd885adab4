"""The Ray cluster: how to use it (:class:`RayOptions`), connecting to it (:func:`connect`, the
lazy ``import ray``), and the path a task on another node opens (:func:`_remote_path`)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from vmatch.errors import UsageError


@dataclass(frozen=True)
class RayOptions:
    """How to use the Ray cluster.

    Attributes:
        address: ``None``: the cluster named by ``RAY_ADDRESS`` or the one ``ray start`` started
            on this machine, else a new local cluster for this run; ``"local"``: always a new
            local cluster; ``"auto"``: an existing cluster (error if none); ``"HOST:PORT"`` or
            ``"ray://HOST:PORT"``: that cluster.
        num_actors: embedding actors; default: one per GPU of the cluster, else one per 2 CPUs.
        actor_num_cpus: CPUs reserved by a CPU embedding actor (GPU actors reserve 1 GPU, 1 CPU).
        device: the actors' torch device: "auto" (the GPU Ray assigned, else CPU), "cpu", "cuda".
        batch_size: frames per CNN batch.
        threads: torch threads per CPU actor (default: ``actor_num_cpus`` rounded up).
        precision: the actors' CNN arithmetic ("auto", "fp32", "bf16", "fp16"; see
            :func:`vmatch.embed.resolve_precision`; checked on each actor's own device).
        max_in_flight: videos submitted and not yet stored, at most (default 2 per actor + 2).
        max_retries: resubmissions of a video whose worker died, on top of Ray's own retries.
        chunk_frames: sampled frames per decode task when indexing; a longer video is decoded in
            windows of this many frames (in parallel), so that no object carries more than
            ~150 KB x chunk_frames of frames (600: 10 minutes at 1 frame/s, ~90 MB).
    """

    address: str | None = None
    num_actors: int | None = None
    actor_num_cpus: float = 1.0
    device: str = "auto"
    batch_size: int = 32
    threads: int | None = None
    precision: str = "auto"
    max_in_flight: int | None = None
    max_retries: int = 3
    chunk_frames: int = 600

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise UsageError(f"RayOptions: chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.num_actors is not None and self.num_actors < 1:
            raise UsageError(f"RayOptions: num_actors must be >= 1, got {self.num_actors}")
        if self.actor_num_cpus <= 0:
            raise UsageError(f"RayOptions: actor_num_cpus must be > 0, got {self.actor_num_cpus}")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise UsageError(f"RayOptions: max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.max_retries < 0:
            raise UsageError(f"RayOptions: max_retries must be >= 0, got {self.max_retries}")


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise UsageError(f"Ray is not installed ({e}); install it with pip install 'vmatch[ray]'") from e
    return ray


def connect(address: str | None) -> bool:
    """Connect this process to a Ray cluster (see :attr:`RayOptions.address`).

    Returns:
        True when this call initialised Ray (the caller shuts it down), False when the process
        was already connected.

    Raises:
        UsageError: no cluster at ``address`` (the message names it and says what to do).
    """
    ray = _import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address in (None, "", "local"):
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address or None, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UsageError(
            f"cannot connect to the Ray cluster at {address or 'the default address'} ({e}); start one with "
            "`ray start --head` or pass its address, e.g. --ray HOST:6379"
        ) from e
    return True


def _remote_path(path: str | os.PathLike) -> str:
    """The path a task on another process (or node) opens: absolute, since its working directory
    is not the driver's (the README's `vmatch index --ray known_videos/` names relative paths)."""
    return os.path.abspath(os.fspath(path))

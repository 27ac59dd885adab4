"""Configuration of the HTTP service: one frozen record passed to ``create_app``.

Every limit has a documented default and a ``vmatch serve`` flag of the same name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vmatch.errors import UsageError

MiB = 1 << 20


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class ServiceConfig:
    """Options of one service process.

    Attributes:
        bank_root: directory holding the banks (one sub-directory each) and the key store.
        device: where the CNN runs ("auto", "cpu", "cuda").
        default_model: model of banks created without one, and of ``/hash`` without ``bank``.
        fps: sampled frames per second for embedding (as ``vmatch match --fps``).
        workers: threads running jobs (decode + embed + match) in parallel.
        queue_size: jobs that may wait for a worker; beyond it requests get 503 + Retry-After.
        torch_threads: CPU threads of the CNN per process (default: cores / workers, at least 1).
        max_upload_bytes: largest accepted request body (413 while streaming, or up front from
            Content-Length).
        max_json_bytes: largest accepted JSON body.
        max_duration: longest accepted video, seconds (422).
        max_side: largest accepted frame side in pixels (422).
        max_frames: most frames a video may declare (422).
        sync_max_duration: in ``mode=auto``, videos at most this long are answered in the request;
            longer ones get 202 and a job id.
        sync_wait: seconds a synchronous request waits for its job before answering 202 instead.
        job_timeout: time limit of one job once it runs, seconds.
        job_ttl: seconds a finished job's result stays readable at ``GET /jobs/{id}``.
        max_jobs_kept: most job records kept in memory (oldest finished ones dropped first).
        media_root: directory server-side paths must lie in (``POST .../references/from-path``);
            None disables adding by path.
        upload_dir: where uploads are streamed to (default ``BANK_ROOT/.uploads``); emptied at start.
        preload_model: build the default model's embedder at start (``/status`` ready after it).
    """

    bank_root: Path
    device: str = "auto"
    default_model: str = "effnet-lite0-gem"
    fps: float = 1.0
    workers: int = field(default_factory=_default_workers)
    queue_size: int = 32
    torch_threads: int | None = None
    max_upload_bytes: int = 512 * MiB
    max_json_bytes: int = 1 * MiB
    max_duration: float = 3600.0
    max_side: int = 4096
    max_frames: int = 500_000
    sync_max_duration: float = 120.0
    sync_wait: float = 120.0
    job_timeout: float = 900.0
    job_ttl: float = 3600.0
    max_jobs_kept: int = 10_000
    media_root: Path | None = None
    upload_dir: Path | None = None
    preload_model: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "bank_root", Path(self.bank_root))
        if self.media_root is not None:
            object.__setattr__(self, "media_root", Path(self.media_root))
        if self.upload_dir is None:
            object.__setattr__(self, "upload_dir", self.bank_root / ".uploads")
        else:
            object.__setattr__(self, "upload_dir", Path(self.upload_dir))
        for name in ("workers", "max_upload_bytes", "max_json_bytes", "max_side", "max_frames", "max_jobs_kept"):
            if int(getattr(self, name)) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.queue_size < 0:
            raise UsageError(f"queue_size must be >= 0, got {self.queue_size}")
        for name in ("max_duration", "job_timeout", "job_ttl", "fps"):
            if not float(getattr(self, name)) > 0:
                raise UsageError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.sync_max_duration < 0 or self.sync_wait < 0:
            raise UsageError("sync_max_duration and sync_wait must be >= 0")
        from vmatch.decode import MAX_SIDE

        if self.max_side > MAX_SIDE:
            raise UsageError(f"max_side must be <= {MAX_SIDE} (the decoder's own limit), got {self.max_side}")

    @property
    def cnn_threads(self) -> int:
        """Torch threads: the given value, else the cores shared among the workers."""
        if self.torch_threads is not None:
            return max(1, int(self.torch_threads))
        return max(1, (os.cpu_count() or 1) // self.workers)

"""Configuration of the HTTP service: one frozen record passed to ``create_app``.

Every limit has a documented default and a ``vmatch serve`` flag of the same name.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from vmatch.errors import UsageError
from vmatch.options import DEFAULT_FPS
from vmatch.threads import available_cores, share_cores

MiB = 1 << 20


#: The ``vmatch serve`` flag of each field, for error messages (the field name where there is none).
_FLAGS = {"workers": "--workers", "queue_size": "--queue-size", "torch_threads": "--threads",
          "max_upload_bytes": "--max-upload-mb", "max_duration": "--max-duration", "max_side": "--max-side",
          "max_frames": "--max-frames", "sync_max_duration": "--sync-max-duration", "sync_wait": "--sync-wait",
          "job_timeout": "--job-timeout", "fps": "--fps", "default_model": "--model", "device": "--device"}


def _flag(name: str) -> str:
    return _FLAGS.get(name, name)


def _check_int(name: str, value, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        shown = f"{value / MiB:g} MiB" if name == "max_upload_bytes" and isinstance(value, int) else repr(value)
        raise UsageError(f"{_flag(name)} must be at least {low if name != 'max_upload_bytes' else 'one byte'}, got {shown}")


def _check_float(name: str, value, *, positive: bool) -> None:
    """A finite number, > 0 (``positive``) or >= 0; NaN and infinity are refused."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise UsageError(f"{_flag(name)} must be a finite number {'>' if positive else '>='} 0, got {value!r}")


def _default_workers() -> int:
    return max(1, min(4, available_cores()))


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
        allow_test_models: let ``POST /banks`` create banks of the weight-free test model
            ``fake-thumbnail`` (for tests and demos; off by default, so that a curate key cannot make
            a bank whose "matches" mean nothing). The operator's own ``default_model`` is always
            allowed.
    """

    bank_root: Path
    device: str = "auto"
    default_model: str = "effnet-lite0-gem"
    fps: float = DEFAULT_FPS
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
    allow_test_models: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "bank_root", Path(self.bank_root))
        if self.media_root is not None:
            object.__setattr__(self, "media_root", Path(self.media_root))
        if self.upload_dir is None:
            object.__setattr__(self, "upload_dir", self.bank_root / ".uploads")
        else:
            object.__setattr__(self, "upload_dir", Path(self.upload_dir))
        self._validate()

    def _validate(self) -> None:
        """Refuse an option out of range with one sentence naming its ``vmatch serve`` flag
        (UsageError: ``vmatch serve`` exits 2 with that line, no traceback)."""
        for name in ("workers", "max_upload_bytes", "max_json_bytes", "max_side", "max_frames", "max_jobs_kept"):
            _check_int(name, getattr(self, name), low=1)
        _check_int("queue_size", self.queue_size, low=0)
        if self.torch_threads is not None:
            _check_int("torch_threads", self.torch_threads, low=1)
        for name in ("max_duration", "job_timeout", "job_ttl", "fps"):
            _check_float(name, getattr(self, name), positive=True)
        for name in ("sync_max_duration", "sync_wait"):
            _check_float(name, getattr(self, name), positive=False)
        from vmatch.decode import MAX_SIDE

        if self.max_side > MAX_SIDE:
            raise UsageError(f"{_flag('max_side')} must be at most {MAX_SIDE} (the decoder's own limit), got {self.max_side}")
        if not isinstance(self.default_model, str) or not self.default_model:
            raise UsageError(f"{_flag('default_model')} must name a model, got {self.default_model!r}")
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device.strip().lower()):
            raise UsageError(f"{_flag('device')} must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    @property
    def cnn_threads(self) -> int:
        """Torch threads: the given value, else the cores shared among the workers."""
        if self.torch_threads is not None:
            return max(1, int(self.torch_threads))
        return share_cores(self.workers)

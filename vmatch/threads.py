"""CPU thread settings shared by the stages (torch's thread count is process-wide).

:func:`available_cores` is the one count of the cores this process may use (the indexer's and the
service's defaults both derive from it, through :func:`share_cores`); :class:`ThreadPolicy` is
the thread counts of an index run, chosen by the caller (None: derived from the cores).

A stage asks for a torch thread count with :func:`torch_threads`; requests nest and overlap (a
CPU CNN run at a third of the cores while decode workers hash vPDQ frames with PDQ's one-thread
rule). The most recent request still open is in force; when it ends, the one it interrupted is
restored, and when the last ends, the caller's own setting. No module sets torch's count otherwise.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_LOCK = threading.Lock()


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def share_cores(parts: int, cores: int | None = None) -> int:
    """Threads each of ``parts`` equal consumers gets of ``cores`` (default: :func:`available_cores`),
    at least one (the service's CNN threads per job worker, an index run's CNN beside its decoders)."""
    return max(1, (available_cores() if cores is None else cores) // parts)


@dataclass(frozen=True)
class ThreadPolicy:
    """The CPU threads of an index run (:mod:`vmatch.parallel`), as the caller asks for them.

    Attributes:
        workers: decode threads running ahead of the CNN; None: one per core with a CPU CNN, one
            per core beyond the first with a GPU (:meth:`decode_workers`); 0: decode and embed one
            after the other in the calling thread.
        cnn_threads: torch threads of a CPU CNN while decode workers run; None: adaptive — all
            cores while the queue is full (the CNN is the bottleneck), a third of them otherwise
            (:meth:`cnn_threads_low`); the caller's setting is restored afterwards.
        decoder_threads: FFmpeg threads per decoder; None: FFmpeg's default with one worker, with
            several 1 each while at least as many files wait as there are workers, and the cores
            shared among the last files (:meth:`decoder_threads_for`); 0: FFmpeg's default.
        cores: the cores the run shares out; None: :func:`available_cores`.
    """

    workers: int | None = None
    cnn_threads: int | None = None
    decoder_threads: int | None = None
    cores: int | None = None

    def __post_init__(self) -> None:
        from vmatch.errors import UsageError

        w = self.workers
        if isinstance(w, bool) or not (w is None or isinstance(w, int)) or (w or 0) < 0:
            raise UsageError(f"workers must be an integer >= 0, got {w!r}")
        for name, low in (("cnn_threads", 1), ("decoder_threads", 0), ("cores", 1)):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
                raise UsageError(f"{name} must be an integer >= {low}, got {v!r}")

    def n_cores(self) -> int:
        """The cores to share out: ``cores``, else :func:`available_cores`."""
        return self.cores if self.cores is not None else available_cores()

    def decode_workers(self, device: str = "cpu") -> int:
        """``workers``, else the default for a CNN on ``device``: one per core when the CNN runs on
        the CPU (a worker blocks when the queue is full, so more workers than free cores costs
        nothing while the CNN is the bottleneck), one per core beyond the feeding thread with a GPU."""
        if self.workers is not None:
            return self.workers
        n = self.n_cores()
        return max(1, n if str(device).startswith("cpu") else n - 1)

    def cnn_threads_low(self) -> int:
        """torch threads for a CPU CNN that runs beside decode workers: ``cnn_threads``, else a third
        of the cores, at least one. On the 2-core machine, 2 decode workers (1 FFmpeg thread each) + 1
        torch thread indexed 720p H.264 at 23.9x real time against 17.5x for decode-then-embed with 2
        torch threads (benchmarks/RESULTS.md, issue 7): torch's OpenMP threads lose more to
        oversubscription than they gain."""
        return self.cnn_threads or share_cores(3, self.n_cores())

    def decoder_threads_for(self, rank: int, n_files: int, workers: int) -> int:
        """FFmpeg threads of the decoder of the file started ``rank``-th of ``n_files`` by ``workers``
        decode workers (0: FFmpeg's default)."""
        if self.decoder_threads is not None:
            return self.decoder_threads
        if workers <= 1:
            return 0
        left = n_files - rank  # files not started yet, this one included (the pool starts them in order)
        return 1 if left >= workers else max(1, self.n_cores() // left)


@dataclass(eq=False)
class ThreadRequest:
    """One open :func:`torch_threads` request; :meth:`set` changes its count while it is open."""

    count: int
    _requests: _Requests = field(repr=False)

    def set(self, count: int) -> None:
        """Ask for ``count`` threads from now on (applied at once if this request is in force)."""
        self._requests.update(self, _check(count))


@dataclass
class _Requests:
    """The open requests, oldest first, and the setting found before the first of them."""

    open: list[ThreadRequest] = field(default_factory=list)
    saved: int = 0

    def push(self, count: int) -> ThreadRequest:
        import torch

        with _LOCK:
            if not self.open:
                self.saved = torch.get_num_threads()
            req = ThreadRequest(count, self)
            self.open.append(req)
            _apply(torch, count)
        return req

    def update(self, req: ThreadRequest, count: int) -> None:
        import torch

        with _LOCK:
            req.count = count
            if self.open and self.open[-1] is req:
                _apply(torch, count)

    def pop(self, req: ThreadRequest) -> None:
        import torch

        with _LOCK:
            was_top = self.open[-1] is req
            self.open.remove(req)
            if was_top:
                _apply(torch, self.open[-1].count if self.open else self.saved)


def _apply(torch, count: int) -> None:
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


def _check(count: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        from vmatch.errors import UsageError

        raise UsageError(f"torch thread count must be an integer >= 1, got {count!r}")
    return count


# torch's thread count is one per process, so are its requests: the one request stack of the module.
_REQUESTS = _Requests()


@contextmanager
def torch_threads(count: int) -> Iterator[ThreadRequest]:
    """Run the block with ``torch.set_num_threads(count)``, then restore what was in force before.

    Nested and overlapping requests (from several Python threads too) are honoured: the latest
    open one is in force; yields the request, whose :meth:`ThreadRequest.set` changes its count.
    """
    req = _REQUESTS.push(_check(count))
    try:
        yield req
    finally:
        _REQUESTS.pop(req)

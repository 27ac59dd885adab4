"""CPU thread settings shared by the stages (torch's thread count is process-wide).

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


@dataclass(eq=False)
class ThreadRequest:
    """One open :func:`torch_threads` request; :meth:`set` changes its count while it is open."""

    count: int
    _policy: _Policy = field(repr=False)

    def set(self, count: int) -> None:
        """Ask for ``count`` threads from now on (applied at once if this request is in force)."""
        self._policy.update(self, _check(count))


@dataclass
class _Policy:
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


# torch's thread count is one per process, so are its requests: the one policy object of the module.
_POLICY = _Policy()


@contextmanager
def torch_threads(count: int) -> Iterator[ThreadRequest]:
    """Run the block with ``torch.set_num_threads(count)``, then restore what was in force before.

    Nested and overlapping requests (from several Python threads too) are honoured: the latest
    open one is in force; yields the request, whose :meth:`ThreadRequest.set` changes its count.
    """
    req = _POLICY.push(_check(count))
    try:
        yield req
    finally:
        _POLICY.pop(req)

"""Error types shared by every stage of vmatch.

Every error a user can cause derives from :class:`VmatchError` and carries a message that names the
file (or bank) concerned and says what to do. Errors about bad input also subclass :class:`ValueError`
so that callers who do not know vmatch can still catch them, in the manner of PyAV's
``InvalidDataError(FFmpegError, ValueError)``.
"""

from __future__ import annotations


class VmatchError(Exception):
    """Base class of every error raised on purpose by vmatch."""


class DecodeError(VmatchError, ValueError):
    """A video cannot be read: missing, empty, truncated, not a video, no decodable frames, bad size."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # Rebuilt from its two fields when it crosses a process boundary (a Ray task): the
        # default would call DecodeError(message) and fail, and Ray would see a lost worker.
        return (type(self), (self.path, self.reason))


class ModelError(VmatchError):
    """The embedding model cannot be built: missing weights package, bad artifact, checksum mismatch."""


class ModelMismatchError(VmatchError):
    """Embeddings of one model are offered to a bank (or compared with embeddings) of another model."""


class BankError(VmatchError):
    """A bank cannot be opened or written: missing, corrupted, locked, disk full."""


class BankNotFoundError(BankError):
    """The bank directory does not exist (and creation was not asked for)."""


class UsageError(VmatchError, ValueError):
    """A caller passed an invalid parameter (bad sampling rate, unknown device, bad id...)."""

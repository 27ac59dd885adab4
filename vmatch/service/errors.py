"""Errors the service answers with: an HTTP status, a short code and a sentence naming the problem.

Bodies are ``{"error": code, "detail": sentence}``. Bad input is always a 4xx; a 5xx means the
server (or a bank) is at fault or overloaded.
"""

from __future__ import annotations

from vmatch.errors import BankError, BankNotFoundError, DecodeError, ModelMismatchError, UsageError, VmatchError


class ServiceError(Exception):
    """An error answered as ``status`` with ``{"error": code, "detail": detail}``."""

    def __init__(self, status: int, code: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}

    def to_dict(self) -> dict:
        return {"error": self.code, "detail": self.detail}


class JobTimeout(Exception):
    """A job ran past its time limit (raised inside the job, between frames)."""


def _decode_error_code(reason: str) -> str:
    """The code of a DecodeError, from its reason (vmatch.decode's wording; DecodeError carries no
    kind): a still image is ``not_a_video``, a frame size past the decoder's limits
    ``resolution_too_large``, anything else ``unreadable_video``."""
    if "is a still image" in reason:
        return "not_a_video"
    if "frame size" in reason and "too large" in reason:
        return "resolution_too_large"
    return "unreadable_video"


def from_vmatch(e: VmatchError, *, name: str | None = None, temp_path: str | None = None) -> ServiceError:
    """The ServiceError for an engine error; a temp upload path in the message becomes ``name``."""
    msg = str(e)
    if isinstance(e, DecodeError):
        msg = f"{name or e.path}: {e.reason}"
    if temp_path:
        msg = msg.replace(temp_path, name or "upload")
    if isinstance(e, BankNotFoundError):
        return ServiceError(404, "bank_not_found", msg)
    if isinstance(e, BankError):
        return ServiceError(503, "bank_unavailable", msg, headers={"Retry-After": "5"})
    if isinstance(e, DecodeError):
        return ServiceError(422, _decode_error_code(e.reason), msg)
    if isinstance(e, ModelMismatchError):
        return ServiceError(422, "model_mismatch", msg)
    if isinstance(e, UsageError):
        return ServiceError(400, "invalid_input", msg)
    return ServiceError(422, "invalid_input", msg)

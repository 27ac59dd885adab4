"""Secrets never reach the service's logs: query parameters that look like credentials are redacted.

Why: a client may send its key as ``?api_key=...`` (refused: keys go in ``Authorization``), and
uvicorn's access log writes every request line in full. :class:`RedactSecrets` rewrites, in every
record, the value of any query parameter whose name contains one of :data:`SECRET_WORDS` (case
and ``-``/``_`` ignored, percent-encoding decoded) to ``[REDACTED]``.

:func:`redact_logs` installs the filter on the handlers that write the service's records (the
root logger's and uvicorn's, where ``vmatch serve`` and uvicorn configure them) and on uvicorn's
loggers, and removes it again on exit: a handler filter sees every record it writes, also those
propagated from child loggers, which a logger filter would miss.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from urllib.parse import unquote

#: A query parameter whose name contains one of these words is a secret.
SECRET_WORDS = ("key", "token", "password", "passwd", "pwd", "secret", "auth", "credential", "signature",
                "session", "cookie")
REDACTED = "[REDACTED]"
#: ``name=value`` after ``?``, ``&`` or ``;``: the value runs to the next separator or space/quote.
_PARAM = re.compile(r"([?&;])([^=&;#\s\"']+)=([^&;#\s\"']*)")
#: Loggers whose records the service writes (uvicorn's and its own).
LOGGERS = ("uvicorn", "uvicorn.access", "uvicorn.error", "vmatch")


def is_secret_name(name: str) -> bool:
    norm = unquote(name).lower().replace("-", "_")
    return any(w in norm for w in SECRET_WORDS)


def redact(text: str) -> str:
    """``text`` with the values of secret-looking query parameters replaced by ``[REDACTED]``."""
    if "=" not in text:
        return text
    return _PARAM.sub(lambda m: f"{m[1]}{m[2]}={REDACTED}" if is_secret_name(m[2]) else m[0], text)


class RedactSecrets(logging.Filter):
    """Redacts secret query parameters in a record's message and its string arguments (uvicorn's
    access log passes the request path with its query as an argument)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def _targets() -> list[logging.Filterer]:
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in LOGGERS)]
    handlers = {id(h): h for lg in loggers for h in lg.handlers}
    return [*loggers[1:], *handlers.values()]


@contextlib.contextmanager
def redact_logs() -> Iterator[RedactSecrets]:
    """Install :class:`RedactSecrets` for as long as the service runs (its lifespan)."""
    flt = RedactSecrets()
    targets = _targets()
    for t in targets:
        t.addFilter(flt)
    try:
        yield flt
    finally:
        for t in targets:
            t.removeFilter(flt)

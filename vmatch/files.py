"""Writing output files safely: atomically, under names the file system accepts.

Where it sits: used by every command that writes a file a user reads back (``vmatch hash`` signal
files, ``vmatch export`` vPDQ files), so a reader never sees half a file and a long input or
reference name never makes a file that cannot be created.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import unicodedata
from pathlib import Path

from vmatch.errors import DecodeError, UsageError

#: Longest file name (bytes, UTF-8) that Linux file systems accept.
MAX_NAME_BYTES = 255


def output_name(stem: str, suffix: str) -> str:
    """A file name for ``stem + suffix`` that is safe to create and to list.

    Characters that hide or disguise a name (control and format characters such as U+202E
    right-to-left override or U+200B zero-width space, path separators, a leading ``.`` that makes
    a hidden file) become ``_``; a name over :data:`MAX_NAME_BYTES` keeps its first bytes (cut on
    a character boundary). Whenever the stem had to change, ``-`` and 12 hex digits of its SHA-1
    are appended, so two stems never share a file.
    """
    clean = "".join("_" if c in "/\\" or unicodedata.category(c) in ("Cc", "Cf", "Cs") else c for c in stem)
    if clean.startswith("."):
        clean = "_" + clean[1:]
    if clean == stem and len((stem + suffix).encode("utf-8")) <= MAX_NAME_BYTES:
        return stem + suffix
    digest = hashlib.sha1(stem.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    room = MAX_NAME_BYTES - len(suffix.encode("utf-8")) - len(digest) - 1
    head = clean.encode("utf-8")[:room].decode("utf-8", "ignore")
    return f"{head}-{digest}{suffix}"


def write_atomic(path: str | os.PathLike, data: bytes, *, what: str, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename.

    The temporary name is short whatever ``path``'s name is; it is removed on every failure.
    The file gets ``mode`` when given (else the temporary file's 0600). Raises UsageError
    ``"<path>: cannot write <what> (<reason>)"``.
    """
    dest = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".vmatch-", suffix=".tmp")
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
        tmp = None
    except OSError as e:
        raise UsageError(f"{dest}: cannot write {what} ({e.strerror or e})") from e
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return dest


def existing_file(path, *, caller: str = "", directory_hint: str = "is a directory, not a file; name a file") -> str:
    """``os.fspath(path)`` of a path that exists and is not a directory.

    Raises:
        UsageError: ``path`` is not a path (``caller`` prefixes the message).
        DecodeError: it does not exist, or it is a directory (``directory_hint`` says what to do).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise UsageError(f"{caller + ': ' if caller else ''}expected a file path, got {type(path).__name__}: {path!r}")
    name = os.fspath(path)
    if not os.path.exists(name):
        raise DecodeError(name, "does not exist; check the path")
    if os.path.isdir(name):
        raise DecodeError(name, directory_hint)
    return name

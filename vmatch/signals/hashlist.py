"""Shared hash lists: ``<signal_type> <value> <id>`` lines (python-threatexchange's layout plus the id).

Where it sits: beside the signals; read by ``vmatch import`` / ``vmatch lookup`` (files) and by the
HTTP service (request bodies). Parsing works on text so that both can use it.
"""

from __future__ import annotations

from pathlib import Path

from vmatch.errors import UsageError
from vmatch.signals.exact import normalize_hex_digest
from vmatch.signals.registry import LIST_SIGNAL_TYPES, SIGNAL_TYPES, VPDQSignal

#: Signal types a hash-list line may start with (the registry's list types: md5, sha1, pdq).
LINE_SIGNAL_TYPES = LIST_SIGNAL_TYPES
#: How the messages list them: "md5, sha1 or pdq".
_LINE_TYPES_TEXT = f"{', '.join(LINE_SIGNAL_TYPES[:-1])} or {LINE_SIGNAL_TYPES[-1]}"


def parse_hash_lines(
    text: str | bytes, default_type: str | None, *, with_id: bool, source: str = "<list>"
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """``(signal_type, canonical value, id)`` of the good lines of a hash list, and one message
    ``SOURCE:LINE: reason`` per malformed line (wrong length, non-hex, unknown signal type, bad
    id, not UTF-8), which is skipped. Blank lines and ``#`` comments are ignored; a UTF-8 byte
    order mark at the start is dropped (lists saved by Windows editors carry one).

    Args:
        text: the list's content, as text or as raw bytes (then each line is decoded on its own,
            so one stray byte costs its line, not the list).
        default_type: the signal type of lines that carry only ``<value> [<id>]`` (``--signal-type``).
        with_id: lines must carry a reference id (import) or not (lookup).
        source: name used in the messages (a file name).
    """
    from vmatch.bank import validate_ref_id

    out, problems = [], []
    for n, line in enumerate(_lines(text), 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append(f"{source}:{n}: not UTF-8 text (byte {line[e.start]:#04x} at column {e.start + 1}); line skipped")
                continue
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        try:
            if parts[0] in LINE_SIGNAL_TYPES:
                t, rest = parts[0], parts[1:]
            elif default_type is not None:
                t, rest = default_type, parts
            else:
                raise UsageError(f"unknown signal type {parts[0]!r}: a line starts with {_LINE_TYPES_TEXT} (or pass --signal-type)")
            if default_type is not None and t != default_type:
                raise UsageError(f"signal type {t} in a --signal-type {default_type} list")
            if not rest or (with_id and len(rest) < 2):
                raise UsageError(f"expected `<signal_type> <value>{' <id>' if with_id else ''}`")
            rid = validate_ref_id(rest[1].strip()) if with_id else ""
            out.append((t, _normalize(t, rest[0]), rid))
        except UsageError as e:
            problems.append(f"{source}:{n}: {e}; line skipped")
    return out, problems


def _normalize(signal_type: str, value: str) -> str:
    """The canonical value of a line, by its signal type's rule (:mod:`vmatch.signals.registry`)."""
    t = SIGNAL_TYPES.get(signal_type)
    if t is not None and t.in_lists:
        return t.normalize(value)
    # A --signal-type that is no list type (the CLI and the service never pass one): the digest
    # check names the valid algorithms, as it always did.
    return normalize_hex_digest(value, signal_type)


def _lines(text: str | bytes) -> list:
    """The lines of a list, without a leading byte order mark."""
    if isinstance(text, bytes):
        return text.removeprefix(b"\xef\xbb\xbf").splitlines()
    return text.removeprefix("\ufeff").splitlines()


def read_hash_lines(
    path: str, default_type: str | None, *, with_id: bool
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """:func:`parse_hash_lines` of a file; an unreadable file is a UsageError."""
    try:
        text = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"{path}: cannot read hash list ({getattr(e, 'strerror', None) or e})") from e
    return parse_hash_lines(text, default_type, with_id=with_id, source=path)


def vpdq_id_from_name(name: str) -> str:
    """Reference id of a vPDQ hash file: its name without ``.txt`` / ``.vpdq`` / ``.json``
    (:meth:`vmatch.signals.registry.VPDQSignal.ref_id_from_name`)."""
    return VPDQSignal.ref_id_from_name(name)

"""vPDQ hash files: the reference's text format and python-threatexchange's signal string.

Where it sits: between a video's :class:`~vmatch.signals.vpdq_frames.VPDQFrame` list and the files
``vmatch hash`` / ``vmatch export`` write and ``vmatch import`` / ``vmatch lookup`` / the service
read; both formats are described in :mod:`vmatch.signals.vpdq`. :func:`parse_text` tells them
apart by their content.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from vmatch.errors import DecodeError, UsageError
from vmatch.signals.rules import HEX_LENGTH
from vmatch.signals.vpdq_frames import _HEX_DIGITS, VPDQFrame, _check_frames

__all__ = ["from_signal_str", "from_text", "parse_text", "read_file", "to_signal_str", "to_text", "write_file"]

_TIMESTAMP_DECIMALS = 3  # vpdqio.cpp TIMESTAMP_OUTPUT_PRECISION / VPDQ_TIMESTAMP_PRECISION


def to_text(frames: Sequence[VPDQFrame]) -> str:
    """The reference's hash-file text: ``frame_number,quality,pdq_hex,timestamp`` lines (``%.3f``).

    Exactly what ``vpdq-hash-video`` writes (``outputVPDQFeatureToFile``), one ``\\n``-terminated line
    per frame; ``""`` for no frames.
    """
    frames = _check_frames(frames, "to_text")
    return "".join(
        f"{f.frame_number},{f.quality},{f.hex},{f.timestamp:.{_TIMESTAMP_DECIMALS}f}\n" for f in frames
    )


def from_text(text: str, *, source: str = "<string>") -> list[VPDQFrame]:
    """Parse the reference's hash-file text (:func:`to_text`).

    Blank lines are ignored and ``\\r\\n`` line ends accepted; hex digits may be upper case (they are
    lower-cased). Timestamps keep the file's precision (3 decimals as written by the reference).

    Raises:
        UsageError: a malformed line, naming ``source`` and the line number (from 1), e.g. a line
            of the python-threatexchange form ``hex,quality,timestamp`` (read that with
            :func:`from_signal_str`).
    """
    if not isinstance(text, str):
        raise UsageError(f"{source}: expected vPDQ text (str), got {type(text).__name__}")
    frames: list[VPDQFrame] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            hint = (
                "; this looks like python-threatexchange's 'hex,quality,timestamp' form"
                if len(parts) == 3
                else ""
            )
            raise UsageError(
                f"{source}: line {lineno}: expected 4 comma-separated fields "
                f"'frame_number,quality,pdq_hex,timestamp', got {len(parts)}{hint}: {line[:120]!r}"
            )
        frames.append(_parse_fields(parts[0], parts[2], parts[1], parts[3], f"{source}: line {lineno}"))
    return frames


def _parse_fields(number: str | int, hex_str: str, quality: str, timestamp: str, where: str) -> VPDQFrame:
    try:
        n = int(number)
    except ValueError:
        raise UsageError(f"{where}: frame number {number!r} is not an integer") from None
    if n < 0:
        raise UsageError(f"{where}: frame number {n} is negative")
    if len(hex_str) != HEX_LENGTH or not set(hex_str) <= _HEX_DIGITS:
        raise UsageError(f"{where}: PDQ hash {hex_str[:80]!r} is not {HEX_LENGTH} hex digits")
    try:
        q = int(quality)
    except ValueError:
        raise UsageError(f"{where}: quality {quality!r} is not an integer") from None
    if not 0 <= q <= 100:
        raise UsageError(f"{where}: quality {q} is outside 0..100")
    try:
        t = float(timestamp)
    except ValueError:
        raise UsageError(f"{where}: timestamp {timestamp!r} is not a number") from None
    if not math.isfinite(t) or t < 0:
        raise UsageError(f"{where}: timestamp {timestamp!r} must be a finite number >= 0")
    return VPDQFrame(frame_number=n, hex=hex_str, quality=q, timestamp=t)


def to_signal_str(frames: Sequence[VPDQFrame]) -> str:
    """python-threatexchange's ``VPDQSignal`` signal string: ``vpdq_to_json`` of the frames.

    A JSON array of ``"pdq_hex,quality,timestamp"`` strings, the timestamp formatted as
    ``VpdqCompactFeature.__str__`` does (``f"{t:.3}"``: 3 significant digits), ``json.dumps``'s
    default separators; frame numbers are not part of it.
    """
    frames = _check_frames(frames, "to_signal_str")
    return json.dumps([f"{f.hex},{f.quality},{f.timestamp:.{_TIMESTAMP_DECIMALS}}" for f in frames])


def from_signal_str(text: str, *, source: str = "<string>") -> list[VPDQFrame]:
    """Parse python-threatexchange's ``VPDQSignal`` signal string (:func:`to_signal_str`).

    An empty string is an empty hash (as ``json_to_vpdq``). Frame numbers are not stored in this
    format: the frames are numbered 0, 1, 2... in order.

    Raises:
        UsageError: not a JSON array of ``"hex,quality,timestamp"`` strings, naming ``source`` and
            the item (from 1).
    """
    if not isinstance(text, str):
        raise UsageError(f"{source}: expected a vPDQ signal string (str), got {type(text).__name__}")
    try:
        items = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source}: not a vPDQ signal string (invalid JSON: {exc})") from None
    if not isinstance(items, list):
        raise UsageError(f"{source}: a vPDQ signal string is a JSON array, got {type(items).__name__}")
    frames: list[VPDQFrame] = []
    for i, item in enumerate(items):
        where = f"{source}: item {i + 1}"
        if not isinstance(item, str):
            raise UsageError(f"{where}: expected a 'hex,quality,timestamp' string, got {item!r:.80}")
        parts = item.split(",")
        if len(parts) != 3:
            raise UsageError(f"{where}: expected 'hex,quality,timestamp', got {item[:120]!r}")
        frames.append(_parse_fields(i, parts[0], parts[1], parts[2], where))
    return frames


def write_file(
    path: str | os.PathLike[str],
    frames: Sequence[VPDQFrame],
    *,
    format: Literal["text", "signal"] = "text",  # noqa: A002 - the natural name
) -> Path:
    """Write frames to ``path`` as :func:`to_text` (``"text"``, the reference's hash file) or
    :func:`to_signal_str` (``"signal"``). Returns the path. Written to a temporary file then
    renamed, so a reader never sees half a file."""
    if format not in ("text", "signal"):
        raise UsageError(f"write_file: format must be 'text' or 'signal', got {format!r}")
    content = to_text(frames) if format == "text" else to_signal_str(frames)
    from vmatch.files import write_atomic

    return write_atomic(path, content.encode("utf-8"), what="the vPDQ hash")


def read_file(path: str | os.PathLike[str]) -> list[VPDQFrame]:
    """Read a vPDQ hash written by :func:`write_file`, ``vpdq-hash-video`` or python-threatexchange.

    The format is recognised from the content: a JSON array (first non-blank character ``[``) is a
    signal string, anything else the reference's line format.

    Raises:
        DecodeError: the file is missing or unreadable (names it).
        UsageError: malformed content (names the file and the line or item).
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise DecodeError(name, "does not exist; check the path") from None
    except IsADirectoryError:
        raise DecodeError(name, "is a directory, not a vPDQ hash file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{name}: not a vPDQ hash file (not UTF-8 text)") from None
    except OSError as exc:
        raise DecodeError(name, f"cannot read the file ({exc.strerror or exc})") from exc
    return parse_text(text, source=name)


def parse_text(text: str, *, source: str = "<string>") -> list[VPDQFrame]:
    """Frames of a vPDQ hash in either text format, recognised from the content: a JSON array
    (first non-blank character ``[``) is a signal string (:func:`from_signal_str`), anything else
    the reference's line format (:func:`from_text`). Errors name ``source``."""
    if text.lstrip().startswith("["):
        return from_signal_str(text, source=source)
    return from_text(text, source=source)

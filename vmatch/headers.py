"""Frame sizes declared by container headers, read without FFmpeg.

Why: a file may declare frames FFmpeg refuses to allocate (e.g. 16384x16384 or 100000x100000).
FFmpeg then fails to open it with a bare errno (YUV4MPEG2, PNG) or opens the stream with width and
height 0 (MP4/QuickTime), and says the size only in its log; vmatch never installs PyAV's log
callback (with it, FFmpeg's decoder threads deadlock against the GIL; issue 17). So the size the
file declares is read here, for :mod:`vmatch.decode` and the service to name it.

Bounded work: top-level boxes are skipped by seeking, at most :data:`MAX_BOXES` boxes are visited,
and only the first few dozen bytes of a video track's sample description are read.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

#: Most boxes visited in one file (a garbage file parsed as boxes stops here).
MAX_BOXES = 10_000
#: A file is read as MP4/QuickTime only if its first box is one of these.
_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")
#: Width and height of a visual sample entry: after size, type, 6 reserved bytes, data reference
#: index (2), pre-defined and reserved fields (16) (ISO/IEC 14496-12, VisualSampleEntry).
_ENTRY_SIZE_OFFSET = 4 + 4 + 6 + 2 + 16


class _Reader:
    """Box walking over one open file, counting the boxes visited."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh = fh
        self.size = size
        self.visited = 0

    def read_at(self, pos: int, n: int) -> bytes:
        self.fh.seek(pos)
        return self.fh.read(n)

    def boxes(self, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
        """``(type, payload start, box end)`` of the boxes in ``[start, end)``; stops at the first
        malformed one (a truncated or corrupt file is left to the decoder to name)."""
        pos = start
        while pos + 8 <= end and self.visited < MAX_BOXES:
            self.visited += 1
            head = self.read_at(pos, 16)
            if len(head) < 8:
                return
            size, kind = struct.unpack(">I4s", head[:8])
            header = 8
            if size == 1:
                if len(head) < 16:
                    return
                size, header = struct.unpack(">Q", head[8:16])[0], 16
            elif size == 0:
                size = end - pos
            if size < header or pos + size > end:
                return
            yield kind, pos + header, pos + size
            pos += size

    def child(self, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
        for k, a, b in self.boxes(start, end):
            if k == kind:
                return a, b
        return None


def _track_frame_size(r: _Reader, start: int, end: int) -> tuple[int, int] | None:
    """The frame size of a ``trak`` box's first sample entry when it is a video track."""
    mdia = r.child(start, end, b"mdia")
    if mdia is None:
        return None
    hdlr = r.child(*mdia, b"hdlr")
    if hdlr is None or r.read_at(hdlr[0] + 8, 4) != b"vide":
        return None
    box: tuple[int, int] | None = mdia
    for kind in (b"minf", b"stbl", b"stsd"):
        box = r.child(*box, kind) if box is not None else None
    if box is None:
        return None
    entry = box[0] + 8  # after version/flags and the entry count
    raw = r.read_at(entry + _ENTRY_SIZE_OFFSET, 4)
    if entry + _ENTRY_SIZE_OFFSET + 4 > box[1] or len(raw) < 4:
        return None
    return struct.unpack(">HH", raw)


def declared_frame_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(width, height)`` a YUV4MPEG2, PNG or MP4/QuickTime header declares, else None."""
    return _simple_frame_size(path) or mp4_frame_size(path)


def _simple_frame_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """Width and height from a YUV4MPEG2 or PNG header (their first bytes), else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return None
    if head.startswith(b"YUV4MPEG2 "):
        fields = head.split(b"\n", 1)[0].split()[1:]
        size = {f[:1]: f[1:] for f in fields if f[:1] in (b"W", b"H")}
        if size.get(b"W", b"").isdigit() and size.get(b"H", b"").isdigit():
            return int(size[b"W"]), int(size[b"H"])
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return None


def mp4_frame_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(width, height)`` declared by the first video track of an MP4/QuickTime file, else None
    (not such a file, no video track, or a header too damaged to read)."""
    try:
        with open(path, "rb") as fh:
            r = _Reader(fh, os.fstat(fh.fileno()).st_size)
            if r.read_at(4, 4) not in _FIRST_BOXES:
                return None
            moov = r.child(0, r.size, b"moov")
            if moov is None:
                return None
            for kind, a, b in r.boxes(*moov):
                if kind == b"trak":
                    size = _track_frame_size(r, a, b)
                    if size is not None:
                        return size
    except (OSError, struct.error):
        return None
    return None

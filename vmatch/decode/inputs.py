"""Which files are videos, before FFmpeg sees them: directory scanning, the cheap checks of a named
file (exists, not a directory, not empty, readable), and the SHA-256 of a file's bytes.

Where it sits: the very start of **decode**; no PyAV here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from vmatch.errors import DecodeError, UsageError
from vmatch.files import existing_file

#: File extensions (lower case, without the dot) treated as videos when a directory is scanned by
#: :func:`find_videos`. Files named explicitly are accepted whatever their extension.
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {
        "3g2", "3gp", "264", "265", "amv", "asf", "avi", "avs", "dv", "f4v", "flv", "gif", "h264",
        "h265", "hevc", "ivf", "m1v", "m2t", "m2ts", "m2v", "m4v", "mj2", "mjpeg", "mjpg", "mkv",
        "mov", "mp4", "mpeg", "mpg", "mts", "mxf", "nut", "ogg", "ogv", "qt", "rm", "rmvb", "ts",
        "vob", "webm", "wmv", "y4m", "yuv4mpeg",
    }
)  # fmt: skip


def sha256_file(path: str | os.PathLike[str], *, chunk: int = 1 << 20) -> str:
    """Return the SHA-256 of the file's content as a lower-case hex string.

    Reads ``chunk`` bytes at a time (memory bounded). Raises :class:`DecodeError` when the file
    cannot be read.
    """
    if not isinstance(chunk, int) or chunk < 1:
        raise UsageError(f"sha256_file: chunk must be a positive number of bytes, got {chunk!r}")
    from vmatch.models import file_sha256

    name = check_file(path)
    try:
        return file_sha256(name, chunk=chunk)
    except OSError as exc:
        raise DecodeError(name, f"cannot read the file ({exc.strerror or exc}); check permissions") from exc


def find_videos(
    paths: Iterable[str | os.PathLike[str]],
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand files and directories into the list of video files to process.

    Directories are walked recursively (symlinked directories are not followed); their files whose
    extension is in :data:`VIDEO_EXTENSIONS` are kept, in sorted order; hidden files and hidden
    directories (name starting with ``.``) are skipped. Files named explicitly are kept whatever
    their extension (they fail later at decode time if they are not videos). Duplicates are
    dropped, first occurrence kept.

    Returns ``(videos, problems)`` where ``problems`` lists ``(path, reason)`` for paths that do
    not exist or directories that hold no video file.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    videos: list[Path] = []
    seen: set[Path] = set()
    problems: list[tuple[str, str]] = []

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            videos.append(p)

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = _scan_dir(p)
            if not found:
                problems.append(
                    (
                        str(p),
                        "directory holds no video files (looked recursively for extensions "
                        "such as .mp4 .mkv .webm .avi .mov; hidden files skipped)",
                    )
                )
            for f in found:
                add(f)
        elif p.exists():
            add(p)
        else:
            problems.append((str(p), "does not exist; check the path"))
    return videos, problems


def _scan_dir(root: Path) -> list[Path]:
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            ext = fname.rsplit(".", 1)[-1].lower() if "." in fname else ""
            if ext in VIDEO_EXTENSIONS:
                full = Path(dirpath) / fname
                if full.is_file():
                    out.append(full)
    return sorted(out)


def check_file(path: str | os.PathLike[str]) -> str:
    """Cheap checks done before FFmpeg sees the file. Returns the path as a string."""
    name = existing_file(path, directory_hint="is a directory, not a video file; name a file (or scan the directory)")
    try:
        size = os.path.getsize(name)
    except OSError as exc:
        raise DecodeError(name, f"cannot read the file ({exc.strerror or exc})") from exc
    if size == 0:
        raise DecodeError(name, "is an empty file (0 bytes); the copy or download probably failed")
    if not os.access(name, os.R_OK):
        raise DecodeError(name, "permission denied; make the file readable")
    return name

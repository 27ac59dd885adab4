"""The service's limits on what it is given, checked before any heavy work: a video's frame size,
duration and frame count (:func:`check_video`), and server-side paths confined to the media root
(:func:`resolve_media_path`).

Where it sits: routes (``app``) call these before they queue a job (``engine``).
"""

from __future__ import annotations

import errno
from pathlib import Path

from vmatch.errors import VmatchError
from vmatch.headers import mp4_frame_size
from vmatch.service.config import ServiceConfig
from vmatch.service.errors import ServiceError, from_vmatch


def _declared_frame_size(path: Path) -> tuple[int, int] | None:
    """The frame size the file's header declares, without decoding and without FFmpeg's log.

    FFmpeg's stream parameters when it accepts them; else (FFmpeg opened the stream with 0x0,
    having refused an impossible size) the size an MP4/QuickTime sample description declares."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as c:
            if c.streams.video:
                cc = c.streams.video[0].codec_context
                if cc.width and cc.height:
                    return int(cc.width), int(cc.height)
    except Exception:  # not openable: probe() names the problem
        return None
    return mp4_frame_size(path)


def _too_large(name: str, size: tuple[int, int], limit: int, what: str = "declares") -> ServiceError:
    return ServiceError(422, "resolution_too_large",
                        f"{name}: the video {what} {size[0]}x{size[1]} frames; the limit is {limit} px per side")


def check_video(path: Path, name: str, config: ServiceConfig):
    """Cheap checks before any heavy work: a readable video (not a still image) within the limits
    of duration, frame size and frame count. Returns its :class:`~vmatch.types.VideoInfo`.

    The declared frame size is checked before :func:`vmatch.decode.probe` decodes a frame; probe
    refuses still images, impossible sizes and empty containers (mapped by ``from_vmatch``).
    Nothing here reads FFmpeg's log (see ``app.create_app``: its callback deadlocks decoding).

    Raises ServiceError 422 naming the problem.
    """
    from vmatch.decode import probe

    declared = _declared_frame_size(path)
    if declared is not None and max(declared) > config.max_side:
        raise _too_large(name, declared, config.max_side)
    try:
        info = probe(path)
    except VmatchError as e:
        raise from_vmatch(e, name=name, temp_path=str(path)) from e
    if max(info.width, info.height) > config.max_side:
        raise _too_large(name, (info.width, info.height), config.max_side, "has")
    if info.duration > config.max_duration:
        raise ServiceError(422, "video_too_long",
                           f"{name}: lasts {info.duration:.1f} s; the limit is {config.max_duration:g} s")
    frames = info.n_frames if info.n_frames else (info.duration * info.fps if info.fps else None)
    if frames is not None and frames > config.max_frames:
        raise ServiceError(422, "too_many_frames",
                           f"{name}: holds about {int(frames)} frames; the limit is {config.max_frames}")
    return info


def resolve_media_path(config: ServiceConfig, text: str) -> Path:
    """A server-side path inside ``config.media_root`` (symlinks resolved), else ServiceError
    400 (not a usable path: a symlink loop, a name or path too long for the file system), 403
    (outside the root) or 404 (no such file). Every answer names the path, cut to 200 characters."""
    if config.media_root is None:
        raise ServiceError(403, "paths_disabled",
                           "adding references by server-side path is disabled; start the server with --media-root DIR")
    if not isinstance(text, str) or not text or "\x00" in text:
        raise ServiceError(400, "invalid_path", "path must be a non-empty string without NUL characters")
    shown = f"{text!r:.200}"
    root = config.media_root.resolve()
    try:
        p = Path(text)
        p = (p if p.is_absolute() else root / p).resolve()
        if p != root and root not in p.parents:
            raise ServiceError(403, "path_outside_root", f"{shown} is outside the allowed media root")
        is_file = p.is_file()
    except (OSError, RuntimeError) as e:  # ELOOP, ENAMETOOLONG, EACCES...; RuntimeError: a loop (Python < 3.13)
        raise ServiceError(400, "invalid_path", f"{shown}: not a usable path ({_path_problem(e)})") from None
    if not is_file:
        raise ServiceError(404, "file_not_found", f"{shown}: no such file under the media root")
    return p


def _path_problem(e: OSError | RuntimeError) -> str:
    """Why a path cannot be used, in words (never the resolved server path)."""
    code = getattr(e, "errno", None)
    if isinstance(e, RuntimeError) or code == errno.ELOOP:
        return "a symbolic link loop"
    reasons = {errno.ENAMETOOLONG: "a name or the whole path is too long", errno.EACCES: "permission denied",
               errno.ENOTDIR: "a component is not a directory"}
    return reasons.get(code, getattr(e, "strerror", None) or type(e).__name__)

"""Synthetic test videos: deterministic "natural-ish" footage, edits for planted copies, a demo set.

Used by the tests, by ``vmatch demo`` and to make background footage. Only numpy and PyAV are
needed. Every generator is deterministic from its ``seed``.

Seeds >= 900000 are reserved for the footage that ``models/fit_projection.py`` puts into the
model's background set; tests, the demo and benchmarks use lower seeds, so that none of their
videos is (unfairly) part of the background.

Frame arrays are ``uint8`` ``[N, H, W, 3]`` (RGB); a single frame is ``[H, W, 3]``.

* :func:`scene_frames` / :func:`iter_scene_frames`: moving smooth shapes over a drifting
  low-frequency textured background, with a scene cut (new random layout) every few seconds.
* :func:`write_video`: encode frames with PyAV (any codec of the wheel: libx264, libx265, mpeg4,
  libvpx, libvpx-vp9, gif, ffv1...), constant or variable frame rate, optional rotation metadata.
* Edits: :func:`concat`, :func:`speed_change`, :func:`fps_change`, :func:`black_frames`,
  :func:`solid_frames`, :func:`text_slide`, :func:`hflip`, :func:`crop`, :func:`resize`,
  :func:`add_border`.
* :func:`make_demo_set`: reference videos plus a query holding an edited copy of one of them.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from vmatch.errors import UsageError

__all__ = [
    "DemoSet",
    "PlantedCopy",
    "add_border",
    "black_frames",
    "concat",
    "crop",
    "fps_change",
    "hflip",
    "iter_scene_frames",
    "make_demo_set",
    "resize",
    "scene_frames",
    "solid_frames",
    "speed_change",
    "text_slide",
    "uninformative_frames",
    "write_audio",
    "write_video",
]

_LOG = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Scene generator
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Shape:
    ellipse: bool
    cx: float  # centre at scene start, pixels
    cy: float
    rx: float  # half sizes, pixels
    ry: float
    vx: float  # drift, pixels per second (bounces on the frame edges)
    vy: float
    wobble: float  # amplitude of a sinusoidal sway, pixels
    omega: float  # angular frequency of the sway, rad/s
    phase: float
    color1: np.ndarray  # float32 [3], gradient start
    color2: np.ndarray  # float32 [3], gradient end
    stripes: float  # stripe spatial frequency (rad/pixel), 0 = none
    stripe_angle: float


@dataclass(frozen=True)
class _Scene:
    start: float  # seconds
    end: float
    background: np.ndarray  # float32 [H + 2*pad_y, W + 2*pad_x, 3]
    pad_x: int
    pad_y: int
    pan_omega: float
    pan_phase: tuple[float, float]
    shapes: tuple[_Shape, ...]


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency colour noise [height, width, 3] in [0, 1]: a coarse random grid upsampled
    bilinearly (vectorised)."""
    gh = max(2, cells)
    gw = max(2, int(round(cells * width / max(height, 1))))
    grid = rng.random((gh + 1, gw + 1, 3), dtype=np.float32)
    ys = np.linspace(0.0, gh, height, dtype=np.float32)
    xs = np.linspace(0.0, gw, width, dtype=np.float32)
    y0 = np.minimum(ys.astype(np.int64), gh - 1)
    x0 = np.minimum(xs.astype(np.int64), gw - 1)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    # Smoothstep for softer cell boundaries.
    fy = fy * fy * (3 - 2 * fy)
    fx = fx * fx * (3 - 2 * fx)
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _make_scene(seed: int, index: int, start: float, end: float, width: int, height: int) -> _Scene:
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, index, 7])
    pad_x = max(2, width // 8)
    pad_y = max(2, height // 8)
    bh, bw = height + 2 * pad_y, width + 2 * pad_x
    base = rng.random(3).astype(np.float32) * 200 + 30
    tint = rng.random(3).astype(np.float32) * 200 + 30
    noise = _smooth_noise(rng, bh, bw, cells=int(rng.integers(2, 5)))
    detail = _smooth_noise(rng, bh, bw, cells=int(rng.integers(8, 16)))
    ramp_angle = rng.uniform(0, 2 * np.pi)
    yy = np.linspace(-1, 1, bh, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, bw, dtype=np.float32)[None, :]
    ramp = (0.5 + 0.5 * (np.cos(ramp_angle) * xx + np.sin(ramp_angle) * yy) / 1.5)[..., None]
    background = base * (1 - ramp) + tint * ramp
    background = background * (0.55 + 0.45 * noise) + (detail - 0.5) * 60
    shapes = []
    diag = math.hypot(width, height)
    for _ in range(int(rng.integers(4, 9))):
        rx = float(rng.uniform(0.06, 0.22) * width)
        ry = float(rng.uniform(0.06, 0.22) * height) if rng.random() < 0.5 else rx * float(
            rng.uniform(0.5, 1.5)
        )
        speed = float(rng.uniform(0.1, 0.35) * diag)
        heading = float(rng.uniform(0, 2 * np.pi))
        c1 = rng.random(3).astype(np.float32) * 255
        c2 = rng.random(3).astype(np.float32) * 255
        shapes.append(
            _Shape(
                ellipse=bool(rng.random() < 0.55),
                cx=float(rng.uniform(0, width)),
                cy=float(rng.uniform(0, height)),
                rx=max(rx, 1.0),
                ry=max(ry, 1.0),
                vx=speed * math.cos(heading),
                vy=speed * math.sin(heading),
                wobble=float(rng.uniform(0, 0.05) * diag),
                omega=float(rng.uniform(0.5, 3.0)),
                phase=float(rng.uniform(0, 2 * np.pi)),
                color1=c1,
                color2=c2,
                stripes=float(rng.uniform(0.15, 0.6)) * 48.0 / max(min(width, height), 8)
                * (1.0 if rng.random() < 0.4 else 0.0),
                stripe_angle=float(rng.uniform(0, np.pi)),
            )
        )
    return _Scene(
        start=start,
        end=end,
        background=np.ascontiguousarray(background, dtype=np.float32),
        pad_x=pad_x,
        pad_y=pad_y,
        pan_omega=float(rng.uniform(0.4, 1.2)),
        pan_phase=(float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))),
        shapes=tuple(shapes),
    )


def _bounce(x: float, size: float) -> float:
    """Triangle wave keeping a moving coordinate inside [0, size]."""
    if size <= 0:
        return 0.0
    p = x % (2 * size)
    return p if p <= size else 2 * size - p


def _render(scene: _Scene, tau: float, width: int, height: int) -> np.ndarray:
    """Render the scene ``tau`` seconds after its start as uint8 [height, width, 3]."""
    ox = scene.pad_x + scene.pad_x * 0.9 * math.sin(scene.pan_omega * tau + scene.pan_phase[0])
    oy = scene.pad_y + scene.pad_y * 0.9 * math.sin(scene.pan_omega * tau + scene.pan_phase[1])
    x0, y0 = int(round(ox)), int(round(oy))
    img = scene.background[y0 : y0 + height, x0 : x0 + width].copy()
    for sh in scene.shapes:
        cx = _bounce(sh.cx + sh.vx * tau, width) + sh.wobble * math.sin(sh.omega * tau + sh.phase)
        cy = _bounce(sh.cy + sh.vy * tau, height) + sh.wobble * math.cos(sh.omega * tau + sh.phase)
        xa, xb = max(0, int(cx - sh.rx) - 1), min(width, int(cx + sh.rx) + 2)
        ya, yb = max(0, int(cy - sh.ry) - 1), min(height, int(cy + sh.ry) + 2)
        if xa >= xb or ya >= yb:
            continue
        dx = np.arange(xa, xb, dtype=np.float32)[None, :] - np.float32(cx)
        dy = np.arange(ya, yb, dtype=np.float32)[:, None] - np.float32(cy)
        if sh.ellipse:
            r = np.sqrt((dx / sh.rx) ** 2 + (dy / sh.ry) ** 2)
            alpha = np.clip((1.0 - r) * min(sh.rx, sh.ry), 0.0, 1.0)
        else:
            alpha = np.clip(np.minimum(sh.rx - np.abs(dx), sh.ry - np.abs(dy)), 0.0, 1.0)
        u = np.clip((dx + sh.rx) / (2 * sh.rx), 0.0, 1.0)[..., None]
        fill = sh.color1 * (1 - u) + sh.color2 * u
        if sh.stripes > 0:
            phase = (dx * math.cos(sh.stripe_angle) + dy * math.sin(sh.stripe_angle)) * sh.stripes
            fill = fill * (0.7 + 0.3 * np.sin(phase))[..., None]
        a = alpha[..., None]
        region = img[ya:yb, xa:xb]
        img[ya:yb, xa:xb] = region + (fill - region) * a
    return np.clip(img, 0, 255).astype(np.uint8)


def _check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_fps(fps: Any, name: str = "fps") -> float:
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise UsageError(f"{name} must be a positive number, got {fps!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{name} must be a positive finite number, got {fps!r}")
    return value


def iter_scene_frames(
    seed: int,
    *,
    width: int,
    height: int,
    n_frames: int,
    fps: float,
    scene_seconds: float = 3.0,
    first_frame: int = 0,
) -> Iterator[np.ndarray]:
    """Yield ``n_frames`` frames (uint8 ``[height, width, 3]``) of synthetic footage, one at a time.

    Frame ``i`` shows time ``(first_frame + i) / fps`` of the endless clip defined by ``seed``:
    4-8 smooth shapes (soft ellipses and rectangles with colour gradients, some striped) drifting,
    bouncing and swaying over a slowly panning background of low-frequency colour noise, with a
    scene cut to a new random layout every ``scene_seconds`` (each scene length jittered by
    +-30 %). Frames one second apart differ clearly; different seeds give unrelated footage.
    The same ``(seed, width, height, fps, scene_seconds)`` always gives the same frames, so a
    segment can be regenerated alone with ``first_frame``.
    """
    width = _check_positive_int("width", width)
    height = _check_positive_int("height", height)
    n_frames = _check_positive_int("n_frames", n_frames, minimum=0)
    first_frame = _check_positive_int("first_frame", first_frame, minimum=0)
    fps_f = _check_fps(fps)
    scene_s = _check_fps(scene_seconds, "scene_seconds")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise UsageError(f"seed must be an integer, got {seed!r}")
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    lengths = np.random.default_rng([seed & 0xFFFFFFFF, seed >> 32, 1])
    bounds = [0.0]
    scene: _Scene | None = None
    index = -1
    for i in range(first_frame, first_frame + n_frames):
        t = i / fps_f
        while bounds[-1] <= t:
            bounds.append(bounds[-1] + scene_s * float(lengths.uniform(0.7, 1.3)))
        k = int(np.searchsorted(bounds, t, side="right")) - 1
        if scene is None or k != index:
            index = k
            scene = _make_scene(seed, k, bounds[k], bounds[k + 1], width, height)
        yield _render(scene, t - scene.start, width, height)


def scene_frames(
    seed: int,
    *,
    width: int,
    height: int,
    n_frames: int,
    fps: float,
    scene_seconds: float = 3.0,
    first_frame: int = 0,
) -> np.ndarray:
    """The frames of :func:`iter_scene_frames` as one array ``uint8 [n_frames, height, width, 3]``.

    Mind the memory for long clips (640x360 x 750 frames is 518 MB); prefer
    :func:`iter_scene_frames` with :func:`write_video` for those.
    """
    n = _check_positive_int("n_frames", n_frames, minimum=0)
    out = np.empty((n, _check_positive_int("height", height), _check_positive_int("width", width), 3),
                   np.uint8)  # fmt: skip
    frames = iter_scene_frames(
        seed,
        width=width,
        height=height,
        n_frames=n_frames,
        fps=fps,
        scene_seconds=scene_seconds,
        first_frame=first_frame,
    )
    for i, frame in enumerate(frames):
        out[i] = frame
    return out


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------

# Containers whose muxer stores display-matrix rotation (checked with PyAV 18 / FFmpeg 8).
_ROTATION_FORMATS = {"mp4", "mov", "matroska", "webm", "ipod", "3gp", "3g2"}
# Codecs that cannot encode odd frame sizes in chroma-subsampled formats.
_EVEN_ONLY_CODECS = {"libx264", "libx265", "h264_nvenc", "hevc_nvenc"}
_SUBSAMPLED = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "nv12", "nv21"}
# Codecs without a constant-quality mode that get a generous default bitrate.
_BITRATE_CODECS = {"mpeg4", "msmpeg4", "msmpeg4v2", "h263", "h263p", "flv", "mjpeg", "mpeg1video",
                   "mpeg2video"}  # fmt: skip
_SHORT_TIMEBASE_CODECS = {"mpeg4", "msmpeg4", "msmpeg4v2", "h263", "h263p", "flv"}
_FORMAT_BY_EXT = {
    ".264": "h264",
    ".h264": "h264",
    ".265": "hevc",
    ".h265": "hevc",
    ".hevc": "hevc",
    ".ts": "mpegts",
    ".m2ts": "mpegts",
    ".y4m": "yuv4mpegpipe",
}


def _default_pix_fmt(codec: str) -> str:
    if codec == "gif":
        return "rgb8"
    if codec in ("png", "apng", "libx264rgb"):
        return "rgb24"
    return "yuv420p"


def _as_frame_iter(frames: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    if isinstance(frames, np.ndarray):
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4:
            raise UsageError(f"frames must be [N, H, W, 3] uint8, got shape {frames.shape}")
        return iter(frames)
    return iter(frames)


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    *,
    fps: int | float | Fraction = 25,
    codec: str = "libx264",
    pix_fmt: str | None = None,
    crf: int | None = None,
    bitrate: int | None = None,
    preset: str | None = None,
    gop: int | None = None,
    container_format: str | None = None,
    codec_options: Mapping[str, str] | None = None,
    container_options: Mapping[str, str] | None = None,
    rotation: int = 0,
    vfr_timestamps: Sequence[float] | None = None,
    sample_aspect_ratio: Fraction | None = None,
) -> Path:
    """Encode RGB frames (``[N, H, W, 3]`` uint8 array or an iterable of ``[H, W, 3]``) to ``path``.

    ``fps`` is the frame rate (``Fraction(30000, 1001)`` for NTSC rates). ``codec`` is any PyAV
    encoder (``av.codecs_available``): ``libx264`` (default), ``libx265``, ``mpeg4``, ``libvpx``,
    ``libvpx-vp9``, ``gif``, ``ffv1``, ``mjpeg``, ``rawvideo``... The container comes from the
    file extension (``.264``/``.h264`` give a raw H.264 elementary stream, ``.ts`` MPEG-TS) or
    ``container_format``; ``container_options`` are muxer options (e.g.
    ``{"movflags": "+faststart"}``), ``codec_options`` encoder options.

    ``pix_fmt`` defaults to ``yuv420p`` (``rgb8`` for gif). libx264/libx265 cannot encode odd
    widths or heights in 4:2:0; for odd sizes the default becomes ``yuv444p`` (High 4:4:4 profile,
    decoded fine by FFmpeg); mpeg4, libvpx, libvpx-vp9 and ffv1 accept odd sizes in yuv420p.
    ``crf`` (x264/x265/vpx quality), ``bitrate`` (bits/s; codecs without a crf mode such as mpeg4
    default to ``max(2 Mb/s, 0.3 bit per pixel)`` instead of FFmpeg's blurry 200 kb/s),
    ``preset`` (x264/x265; default ``veryfast`` to keep tests quick) and ``gop`` (keyframe
    interval) are optional.

    ``rotation`` writes display-matrix rotation metadata, in degrees counter-clockwise as ffprobe
    and :attr:`av.VideoFrame.rotation` report it (players then rotate the stored frames by that):
    a multiple of 90, supported for mp4/mov/mkv/webm (PyAV's ``VideoStream.set_display_rotation``;
    other muxers would silently drop it, so they are refused).

    ``vfr_timestamps`` gives an explicit presentation time in seconds for every frame (strictly
    increasing, as many as frames), making a variable-frame-rate file; B-frames are disabled so
    that containers store exact times; ``fps`` then only sets the duration of the last frame
    (``1 / fps``). Precision is that of the container (1 ms for mkv/webm and for
    mpeg4-part-2 codecs, 10 ms for gif, 1/90000 s otherwise).

    ``sample_aspect_ratio`` (e.g. ``Fraction(2, 1)``) marks the pixels as anamorphic (stored in
    the codec header; players stretch the width by that factor).

    Returns the path written. Raises :class:`UsageError` for bad arguments or when FFmpeg refuses
    the settings.
    """
    out = Path(path)
    rate = Fraction(fps).limit_denominator(1_000_000) if not isinstance(fps, Fraction) else fps
    if rate <= 0:
        raise UsageError(f"{out}: fps must be positive, got {fps!r}")
    if codec not in av.codecs_available:
        raise UsageError(f"{out}: codec {codec!r} is not available in this PyAV build")
    if rotation % 90 != 0:
        raise UsageError(f"{out}: rotation must be a multiple of 90 degrees, got {rotation!r}")
    fmt = container_format or _FORMAT_BY_EXT.get(out.suffix.lower())
    times: list[float] | None = None
    if vfr_timestamps is not None:
        times = [float(t) for t in vfr_timestamps]
        if any(not math.isfinite(t) for t in times) or any(b <= a for a, b in zip(times, times[1:])):
            raise UsageError(f"{out}: vfr_timestamps must be finite and strictly increasing")
        if times and times[0] < 0:
            raise UsageError(f"{out}: vfr_timestamps must be >= 0")

    if times is not None and fmt in ("h264", "hevc"):
        raise UsageError(
            f"{out}: a raw {fmt} elementary stream stores no timestamps, so it cannot be "
            "variable frame rate; use .mp4, .mkv, .webm, .mov or .ts"
        )

    it = _as_frame_iter(frames)
    first = next(it, None)
    if first is None:
        raise UsageError(f"{out}: no frames to write (a video needs at least one frame)")
    first = np.asarray(first)
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise UsageError(
            f"{out}: frames must be uint8 [H, W, 3] RGB, got {first.dtype} {first.shape}"
        )
    height, width = int(first.shape[0]), int(first.shape[1])
    if pix_fmt is None:
        pix_fmt = _default_pix_fmt(codec)
        if codec in _EVEN_ONLY_CODECS and (width % 2 or height % 2) and pix_fmt in _SUBSAMPLED:
            pix_fmt = "yuv444p"

    options: dict[str, str] = {}
    if codec in ("libx264", "libx265", "libx264rgb"):
        options["preset"] = preset or "veryfast"
    elif preset is not None:
        options["preset"] = preset
    if codec in ("libvpx", "libvpx-vp9"):
        options.update({"deadline": "realtime", "cpu-used": "8"})
        if crf is not None and bitrate is None:
            options["b"] = "0"
    if crf is not None:
        options["crf"] = str(int(crf))
    if times is not None and codec in ("libx264", "libx265", "libx264rgb"):
        options["bf"] = "0"
        if codec == "libx265":
            options["x265-params"] = "bframes=0:log-level=error"
    if codec == "libx265" and "x265-params" not in options:
        options["x265-params"] = "log-level=error"
    options.update(dict(codec_options or {}))

    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        container = av.open(str(out), mode="w", format=fmt, options=dict(container_options or {}))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise UsageError(f"{out}: cannot create the video file ({exc})") from exc
    try:
        try:
            stream = container.add_stream(codec, rate=rate, options=options)
            stream.width = width
            stream.height = height
            stream.pix_fmt = pix_fmt
            if bitrate is not None:
                stream.codec_context.bit_rate = int(bitrate)
            elif codec in _BITRATE_CODECS:  # no crf: FFmpeg's default 200 kb/s is blurry
                stream.codec_context.bit_rate = max(
                    2_000_000, int(width * height * float(rate) * 0.3)
                )
            if gop is not None:
                stream.codec_context.gop_size = int(gop)
            if sample_aspect_ratio is not None:
                stream.codec_context.sample_aspect_ratio = Fraction(sample_aspect_ratio)
            if times is None:
                time_base = Fraction(1) / rate
            elif codec in _SHORT_TIMEBASE_CODECS:
                time_base = Fraction(1, 1000)  # their time base denominator is 16-bit
            else:
                time_base = Fraction(1, 90000)
            stream.codec_context.time_base = time_base
            if rotation % 360:
                cname = container.format.name
                if not set(cname.split(",")) & _ROTATION_FORMATS:
                    raise UsageError(
                        f"{out}: the {cname} container cannot store rotation metadata; "
                        "use .mp4, .mov, .mkv or .webm"
                    )
                deg = ((rotation + 180) % 360) - 180
                stream.set_display_rotation(float(deg))
            n = 0
            frame_iter = _chain_first(first, it)
            for arr in frame_iter:
                arr = np.asarray(arr)
                if arr.shape != first.shape or arr.dtype != np.uint8:
                    raise UsageError(
                        f"{out}: frame {n} is {arr.dtype} {arr.shape}, expected uint8 {first.shape}"
                    )
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
                if times is not None:
                    if n >= len(times):
                        raise UsageError(
                            f"{out}: more frames than vfr_timestamps ({len(times)})"
                        )
                    vf.pts = int(round(times[n] / time_base))
                    dur = times[n + 1] - times[n] if n + 1 < len(times) else float(1 / rate)
                    vf.duration = max(1, int(round(dur / time_base)))
                else:
                    vf.pts = n
                    vf.duration = 1
                vf.time_base = time_base
                for packet in stream.encode(vf):
                    container.mux(packet)
                n += 1
            if times is not None and n != len(times):
                raise UsageError(
                    f"{out}: {n} frames but {len(times)} vfr_timestamps; give one time per frame"
                )
            for packet in stream.encode(None):
                container.mux(packet)
        except UsageError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise UsageError(
                f"{out}: FFmpeg refused to encode {width}x{height} {pix_fmt} with {codec} "
                f"({exc}); try another codec/pix_fmt (odd sizes: yuv444p, mpeg4 or ffv1)"
            ) from exc
    except BaseException:
        try:
            container.close()
        finally:
            out.unlink(missing_ok=True)
        raise
    container.close()
    return out


def _chain_first(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def write_audio(
    path: str | os.PathLike[str],
    *,
    seconds: float = 1.0,
    sample_rate: int = 16000,
    codec: str = "aac",
    frequency: float = 440.0,
) -> Path:
    """Write an audio-only file (a sine tone): e.g. ``.m4a`` with aac or ``.wav`` with pcm_s16le.

    Useful to check that audio-only input is refused by the video decoder.
    """
    out = Path(path)
    seconds = _check_fps(seconds, "seconds")
    sample_rate = _check_positive_int("sample_rate", sample_rate)
    out.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(out), mode="w")
    try:
        stream = container.add_stream(codec, rate=sample_rate)
        stream.layout = "mono"
        ctx_fmt = stream.codec_context.format
        fmt_name = ctx_fmt.name if ctx_fmt is not None else "fltp"
        n_total = int(round(seconds * sample_rate))
        chunk = stream.codec_context.frame_size or 1024
        pos = 0
        while pos < n_total:
            n = min(chunk, n_total - pos)
            t = (np.arange(pos, pos + n) / sample_rate).astype(np.float64)
            wave = 0.3 * np.sin(2 * np.pi * frequency * t)
            if fmt_name.startswith("s16"):
                data = (wave * 32767).astype(np.int16)[None, :]
            elif fmt_name.startswith("s32"):
                data = (wave * 2147483647).astype(np.int32)[None, :]
            else:
                data = wave.astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(data, format=fmt_name, layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = pos
            frame.time_base = Fraction(1, sample_rate)
            for packet in stream.encode(frame):
                container.mux(packet)
            pos += n
        for packet in stream.encode(None):
            container.mux(packet)
    finally:
        container.close()
    return out


# --------------------------------------------------------------------------------------------------
# Edits on frame arrays
# --------------------------------------------------------------------------------------------------


def _frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[3] != 3 or arr.dtype != np.uint8:
        raise UsageError(f"{name} must be a uint8 array [N, H, W, 3], got {arr.dtype} {arr.shape}")
    return arr


def concat(*clips: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Join clips of the same frame size end to end: ``concat(a, b, c)`` or ``concat([a, b])``."""
    if len(clips) == 1 and not isinstance(clips[0], np.ndarray):
        clips = tuple(clips[0])
    arrays = [_frames(c, f"clip {i}") for i, c in enumerate(clips)]
    if not arrays:
        raise UsageError("concat needs at least one clip")
    size = arrays[0].shape[1:]
    for i, a in enumerate(arrays):
        if a.shape[1:] != size:
            raise UsageError(
                f"concat: clip {i} has frames of {a.shape[2]}x{a.shape[1]}, clip 0 of "
                f"{size[1]}x{size[0]}; resize first"
            )
    return np.concatenate(arrays, axis=0)


def speed_change(frames: np.ndarray, fps: float, factor: float) -> np.ndarray:
    """Play ``frames`` (recorded at ``fps``) ``factor`` times faster, keeping the frame rate.

    Output frame ``i`` shows input time ``i * factor / fps`` (the input frame on screen then);
    the output has ``ceil(N / factor)`` frames. ``factor`` < 1 slows down (frames repeat).
    """
    arr = _frames(frames)
    _check_fps(fps)
    factor = _check_fps(factor, "factor")
    n_out = max(1, math.ceil(arr.shape[0] / factor - 1e-9))
    idx = np.floor(np.arange(n_out) * factor + 1e-9).astype(np.int64)
    return arr[np.minimum(idx, arr.shape[0] - 1)]


def fps_change(frames: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Resample ``frames`` from ``fps_in`` to ``fps_out`` keeping the duration (drop/repeat).

    Output frame ``j`` shows input time ``j / fps_out``.
    """
    arr = _frames(frames)
    fin = _check_fps(fps_in, "fps_in")
    fout = _check_fps(fps_out, "fps_out")
    n_out = max(1, math.ceil(arr.shape[0] * fout / fin - 1e-9))
    idx = np.floor(np.arange(n_out) * fin / fout + 1e-9).astype(np.int64)
    return arr[np.minimum(idx, arr.shape[0] - 1)]


def solid_frames(
    color: Sequence[int] | int, n: int, width: int, height: int
) -> np.ndarray:
    """``n`` frames of one colour (RGB triple or a grey level)."""
    n = _check_positive_int("n", n, minimum=0)
    width = _check_positive_int("width", width)
    height = _check_positive_int("height", height)
    rgb = np.broadcast_to(np.asarray(color, dtype=np.int64), (3,))
    if np.any(rgb < 0) or np.any(rgb > 255):
        raise UsageError(f"color values must be in 0..255, got {color!r}")
    out = np.empty((n, height, width, 3), np.uint8)
    out[...] = rgb.astype(np.uint8)
    return out


def black_frames(n: int, width: int, height: int) -> np.ndarray:
    """``n`` black frames of ``width`` x ``height``."""
    return solid_frames(0, n, width, height)


_FONT_ROWS = {
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11110 10001 10001 10001 10001 10001 11110",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 01010 00100 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    "!": "00100 00100 00100 00100 00100 00000 00100",
    "?": "01110 10001 00001 00010 00100 00000 00100",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    "'": "00100 00100 01000 00000 00000 00000 00000",
    "/": "00001 00001 00010 00100 01000 10000 10000",
    "#": "11111 11111 11111 11111 11111 11111 11111",
}


def _glyph(ch: str) -> np.ndarray:
    rows = _FONT_ROWS.get(ch.upper(), _FONT_ROWS["?"])
    return np.array([[c == "1" for c in row] for row in rows.split()], dtype=bool)


def _text_mask(text: str) -> np.ndarray:
    """Bitmap of ``text`` (lines split on newlines) in the 5x7 block font, 1 px spacing."""
    lines = text.split("\n") or [""]
    cols = max(1, max(len(line) for line in lines))
    mask = np.zeros((len(lines) * 8 + 1, cols * 6 + 1), dtype=bool)
    for r, line in enumerate(lines):
        for c, ch in enumerate(line):
            mask[1 + r * 8 : 1 + r * 8 + 7, 1 + c * 6 : 1 + c * 6 + 5] = _glyph(ch)
    return mask


def text_slide(
    text: str,
    n: int,
    width: int,
    height: int,
    *,
    fg: Sequence[int] = (255, 255, 255),
    bg: Sequence[int] = (0, 0, 0),
) -> np.ndarray:
    """``n`` identical frames showing ``text`` centred in large block letters (5x7 font, scaled by
    the largest integer factor that fits 90 % of the frame; letters A-Z, digits, ``.,!?-:'/``;
    other characters print as ``?``). Lines are split on ``\\n``."""
    frames = solid_frames(bg, n, width, height)
    mask = _text_mask(text)
    scale = max(1, min(int(width * 0.9) // mask.shape[1], int(height * 0.9) // mask.shape[0]))
    big = np.kron(mask, np.ones((scale, scale), dtype=bool))
    bh, bw = min(big.shape[0], height), min(big.shape[1], width)
    y0, x0 = (height - bh) // 2, (width - bw) // 2
    region = frames[:, y0 : y0 + bh, x0 : x0 + bw]
    region[:, big[:bh, :bw]] = np.asarray(fg, dtype=np.uint8)
    return frames


def hflip(frames: np.ndarray) -> np.ndarray:
    """Mirror every frame left-right."""
    return np.ascontiguousarray(_frames(frames)[:, :, ::-1])


def crop(frames: np.ndarray, *, top: int, left: int, height: int, width: int) -> np.ndarray:
    """Keep the ``height`` x ``width`` window whose top-left corner is (``top``, ``left``)."""
    arr = _frames(frames)
    h, w = arr.shape[1:3]
    if not (0 <= top and 0 <= left and 1 <= height and 1 <= width):
        raise UsageError(
            f"crop window must have top, left >= 0 and a positive size, got top={top} left={left} "
            f"height={height} width={width}"
        )
    if top + height > h or left + width > w:
        raise UsageError(
            f"crop window {width}x{height}+{left}+{top} does not fit in frames of {w}x{h}"
        )
    return np.ascontiguousarray(arr[:, top : top + height, left : left + width])


def resize(frames: np.ndarray, *, height: int, width: int) -> np.ndarray:
    """Bilinear resize of every frame to ``height`` x ``width`` (numpy only, pixel-centre aligned)."""
    arr = _frames(frames)
    height = _check_positive_int("height", height)
    width = _check_positive_int("width", width)
    n, h, w = arr.shape[:3]
    if (h, w) == (height, width):
        return arr.copy()
    ys = np.clip((np.arange(height) + 0.5) * h / height - 0.5, 0, h - 1)
    xs = np.clip((np.arange(width) + 0.5) * w / width - 0.5, 0, w - 1)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    fy = (ys - y0).astype(np.float32)[None, :, None, None]
    fx = (xs - x0).astype(np.float32)[None, None, :, None]
    out = np.empty((n, height, width, 3), np.uint8)
    for i0 in range(0, n, 64):  # bounded temporary memory
        a = arr[i0 : i0 + 64].astype(np.float32)
        top = a[:, y0][:, :, x0] * (1 - fx) + a[:, y0][:, :, x1] * fx
        bot = a[:, y1][:, :, x0] * (1 - fx) + a[:, y1][:, :, x1] * fx
        out[i0 : i0 + 64] = np.clip(top * (1 - fy) + bot * fy + 0.5, 0, 255).astype(np.uint8)
    return out


def add_border(
    frames: np.ndarray,
    *,
    top: int = 0,
    bottom: int = 0,
    left: int = 0,
    right: int = 0,
    color: Sequence[int] | int = 0,
) -> np.ndarray:
    """Surround every frame with a solid border (letterbox / pillarbox); the frame grows."""
    arr = _frames(frames)
    for name, v in (("top", top), ("bottom", bottom), ("left", left), ("right", right)):
        _check_positive_int(name, v, minimum=0)
    n, h, w = arr.shape[:3]
    out = np.empty((n, h + top + bottom, w + left + right, 3), np.uint8)
    out[...] = np.broadcast_to(np.asarray(color, dtype=np.uint8), (3,))
    out[:, top : top + h, left : left + w] = arr
    return out


# --------------------------------------------------------------------------------------------------
# Background (uninformative) frames
# --------------------------------------------------------------------------------------------------


def uninformative_frames(size: tuple[int, int] = (224, 224), *, seed: int = 0) -> np.ndarray:
    """Frames that carry no distinctive content, ``uint8 [N, H, W, 3]`` with ``size=(H, W)``.

    Used as a background set for score normalisation: frames of real videos that look like these
    (blank screens, fades, title cards, colour bars, static) match everything and must not count
    as evidence of copying. Contents (60 frames, deterministic from ``seed``): solid colours
    (black, white, greys, primaries and random colours), linear and radial gradients, SMPTE-like
    colour bars, text slides (white on black, black on white, coloured), small captions on black,
    and noise (uniform, Gaussian grey, low-frequency colour blobs).
    """
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in size)
    ):
        raise UsageError(f"size must be (height, width) as two positive integers, got {size!r}")
    h, w = int(size[0]), int(size[1])
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 99])
    out: list[np.ndarray] = []
    solid = [(0, 0, 0), (255, 255, 255), (128, 128, 128), (64, 64, 64), (192, 192, 192),
             (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255),
             (16, 16, 16), (235, 235, 235)]  # fmt: skip
    solid += [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(7)]
    out.extend(solid_frames(c, 1, w, h)[0] for c in solid)
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    xx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
    for k in range(12):
        c1 = rng.integers(0, 256, 3).astype(np.float32)
        c2 = rng.integers(0, 256, 3).astype(np.float32)
        if k % 3 == 0:
            u = np.broadcast_to(xx, (h, w, 1))
        elif k % 3 == 1:
            u = np.broadcast_to(yy, (h, w, 1))
        else:
            u = np.sqrt((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / math.sqrt(0.5)
        out.append(np.clip(c1 * (1 - u) + c2 * u, 0, 255).astype(np.uint8))
    for fade in (0.0, 0.25, 0.5):  # colour bars, plain and faded to black
        bars = np.array([(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0),
                         (192, 0, 192), (192, 0, 0), (0, 0, 192)], np.float32)  # fmt: skip
        idx = np.minimum((np.arange(w) * 7) // w, 6)
        frame = np.broadcast_to(bars[idx][None], (h, w, 3)) * (1 - fade)
        out.append(frame.astype(np.uint8))
    texts = ["THE END", "TITLE", "CHAPTER 1", "SUBSCRIBE", "COPYRIGHT 2024", "LOADING...",
             "PLEASE WAIT", "NO SIGNAL", "PART 2", "CREDITS", "BREAKING NEWS", "INTERMISSION"]  # fmt: skip
    styles = [((255, 255, 255), (0, 0, 0)), ((0, 0, 0), (255, 255, 255)),
              ((255, 255, 0), (0, 0, 128)), ((255, 255, 255), (40, 40, 40))]  # fmt: skip
    for i, text in enumerate(texts):
        fg, bg = styles[i % len(styles)]
        out.append(text_slide(text, 1, w, h, fg=fg, bg=bg)[0])
    for text in ("WWW.EXAMPLE.COM", "12:00", "ABC 123"):  # small caption on black
        small = text_slide(text, 1, max(1, w // 3), max(1, h // 6))[0]
        frame = np.zeros((h, w, 3), np.uint8)
        sh, sw = small.shape[:2]
        frame[h - sh - h // 12 : h - h // 12, (w - sw) // 2 : (w - sw) // 2 + sw] = small
        out.append(frame)
    for _ in range(3):
        out.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    for _ in range(3):
        grey = np.clip(rng.normal(128, 40, (h, w, 1)), 0, 255).astype(np.uint8)
        out.append(np.repeat(grey, 3, axis=2))
    for _ in range(4):
        blobs = _smooth_noise(rng, h, w, cells=int(rng.integers(2, 6)))
        out.append((blobs * 255).astype(np.uint8))
    return np.stack(out)


# --------------------------------------------------------------------------------------------------
# Demo set
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlantedCopy:
    """Where a reference was copied into a query (seconds, presentation times)."""

    reference: str  # file stem of the reference video (its default reference id)
    reference_path: Path
    query_path: Path
    query_start: float
    query_end: float
    reference_start: float
    reference_end: float
    edits: tuple[str, ...] = ()


@dataclass(frozen=True)
class DemoSet:
    """Files written by :func:`make_demo_set` and the truth about them."""

    directory: Path
    references: tuple[Path, ...]
    query: Path
    negative_query: Path  # a query that copies no reference
    truth: PlantedCopy


def make_demo_set(
    directory: str | os.PathLike[str],
    *,
    seed: int = 0,
    width: int = 320,
    height: int = 180,
    fps: int = 25,
    n_references: int = 3,
    reference_seconds: float = 20.0,
) -> DemoSet:
    """Write a small demo collection into ``directory`` and return where the copy was planted.

    * ``references/ref_<i>.mp4``: ``n_references`` unrelated clips of ``reference_seconds``.
    * ``queries/query_copy.mp4``: 6 s of unrelated footage, then seconds 5-13 of ``ref_1``
      edited (cropped to 90 % and scaled back, brightened, re-timed from ``fps`` to 30 fps), then
      5 s of other unrelated footage.
    * ``queries/query_clean.mp4``: 10 s of unrelated footage (a query that matches nothing).

    Deterministic from ``seed``.
    """
    if n_references < 2:
        raise UsageError(f"n_references must be >= 2, got {n_references!r}")
    if reference_seconds < 14:
        raise UsageError(
            f"reference_seconds must be >= 14 (the copy spans 5-13 s), got {reference_seconds!r}"
        )
    root = Path(directory)
    ref_dir = root / "references"
    query_dir = root / "queries"
    references: list[Path] = []
    n_ref_frames = int(round(reference_seconds * fps))
    for i in range(n_references):
        p = ref_dir / f"ref_{i}.mp4"
        write_video(
            p,
            iter_scene_frames(seed * 1000 + i, width=width, height=height, n_frames=n_ref_frames, fps=fps),
            fps=fps,
            crf=23,
        )
        references.append(p)

    q_fps = 30
    ref_start, ref_end = 5.0, 13.0
    src = scene_frames(
        seed * 1000 + 1,
        width=width,
        height=height,
        n_frames=int(round((ref_end - ref_start) * fps)),
        fps=fps,
        first_frame=int(round(ref_start * fps)),
    )
    ch, cw = int(height * 0.9) // 2 * 2, int(width * 0.9) // 2 * 2
    edited = crop(src, top=(height - ch) // 2, left=(width - cw) // 2, height=ch, width=cw)
    edited = resize(edited, height=height, width=width)
    edited = np.clip(edited.astype(np.int16) + 25, 0, 255).astype(np.uint8)
    edited = fps_change(edited, fps, q_fps)
    before_s, after_s = 6.0, 5.0
    before = scene_frames(seed * 1000 + 500, width=width, height=height,
                          n_frames=int(before_s * q_fps), fps=q_fps)  # fmt: skip
    after = scene_frames(seed * 1000 + 501, width=width, height=height,
                         n_frames=int(after_s * q_fps), fps=q_fps)  # fmt: skip
    query = query_dir / "query_copy.mp4"
    write_video(query, concat(before, edited, after), fps=q_fps, crf=23)

    negative = query_dir / "query_clean.mp4"
    write_video(
        negative,
        iter_scene_frames(seed * 1000 + 502, width=width, height=height, n_frames=10 * q_fps, fps=q_fps),
        fps=q_fps,
        crf=23,
    )
    q_start = before.shape[0] / q_fps
    truth = PlantedCopy(
        reference=references[1].stem,
        reference_path=references[1],
        query_path=query,
        query_start=q_start,
        query_end=q_start + edited.shape[0] / q_fps,
        reference_start=ref_start,
        reference_end=ref_end,
        edits=("crop 90% + rescale", "brightness +25", f"{fps}->{q_fps} fps"),
    )
    return DemoSet(
        directory=root,
        references=tuple(references),
        query=query,
        negative_query=negative,
        truth=truth,
    )

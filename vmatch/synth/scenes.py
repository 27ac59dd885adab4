"""The scene generator: deterministic "natural-ish" footage from a seed.

Moving smooth shapes (soft ellipses and rectangles with colour gradients, some striped) over a
drifting low-frequency textured background, with a scene cut (new random layout) every few
seconds: :func:`iter_scene_frames` (one frame at a time) and :func:`scene_frames` (one array).
:func:`_smooth_noise` is also the texture of the background set and of the look-alike benchmark.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from vmatch.errors import UsageError
from vmatch.synth.checks import _check_fps, _check_positive_int


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

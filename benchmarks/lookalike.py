"""Look-alike families for the matching benchmark (issue 14).

A *look-alike family* is a set of videos of one style, place or source that share no footage: a
copy detector must flag an edited copy of a family's reference, and must not flag the reference's
siblings. Every family here has one or more *references* (indexed) and *siblings* (negative
queries, never indexed), and each reference also gets one edited copy (a positive query), so that
the benchmark measures both sides on the same kind of content.

Families (``FAMILIES``):

* ``terminal_text`` (generated): screen recordings of a terminal of one theme (font size, colours,
  prompt, window chrome) with other commands and output typed into it.
* ``slides`` (generated): presentation slides of one template (title bar, accent shapes, fonts)
  with other titles and bullet points.
* ``procedural`` (generated): animations of one generator (``vmatch.synth.iter_scene_frames``,
  the demo's generator) with other seeds.
* ``bouncing_balls`` (generated): one particle generator, one palette and background, other seeds.
* ``photo_parts``: slow pans and zooms over *other parts* (non-overlapping cells of a 3x3 grid) of
  one picture: a frame of the evaluation clip ``openh264_street_redtrees_1920x1080.mp4`` and two
  generated textures.
* ``static_camera_synth`` (generated): one fixed camera (a generated room-like background with
  sensor noise) at other times: other objects crossing the view.
* ``static_camera``: evaluation clips of static cameras at other times (``intel_bottle-detection``,
  ``intel_car-detection``, ``sleap_flies_arena_120s``; ``sleap_flies_tracks_clip`` is another
  recording of the same kind of arena), windows at least ``GAP_S`` seconds away from the reference
  window.

The evaluation clips these families use (``RESERVED_CLIPS``) are taken out of the main benchmark's
roles (bench_generate.py), so no footage of a family is indexed anywhere else. Generated content
uses seeds 100000-899999; seeds >= 900000 are training seeds (``models/`` uses 900000-949999, the
training part below 950000-999999). Everything is drawn from the seed of the draw: the same seed
gives the same files.

The *training part* (``part="train"``, ``bench_generate.py --part train``) builds the same families
from the ``train`` split instead, so that methods and thresholds can be fitted away from the
evaluation benchmark: ``photo_parts`` pans over the first frame of ``sam2_bedroom.mp4``,
``static_camera`` uses ``intel_one-by-one-person-detection``, ``sleap_single_fly`` and
``dlc_mouse_openfield`` (``TRAIN_STATIC_CLIPS``; no sibling-only clip), and those training clips
(``reserved_clips("train")``) are taken out of the training part's main roles. Its generated
content uses seeds 950000-999999 (``TRAIN_SEED_BASE``) and its random streams are keyed apart from
the evaluation part's, so no generated theme, template, picture, room or seed is shared with it.

Siblings are negatives written as they are (re-encoded) half of the time, otherwise with one
spatial edit of the main benchmark (the same edit functions), because an uploader edits what they
upload whether or not it is a copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

FPS = 15
W, H = 640, 360
REF_S = 12.0
SIB_S = 6.0
GAP_S = 3.0
SEED_BASE = 100_000

FAMILIES = (
    "terminal_text",
    "slides",
    "procedural",
    "bouncing_balls",
    "photo_parts",
    "static_camera_synth",
    "static_camera",
)

# Evaluation clips given to the look-alike families (not used by the main benchmark's roles).
STATIC_CLIPS = {
    # clip: (reference window, sibling windows: count, length, start of the sibling zone)
    "intel_bottle-detection.mp4": ((0.0, 14.0), 4, 5.0, 17.0),
    "intel_car-detection.mp4": ((0.0, 11.0), 3, 5.0, 14.0),
    "sleap_flies_arena_120s.mp4": ((0.0, 30.0), 8, 8.0, 33.0),
}
SIBLING_ONLY_CLIPS = {"sleap_flies_tracks_clip.mp4": ("sleap_flies_arena_120s.mp4", 3, 8.0)}
PHOTO_CLIP = "openh264_street_redtrees_1920x1080.mp4"
RESERVED_CLIPS = set(STATIC_CLIPS) | set(SIBLING_ONLY_CLIPS) | {PHOTO_CLIP}

# Training clips given to the look-alike families of the training part (same windows' logic).
TRAIN_STATIC_CLIPS = {
    "dlc_mouse_openfield.mp4": ((0.0, 14.0), 5, 8.0, 17.0),  # 77.7 s
    "intel_one-by-one-person-detection.mp4": ((0.0, 14.0), 8, 8.0, 17.0),  # 139.4 s
    "sleap_single_fly.mp4": ((0.0, 20.0), 6, 8.0, 23.0),  # 128 s
}
TRAIN_SIBLING_ONLY_CLIPS: dict[str, tuple[str, int, float]] = {}
TRAIN_PHOTO_CLIP = "sam2_bedroom.mp4"
TRAIN_SEED_BASE = 950_000

#: Per part: static clips, sibling-only clips, photo clip, generated seeds (base, number of
#: 10000-seed blocks) and the extra key of its random streams (none for eval: unchanged draws).
PARTS = {
    "eval": {"static": STATIC_CLIPS, "sibling_only": SIBLING_ONLY_CLIPS, "photo": PHOTO_CLIP,
             "seed_base": SEED_BASE, "seed_blocks": 80, "stream": ()},
    "train": {"static": TRAIN_STATIC_CLIPS, "sibling_only": TRAIN_SIBLING_ONLY_CLIPS, "photo": TRAIN_PHOTO_CLIP,
              "seed_base": TRAIN_SEED_BASE, "seed_blocks": 5, "stream": (TRAIN_SEED_BASE,)},
}


def reserved_clips(part: str = "eval") -> set[str]:
    """The clips of ``part``'s split that its look-alike families use (out of its main roles)."""
    cfg = PARTS[part]
    return set(cfg["static"]) | set(cfg["sibling_only"]) | {cfg["photo"]}


@dataclass
class Member:
    """One video of a family: a reference (indexed) or a sibling (negative query)."""

    family: str
    group: str  # the family instance (theme, picture, camera) it belongs to
    role: str  # "reference" | "sibling"
    name: str
    frames: Callable[[], np.ndarray]  # uint8 [N, H, W, 3] at FPS
    source: str = ""
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Text rendering (Pillow's bundled FreeType font: the same glyphs on every machine with that Pillow)
# --------------------------------------------------------------------------------------------------

WORDS = (
    "build", "deploy", "status", "commit", "install", "config", "server", "client", "error", "warning",
    "update", "remove", "cache", "index", "query", "report", "select", "worker", "thread", "socket",
    "render", "import", "export", "module", "kernel", "python", "docker", "branch", "merge", "rebase",
    "upload", "stream", "buffer", "packet", "router", "schema", "tensor", "matrix", "vector", "window",
    "garden", "river", "summer", "winter", "market", "coffee", "planet", "orange", "silver", "forest",
    "museum", "travel", "budget", "meeting", "quarter", "revenue", "growth", "design", "review", "launch",
)


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _words(rng: np.random.Generator, lo: int, hi: int) -> str:
    return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), int(rng.integers(lo, hi + 1))))


def _command(rng: np.random.Generator) -> tuple[str, list[str]]:
    verb = WORDS[int(rng.integers(len(WORDS)))]
    cmd = f"{verb} --{WORDS[int(rng.integers(len(WORDS)))]} {_words(rng, 1, 2).replace(' ', '/')}"
    out = []
    for _ in range(int(rng.integers(1, 5))):
        k = rng.random()
        if k < 0.3:
            out.append(f"[{int(rng.integers(0, 100)):3d}%] {_words(rng, 2, 5)}")
        elif k < 0.6:
            out.append(f"{rng.integers(0, 2**32):08x}  {_words(rng, 1, 4)}")
        else:
            out.append(_words(rng, 3, 8))
    return cmd, out


def terminal_style(rng: np.random.Generator) -> dict:
    dark = rng.random() < 0.75
    bg = tuple(int(v) for v in (rng.integers(0, 45, 3) if dark else rng.integers(215, 256, 3)))
    fg = tuple(int(v) for v in (rng.integers(170, 256, 3) if dark else rng.integers(0, 70, 3)))
    accent = tuple(int(v) for v in rng.integers(60, 256, 3))
    return {
        "bg": bg, "fg": fg, "accent": accent, "size": int(rng.integers(14, 20)),
        "bar": tuple(int(v) for v in rng.integers(40, 200, 3)), "prompt": rng.choice(["$ ", "> ", "% ", "~ # "]),
        "host": WORDS[int(rng.integers(len(WORDS)))] + "@" + WORDS[int(rng.integers(len(WORDS)))],
        "chars_per_frame": int(rng.integers(2, 5)),
    }


def terminal_frames(style: dict, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A terminal being typed into: the style (theme) is the family's, the text the member's."""
    from PIL import Image, ImageDraw

    font = _font(style["size"])
    line_h = style["size"] + 4
    top = 30
    rows = (H - top - 8) // line_h
    lines: list[tuple[str, tuple]] = []
    pending: list[tuple[str, tuple, bool]] = []  # text, colour, typed?
    n = int(round(seconds * FPS))
    frames = np.empty((n, H, W, 3), np.uint8)
    typed = ""
    cur: tuple[str, tuple, bool] | None = None
    for i in range(n):
        if cur is None:
            if not pending:
                cmd, out = _command(rng)
                pending = [(style["prompt"] + cmd, style["accent"], True)] + [(o, style["fg"], False) for o in out]
            cur = pending.pop(0)
            typed = "" if cur[2] else cur[0]
        if cur[2] and len(typed) < len(cur[0]):
            typed = cur[0][: len(typed) + style["chars_per_frame"]]
        img = Image.new("RGB", (W, H), style["bg"])
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, W, 22], fill=style["bar"])
        d.text((10, 3), style["host"], fill=(235, 235, 235), font=_font(14))
        for k, col in enumerate([(230, 80, 70), (230, 190, 60), (90, 200, 90)]):
            d.ellipse([W - 70 + 20 * k, 6, W - 58 + 20 * k, 18], fill=col)
        shown = lines[-(rows - 1):] + [(typed + ("_" if i % 8 < 4 and cur[2] else ""), cur[1])]
        for r, (text, col) in enumerate(shown):
            d.text((8, top + r * line_h), text, fill=col, font=font)
        frames[i] = np.asarray(img)
        if not cur[2] or len(typed) >= len(cur[0]):
            lines.append((cur[0], cur[1]))
            cur = None
    return frames


def slides_style(rng: np.random.Generator) -> dict:
    return {
        "bg1": tuple(int(v) for v in rng.integers(180, 256, 3)), "bg2": tuple(int(v) for v in rng.integers(120, 256, 3)),
        "bar": tuple(int(v) for v in rng.integers(0, 160, 3)), "title": int(rng.integers(26, 36)),
        "body": int(rng.integers(18, 24)), "text": tuple(int(v) for v in rng.integers(0, 80, 3)),
        "accent": tuple(int(v) for v in rng.integers(0, 256, 3)), "logo_left": bool(rng.random() < 0.5),
        "slide_s": float(rng.uniform(2.5, 4.0)),
    }


def slides_frames(style: dict, rng: np.random.Generator, seconds: float) -> np.ndarray:
    from PIL import Image, ImageDraw

    tf, bf = _font(style["title"]), _font(style["body"])
    yy = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
    base = (np.asarray(style["bg1"], np.float32) * (1 - yy) + np.asarray(style["bg2"], np.float32) * yy)
    base = np.broadcast_to(base, (H, W, 3)).astype(np.uint8)
    n = int(round(seconds * FPS))
    frames = np.empty((n, H, W, 3), np.uint8)
    per = max(1, int(round(style["slide_s"] * FPS)))
    slide = None
    for i in range(n):
        if i % per == 0:
            slide = (_words(rng, 2, 4).title(), [_words(rng, 3, 6) for _ in range(int(rng.integers(3, 6)))],
                     float(rng.uniform(0.2, 0.8)))
        title, bullets, chart = slide
        img = Image.fromarray(base)
        d = ImageDraw.Draw(img)
        d.rectangle([0, 0, W, 58], fill=style["bar"])
        d.text((24, 12), title, fill=(250, 250, 250), font=tf)
        lx = 14 if style["logo_left"] else W - 44
        d.ellipse([lx, H - 40, lx + 28, H - 12], fill=style["accent"])
        shown = 1 + (i % per) * len(bullets) // per
        for k, b in enumerate(bullets[:shown]):
            y = 80 + k * (style["body"] + 14)
            d.rectangle([30, y + 6, 38, y + 14], fill=style["accent"])
            d.text((48, y), b, fill=style["text"], font=bf)
        d.rectangle([W - 170, H - 60 - int(120 * chart), W - 140, H - 60], fill=style["accent"])
        d.rectangle([W - 130, H - 60 - int(120 * (1 - chart)), W - 100, H - 60], fill=style["bar"])
        frames[i] = np.asarray(img)
    return frames


def procedural_frames(seed: int, seconds: float) -> np.ndarray:
    from vmatch.synth import scene_frames

    return scene_frames(seed, width=W, height=H, n_frames=int(round(seconds * FPS)), fps=FPS)


def balls_style(rng: np.random.Generator) -> dict:
    return {"bg": rng.integers(0, 256, 3).astype(np.float32), "palette": rng.integers(0, 256, (4, 3)).astype(np.float32),
            "count": int(rng.integers(6, 12)), "radius": (float(rng.uniform(12, 20)), float(rng.uniform(28, 45)))}


def balls_frames(style: dict, rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = int(round(seconds * FPS))
    k = style["count"]
    pos = rng.uniform([0, 0], [W, H], (k, 2))
    vel = rng.normal(0, 120, (k, 2)) / FPS
    rad = rng.uniform(*style["radius"], k)
    col = style["palette"][rng.integers(0, len(style["palette"]), k)]
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    frames = np.empty((n, H, W, 3), np.uint8)
    for i in range(n):
        f = np.broadcast_to(style["bg"], (H, W, 3)).copy()
        for j in range(k):
            m = (xx - pos[j, 0]) ** 2 + (yy - pos[j, 1]) ** 2 <= rad[j] ** 2
            f[m] = col[j]
        frames[i] = f.astype(np.uint8)
        pos += vel
        for ax, lim in ((0, W), (1, H)):
            out = (pos[:, ax] < 0) | (pos[:, ax] > lim)
            vel[out, ax] *= -1
            pos[:, ax] = np.clip(pos[:, ax], 0, lim)
    return frames


# --------------------------------------------------------------------------------------------------
# Pictures and fixed cameras
# --------------------------------------------------------------------------------------------------


def texture(rng: np.random.Generator, h: int = 1080, w: int = 1920) -> np.ndarray:
    """A generated picture: multi-scale colour noise with shapes and a few words (uint8 [h, w, 3])."""
    from PIL import Image, ImageDraw

    from vmatch.synth import _smooth_noise

    img = np.zeros((h, w, 3), np.float32)
    for cells, amp in ((3, 160), (12, 70), (48, 35)):
        img += (_smooth_noise(rng, h, w, cells) - 0.5) * amp
    img = np.clip(img + rng.uniform(70, 180, 3), 0, 255).astype(np.uint8)
    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(40, 70))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        s = int(rng.integers(20, 120))
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        (d.ellipse if rng.random() < 0.5 else d.rectangle)([x, y, x + s, y + int(s * rng.uniform(0.5, 1.5))], fill=c)
    for _ in range(8):
        d.text((int(rng.integers(0, w - 200)), int(rng.integers(0, h - 40))), _words(rng, 1, 2),
               fill=tuple(int(v) for v in rng.integers(0, 256, 3)), font=_font(int(rng.integers(24, 48))))
    return np.asarray(pil)


def _resize(frames: np.ndarray, h: int, w: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    out = []
    for i in range(0, len(t), 32):
        out.append(F.interpolate(t[i : i + 32], size=(h, w), mode="bilinear", antialias=True, align_corners=False))
    return torch.cat(out).clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def pan_frames(picture: np.ndarray, cell: tuple[int, int, int, int], rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A slow pan and zoom that stays inside ``cell`` (y, x, h, w) of ``picture``, output W x H."""
    y0, x0, ch, cw = cell
    n = int(round(seconds * FPS))
    z0, z1 = rng.uniform(1.0, 1.15), rng.uniform(1.15, 1.4)
    if rng.random() < 0.5:
        z0, z1 = z1, z0
    a, b = rng.random(2), rng.random(2)
    crops = []
    for i in range(n):
        s = i / max(1, n - 1)
        z = z0 + (z1 - z0) * s
        wh = (int(ch / z), int(cw / z))
        p = a + (b - a) * s
        yy = y0 + int(p[0] * (ch - wh[0]))
        xx = x0 + int(p[1] * (cw - wh[1]))
        crops.append(_resize(picture[None, yy : yy + wh[0], xx : xx + wh[1]], H, W)[0])
    return np.stack(crops)


def room_background(rng: np.random.Generator) -> np.ndarray:
    """A generated fixed-camera view: floor, wall, furniture-like blocks, a window."""
    from vmatch.synth import _smooth_noise

    wall = rng.uniform(90, 220, 3)
    floor = rng.uniform(40, 160, 3)
    horizon = int(H * rng.uniform(0.45, 0.65))
    img = np.empty((H, W, 3), np.float32)
    img[:horizon] = wall
    img[horizon:] = floor
    img *= 0.75 + 0.5 * _smooth_noise(rng, H, W, 6)
    for _ in range(int(rng.integers(4, 8))):
        bw, bh = int(rng.integers(40, 160)), int(rng.integers(30, 140))
        x, y = int(rng.integers(0, W - bw)), int(rng.integers(max(0, horizon - bh), H - bh))
        img[y : y + bh, x : x + bw] = rng.uniform(20, 240, 3) * (0.8 + 0.4 * _smooth_noise(rng, bh, bw, 3))
    wx, ww = int(rng.integers(20, W - 200)), int(rng.integers(80, 180))
    img[20 : 20 + int(horizon * 0.5), wx : wx + ww] = rng.uniform(180, 255, 3)
    return np.clip(img, 0, 255)


def static_camera_frames(background: np.ndarray, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """The fixed view with 2-4 objects crossing it and sensor noise (this member's objects and times)."""
    n = int(round(seconds * FPS))
    k = int(rng.integers(2, 5))
    objs = []
    for _ in range(k):
        ow, oh = int(rng.integers(30, 90)), int(rng.integers(60, 160))
        y = int(rng.integers(H // 3, H - oh))
        x0 = rng.uniform(-ow, W)
        v = rng.choice([-1, 1]) * rng.uniform(40, 120) / FPS
        objs.append((ow, oh, y, x0, v, rng.uniform(0, 255, 3)))
    frames = np.empty((n, H, W, 3), np.uint8)
    for i in range(n):
        f = background.copy()
        for ow, oh, y, x0, v, c in objs:
            x = int((x0 + v * i + ow) % (W + ow)) - ow
            a, b = max(0, x), min(W, x + ow)
            if b > a:
                f[y : y + oh, a:b] = c
                f[y : y + oh // 4, a:b] = c * 0.6 + 90  # a "head"
        f += rng.normal(0, 3.0, f.shape).astype(np.float32)
        frames[i] = np.clip(f, 0, 255).astype(np.uint8)
    return frames


# --------------------------------------------------------------------------------------------------
# The plan of one draw
# --------------------------------------------------------------------------------------------------


def plan(seed: int, clips: dict[str, Path], decode_window: Callable[[Path, tuple[float, float]], np.ndarray],
         part: str = "eval") -> list[Member]:
    """Every member of every family for draw ``seed`` of ``part`` ("eval" or "train"). ``clips``
    maps reserved clip names to paths (a missing clip drops its part of the family);
    ``decode_window(path, (t0, t1))`` gives the frames of a clip window at FPS and W x H."""
    cfg = PARTS[part]
    stream = tuple(cfg["stream"])
    static_clips, sibling_only, photo_clip = cfg["static"], cfg["sibling_only"], cfg["photo"]
    rng = np.random.default_rng([seed, 14, *stream])
    base = cfg["seed_base"] + (seed % cfg["seed_blocks"]) * 10_000
    members: list[Member] = []

    def add(fam, group, role, name, fn, source="", **meta):
        members.append(Member(fam, group, role, name, fn, source, meta))

    def sub(tag: int) -> np.random.Generator:
        return np.random.default_rng([seed, 14, tag, *stream])

    tag = 0
    for g in range(3):  # terminal themes
        style = terminal_style(sub(tag := tag + 1))
        for m in range(7):
            r = sub(tag := tag + 1)
            role = "reference" if m == 0 else "sibling"
            secs = REF_S if m == 0 else SIB_S
            add("terminal_text", f"terminal{g}", role, f"la_terminal{g}_{m}",
                lambda s=style, r=r, secs=secs: terminal_frames(s, r, secs))
    for g in range(3):  # slide templates
        style = slides_style(sub(tag := tag + 1))
        for m in range(7):
            r = sub(tag := tag + 1)
            role = "reference" if m == 0 else "sibling"
            secs = REF_S if m == 0 else SIB_S
            add("slides", f"slides{g}", role, f"la_slides{g}_{m}", lambda s=style, r=r, secs=secs: slides_frames(s, r, secs))
    for m in range(21):  # one generator, other seeds: 3 references
        role = "reference" if m < 3 else "sibling"
        secs = REF_S if m < 3 else SIB_S
        add("procedural", "synth.iter_scene_frames", role, f"la_procedural_{m}",
            lambda sd=base + 100 + m, secs=secs: procedural_frames(sd, secs), seed=base + 100 + m)
    for g in range(2):
        style = balls_style(sub(tag := tag + 1))
        for m in range(8):
            r = sub(tag := tag + 1)
            role = "reference" if m == 0 else "sibling"
            secs = REF_S if m == 0 else SIB_S
            add("bouncing_balls", f"balls{g}", role, f"la_balls{g}_{m}", lambda s=style, r=r, secs=secs: balls_frames(s, r, secs))

    pictures: list[tuple[str, Callable[[], np.ndarray]]] = []
    if photo_clip in clips:
        pictures.append((photo_clip, lambda: _first_frame(clips[photo_clip])))
    for g in range(3 - len(pictures)):
        pictures.append((f"texture{g}", lambda r=sub(tag := tag + 1): texture(r)))
    for g, (pname, pic) in enumerate(pictures):
        cache: dict = {}

        def picture(pic=pic, cache=cache):
            if "p" not in cache:
                p = pic()
                cache["p"] = _resize(p[None], 1080, 1920)[0] if p.shape[:2] != (1080, 1920) else p
            return cache["p"]

        cells = [(r * 360, c * 640, 360, 640) for r in range(3) for c in range(3)]
        order = rng.permutation(9)
        for m, ci in enumerate(order):
            r = sub(tag := tag + 1)
            role = "reference" if m == 0 else "sibling"
            secs = REF_S if m == 0 else SIB_S
            add("photo_parts", f"picture{g}", role, f"la_photo{g}_{m}",
                lambda cell=cells[ci], r=r, secs=secs, picture=picture: pan_frames(picture(), cell, r, secs),
                source=pname, cell=int(ci))
    for g in range(2):
        bg = room_background(sub(tag := tag + 1))
        for m in range(9):
            r = sub(tag := tag + 1)
            role = "reference" if m == 0 else "sibling"
            secs = REF_S if m == 0 else SIB_S
            add("static_camera_synth", f"room{g}", role, f"la_room{g}_{m}",
                lambda bg=bg, r=r, secs=secs: static_camera_frames(bg, r, secs))
    for ci, (clip, (ref_w, n_sib, sib_len, zone)) in enumerate(sorted(static_clips.items())):
        if clip not in clips:
            continue
        path = clips[clip]
        add("static_camera", clip, "reference", f"la_static{ci}_ref", lambda p=path, w=ref_w: decode_window(p, w),
            source=f"{clip}@{ref_w[0]:.2f}-{ref_w[1]:.2f}")
        dur = _duration(path)
        starts = _windows(rng, zone, dur - 0.2, sib_len, n_sib)
        for m, t0 in enumerate(starts):
            w = (t0, t0 + sib_len)
            add("static_camera", clip, "sibling", f"la_static{ci}_{m + 1}", lambda p=path, w=w: decode_window(p, w),
                source=f"{clip}@{w[0]:.2f}-{w[1]:.2f}")
    for clip, (group, n_sib, sib_len) in sorted(sibling_only.items()):
        if clip not in clips or group not in clips:
            continue
        path = clips[clip]
        for m, t0 in enumerate(_windows(rng, 0.0, _duration(path) - 0.2, sib_len, n_sib)):
            w = (t0, t0 + sib_len)
            add("static_camera", group, "sibling", f"la_static_{Path(clip).stem}_{m}",
                lambda p=path, w=w: decode_window(p, w), source=f"{clip}@{w[0]:.2f}-{w[1]:.2f}")
    return members


def _windows(rng: np.random.Generator, lo: float, hi: float, length: float, n: int) -> list[float]:
    """``n`` non-overlapping window starts in [lo, hi - length], on the FPS grid."""
    slots = int((hi - lo) // length)
    n = min(n, slots)
    pick = sorted(int(i) for i in rng.choice(slots, size=n, replace=False))
    return [math.floor((lo + k * length) * FPS) / FPS for k in pick]


def _duration(path: Path) -> float:
    from vmatch.decode import probe

    return float(probe(path).duration)


def _first_frame(path: Path) -> np.ndarray:
    from vmatch.decode import iter_frames

    for _, rgb in iter_frames(path, fps=1, size=None):
        return rgb
    raise RuntimeError(f"{path}: no frame decoded")


def iter_members(members: list[Member], role: str) -> Iterator[Member]:
    return (m for m in members if m.role == role)

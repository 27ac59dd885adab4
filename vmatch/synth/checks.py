"""Argument checks shared by the synthetic-video generators: positive integers, positive finite
rates, frame arrays (each error names the argument and what it got)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vmatch.errors import UsageError


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


def _frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[3] != 3 or arr.dtype != np.uint8:
        raise UsageError(f"{name} must be a uint8 array [N, H, W, 3], got {arr.dtype} {arr.shape}")
    return arr

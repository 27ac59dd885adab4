"""What every embedder shares: the :class:`Embedder` protocol, the check of a frame batch, and the one
loop that embeds frames in batches of a fixed size.

Where it sits: **embed**, under :class:`vmatch.embed.TorchEmbedder` and :class:`vmatch.embed.FakeEmbedder`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vmatch.errors import UsageError
from vmatch.models import ModelSpec


@runtime_checkable
class Embedder(Protocol):
    """What the pipeline needs from an embedder."""

    spec: ModelSpec
    device: str
    dim: int

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Embed frames.

        Args:
            frames: uint8 RGB [N, H, W, 3] with ``(H, W) == spec.input_size`` (N may be 0).

        Returns:
            float32 [N, dim], rows L2-normalised.

        Raises:
            UsageError: wrong type, dtype or size.
        """
        ...


def check_frames(frames: Any, input_size: tuple[int, int]) -> np.ndarray:
    """Check that ``frames`` is uint8 RGB [N, H, W, 3] at ``input_size`` and return it C-contiguous.

    Args:
        frames: The batch to check.
        input_size: Required ``(height, width)``.

    Returns:
        The frames as a C-contiguous uint8 array (no copy when already contiguous).

    Raises:
        UsageError: not a numpy array, wrong dtype, wrong rank or wrong size.
    """
    height, width = input_size
    want = f"uint8 RGB frames [N, {height}, {width}, 3]"
    if not isinstance(frames, np.ndarray):
        raise UsageError(f"expected a numpy array of {want}, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise UsageError(f"expected {want}, got dtype {frames.dtype}; convert with frames.astype(np.uint8)")
    if frames.ndim != 4 or frames.shape[1:] != (height, width, 3):
        raise UsageError(
            f"expected {want}, got shape {frames.shape}; resize frames to the model's input_size "
            f"{(height, width)} (height, width) before embedding"
        )
    return np.ascontiguousarray(frames)


def check_positive_int(value: Any, what: str) -> int:
    """``value`` when it is an int >= 1 (not a bool), else :class:`UsageError` naming ``what``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(f"{what} must be an int >= 1, got {value!r}")
    return value


#: Frames per CNN batch of an embedder that does not say (``batch_size`` attribute).
DEFAULT_BATCH = 32


def batch_size_of(embedder) -> int:
    """The frames per CNN batch that ``embedder`` asks for (its ``batch_size``, at least 1)."""
    return max(1, int(getattr(embedder, "batch_size", DEFAULT_BATCH)))


def embed_in_batches(
    frames: np.ndarray, batch_size: int, dim: int, embed_batch: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """float32 [N, dim]: ``embed_batch`` applied to consecutive slices of at most ``batch_size`` frames, rows kept
    in order (``embed_batch`` returns one row per frame of its slice)."""
    out = np.empty((frames.shape[0], dim), dtype=np.float32)
    for start in range(0, frames.shape[0], batch_size):
        rows = embed_batch(frames[start : start + batch_size])
        out[start : start + rows.shape[0]] = rows
    return out

"""A deterministic, weight-free stand-in embedder for pipeline tests and demos (no torch).

Where it sits: **embed**; banks record its ``model_id`` like any model's, and :func:`vmatch.embed.make_embedder`
rebuilds it from a spec read back from a bank.
"""

from __future__ import annotations

import re

import numpy as np

from vmatch.embed.batches import check_frames, check_positive_int, embed_in_batches
from vmatch.errors import ModelError, UsageError
from vmatch.models import ModelSpec

#: ModelSpec.name of :class:`FakeEmbedder` models.
FAKE_MODEL_NAME = "fake-thumbnail"


class FakeEmbedder:
    """Deterministic weight-free embedder for pipeline tests (no torch, microseconds per frame).

    Each frame becomes a 16x16 area-averaged grey thumbnail (mean removed) plus an 8x8 colour-difference
    thumbnail (B-Y, R-Y); that 384-d vector is L2-normalised, multiplied by a fixed Gaussian random matrix
    (seeded) and L2-normalised again. Near-identical frames give cosine near 1, unrelated content near 0
    (within about +-0.3 at dim 64); a solid-colour frame still gets a unit vector.

    Attributes:
        spec: A :class:`~vmatch.models.ModelSpec` named ``"fake-thumbnail"`` (banks record its model_id).
        device: Always ``"cpu"``.
        dim: Output dimension.
    """

    _GREY = 16
    _CHROMA = 8

    def __init__(self, *, input_size: tuple[int, int] = (224, 224), dim: int = 64, seed: int = 0) -> None:
        """Create the embedder.

        Args:
            input_size: ``(height, width)`` of the frames it accepts (each at least 16).
            dim: Output dimension.
            seed: Seed of the random projection (part of the spec, so of the model_id).

        Raises:
            UsageError: bad size, dim or seed.
        """
        check_positive_int(dim, "dim")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise UsageError(f"seed must be an int >= 0, got {seed!r}")
        size = tuple(input_size)
        if len(size) != 2 or not all(isinstance(v, int) and v >= self._GREY for v in size):
            raise UsageError(f"input_size must be (height, width) ints >= {self._GREY}, got {input_size!r}")
        self.spec = ModelSpec(
            name=FAKE_MODEL_NAME,
            version=1,
            weights="",
            weights_sha256="",
            input_size=(int(size[0]), int(size[1])),
            preprocessing=(
                f"rgb, squash-resize to input_size, 16x16 grey (mean removed) + 8x8 chroma area thumbnails, "
                f"gaussian random projection seed={seed}"
            ),
            pooling="thumbnail",
            projection="",
            dim=dim,
            hflip_tta=False,
        )
        self.device = "cpu"
        self.dim = dim
        in_dim = self._GREY * self._GREY + 2 * self._CHROMA * self._CHROMA + 1
        rng = np.random.default_rng(seed)
        self._matrix = (rng.standard_normal((in_dim, dim)) / np.sqrt(dim)).astype(np.float32)
        self._matrix.setflags(write=False)

    def __repr__(self) -> str:
        return f"FakeEmbedder(model_id={self.spec.model_id!r}, dim={self.dim})"

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> FakeEmbedder:
        """Rebuild the fake embedder that produced ``spec`` (e.g. one read back from a bank).

        Args:
            spec: A spec made by a :class:`FakeEmbedder` (name ``"fake-thumbnail"``).

        Returns:
            An embedder whose ``spec`` equals ``spec``.

        Raises:
            ModelError: ``spec`` was not made by :class:`FakeEmbedder`.
        """
        match = re.search(r"seed=(\d+)$", spec.preprocessing)
        if spec.name != FAKE_MODEL_NAME or match is None:
            raise ModelError(f"model {spec.name!r} is not a FakeEmbedder model")
        fake = cls(input_size=spec.input_size, dim=spec.dim, seed=int(match.group(1)))
        if fake.spec != spec:
            raise ModelError(f"model {spec.model_id}: no FakeEmbedder of this version reproduces it")
        return fake

    @staticmethod
    def _area(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
        """Area-average [N, H, W, C] float32 down to [N, rows, cols, C]."""
        h, w = x.shape[1], x.shape[2]
        r_edges = np.linspace(0, h, rows + 1).astype(np.int64)
        c_edges = np.linspace(0, w, cols + 1).astype(np.int64)
        summed = np.add.reduceat(np.add.reduceat(x, r_edges[:-1], axis=1), c_edges[:-1], axis=2)
        counts = np.outer(np.diff(r_edges), np.diff(c_edges)).astype(np.float32)
        return summed / counts[None, :, :, None]

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Embed frames (see :meth:`vmatch.embed.Embedder.embed`), 64 at a time."""
        return embed_in_batches(check_frames(frames, self.spec.input_size), 64, self.dim, self._embed_batch)

    def _embed_batch(self, frames: np.ndarray) -> np.ndarray:
        """float32 [B, dim] unit rows of one checked batch."""
        chunk = frames.astype(np.float32) * (1.0 / 255.0)
        thumb = self._area(chunk, self._GREY, self._GREY)  # [B, 16, 16, 3]
        luma = thumb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # [B, 16, 16]
        small = self._area(thumb, self._CHROMA, self._CHROMA)
        small_luma = small @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        cb = small[..., 2] - small_luma
        cr = small[..., 0] - small_luma
        b = chunk.shape[0]
        grey = luma.reshape(b, -1)
        grey = grey - grey.mean(axis=1, keepdims=True)
        vec = np.concatenate(
            [grey, 0.5 * cb.reshape(b, -1), 0.5 * cr.reshape(b, -1), np.full((b, 1), 1e-3, np.float32)],
            axis=1,
        )
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        proj = vec @ self._matrix
        proj /= np.maximum(np.linalg.norm(proj, axis=1, keepdims=True), 1e-12)
        return proj

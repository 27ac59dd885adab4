"""The keypoints of a video's sampled frames as one record (:class:`LocalFeatures`), and its bytes.

What :mod:`vmatch.verify` extracts, a bank stores per reference, and a ``.vmsig`` carries for a
query: per keypoint its (x, y) position in the aspect-corrected grey frame, its descriptor (32-byte
ORB; 128-byte SIFT in the :attr:`LocalFeatures.sift` set) and a static bit; arrays only, written
with numpy (``allow_pickle=False``), never media.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from vmatch.errors import UsageError

_COORD_SCALE = 16.0
_FORMAT_VERSION = 2  # 2: with the SIFT set; 1 (ORB only) is still read
#: Descriptor bytes of the two kinds of keypoints: ORB (binary, Hamming) and SIFT (uint8, L2).
ORB_BYTES, SIFT_BYTES = 32, 128


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoints of the sampled frames of one video, frame by frame.

    ``counts``: int32 [N] keypoints per frame (frame ``i`` holds rows ``offsets[i]:offsets[i+1]``);
    ``coords``: float32 [K, 2] (x, y) in pixels of the aspect-corrected grey frame;
    ``descriptors``: uint8 [K, 32] (ORB) or [K, 128] (SIFT); ``static``: bool [K] (references; all
    False until computed);
    ``mirrored``: the same for the horizontally mirrored frames (queries' ORB set), or None;
    ``reference``: prepared as a bank stores a reference (:func:`prepare_reference`);
    ``sift``: the SIFT keypoints of the same frames (a :class:`LocalFeatures` of 128-byte
    descriptors, no mirrored set: a mirror's SIFT descriptors are a permutation of these), or None
    (local features made before SIFT was added).
    """

    counts: np.ndarray
    coords: np.ndarray
    descriptors: np.ndarray
    static: np.ndarray
    mirrored: "LocalFeatures | None" = None
    reference: bool = False
    sift: "LocalFeatures | None" = None

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts, np.int32).reshape(-1)
        coords = np.asarray(self.coords, np.float32).reshape(-1, 2)
        desc = np.asarray(self.descriptors, np.uint8)
        width = desc.shape[1] if desc.ndim == 2 else ORB_BYTES
        if width not in (ORB_BYTES, SIFT_BYTES):
            raise ValueError(f"LocalFeatures: descriptors of {width} bytes (expected {ORB_BYTES} or {SIFT_BYTES})")
        desc = desc.reshape(-1, width)
        static = np.asarray(self.static, bool).reshape(-1)
        k = int(counts.sum())
        if (counts < 0).any() or coords.shape[0] != k or desc.shape[0] != k or static.shape[0] != k:
            raise ValueError(
                f"LocalFeatures: {k} keypoints counted, {coords.shape[0]} coordinates, "
                f"{desc.shape[0]} descriptors, {static.shape[0]} static flags"
            )
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "coords", coords)
        object.__setattr__(self, "descriptors", desc)
        object.__setattr__(self, "static", static)
        object.__setattr__(self, "_offsets", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        if self.sift is not None and (len(self.sift) != len(counts) or self.sift.descriptors.shape[1] != SIFT_BYTES):
            raise ValueError(f"LocalFeatures: {len(counts)} frames, SIFT keypoints of {len(self.sift)} frames "
                             f"with {self.sift.descriptors.shape[1]}-byte descriptors (expected {SIFT_BYTES})")

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    def frame(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(coords, descriptors, static) of frame ``i``."""
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        return self.coords[a:b], self.descriptors[a:b], self.static[a:b]

    def take(self, i: int) -> "LocalFeatures":
        """Frame ``i`` alone (and its mirrored keypoints), sliced: no pass over the other frames."""
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        return LocalFeatures(self.counts[i : i + 1], self.coords[a:b], self.descriptors[a:b], self.static[a:b],
                             self.mirrored.take(i) if self.mirrored is not None else None, self.reference,
                             self.sift.take(i) if self.sift is not None else None)

    def select(self, keep: np.ndarray) -> "LocalFeatures":
        """The frames where boolean ``keep`` [N] is True (mirrored ones too)."""
        keep = np.asarray(keep, bool)
        rows = np.repeat(keep, self.counts)
        return LocalFeatures(self.counts[keep], self.coords[rows], self.descriptors[rows], self.static[rows],
                             self.mirrored.select(keep) if self.mirrored is not None else None, self.reference,
                             self.sift.select(keep) if self.sift is not None else None)

    @staticmethod
    def concat(parts: "list[LocalFeatures]") -> "LocalFeatures":
        """The frames of ``parts`` one after the other (all mirrored or none, all with SIFT or none)."""
        if not parts:
            return empty()
        mirrored = [p.mirrored for p in parts]
        has_m = [m is not None for m in mirrored]
        if any(has_m) and not all(has_m):
            raise ValueError("LocalFeatures.concat: parts with and without mirrored keypoints")
        sifts = [p.sift for p in parts]
        has_s = [x is not None for x in sifts]
        if any(has_s) and not all(has_s):
            raise ValueError("LocalFeatures.concat: parts with and without SIFT keypoints")
        return LocalFeatures(
            np.concatenate([p.counts for p in parts]),
            np.concatenate([p.coords for p in parts]),
            np.concatenate([p.descriptors for p in parts]),
            np.concatenate([p.static for p in parts]),
            LocalFeatures.concat(mirrored) if all(has_m) else None,
            all(p.reference for p in parts),
            LocalFeatures.concat(sifts) if all(has_s) else None,
        )

    # ------------------------------------------------------------------ bytes (no pickle)
    def to_arrays(self, prefix: str = "local") -> dict[str, np.ndarray]:
        """Plain arrays (for npz members or a bank row): counts, coords (uint16, 1/16 px),
        descriptors, static bits; the mirrored set with ``prefix + "_m"``, the SIFT set with
        ``prefix + "_s"``."""
        out = {
            f"{prefix}_counts": self.counts.astype("<i4"),
            f"{prefix}_coords": np.clip(np.round(self.coords * _COORD_SCALE), 0, 65535).astype("<u2"),
            f"{prefix}_desc": self.descriptors,
            f"{prefix}_static": np.packbits(self.static),
        }
        if self.reference:
            out[f"{prefix}_reference"] = np.ones(1, np.uint8)
        if self.mirrored is not None:
            out.update(self.mirrored.to_arrays(prefix + "_m"))
        if self.sift is not None:
            out.update(self.sift.to_arrays(prefix + "_s"))
        return out

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray], prefix: str = "local", *, source: str = "") -> "LocalFeatures | None":
        """Inverse of :meth:`to_arrays`; None when the arrays hold no ``prefix`` set."""
        if f"{prefix}_counts" not in arrays:
            return None
        try:
            counts = np.asarray(arrays[f"{prefix}_counts"]).astype(np.int32)
            k = int(counts.sum())
            static = np.unpackbits(np.asarray(arrays[f"{prefix}_static"], np.uint8))[:k].astype(bool)
            return LocalFeatures(
                counts,
                np.asarray(arrays[f"{prefix}_coords"]).astype(np.float32) / _COORD_SCALE,
                np.asarray(arrays[f"{prefix}_desc"], np.uint8),
                static,
                LocalFeatures.from_arrays(arrays, prefix + "_m", source=source),
                bool(f"{prefix}_reference" in arrays),
                LocalFeatures.from_arrays(arrays, prefix + "_s", source=source),
            )
        except (KeyError, ValueError) as e:
            raise UsageError(f"{source or 'local features'}: malformed local features ({e})") from None

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, version=np.array([_FORMAT_VERSION], "<i4"), **self.to_arrays())
        return buf.getvalue()

    @staticmethod
    def from_bytes(data: bytes, *, source: str = "") -> "LocalFeatures":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:  # noqa: BLE001 - any unreadable blob is the same error
            raise UsageError(f"{source or 'local features'}: unreadable local features ({e})") from None
        if int(arrays.get("version", np.array([0]))[0]) not in (1, _FORMAT_VERSION):
            raise UsageError(f"{source or 'local features'}: local features of an unknown version")
        out = LocalFeatures.from_arrays(arrays, source=source)
        if out is None:
            raise UsageError(f"{source or 'local features'}: no local features in the blob")
        return out


def empty(mirrored: bool = False, width: int = ORB_BYTES) -> LocalFeatures:
    z = LocalFeatures(np.zeros(0, np.int32), np.zeros((0, 2), np.float32), np.zeros((0, width), np.uint8),
                      np.zeros(0, bool))
    return LocalFeatures(z.counts, z.coords, z.descriptors, z.static, z if mirrored else None)



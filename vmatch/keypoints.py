"""The keypoints of a video's sampled frames as one record (:class:`LocalFeatures`), and its bytes.

What :mod:`vmatch.verify` extracts, a bank stores per reference, and a ``.vmsig`` carries for a
query: per keypoint its (x, y) position in the aspect-corrected grey frame, its descriptor (32-byte
ORB; 128-byte SIFT in the :attr:`LocalFeatures.sift` set) and a static bit; arrays only, written
with numpy (``allow_pickle=False``), never media. And a reference's keypoints as a bank stores them
(:func:`prepare_reference`): static flags set (:func:`with_static`, see :mod:`vmatch.verify`), the
non-static ones first, :data:`MAX_KEYPOINTS` of each kind per frame.
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


# ---------------------------------------------------------------------- a reference as stored
#: Keypoints stored per reference frame at most: the non-static ones first (see :func:`prepare_reference`).
MAX_KEYPOINTS = 256
#: Largest L2 distance between the SIFT descriptors of a keypoint and its static twin (SIFT
#: descriptors have norm ~512; ORB's twin bound is 48 of 256 bits).
SIFT_TWIN_L2 = 160.0
#: A reference keypoint is static when found again in most reference frames at least this far away.
STATIC_GAP_S = 3.0
#: Reference frames compared per frame to decide which keypoints are static.
STATIC_PROBES = 4
#: A keypoint found again in at least 1/STATIC_SHARE of the probes is static.
STATIC_SHARE = 4


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 (numpy >= 2 has it built in)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return np.unpackbits(x.view(np.uint8), axis=-1).reshape(*x.shape, 64).sum(axis=-1)  # pragma: no cover


def _static_twins(pj: np.ndarray, dj: np.ndarray, pk: np.ndarray, dk: np.ndarray, max_px: float,
                  max_hamming: int, cap: int = 8, max_l2: float = SIFT_TWIN_L2) -> np.ndarray:
    """bool [len(pj)]: which keypoints of one frame have a twin in another (a keypoint within
    ``max_px`` pixels whose descriptor is within ``max_hamming`` bits, ORB, or ``max_l2``, SIFT).
    The other frame's keypoints
    are put in a grid of ``2 * max_px`` cells (``cap`` a cell at most), so each keypoint is compared
    with those of the 3 x 3 cells around it only."""
    cell = 2.0 * max_px
    ck = np.floor(pk / cell).astype(np.int64)
    ncx, ncy = int(ck[:, 0].max()) + 3, int(ck[:, 1].max()) + 3
    grid = np.full((ncx, ncy, cap), -1, np.int64)
    key = (ck[:, 0] + 1) * ncy + (ck[:, 1] + 1)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    first = np.searchsorted(ks, ks, side="left")
    rank = np.arange(len(ks)) - first
    ok = rank < cap
    flat = grid.reshape(-1, cap)
    flat[ks[ok], rank[ok]] = order[ok]
    cj = np.floor(pj / cell).astype(np.int64) + 1
    cand = []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            x, y = cj[:, 0] + dx, cj[:, 1] + dy
            inside = (x >= 0) & (x < ncx) & (y >= 0) & (y < ncy)
            c = np.full((len(pj), cap), -1, np.int64)
            c[inside] = grid[x[inside], y[inside]]
            cand.append(c)
    cand = np.concatenate(cand, axis=1)  # [n, 9 * cap]
    rows, cols = np.nonzero(cand >= 0)
    other = cand[rows, cols]
    d = np.abs(pk[other] - pj[rows])
    close = (d[:, 0] <= max_px) & (d[:, 1] <= max_px)
    rows, other = rows[close], other[close]
    out = np.zeros(len(pj), bool)
    if dj.shape[1] == SIFT_BYTES:
        diff = dj[rows].astype(np.float32) - dk[other].astype(np.float32)
        out[rows[np.einsum("ij,ij->i", diff, diff) <= max_l2 * max_l2]] = True
        return out
    dj64, dk64 = dj.view(np.uint64), dk.view(np.uint64)  # [n, 4] words of 64 bits
    ham = _popcount(dj64[rows] ^ dk64[other]).sum(axis=1)
    out[rows[ham <= max_hamming]] = True
    return out


def with_static(local: LocalFeatures, timestamps: np.ndarray, *, gap_s: float = STATIC_GAP_S,
                probes: int = STATIC_PROBES, max_px: float = 4.0, max_hamming: int = 48,
                min_share: int = STATIC_SHARE) -> LocalFeatures:
    """``local`` (a reference's keypoints) with its static flags set: a keypoint is static when a
    keypoint with a descriptor within ``max_hamming`` bits lies within ``max_px`` pixels of it in at
    least 1/``min_share`` of ``probes`` reference frames at least ``gap_s`` seconds away (evenly
    spread; moving content is rarely found again at the same place seconds later, while a static
    one can be hidden by what moves in front of it).
    A reference shorter than ``gap_s`` has no static keypoint."""
    ts = np.asarray(timestamps, np.float64)
    n = len(local)
    if n != len(ts):
        raise ValueError(f"with_static: {n} frames of keypoints for {len(ts)} timestamps")
    flags = []
    for j in range(n):
        pj, dj, _ = local.frame(j)
        far = np.flatnonzero(np.abs(ts - ts[j]) >= gap_s)
        hits = np.zeros(len(pj), np.int32)
        if len(pj) and len(far):
            picks = far[np.unique(np.linspace(0, len(far) - 1, min(probes, len(far))).round().astype(int))]
            for k in picks:
                pk, dk, _ = local.frame(int(k))
                if len(pk):
                    hits += _static_twins(pj, np.ascontiguousarray(dj), pk, np.ascontiguousarray(dk), max_px,
                                          max_hamming)
            flags.append(hits * min_share >= len(picks))
        else:
            flags.append(np.zeros(len(pj), bool))
    static = np.concatenate(flags) if flags else np.zeros(0, bool)
    sift = (with_static(local.sift, ts, gap_s=gap_s, probes=probes, max_px=max_px, max_hamming=max_hamming,
                        min_share=min_share) if local.sift is not None else None)
    return LocalFeatures(local.counts, local.coords, local.descriptors, static, local.mirrored, local.reference,
                         sift)


def prepare_reference(local: LocalFeatures, timestamps: np.ndarray, *, keep: int = MAX_KEYPOINTS) -> LocalFeatures:
    """A reference's keypoints as stored: static flags set (:func:`with_static`), then per frame the
    non-static keypoints first (in detection order: strongest pyramid level first), static ones
    after, ``keep`` at most; mirrored keypoints dropped (the query brings its mirror)."""
    if local.reference:
        return local
    local = with_static(LocalFeatures(local.counts, local.coords, local.descriptors, local.static, sift=local.sift),
                        timestamps)

    def kept(lf: LocalFeatures) -> LocalFeatures:
        counts, rows = [], []
        start = 0
        for j in range(len(lf)):
            st = lf.frame(j)[2]
            order = np.concatenate([np.flatnonzero(~st), np.flatnonzero(st)])[:keep]
            rows.append(start + order)
            counts.append(len(order))
            start += len(st)
        idx = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        return LocalFeatures(np.asarray(counts, np.int32), lf.coords[idx], lf.descriptors[idx], lf.static[idx],
                             reference=True)

    main = kept(local)
    return LocalFeatures(main.counts, main.coords, main.descriptors, main.static, reference=True,
                         sift=kept(local.sift) if local.sift is not None else None)

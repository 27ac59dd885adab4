"""The server side: open what matches, rebuild the video key at ``t`` frames, match the opened frames.

Where it sits: vouchers -> **open** -> (threshold) -> frames -> the usual match (verify, align,
report) of :mod:`vmatch.match`.

Per voucher and slot the server computes ``alpha * Q`` and tries the outer ciphertext: it opens
exactly when the device's key was in the table at that position (or the voucher is synthetic).
An opened voucher gives a share and an inner ciphertext; one share per frame (a frame's
vouchers repeat it). Below ``t`` distinct shares, nothing more can be done: the server records
that the bundle was received, no count. From ``t`` on it looks for ``t`` shares that rebuild
a key under which the inner ciphertexts open (synthetic shares are random, so a subset that
holds one fails; subsets are tried exhaustively when few, else at random, up to ``max_tries``).
The inner plaintexts give the blob index and key of every opened frame; those blobs are the only
frames it can read. They are matched against the bank with the ordinary pipeline (CNN search,
pair verification, alignment, the calibrated threshold), so the private report is the plain
report of the frames whose keys matched.
"""

from __future__ import annotations

import itertools
import math
import random
import struct
from dataclasses import dataclass

import numpy as np

from vmatch.private import aead, group
from vmatch.private.bundle import INNER_BYTES, SHARE_BYTES, SLOT_BYTES, Bundle, decode_frame
from vmatch.private.table import N_HASHES, PrivateError, Table
from vmatch.types import MatchReport, VideoEmbedding


@dataclass(frozen=True)
class Opened:
    """What a bundle gave up: the frames the server may read, or nothing (below the threshold)."""

    bundle_id: str
    commitment: str
    vouchers: int
    above_threshold: bool
    embedding: VideoEmbedding | None  # the opened frames, time-ordered; None below the threshold
    tries: int = 0


@dataclass(frozen=True)
class PrivateResult:
    """The server's record of one bundle: the report when it opened, else only the voucher count."""

    bundle_id: str
    commitment: str
    vouchers: int
    status: str  # "below_threshold" | "opened"
    report: MatchReport | None = None
    opened_frames: int | None = None

    def to_dict(self) -> dict:
        d = {"bundle": self.bundle_id, "table": self.commitment, "vouchers": self.vouchers, "status": self.status}
        if self.report is not None:
            d["opened_frames"] = self.opened_frames
            d["report"] = self.report.to_dict()
        return d


def open_bundle(bundle: Bundle, table: Table, alpha: bytes, *, max_tries: int = 20000,
                source: str = "<vouchers>") -> Opened:
    """Open what ``alpha`` opens in ``bundle`` (made against ``table``).

    Raises:
        PrivateError: a voucher holds a malformed point, an opened inner layer or blob fails its
            tag (altered after encryption), or the bundle names another table.
    """
    if bundle.table_commitment != table.commitment:
        raise PrivateError(f"{source}: made against table {bundle.table_commitment[:16]}…, not {table.commitment[:16]}…")
    t = table.header.threshold
    bid = bundle.bundle_id
    shares = open_shares(bundle, table, alpha, source=source)
    n_v = len(bundle.vouchers)
    if len(shares) < t:
        return Opened(bid.hex(), table.commitment, n_v, False, None)
    key, inner, tries = _rebuild(shares, t, bid, max_tries)
    if key is None:
        return Opened(bid.hex(), table.commitment, n_v, False, None, tries)
    frames = []
    for idx, plain in inner.items():
        (b,) = struct.unpack_from("<I", plain, 0)
        fk = plain[4:36]
        if b >= len(bundle.blobs):
            raise PrivateError(f"{source}: an opened voucher names blob {b} of {len(bundle.blobs)}: tampered")
        data = aead.open_(fk, bundle.blobs[b], bid + struct.pack("<I", b))
        if data is None:
            raise PrivateError(f"{source}: blob {b} fails its authentication tag: altered after encryption")
        frames.append(decode_frame(data, source=f"{source} blob {b}"))
    return Opened(bid.hex(), table.commitment, n_v, True, _embedding(frames, bid.hex(), table.header.model_id, source), tries)


def open_shares(bundle: Bundle, table: Table, alpha: bytes, *, source: str = "<vouchers>") -> dict[int, tuple[bytes, bytes]]:
    """Share index -> (share, inner ciphertext) of every voucher ``alpha`` opens: all the server
    can learn from a bundle before the threshold (synthetic frames' shares included)."""
    commitment = bytes.fromhex(table.commitment)
    bid = bundle.bundle_id
    shares: dict[int, tuple[bytes, bytes]] = {}
    for v, voucher in enumerate(bundle.vouchers):
        for j in range(N_HASHES):
            slot = voucher[j * SLOT_BYTES : (j + 1) * SLOT_BYTES]
            q = slot[:32]
            if not group.is_point(q):
                raise PrivateError(f"{source}: voucher {v} holds an invalid group element: tampered or not made by vmatch")
            k = aead.outer_key(group.mul(alpha, q), commitment=commitment, bundle_id=bid, index=v, slot=j, q=q)
            plain = aead.open_(k, slot[32:], bid)
            if plain is not None:
                (idx,) = struct.unpack_from("<I", plain, 0)
                shares.setdefault(idx, (plain[4:SHARE_BYTES], plain[SHARE_BYTES : SHARE_BYTES + INNER_BYTES]))
                break
    return shares


def _rebuild(shares: dict[int, tuple[bytes, bytes]], t: int, bid: bytes, max_tries: int):
    """(video key, {share index: inner plaintext} of every frame it opens, tries) or (None, {}, tries)."""
    from vmatch.private.voucher import _shamir

    shamir = _shamir()
    idxs = sorted(shares)
    n = len(idxs)
    if math.comb(n, t) <= max_tries:
        subsets = itertools.combinations(idxs, t)
    else:
        rng = random.SystemRandom()
        subsets = (tuple(rng.sample(idxs, t)) for _ in range(max_tries))
    tries = 0
    for sub in subsets:
        tries += 1
        key = shamir.combine([(i, shares[i][0]) for i in sub])
        ikey = aead.inner_key(key, bundle_id=bid)
        if any(aead.open_random_nonce(ikey, shares[i][1], bid) is None for i in sub):
            continue
        opened = {}
        for i in idxs:
            p = aead.open_random_nonce(ikey, shares[i][1], bid)
            if p is not None:
                opened[i] = p
        return key, opened, tries
    return None, {}, tries


def _embedding(frames, bundle_id: str, model_id: str, source: str) -> VideoEmbedding:
    from vmatch.keypoints import LocalFeatures

    frames = sorted(frames, key=lambda f: f[0])
    times = [f[0] for f in frames]
    if len(set(times)) != len(times):
        raise PrivateError(f"{source}: two opened frames with the same time: tampered")
    feats = np.stack([f[1] for f in frames]) if frames else np.zeros((0, 1), np.float32)
    feats /= np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    parts = [LocalFeatures.from_arrays(f[2], source=source) for f in frames]
    if any(p is None or p.mirrored is None for p in parts):
        raise PrivateError(f"{source}: an opened frame carries no local features: not made by vmatch")
    local = LocalFeatures.concat(parts)
    return VideoEmbedding(video_id=bundle_id, timestamps=np.array(times), features=feats,
                          duration=float(times[-1]) if times else 0.0, model_id=model_id, local=local)


def match_opened(bank, opened: Opened, *, params=None) -> PrivateResult:
    """The private result of an opened bundle: the plain report of its opened frames."""
    from vmatch.match import match_query

    if not opened.above_threshold:
        return PrivateResult(opened.bundle_id, opened.commitment, opened.vouchers, "below_threshold")
    report = match_query(bank, opened.embedding, params=params)
    return PrivateResult(opened.bundle_id, opened.commitment, opened.vouchers, "opened", report, len(opened.embedding))

"""The device side: safety vouchers for one video against a published table (no torch needed).

Where it sits: decode -> sample -> embed (torch or ONNX) -> **vouchers** -> the server.

For each sampled frame ``f`` and each of its match keys ``y`` (:func:`vmatch.private.lsh.query_keys`):

1. ``H = H(y)``; the cuckoo positions ``p_j = h_j(y)`` (j < 3) of the table; per position fresh
   scalars ``beta, gamma``; ``Q_j = beta*H + gamma*G``; ``S_j = beta*T[p_j] + gamma*PK``. When
   ``T[p_j] = alpha*H(y)`` (y is banked there), ``S_j = alpha*Q_j``: the server can recompute it;
   otherwise ``S_j`` is uniformly random given ``Q_j`` even to a server holding alpha and every
   bank key (information-theoretically: two unknowns, one equation).
2. Slot j carries ``Q_j`` and the outer plaintext under ``HKDF(S_j)``: a Shamir share of the
   per-video key (threshold ``t`` of the table, one share per frame, at a shuffled index) and the
   inner ciphertext, which holds the frame's blob index and frame key under the video key.
3. The frame's payload (time, descriptor, local features) is encrypted once under its frame key.

Then synthetic frames (:class:`~vmatch.private.table.SyntheticParams`) are added: their vouchers
open like matching ones (``Q = gamma*G``, ``S = gamma*PK``, which the device can make without
knowing any table entry) but carry random shares and random blobs. Vouchers and blobs are
shuffled, so neither position nor order tells the server which frame a voucher belongs to.

What the device learns: nothing. It never receives an answer that depends on a match, and the
table's entries are blinded keys and random points it cannot tell apart.
"""

from __future__ import annotations

import os
import random
import struct

import numpy as np

from vmatch.errors import UsageError
from vmatch.private import aead, group
from vmatch.private.bundle import (
    INNER_BYTES, OUTER_BYTES, Bundle, encode_frame,
)
from vmatch.private.lsh import query_keys
from vmatch.private.table import N_HASHES, PrivateError, Table
from vmatch.types import VideoEmbedding


def _shamir():
    try:
        from Crypto.Protocol.SecretSharing import Shamir
    except ImportError:  # pragma: no cover - depends on the install
        raise UsageError("the private mode needs pycryptodome (Shamir secret sharing): pip install 'vmatch[private]'") from None
    return Shamir


def _dead_slot() -> bytes:
    """A slot that opens to nothing: a random point and random bytes (what a non-matching slot looks like)."""
    return group.base(group.random_scalar()) + os.urandom(OUTER_BYTES)


def make_bundle(emb: VideoEmbedding, table: Table, *, synthetic_frames: int | None = None) -> Bundle:
    """The vouchers and blobs of one embedded video (``emb`` with query local features).

    ``synthetic_frames``: how many synthetic frames to add (default: drawn as the table says);
    given explicitly only by tests and audits of the protocol.

    Raises:
        PrivateError: the video was embedded with another model than the table's.
        UsageError: ``emb`` has no query local features (embed with ``keypoints="query"``).
    """
    h = table.header
    if emb.model_id != h.model_id:
        raise PrivateError(f"{emb.video_id}: embedded with model {emb.model_id}, the table is for {h.model_id}; "
                           "embed it with the table's model (vmatch export-model for an ONNX client)")
    if len(emb) and (emb.local is None or emb.local.mirrored is None):
        raise UsageError(f"{emb.video_id}: vouchers need the frames' local features with their mirror images "
                         "(embed with keypoints='query', as `vmatch hash` does)")
    sysrng = random.SystemRandom()
    n = len(emb)
    if synthetic_frames is None:
        lam = h.synthetic.floor + h.synthetic.per_frame * n
        synthetic_frames = int(np.random.default_rng(int.from_bytes(os.urandom(16), "little")).poisson(lam))
    total = n + int(synthetic_frames)
    k_per = h.keys.keys_per_frame
    t = h.threshold
    video_key = os.urandom(16)
    shares = _shamir().split(t, max(total, t), video_key)[:total] if total else []
    sysrng.shuffle(shares)
    blob_pos = list(range(total))
    sysrng.shuffle(blob_pos)
    v_pos = list(range(total * k_per))
    sysrng.shuffle(v_pos)
    bundle_id = os.urandom(16)
    commitment = bytes.fromhex(table.commitment)
    pk = bytes.fromhex(h.public_key)
    ikey = aead.inner_key(video_key, bundle_id=bundle_id)
    keys = query_keys(emb.features, h.keys) if n else []
    blobs: list[bytes] = [b""] * total
    vouchers: list[bytes] = [b""] * (total * k_per)
    real_sizes: list[int] = []
    for f in range(n):
        fk = os.urandom(32)
        local = emb.local.take(f).to_arrays()
        plain = encode_frame(float(emb.timestamps[f]), emb.features[f], local)
        b = blob_pos[f]
        blobs[b] = aead.seal(fk, plain, bundle_id + struct.pack("<I", b))
        real_sizes.append(len(blobs[b]))
        inner = aead.seal_random_nonce(ikey, struct.pack("<I", b) + fk, bundle_id)
        idx, y = shares[f]
        outer_plain = struct.pack("<I", idx) + y + inner
        for j, key in enumerate(keys[f]):
            v = v_pos[f * k_per + j]
            vouchers[v] = _real_voucher(key, table, pk, commitment, bundle_id, v, outer_plain)
    for f in range(n, total):
        b = blob_pos[f]
        blobs[b] = os.urandom(sysrng.choice(real_sizes) if real_sizes else 4096 + 16)
        idx, _ = shares[f]
        outer_plain = struct.pack("<I", idx) + os.urandom(16) + os.urandom(INNER_BYTES)
        c = 1 + _draw(h.synthetic.open_counts, sysrng)
        opened = set(sysrng.sample(range(k_per), min(c, k_per)))
        for j in range(k_per):
            v = v_pos[f * k_per + j]
            vouchers[v] = _synthetic_voucher(pk, commitment, bundle_id, v, outer_plain, sysrng) if j in opened \
                else b"".join(_dead_slot() for _ in range(N_HASHES))
    return Bundle(bundle_id, table.commitment, vouchers, blobs)


def _draw(p: tuple[float, ...], rng: random.Random) -> int:
    u, acc = rng.random(), 0.0
    for i, x in enumerate(p):
        acc += x
        if u < acc:
            return i
    return len(p) - 1


def _real_voucher(key: bytes, table: Table, pk: bytes, commitment: bytes, bundle_id: bytes, v: int,
                  outer_plain: bytes) -> bytes:
    hy = group.hash_to_group(key)
    pos = table.positions(key)
    random.SystemRandom().shuffle(pos)  # the slot that opens is uniform, as for synthetic vouchers
    slots = []
    for j, p in enumerate(pos):
        beta, gamma = group.random_scalar(), group.random_scalar()
        q = group.add(group.mul(beta, hy), group.base(gamma))
        s = group.add(group.mul(beta, table.entry(p)), group.mul(gamma, pk))
        k = aead.outer_key(s, commitment=commitment, bundle_id=bundle_id, index=v, slot=j, q=q)
        slots.append(q + aead.seal(k, outer_plain, bundle_id))
    return b"".join(slots)


def _synthetic_voucher(pk: bytes, commitment: bytes, bundle_id: bytes, v: int, outer_plain: bytes,
                       rng: random.Random) -> bytes:
    """A voucher whose slot ``j*`` opens for the server (``Q = gamma*G``, ``S = gamma*PK = alpha*Q``)."""
    jstar = rng.randrange(N_HASHES)
    slots = []
    for j in range(N_HASHES):
        if j != jstar:
            slots.append(_dead_slot())
            continue
        gamma = group.random_scalar()
        q = group.base(gamma)
        s = group.mul(gamma, pk)
        k = aead.outer_key(s, commitment=commitment, bundle_id=bundle_id, index=v, slot=j, q=q)
        slots.append(q + aead.seal(k, outer_plain, bundle_id))
    return b"".join(slots)

"""Private matching for end-to-end encrypted services: the server learns only matches.

Adapted from the Apple PSI system (Bhowmick et al., "The Apple PSI System", 2021) to fuzzy video
matching. Three parties' views, step by step:

1. **Publish** (server, :func:`publish`): every reference frame of the bank gives ``tables``
   locality-sensitive keys of its descriptor (:mod:`.lsh`). Each distinct key ``x`` is blinded
   as ``alpha * H(x)`` (ed25519 prime-order group, libsodium; ``alpha`` the server's secret) and
   placed in a cuckoo table whose empty slots hold random elements (:mod:`.table`). The table,
   its version, the key parameters, the threshold ``t``, ``PK = alpha * G`` and a SHA-256
   commitment are published.
2. **Vouchers** (device, :func:`make_vouchers`): per sampled frame and key, a safety voucher
   (:mod:`.voucher`) whose outer layer only the server can open and only if the key is in the
   table; it carries one Shamir share (threshold ``t``, pycryptodome) of a per-video key and an
   inner ciphertext under that key; the frame's payload (time, descriptor, local features) is
   encrypted under a frame key that only the inner layer holds. Synthetic frames whose vouchers
   open but hold nothing are added, and everything is shuffled (:mod:`.bundle`).
3. **Match** (server, :func:`match_vouchers`): opens what matches; with ``t`` distinct frames'
   shares it rebuilds the video key, reads the opened frames and matches them as any query is
   matched (search, verification, alignment, the calibrated threshold) into the usual report.

Threat model: an honest-but-curious server (follows the protocol, tries to learn more from what
it receives) and a malicious device (may send anything).

What each side learns:
- The device learns nothing about the bank: table entries are indistinguishable without
  ``alpha`` (DDH), and the server's answer to a submission is the same whatever it holds.
- The server learns, per bundle, the number of vouchers (so about the video's length) and,
  below the threshold, the number of vouchers it could open — blurred by the synthetic ones,
  whose count is random. Non-matching vouchers stay unreadable to it even with ``alpha`` and
  every bank key, also later with a changed bank: their key ``S = beta*T[p] + gamma*PK`` is
  uniformly random given ``Q`` unless ``T[p] = alpha*H(y)`` at the time the device made it.
  From ``t`` matching frames on it reads those frames' descriptors and local features (and
  their times), not the other frames.

What it does not protect against:
- a server that puts keys of arbitrary (non-abuse) content in the table: the commitment lets
  outsiders check that every device got the same table, not what it holds (auditing needs the
  bank's provenance, as in Apple's design with two child-safety organisations);
- a server that deviates from the protocol towards the device it cannot cheat (it can choose
  ``alpha`` per device: publishing one commitment everyone checks is what prevents that);
- a device that alters its own vouchers: it can only make its video not match (or match itself);
- inversion of the descriptors of opened frames (a rough picture of those frames);
- look-alikes: keys of the whole-frame descriptor collide for videos of one style, so the server
  can open (read the colliding frames of) such non-copies before the scoring rejects them
  (measured in benchmarks/RESULTS.md, "Private matching");
- a device that makes many vouchers open on purpose (as synthetic ones do) costs the server up to
  ``max_tries`` key reconstructions (~2.5 ms each) per bundle: rate-limit submissions per sender;
- traffic analysis: the voucher count tells the video's length, the moment tells when it was sent;
- precision of the near-threshold count for short videos: the synthetic padding adds about
  ``floor + per_frame * n`` openable frames; with few frames that is a weak blur.
"""

from __future__ import annotations

from vmatch.private.bundle import Bundle, loads_bundle
from vmatch.private.lsh import KeyParams
from vmatch.private.server import PrivateResult, match_opened, open_bundle
from vmatch.private.store import PrivateStore
from vmatch.private.table import PrivateError, SyntheticParams, Table, read_table
from vmatch.private.voucher import make_bundle

__all__ = ["Bundle", "KeyParams", "PrivateError", "PrivateResult", "PrivateStore", "SyntheticParams", "Table",
           "make_vouchers", "match_vouchers", "publish", "read_table"]


def publish(bank, **kwargs) -> Table:
    """Publish the next table of ``bank`` (see :meth:`PrivateStore.publish`)."""
    with PrivateStore(bank.path) as store:
        return store.publish(bank, **kwargs)


def make_vouchers(emb, table: Table, **kwargs) -> Bundle:
    """The voucher bundle of one embedded video (see :func:`vmatch.private.voucher.make_bundle`)."""
    return make_bundle(emb, table, **kwargs)


def match_vouchers(bank, data: bytes, *, store: PrivateStore | None = None, source: str = "<vouchers>",
                   params=None) -> PrivateResult:
    """Process one received bundle against ``bank``: refuse a replay, open, match, record."""
    own = store is None
    store = store or PrivateStore(bank.path)
    try:
        bundle = loads_bundle(data, source=source)
        store.check_new(bundle.bundle_id.hex())
        table = store.table(bundle.table_commitment)
        opened = open_bundle(bundle, table, store.secret(), source=source)
        result = match_opened(bank, opened, params=params)
        store.record(result)
        return result
    finally:
        if own:
            store.close()

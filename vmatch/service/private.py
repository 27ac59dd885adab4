"""The private (PSI) mode behind ``routes_private``: publish a bank's table, serve it, accept
voucher bundles, process them as jobs, read the results (:mod:`vmatch.private`).

Where it sits: routes (``routes_private``) -> **here** -> vmatch.private (store, bundle, opening)
and vmatch.match (the plain match of the opened frames). The bank's :class:`PrivateStore` is
the handle's (``BankHandle.private_held``), used only under the bank's lock.

What the device may learn. Accepting a bundle checks only what does not depend on the bank's
content (the bundle parses, its table is one this bank published, its id is new) and answers the
same body for every accepted bundle, before it is processed: neither the answer nor its timing
depends on whether it matched. The processing runs as a job nobody's key can read (its owner is
no key id), and its result goes to the store only (``GET .../private/results``).

Locking. Opening the vouchers (a scalar multiplication per voucher slot) needs only the table and
the secret, so it runs outside the lock; the match of the opened frames and the record of the
result run under one hold, the replay check and the reservation of the bundle id under another.
Publishing reads every reference frame and writes the table under one hold (the table is of one
generation of the bank).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging

from vmatch.errors import VmatchError
from vmatch.service.banks import BankHandle
from vmatch.service.embedders import Embedders
from vmatch.service.errors import ServiceError, from_vmatch

log = logging.getLogger(__name__)

#: The owner of the private jobs: no key id looks like it, so no key but admin can read them.
JOB_OWNER = "private-mode"
_DEPS = (("nacl", "PyNaCl"), ("Crypto", "pycryptodome"), ("cryptography", "cryptography"))


def check_available() -> None:
    """ServiceError 501 when the private mode's libraries are not installed."""
    missing = [name for mod, name in _DEPS if importlib.util.find_spec(mod) is None]
    if missing:
        raise ServiceError(501, "private_mode_unavailable",
                           f"the private mode needs {', '.join(missing)} on the server: pip install 'vmatch[private]'")


def publish_table(handle: BankHandle, *, threshold: int | None, deadline) -> dict:
    """Publish the bank's next table (default key parameters for its model's descriptors)."""
    from vmatch.private import KeyParams

    with handle.private_held() as (bank, store):
        try:
            params = KeyParams(dim=bank.spec.dim)
            extra = {} if threshold is None else {"threshold": threshold}
            table = store.publish(bank, params=params, progress=deadline.check, **extra)
        except VmatchError as e:
            raise from_vmatch(e) from e
    h = table.header
    return {"version": h.table_version, "commitment": table.commitment, "keys": h.n_keys, "slots": h.slots,
            "bytes": len(table.to_bytes()), "threshold": h.threshold, "keys_per_frame": h.keys.keys_per_frame}


def latest_table(handle: BankHandle) -> tuple[bytes, str, int]:
    """The latest published table's file bytes, commitment and version; ServiceError 404 ``no_table``."""
    with handle.private_held() as (bank, store):
        if store.published() == 0:
            raise ServiceError(404, "no_table", f"bank {handle.name!r} has no private table yet; "
                                                "publish one with POST /banks/{bank}/private/table (curate)")
        try:
            table = store.latest()
        except VmatchError as e:
            raise ServiceError(503, "private_unavailable", str(e), headers={"Retry-After": "60"}) from e
    data = table.to_bytes()
    if hashlib.sha256(data).hexdigest() != table.commitment:  # the file is what was committed (read_table checked it)
        raise ServiceError(500, "internal_error", "the latest table does not re-encode to its commitment; see the server log")
    return data, table.commitment, table.header.table_version


def accept_bundle(handle: BankHandle, data: bytes, name: str):
    """The checks made before answering: the bundle parses (magic, digest, sizes: 400
    ``invalid_bundle``), names a table this bank published (400 ``unknown_table``) and was not
    received before nor is being processed (409 ``replayed_bundle``). The bundle id is then
    reserved until the job records it. Returns ``(bundle, table, secret)``."""
    from vmatch.private import PrivateError, loads_bundle

    try:
        bundle = loads_bundle(data, source=name)
    except PrivateError as e:
        raise ServiceError(400, "invalid_bundle", str(e)) from e
    bid = bundle.bundle_id.hex()
    with handle.private_held() as (bank, store):
        try:
            if bid in handle.private_pending:
                raise PrivateError(f"bundle {bid} was already received: a replayed voucher bundle is refused")
            store.check_new(bid)
        except PrivateError as e:
            raise ServiceError(409, "replayed_bundle", str(e)) from e
        try:
            table = store.table(bundle.table_commitment)
        except PrivateError as e:
            raise ServiceError(400, "unknown_table", f"{name}: {e}") from e
        try:
            alpha = store.secret()
        except VmatchError as e:
            raise ServiceError(503, "private_unavailable", str(e), headers={"Retry-After": "60"}) from e
        handle.private_pending.add(bid)
    return bundle, table, alpha


def release_bundle(handle: BankHandle, bundle) -> None:
    """Drop the reservation of ``bundle``'s id (recorded, or failed: a failed one may come again)."""
    with handle.lock:
        handle.private_pending.discard(bundle.bundle_id.hex())


def match_bundle(handle: BankHandle, embedders: Embedders, bundle, table, alpha: bytes, name: str, *,
                 deadline) -> dict:
    """The job of an accepted bundle: open it (outside the lock), match the opened frames and
    record the result (under one hold), as :func:`vmatch.private.match_vouchers` does; the
    calibration is the service's embedder's. Returns only the acceptance (never the outcome)."""
    from vmatch.match import MatchParams, calibration_for, match_embedding
    from vmatch.private import PrivateResult
    from vmatch.private.server import open_bundle

    bid = bundle.bundle_id.hex()
    try:
        opened = open_bundle(bundle, table, alpha, source=name)
        if opened.above_threshold:
            cal = calibration_for(embedders.get(handle.bank.spec))
        deadline.check()
        with handle.private_held() as (bank, store):
            if opened.above_threshold:
                report = match_embedding(bank, opened.embedding, calibration=cal, params=MatchParams(),
                                         query_name=opened.embedding.video_id)
                result = PrivateResult(opened.bundle_id, opened.commitment, opened.vouchers, "opened", report,
                                       len(opened.embedding))
            else:
                result = PrivateResult(opened.bundle_id, opened.commitment, opened.vouchers, "below_threshold")
            store.record(result)
    except VmatchError as e:
        log.warning("bank %s: voucher bundle %s refused while processing: %s", handle.name, bid, e)
        raise
    finally:
        release_bundle(handle, bundle)
    return {"accepted": bid}


def private_results(handle: BankHandle, status: str | None) -> list[dict]:
    with handle.private_held() as (bank, store):
        return store.results(status=status)

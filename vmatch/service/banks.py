"""The banks of the service's bank root: names, one open bank and one lock per bank, summaries.

Where it sits: routes (``app``) find a bank here by name; jobs (``engine``) hold its lock for the
short part that reads or writes it (:meth:`BankHandle.held`).

Consistency. Each bank has one open handle (a :class:`vmatch.bank.Bank`, or a
:class:`vmatch.shards.ShardedBank` for a sharded directory, opened by the one opener
:func:`vmatch.shards.open_bank`) and one lock. Heavy work (decode, embed, hash) runs *outside* the lock; the lock
is held only for the short part that reads or writes the bank, so a match sees the bank either
before or after a curator's change, never half of it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from vmatch.bank import Bank
from vmatch.errors import VmatchError
from vmatch.service.embedders import resolve_model
from vmatch.service.errors import ServiceError, from_vmatch
from vmatch.shards import is_bank_dir, open_bank, ShardedBank

log = logging.getLogger(__name__)

BANK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_bank_name(name: str) -> str:
    if not isinstance(name, str) or not BANK_NAME_RE.match(name):
        raise ServiceError(400, "invalid_bank_name",
                           f"invalid bank name {name!r:.80}: use 1-64 letters, digits, '_' or '-', starting with a letter or digit")
    return name


@dataclass
class BankHandle:
    name: str
    bank: Bank | ShardedBank
    lock: threading.Lock
    deleted: bool = False
    #: The private mode's :class:`vmatch.private.PrivateStore` of this bank (its SQLite file in
    #: ``<bank>/private/``), opened on first use; used and closed only under ``lock``.
    private: Any = None
    #: Ids of voucher bundles accepted and not yet recorded (a second submission meanwhile is a
    #: replay too); under ``lock``.
    private_pending: set = field(default_factory=set)

    def check_alive(self) -> None:
        if self.deleted:
            raise ServiceError(404, "bank_not_found", f"bank {self.name!r} was deleted")

    @contextlib.contextmanager
    def held(self) -> Iterator[Bank]:
        """The bank, under this handle's lock, while it is not deleted (else ServiceError 404)."""
        with self.lock:
            self.check_alive()
            yield self.bank

    @contextlib.contextmanager
    def private_held(self):
        """``(bank, its PrivateStore)`` under this handle's lock (the store opened on first use)."""
        with self.held() as bank:
            if self.private is None:
                from vmatch.private import PrivateStore

                self.private = PrivateStore(bank.path)
            yield bank, self.private

    def close_private(self) -> None:
        """Close the private store, if open; call with the lock held."""
        if self.private is not None:
            with contextlib.suppress(Exception):
                self.private.close()
            self.private = None

    def summary(self) -> dict:
        """The bank's summary, as ``GET /banks/{bank}`` answers it."""
        with self.held() as bank:
            i = bank.info()
        return {"name": self.name, "model_id": i["model_id"], "references": i["references"],
                "hash_only_references": i["hash_only_references"], "frames": i["frames"], "seconds": i["seconds"],
                "generation": i["generation"], "hashes": i["hashes"], "created_at": i["created_at"]}


class Banks:
    """The banks under the bank root, opened once and kept open."""

    def __init__(self, root: Path, device: str) -> None:
        self.root = root
        self.device = device
        self._lock = threading.Lock()
        self._banks: dict[str, BankHandle] = {}
        self.errors: dict[str, str] = {}

    def load_all(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for d in sorted(self.root.iterdir()):
            if d.is_dir() and BANK_NAME_RE.match(d.name) and is_bank_dir(d):
                try:
                    self._open(d.name)
                except VmatchError as e:
                    self.errors[d.name] = str(e)
                    log.error("bank %s cannot be opened: %s", d.name, e)

    def _open(self, name: str) -> BankHandle:
        with self._lock:
            h = self._banks.get(name)
            if h is None:
                bank = open_bank(self.root / name, create=False, device=self.device)
                h = self._banks[name] = BankHandle(name, bank, threading.Lock())
                self.errors.pop(name, None)
            return h

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._banks)

    def get(self, name: str) -> BankHandle:
        check_bank_name(name)
        with self._lock:
            h = self._banks.get(name)
        if h is not None:
            return h
        if is_bank_dir(self.root / name):  # made by the CLI while the server runs
            try:
                return self._open(name)
            except VmatchError as e:
                raise from_vmatch(e) from e
        raise ServiceError(404, "bank_not_found", f"no bank named {name!r}; create it with POST /banks")

    def held(self, name: str):
        """``with banks.held(name) as bank``: the named bank under its lock (see :meth:`BankHandle.held`)."""
        return self.get(name).held()

    def create(self, name: str, model: str | None) -> BankHandle:
        check_bank_name(name)
        with self._lock:
            if name in self._banks or (self.root / name).exists():
                raise ServiceError(409, "bank_exists", f"bank {name!r} already exists")
            try:
                bank = Bank.create(self.root / name, model=resolve_model(model) if isinstance(model, str) else model,
                                   device=self.device)
            except VmatchError as e:
                raise from_vmatch(e) from e
            h = self._banks[name] = BankHandle(name, bank, threading.Lock())
            return h

    def delete(self, name: str) -> None:
        h = self.get(name)
        with h.held() as bank:  # waits for the match or write in progress on it
            h.deleted = True
            with self._lock:
                self._banks.pop(name, None)
            h.close_private()
            bank.close()
            shutil.rmtree(self.root / name)

    def close_all(self) -> None:
        with self._lock:
            handles = list(self._banks.values())
            self._banks.clear()
        for h in handles:
            with h.lock:
                h.close_private()
                with contextlib.suppress(Exception):
                    h.bank.close()

    def status(self) -> list[dict]:
        """Per open bank, its readiness as ``/status`` answers it: references, generation, and
        whether the in-memory snapshot and the FAISS file are of the current generation."""
        out = []
        for name in self.names():
            try:
                h = self.get(name)
            except ServiceError:
                continue
            with h.lock:
                if h.deleted:
                    continue
                b = h.bank
                out.append({"name": name, "model_id": b.model_id, "references": len(b.list()), **b.readiness()})
        return out

"""The server's private-mode state beside a bank: its secret, the tables it published, the bundles seen.

Layout (``<bank>/private/``)::

    secret.key              the blinding scalar alpha (hex), mode 0600: whoever holds it can
                            open every voucher that matches (and only those)
    table-000001.vmpt ...   every published table (devices may still send vouchers made
                            against an older one; they open only for the keys that table held)
    private.sqlite          tables (version, commitment, file, created), bundles (id, commitment,
                            received, status): a bundle id seen once is refused after (replay)

Nothing half-written is left: files are written to a temporary name and renamed; a bundle is
recorded in the same transaction as its result.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from vmatch.files import write_atomic
from vmatch.private import group
from vmatch.private.lsh import KeyParams
from vmatch.private.table import PrivateError, SyntheticParams, Table, bank_keys, build_table, read_table

DIR = "private"
SECRET = "secret.key"
DB = "private.sqlite"
DEFAULT_THRESHOLD = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tables (version INTEGER PRIMARY KEY, commitment TEXT UNIQUE NOT NULL,
    file TEXT NOT NULL, created_at TEXT NOT NULL, n_keys INTEGER NOT NULL, bank_generation INTEGER);
CREATE TABLE IF NOT EXISTS bundles (bundle_id TEXT PRIMARY KEY, commitment TEXT NOT NULL,
    received_at TEXT NOT NULL, status TEXT NOT NULL, result TEXT);
"""


class PrivateStore:
    """The private-mode state of the bank at ``bank_path`` (made on first use)."""

    def __init__(self, bank_path: str | os.PathLike) -> None:
        self.dir = Path(bank_path) / DIR
        try:
            self.dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as e:
            raise PrivateError(f"{self.dir}: cannot create the private-mode directory: {e.strerror or e}") from None
        self._conn = sqlite3.connect(self.dir / DB, timeout=30, isolation_level=None, check_same_thread=False)
        self._conn.executescript(_SCHEMA)
        self._tables: dict[str, Table] = {}

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "PrivateStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the secret
    def secret(self) -> bytes:
        """alpha, made (and written 0600) on first use."""
        p = self.dir / SECRET
        if p.exists():
            try:
                alpha = bytes.fromhex(p.read_text().strip())
            except (OSError, ValueError) as e:
                raise PrivateError(f"{p}: unreadable server secret ({e}); restore it from the backup") from None
            if len(alpha) != 32:
                raise PrivateError(f"{p}: the server secret is not 32 bytes; restore it from the backup")
            return alpha
        alpha = group.random_scalar()
        write_atomic(p, alpha.hex().encode() + b"\n", what="the server secret", mode=0o600)
        return alpha

    # ------------------------------------------------------------------ tables
    def publish(self, bank, *, params: KeyParams = KeyParams(), threshold: int = DEFAULT_THRESHOLD,
                synthetic: SyntheticParams = SyntheticParams(), progress=None) -> Table:
        """Build the next table from every reference frame of ``bank`` and keep it."""
        if params.dim != bank.spec.dim:
            raise PrivateError(f"key parameters for {params.dim}-d descriptors, the bank's model has {bank.spec.dim}")
        keys = bank_keys(bank, params)
        if not keys:
            raise PrivateError(f"{bank.path}: the bank holds no reference frames; index references first")
        version = (self._conn.execute("SELECT max(version) FROM tables").fetchone()[0] or 0) + 1
        table = build_table(set(keys), self.secret(), params=params, model_id=bank.model_id, model_name=bank.spec.name, version=version,
                            threshold=threshold, synthetic=synthetic, progress=progress)
        name = f"table-{version:06d}.vmpt"
        write_atomic(self.dir / name, table.to_bytes(), what="the private table")
        gen = getattr(bank, "generation", None)
        self._conn.execute("INSERT INTO tables VALUES (?, ?, ?, ?, ?, ?)",
                           (version, table.commitment, name, table.header.created_at, len(keys),
                            int(gen) if gen is not None else None))
        self._tables[table.commitment] = table
        return table

    def table(self, commitment: str) -> Table:
        """The published table of ``commitment``."""
        if commitment in self._tables:
            return self._tables[commitment]
        row = self._conn.execute("SELECT file FROM tables WHERE commitment = ?", (commitment,)).fetchone()
        if row is None:
            raise PrivateError(f"the vouchers were made against table {commitment[:16]}…, which this bank never "
                               "published; fetch the current table (vmatch private publish) and make them again")
        t = read_table(self.dir / row[0], commitment=commitment)
        self._tables[commitment] = t
        return t

    def published(self) -> int:
        """How many tables were published (0: none yet, :meth:`latest` would raise)."""
        return int(self._conn.execute("SELECT count(*) FROM tables").fetchone()[0])

    def latest(self) -> Table:
        row = self._conn.execute("SELECT commitment FROM tables ORDER BY version DESC LIMIT 1").fetchone()
        if row is None:
            raise PrivateError(f"{self.dir.parent}: no private table published yet; run `vmatch private publish`")
        return self.table(row[0])

    # ------------------------------------------------------------------ bundles
    def check_new(self, bundle_id: str) -> None:
        if self._conn.execute("SELECT 1 FROM bundles WHERE bundle_id = ?", (bundle_id,)).fetchone():
            raise PrivateError(f"bundle {bundle_id} was already received: a replayed voucher bundle is refused")

    def record(self, result) -> None:
        """Record a processed bundle (its id first: a second submission is refused)."""
        try:
            self._conn.execute("INSERT INTO bundles VALUES (?, ?, ?, ?, ?)",
                               (result.bundle_id, result.commitment, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                result.status, json.dumps(result.to_dict(), sort_keys=True)))
        except sqlite3.IntegrityError:
            raise PrivateError(f"bundle {result.bundle_id} was already received: a replayed voucher bundle is refused") from None

    def results(self, *, status: str | None = None) -> list[dict]:
        q = "SELECT result FROM bundles" + (" WHERE status = ?" if status else "") + " ORDER BY received_at"
        return [json.loads(r[0]) for r in self._conn.execute(q, (status,) if status else ())]

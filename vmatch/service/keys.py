"""API keys: ``Authorization: Bearer <key>``, scopes ``match``, ``curate``, ``admin``.

A key is ``vmk_<key id>_<secret>`` (the secret: 32 random bytes, URL-safe base64). Only the key
id, name, scopes and the SHA-256 of the whole key are stored, in ``BANK_ROOT/.keys.sqlite``
(SQLite, WAL, ``synchronous=FULL``); the key itself is shown once, when it is created. A check
looks the row up by key id and compares digests in constant time (``hmac.compare_digest``).
Revocation takes effect on the next request (every request reads the store), also when the key
is revoked from the command line while the server runs.

Scopes: ``match`` (hash, match, lookup, jobs), ``curate`` (create banks, add / remove
references, import hashes), ``admin`` (everything, also deleting banks and ``/metrics``).
Any valid key may read ``/status`` and the lists of banks.

Used by ``vmatch key create | list | revoke`` and by the service; no web framework imported here.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from vmatch.errors import UsageError

SCOPES = ("match", "curate", "admin")
KEYS_DB = ".keys.sqlite"
_PREFIX = "vmk_"
_TOKEN_RE = re.compile(r"^vmk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
_DUMMY_DIGEST = hashlib.sha256(b"vmatch-no-such-key").hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never its secret)."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    created_at: str
    revoked_at: str | None = None

    def allows(self, scope: str) -> bool:
        """Whether this key may use an endpoint that needs ``scope`` (admin may use all)."""
        return scope in self.scopes or "admin" in self.scopes

    def to_dict(self) -> dict:
        return {"key_id": self.key_id, "name": self.name, "scopes": list(self.scopes),
                "created_at": self.created_at, "revoked_at": self.revoked_at}


def parse_scopes(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``"match,curate"`` -> ``("curate", "match")``; unknown scopes are a UsageError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = sorted({s.strip() for s in items if s.strip()})
    bad = [s for s in out if s not in SCOPES]
    if bad or not out:
        raise UsageError(f"invalid scope(s) {', '.join(bad) or '(none)'}: use a comma-separated list of {', '.join(SCOPES)}")
    return tuple(out)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class KeyStore:
    """The key store of one bank root. Thread-safe: one short-lived connection per call."""

    def __init__(self, bank_root: str | Path) -> None:
        self.path = Path(bank_root) / KEYS_DB

    @contextlib.contextmanager
    def _connect(self, *, create: bool):
        if not self.path.exists() and not create:
            yield None
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():  # readable by the owner only (it holds key digests and names)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS keys (key_id TEXT PRIMARY KEY, name TEXT NOT NULL,"
                " scopes TEXT NOT NULL, digest TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT)"
            )
            yield conn
        finally:
            conn.close()

    def create(self, name: str, scopes) -> tuple[str, ApiKey]:
        """Create a key; returns ``(the key, its record)``. The key is not stored: show it once."""
        scopes = parse_scopes(scopes)
        name = (name or "").strip()
        if not name or len(name) > 200:
            raise UsageError("a key needs a name of 1-200 characters (--name)")
        key_id = secrets.token_hex(6)
        token = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        with self._connect(create=True) as conn:
            conn.execute(
                "INSERT INTO keys (key_id, name, scopes, digest, created_at) VALUES (?,?,?,?,?)",
                (key_id, name, ",".join(scopes), _digest(token), created),
            )
        return token, ApiKey(key_id, name, scopes, created)

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by id; returns whether an active key was revoked."""
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        with self._connect(create=False) as conn:
            if conn is None:
                return False
            cur = conn.execute("UPDATE keys SET revoked_at=? WHERE key_id=? AND revoked_at IS NULL", (now, key_id))
            return cur.rowcount > 0

    def list(self) -> list[ApiKey]:
        with self._connect(create=False) as conn:
            if conn is None:
                return []
            rows = conn.execute("SELECT key_id, name, scopes, created_at, revoked_at FROM keys ORDER BY created_at, key_id")
            return [ApiKey(r[0], r[1], tuple(r[2].split(",")), r[3], r[4]) for r in rows]

    def verify(self, token: str | None) -> ApiKey | None:
        """The active key whose secret is ``token``, else None (unknown, malformed or revoked)."""
        m = _TOKEN_RE.match(token or "")
        key_id = m.group(1) if m else ""
        row = None
        if m:
            with self._connect(create=False) as conn:
                if conn is not None:
                    row = conn.execute(
                        "SELECT key_id, name, scopes, digest, created_at, revoked_at FROM keys WHERE key_id=?",
                        (key_id,),
                    ).fetchone()
        stored = row[3] if row is not None else _DUMMY_DIGEST
        ok = hmac.compare_digest(_digest(token or ""), stored)
        if not ok or row is None or row[5] is not None:
            return None
        return ApiKey(row[0], row[1], tuple(row[2].split(",")), row[4], row[5])

"""Bank schema versions (issue 15): banks of older layouts migrate step by step, each step once;
a bank made before versions were recorded, already current, opens without being written to;
Bank and ShardedBank implement the one protocol matching uses."""

import sqlite3

import numpy as np
import pytest

from vmatch.bank import Bank, MatchableBank
from vmatch.bank.storage import MIGRATIONS, SCHEMA_VERSION, SCHEMA_VERSION_KEY
from vmatch.models import ModelSpec
from vmatch.types import VideoEmbedding

DIM = 16
SPEC = ModelSpec(name="test-spec", version=1, weights="", weights_sha256="", dim=DIM, projection="")

#: The hashes table as the first banks with hashes had it (before vPDQ was stored).
_OLD_HASHES = """CREATE TABLE hashes (
    ref_pk INTEGER NOT NULL REFERENCES refs (pk) ON DELETE CASCADE,
    signal_type TEXT NOT NULL,
    value TEXT NOT NULL
)"""


def _emb(vid, n=6, seed=0):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, DIM)).astype(np.float32)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    return VideoEmbedding(vid, np.arange(n, dtype=float), f, float(n), SPEC.model_id, sha256=f"{seed:064x}")


def _make(path, *, md5=False):
    with Bank.open(path, create=True, model=SPEC) as bank:
        bank.add_embedding(_emb("a"), hashes={"md5": "0" * 32} if md5 else None)
    return path / "bank.sqlite"


def _layout(db):
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        cols = [r[1] for r in conn.execute("PRAGMA table_info(hashes)")]
        meta = dict(conn.execute("SELECT key, value FROM meta"))
    return tables, cols, meta


def _rewrite(db, *statements):
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for stmt in statements:
            conn.execute(stmt)
    finally:
        conn.close()


def test_a_new_bank_records_the_current_schema(tmp_path):
    tables, cols, meta = _layout(_make(tmp_path / "b"))
    assert meta[SCHEMA_VERSION_KEY] == str(SCHEMA_VERSION) == str(MIGRATIONS[-1].version)
    assert {"meta", "refs", "hashes", "local_features"} <= tables
    assert cols == ["ref_pk", "signal_type", "value", "quality", "timestamp", "frame_number"]
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_a_current_bank_without_a_recorded_version_opens_unchanged(tmp_path):
    """A bank written before versions were recorded, already of the current layout: not written to."""
    db = _make(tmp_path / "b")
    _rewrite(db, f"DELETE FROM meta WHERE key = '{SCHEMA_VERSION_KEY}'", "PRAGMA wal_checkpoint(TRUNCATE)")
    before = db.read_bytes()
    with Bank.open(tmp_path / "b") as bank:
        assert [r.reference for r in bank.list()] == ["a"]
    assert db.read_bytes() == before
    assert SCHEMA_VERSION_KEY not in _layout(db)[2]


@pytest.mark.parametrize("layout", ["no_hashes", "no_vpdq_columns", "no_local_features"])
def test_older_layouts_migrate_to_the_current_schema(tmp_path, layout):
    db = _make(tmp_path / "b", md5=layout != "no_hashes")
    undo = {
        "no_hashes": ["DROP TABLE hashes", "DROP TABLE local_features"],
        "no_vpdq_columns": ["DROP TABLE local_features", "ALTER TABLE hashes RENAME TO h_old", _OLD_HASHES,
                            "INSERT INTO hashes SELECT ref_pk, signal_type, value FROM h_old", "DROP TABLE h_old",
                            "CREATE INDEX hashes_value ON hashes (signal_type, value)"],
        "no_local_features": ["DROP TABLE local_features"],
    }[layout]
    _rewrite(db, *undo, f"DELETE FROM meta WHERE key = '{SCHEMA_VERSION_KEY}'")
    with Bank.open(tmp_path / "b") as bank:
        assert bank.lookup_hash("md5", "0" * 32) == ([] if layout == "no_hashes" else ["a"])
        assert bank.reference_embedding("a").local is None
        from vmatch.signals.vpdq import VPDQFrame

        bank.add_vpdq("v", [VPDQFrame(frame_number=0, hex="ab" * 32, quality=90, timestamp=0.5)])
        assert [f.quality for f in bank.vpdq_of("v")] == [90]
    tables, cols, meta = _layout(db)
    assert meta[SCHEMA_VERSION_KEY] == str(SCHEMA_VERSION)
    assert {"hashes", "local_features"} <= tables
    assert cols == ["ref_pk", "signal_type", "value", "quality", "timestamp", "frame_number"]
    before = db.read_bytes()
    with Bank.open(tmp_path / "b"):
        pass
    assert db.read_bytes() == before  # each step once: nothing left to do


def test_a_recorded_version_applies_only_the_later_steps(tmp_path):
    db = _make(tmp_path / "b")
    _rewrite(db, "DROP TABLE local_features", f"UPDATE meta SET value = '2' WHERE key = '{SCHEMA_VERSION_KEY}'")
    with Bank.open(tmp_path / "b") as bank:
        assert bank.reference_local("a") is None
    tables, _, meta = _layout(db)
    assert "local_features" in tables and meta[SCHEMA_VERSION_KEY] == str(SCHEMA_VERSION)


def test_bank_and_sharded_bank_implement_the_matching_protocol(tmp_path):
    from vmatch.shards import ShardedBank

    with Bank.open(tmp_path / "one", create=True, model=SPEC) as bank:
        assert isinstance(bank, MatchableBank)
    with ShardedBank.open(tmp_path / "many", create=True, n_shards=2, model=SPEC) as sharded:
        assert isinstance(sharded, MatchableBank)
        assert sharded.search(np.zeros((3, DIM), np.float32), 4).ref_index.shape == (3, 0)

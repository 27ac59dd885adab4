"""Bank: add / replace / remove / list / info, persistence, atomicity, concurrency, corruption."""

import os
import sqlite3
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from vmatch.bank import Bank, validate_ref_id
from vmatch.errors import BankError, BankNotFoundError, ModelMismatchError, UsageError
from vmatch.models import ModelSpec
from vmatch.types import VideoEmbedding

DIM = 16
SPEC = ModelSpec(name="test-spec", version=1, weights="", weights_sha256="", dim=DIM, projection="")
OTHER = ModelSpec(name="test-spec", version=2, weights="", weights_sha256="", dim=DIM, projection="")


def _emb(vid, n=10, seed=0, spec=SPEC):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(n, spec.dim)).astype(np.float32)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    return VideoEmbedding(vid, np.arange(n, dtype=float), f, float(n), spec.model_id, sha256=f"{seed:064x}")


def test_missing_bank_is_an_error(tmp_path):
    with pytest.raises(BankNotFoundError, match="no bank here"):
        Bank.open(tmp_path / "nope")


def test_add_list_info_reopen(tmp_path):
    with Bank.open(tmp_path / "b", create=True, model=SPEC) as bank:
        bank.add(_emb("a", 10, 1))
        bank.add(_emb("b", 5, 2), source_name="b.mp4")
        assert [r.reference for r in bank.list()] == ["a", "b"]
        info = bank.info()
        assert info["references"] == 2 and info["frames"] == 15 and info["model_id"] == SPEC.model_id
    files = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert any(f.startswith("index.") and f.endswith(".faiss") for f in files), files
    with Bank.open(tmp_path / "b") as bank:
        assert bank.get("b").source_name == "b.mp4"
        assert bank.find_by_sha256(f"{2:064x}") == ["b"]
        e = bank.reference_embedding("a")
        np.testing.assert_allclose(e.features, _emb("a", 10, 1).features)
        hits = bank.search(_emb("a", 10, 1).features[3:4], 1)
        snap = bank.snapshot()
        assert snap.ref_ids[hits.ref_index[0, 0]] == "a" and hits.frame_index[0, 0] == 3
        assert hits.similarity[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_replace_and_remove(tmp_path):
    with Bank.open(tmp_path, create=True, model=SPEC) as bank:
        bank.add(_emb("a", 10, 1))
        bank.add(_emb("a", 4, 7))  # replace
        assert [(r.reference, r.n_frames) for r in bank.list()] == [("a", 4)]
        assert bank.snapshot().index.ntotal == 4
        hits = bank.search(_emb("x", 4, 7).features, 1)
        assert np.all(hits.frame_index[:, 0] == np.arange(4))
        assert bank.remove(["a", "zzz"]) == ["a"]
        assert bank.list() == [] and bank.snapshot().index.ntotal == 0


def test_model_mismatch_refused(tmp_path):
    with Bank.open(tmp_path, create=True, model=SPEC) as bank:
        with pytest.raises(ModelMismatchError):
            bank.add(_emb("a", spec=OTHER))
    with pytest.raises(ModelMismatchError):
        Bank.open(tmp_path, model=OTHER)


def test_bad_ids_refused():
    for bad in ["", "a/b", " x", "x\n", "a\\b", "x ", "\u3000x"]:
        with pytest.raises(UsageError):
            validate_ref_id(bad)
    for ok in ["clip 01 (copy).v2", "é" * 127, ".config", "日本語のクリップ", "a..b"]:
        assert validate_ref_id(ok) == ok


@pytest.mark.parametrize("bad, words", [
    (".", "'.' and '..'"), ("..", "'.' and '..'"),
    ("evil\u202egnp.mp4", "U+202E (RIGHT-TO-LEFT OVERRIDE)"), ("a\u200bb", "U+200B (ZERO WIDTH SPACE)"),
    ("a\u200fb", "U+200F"), ("a\u2066b", "U+2066"), ("\ufeffclip", "U+FEFF"), ("a\x00b", "U+0000"),
    ("a\tb", "U+0009"), ("a\x7fb", "U+007F"), ("a\x85b", "U+0085"), ("a\u2028b", "U+2028"),
    ("a\ud800b", "U+D800"), ("é" * 128, "256 bytes in UTF-8; at most 255"), ("x" * 256, "256 bytes"),
])
def test_ids_that_hide_or_disguise_names_are_refused(bad, words):
    """An id names exported files and lines of hash lists: no '.'/'..', no control, format
    (zero-width, bidirectional) or separator characters, at most 255 bytes of UTF-8."""
    with pytest.raises(UsageError, match="invalid reference id") as e:
        validate_ref_id(bad)
    assert words in str(e.value)


def test_banks_holding_ids_refused_today_still_open(tmp_path):
    """Ids are checked when written, not when read: a bank made before keeps working."""
    with Bank.open(tmp_path, create=True, model=SPEC) as bank:
        bank.add(_emb("plain", 4, 1))
        bank.add(_emb("other", 4, 2))
    with sqlite3.connect(tmp_path / "bank.sqlite") as conn:
        conn.execute("UPDATE refs SET ref_id = ? WHERE ref_id = 'other'", ("..\u202e",))
    with Bank.open(tmp_path) as bank:
        assert [r.reference for r in bank.list()] == ["..\u202e", "plain"]
        assert bank.snapshot().ref_ids == ["plain", "..\u202e"]
        assert bank.remove(["..\u202e"]) == ["..\u202e"]
    with pytest.raises(UsageError, match="U\\+202E"):
        with Bank.open(tmp_path) as bank:
            bank.add(_emb("..\u202e", 4, 2))


def test_stale_or_damaged_index_is_rebuilt_from_database(tmp_path):
    with Bank.open(tmp_path, create=True, model=SPEC) as bank:
        bank.add(_emb("a", 6, 1))
    # A writer that died before saving its index: simulate by adding without saving.
    bank = Bank.open(tmp_path)
    bank.add(_emb("b", 3, 2))
    bank._dirty = False  # as if killed before close()
    bank._release_writer()
    bank._conn.close()
    with Bank.open(tmp_path) as reader:
        assert reader.snapshot().index.ntotal == 9
        assert reader.snapshot().ref_ids == ["a", "b"]
    for f in tmp_path.glob("index.*.faiss"):
        f.write_bytes(b"garbage")
    with Bank.open(tmp_path) as reader:
        assert reader.snapshot().index.ntotal == 9


def test_corrupted_database_is_a_clear_error(tmp_path):
    (tmp_path / "bank.sqlite").write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(BankError, match="corrupted"):
        Bank.open(tmp_path)


def test_readers_see_whole_generations_while_writer_adds(tmp_path):
    with Bank.open(tmp_path, create=True, model=SPEC) as bank:
        bank.add(_emb("r0", 5, 0))
    stop = threading.Event()
    seen = []
    errors = []

    def reader():
        try:
            while not stop.is_set():
                with Bank.open(tmp_path) as b:
                    snap = b.snapshot()
                    # each reference complete: frames in index == sum of n_frames
                    assert snap.index.ntotal == int(snap.n_frames.sum())
                    seen.append(len(snap.ref_ids))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    t = threading.Thread(target=reader)
    t.start()
    with Bank.open(tmp_path) as bank:
        for i in range(1, 15):
            bank.add(_emb(f"r{i}", 5, i))
            if i % 5 == 0:
                bank.save_index()
    stop.set()
    t.join()
    assert not errors, errors
    assert seen and seen == sorted(seen)


def test_second_writer_waits_or_fails_clearly(tmp_path):
    with Bank.open(tmp_path, create=True, model=SPEC) as bank:
        bank.add(_emb("a", 3, 1))
        other = Bank.open(tmp_path)
        try:
            with pytest.raises(BankError, match="being written by another process"):
                other._acquire_writer(timeout=0.2)
        finally:
            other.close()


def test_kill_during_writes_leaves_loadable_bank(tmp_path):
    """A writer process killed with SIGKILL mid-stream leaves only whole references."""
    script = textwrap.dedent(
        f"""
        import sys, numpy as np
        sys.path.insert(0, {str(os.getcwd())!r})
        from vmatch.bank import Bank
        from vmatch.models import ModelSpec
        from vmatch.types import VideoEmbedding
        spec = ModelSpec(name="test-spec", version=1, weights="", weights_sha256="", dim={DIM}, projection="")
        bank = Bank.open(sys.argv[1], create=True, model=spec)
        i = 0
        while True:
            f = np.random.default_rng(i).normal(size=(200, {DIM})).astype(np.float32)
            f /= np.linalg.norm(f, axis=1, keepdims=True)
            bank.add(VideoEmbedding(f"r{{i}}", np.arange(200.0), f, 200.0, spec.model_id))
            if i % 7 == 3:
                bank.save_index()
            print(i, flush=True)
            i += 1
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    for _ in range(25):
        proc.stdout.readline()
    proc.kill()
    proc.wait()
    with Bank.open(tmp_path) as bank:
        refs = bank.list()
        assert len(refs) >= 25
        assert all(r.n_frames == 200 for r in refs)
        assert bank.snapshot().index.ntotal == 200 * len(refs)
        bank.add(_emb("after", 200, 99, spec=SPEC))  # and it is still writable
    assert not list(tmp_path.glob(".tmp-index.*"))


def test_full_disk_leaves_bank_as_it_was(tmp_path):
    """SQLite's SQLITE_FULL (what a full disk gives) during an add: a clear BankError, nothing of
    that reference written, the bank still readable and writable once there is room again."""
    with Bank.open(tmp_path, create=True, model=SPEC) as bank:
        bank.add(_emb("a", 10, 1))
        pages = bank._conn.execute("PRAGMA page_count").fetchone()[0]
        bank._conn.execute(f"PRAGMA max_page_count = {pages + 1}")  # the "disk" is now full
        with pytest.raises(BankError, match="disk full while writing big"):
            bank.add(_emb("big", 5000, 2))
        assert [r.reference for r in bank.list()] == ["a"]
        assert bank.snapshot().index.ntotal == 10
        bank._conn.execute("PRAGMA max_page_count = 1073741823")  # room again
        bank.add(_emb("big", 5000, 2))
    with Bank.open(tmp_path) as bank:
        assert [(r.reference, r.n_frames) for r in bank.list()] == [("a", 10), ("big", 5000)]
        assert bank.snapshot().index.ntotal == 5010


def test_one_snapshot_serves_a_whole_search_while_the_bank_changes(tmp_path):
    """A reader that holds a snapshot keeps resolving hits against that generation, even after
    a writer (here another handle) replaced and added references."""
    with Bank.open(tmp_path, create=True, model=SPEC) as bank:
        bank.add(_emb("a", 6, 1))
        bank.add(_emb("b", 6, 2))
    reader = Bank.open(tmp_path)
    snap = reader.snapshot()
    with Bank.open(tmp_path) as writer:
        writer.remove(["a"])
        writer.add(_emb("c", 9, 3))
    q = _emb("b", 6, 2).features[2:3]
    hits = reader.search(q, 1, snapshot=snap)
    assert snap.ref_ids[hits.ref_index[0, 0]] == "b" and hits.frame_index[0, 0] == 2
    np.testing.assert_allclose(reader.reference_vectors(hits.ref_index[0, 0], snapshot=snap)[2], q[0], atol=1e-6)
    fresh = reader.snapshot()  # a new call sees the new generation
    assert fresh.generation > snap.generation and fresh.ref_ids == ["b", "c"]
    reader.close()


def test_concurrent_creation_gives_one_bank(tmp_path):
    """Two processes creating the same new bank at once: both succeed, one bank, one model."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(os.getcwd())!r})
        from vmatch.bank import Bank
        from vmatch.models import ModelSpec
        import os, time
        spec = ModelSpec(name="test-spec", version=1, weights="", weights_sha256="", dim={DIM}, projection="")
        print("ready", flush=True)
        while not os.path.exists(sys.argv[2]):  # start together: the race is the point
            time.sleep(0.001)
        Bank.open(sys.argv[1], create=True, model=spec).close()
        print("ok")
        """
    )
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "b"), str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    with Bank.open(tmp_path / "b") as bank:
        assert bank.model_id == SPEC.model_id and bank.generation == 0
        rows = bank._conn.execute("SELECT key, count(*) FROM meta GROUP BY key HAVING count(*) > 1").fetchall()
        assert rows == []


def test_gpu_search_needs_faiss_gpu(tmp_path, monkeypatch):
    """A FAISS without GPUs (faiss-cpu, the default install): asking for GPU search says what to install."""
    import vmatch.ann as ann

    monkeypatch.setattr(ann, "gpu_count", lambda: 0)
    with pytest.raises(UsageError, match="gpu.*extra"):
        Bank.open(tmp_path / "b", create=True, model=SPEC, search_device="cuda")
    with pytest.raises(UsageError, match="cpu', 'cuda'"):
        Bank.open(tmp_path / "b", create=True, model=SPEC, search_device="tpu")
    assert not (tmp_path / "b").exists()


def test_gpu_search_copy_returns_the_cpu_results(tmp_path, monkeypatch):
    """The GPU copy of a snapshot (ann.GpuFlatSearcher) maps its rows back to the bank's frame ids:
    checked on CPU with a CPU flat index standing in for faiss.GpuIndexFlatIP, after removals and
    replacements that leave the ids non-contiguous."""
    import faiss

    import vmatch.ann as ann

    monkeypatch.setattr(ann, "gpu_count", lambda: 1)
    monkeypatch.setattr(ann, "_gpu_flat", lambda dim, device: faiss.IndexFlatIP(dim))
    with Bank.open(tmp_path / "b", create=True, model=SPEC) as bank:
        for i in range(5):
            bank.add(_emb(f"r{i}", 8 + i, seed=i))
        bank.remove("r1")
        bank.add(_emb("r3", 6, seed=33))  # replaced: new frame ids
        q = np.concatenate([_emb("r3", 6, seed=33).features[:3], _emb("r4", 12, seed=4).features[5:7]])
        cpu = bank.search(q, 7)
    with Bank.open(tmp_path / "b", search_device="cuda") as bank:
        snap = bank.snapshot()
        assert isinstance(snap.searcher, ann.GpuFlatSearcher)
        gpu = bank.search(q, 7, snapshot=snap)
    np.testing.assert_array_equal(gpu.ref_index, cpu.ref_index)
    np.testing.assert_array_equal(gpu.frame_index, cpu.frame_index)
    np.testing.assert_allclose(gpu.similarity, cpu.similarity, atol=1e-6)

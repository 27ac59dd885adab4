"""Banks under bad input (issue 17): damaged database contents, a damaged FAISS file, a foreign
``bank.sqlite``, runs that store nothing into a new bank, invalid ``--id``, a second writer.

Every bank here uses the weight-free FakeEmbedder (created through the API, then filled with
``vmatch index``), so each command runs in a second or two. Each CLI failure must be exactly one
line ``vmatch: error: ...`` naming the file, with exit code 2 (the bank) or 1 (some inputs).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import vmatch.bank as bank_mod
from conftest import cli, scene_clip, write_clip
from vmatch.bank import INDEX_RECORD_KEY, LOCK_NAME, Bank
from vmatch.cli import main
from vmatch.embed import FakeEmbedder
from vmatch.errors import BankError

FAKE = FakeEmbedder().spec


def assert_one_error_line(err: str, *words: str) -> str:
    """stderr is exactly one line ``vmatch: error: ...`` holding every word; no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vmatch: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Three small references (8, 4 and 4 s) and a query holding seconds 2-7 of ``ref_x``."""
    d = tmp_path_factory.mktemp("damage_clips")
    return {
        "ref_x": write_clip(d / "refs" / "ref_x.mp4", scene_clip(1701, 0, 8)),
        "ref_y": write_clip(d / "refs" / "ref_y.mp4", scene_clip(1702, 0, 4)),
        "ref_z": write_clip(d / "refs" / "ref_z.mp4", scene_clip(1703, 0, 4)),
        "query": write_clip(d / "queries" / "query.mp4", scene_clip(1701, 2, 5)),
    }


def fake_bank(capsys, path: Path, *refs: Path) -> Path:
    """A FakeEmbedder bank at ``path`` holding ``refs`` (indexed with ``vmatch index``)."""
    Bank.open(path, create=True, model=FAKE).close()
    if refs:
        code, _, err = cli(capsys, "index", "--bank", path, *refs)
        assert code == 0, err
    return path


def cnn_matches(out: str) -> list[str]:
    return [m["reference"] for m in json.loads(out)["matches"] if m["signal_type"] == "cnn"]


# ---------------------------------------------------------------------- 1. damaged contents
DAMAGE = {
    # what is changed in the database -> words the one error line must hold
    "generation": ("UPDATE meta SET value = 'seven' WHERE key = 'generation'", "meta 'generation' is 'seven'"),
    "short_features": ("UPDATE refs SET features = substr(features, 1, 1000)",
                       "reference 'ref_x' has 1000 bytes of features, not 8 frames x 64 dimensions"),
    "short_timestamps": ("UPDATE refs SET timestamps = substr(timestamps, 1, 24)",
                         "reference 'ref_x' has 3 frames of timestamps but n_frames 8"),
    "n_frames": ("UPDATE refs SET n_frames = 5", "reference 'ref_x' has 8 frames of timestamps but n_frames 5"),
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_bank_contents_are_one_line_exit_2(capsys, tmp_path, clips, kind):
    """Values vmatch never writes (a non-numeric generation, blobs of the wrong size, a wrong
    frame count): info, list, match and index stop with one line naming the bank file and what
    is wrong (exit 2), and index writes nothing into the damaged bank."""
    sql, words = DAMAGE[kind]
    commands = [["info"], ["match", "--json", clips["query"]], ["index", clips["ref_y"]]]
    if kind != "generation":  # list reads the rows, not the generation
        commands.append(["list"])
    for command in commands:
        bank = fake_bank(capsys, tmp_path / f"{kind}_{command[0]}", clips["ref_x"])
        db = bank / "bank.sqlite"
        with sqlite3.connect(db) as conn:
            conn.execute(sql)
        before = db.read_bytes()
        code, out, err = cli(capsys, command[0], "--bank", bank, *command[1:])
        assert code == 2, (command, err)
        assert_one_error_line(err, str(db), words, "the bank is damaged: re-index it or restore a backup")
        assert out == ""
        if command[0] == "index":
            assert db.read_bytes() == before  # nothing written into it


def test_damaged_rows_through_the_api(tmp_path, clips, capsys):
    bank = fake_bank(capsys, tmp_path / "b", clips["ref_x"])
    with sqlite3.connect(bank / "bank.sqlite") as conn:
        conn.execute("UPDATE refs SET features = substr(features, 1, 1000)")
    with Bank.open(bank) as b:
        for read in (lambda: b.reference_embedding("ref_x"), lambda: b.snapshot(), lambda: b.frame_table(),
                     lambda: b.list(), lambda: b.verify()):
            with pytest.raises(BankError, match="1000 bytes of features"):
                read()


# ---------------------------------------------------------------------- 2. damaged FAISS file
def _zero_vectors(index_file: Path) -> None:
    """Overwrite 1,500 bytes of the stored vectors (IndexIDMap2 over IndexFlatIP: the flat
    index's header, then its float32 codes) with zeros."""
    data = bytearray(index_file.read_bytes())
    start = data.index(b"IxFI") + 64
    data[start : start + 1500] = bytes(1500)
    index_file.write_bytes(bytes(data))


def test_damaged_faiss_file_is_rebuilt_from_the_database(capsys, caplog, tmp_path, clips):
    """(The CLI logs warnings to stderr as ``vmatch: WARNING: ...``; in-process, pytest's log
    capture holds them.)"""
    import faiss

    bank = fake_bank(capsys, tmp_path / "b", clips["ref_x"])
    (index_file,) = bank.glob("index.*.faiss")
    _zero_vectors(index_file)
    caplog.clear()
    code, out, err = cli(capsys, "match", "--json", "--bank", bank, clips["query"])
    assert code == 0, err
    assert cnn_matches(out) == ["ref_x"]  # the vectors come from the database, not the file
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{index_file} does not match the database; rebuilding it from the database"]
    caplog.clear()
    # The next index writes a correct file (and records its checksum); the damage is not copied on.
    code, _, err = cli(capsys, "index", "--bank", bank, clips["ref_y"])
    assert code == 0, err
    (new_file,) = bank.glob("index.*.faiss")
    assert new_file != index_file
    with Bank.open(bank) as b:
        record = json.loads(b._conn.execute("SELECT value FROM meta WHERE key=?", (INDEX_RECORD_KEY,)).fetchone()[0])
        assert record == {"generation": b.generation, "sha256": hashlib.sha256(new_file.read_bytes()).hexdigest()}
        index = faiss.read_index(str(new_file))
        snap = b.snapshot()
        for pos, rid in enumerate(snap.ref_ids):
            ids = np.arange(snap.first_fids[pos], snap.first_fids[pos] + snap.n_frames[pos])
            np.testing.assert_array_equal(index.reconstruct_batch(ids), b.reference_embedding(rid).features)
    caplog.clear()
    code, out, err = cli(capsys, "match", "--json", "--bank", bank, clips["query"])
    assert code == 0 and cnn_matches(out) == ["ref_x"] and err == ""
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


# ---------------------------------------------------------------------- 3. foreign bank.sqlite
def _foreign_sqlite(path: Path, *, with_meta: bool) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('my own data')")
        if with_meta:  # a table of the same name as vmatch's, holding something else
            conn.execute("CREATE TABLE meta (name TEXT, version INTEGER)")
            conn.execute("INSERT INTO meta VALUES ('notes', 3)")
    assert not Path(f"{path}-wal").exists()


@pytest.mark.parametrize("kind", ["empty_file", "other_database", "other_database_with_meta"])
def test_index_refuses_a_foreign_bank_sqlite_and_leaves_it_untouched(capsys, tmp_path, clips, kind):
    bank = tmp_path / "bank"
    bank.mkdir()
    db = bank / "bank.sqlite"
    if kind == "empty_file":
        db.touch()
    else:
        _foreign_sqlite(db, with_meta=kind.endswith("meta"))
    before = db.read_bytes()
    for command in (["index", clips["ref_x"]], ["info"], ["match", clips["query"]]):
        code, out, err = cli(capsys, command[0], "--bank", bank, *command[1:])
        assert code == 2, (command, err)
        assert_one_error_line(err, str(db), "not a vmatch bank", "left as it is")
        assert out == ""
    assert db.read_bytes() == before
    assert sorted(p.name for p in bank.iterdir()) == ["bank.sqlite"]  # no lock, no journal, nothing


def test_new_bank_only_in_an_empty_directory(capsys, tmp_path, clips):
    """A directory of other files is not made a bank; one holding only hidden files and a README
    (like the committed ./index) is."""
    others = tmp_path / "videos"
    others.mkdir()
    (others / "holiday.mp4").write_bytes(b"x")
    code, _, err = cli(capsys, "index", "--bank", others, clips["ref_x"])
    assert code == 2
    assert_one_error_line(err, str(others), "'holiday.mp4'", "new or empty directory")
    assert [p.name for p in others.iterdir()] == ["holiday.mp4"]
    noted = tmp_path / "index"
    noted.mkdir()
    (noted / "README.md").write_text("the default bank\n")
    (noted / ".gitkeep").touch()
    code, _, err = cli(capsys, "index", "--bank", noted, clips["ref_x"])
    assert code == 0, err
    with Bank.open(noted) as b:
        assert [r.reference for r in b.list()] == ["ref_x"]


# ---------------------------------------------------------------------- 4. failed runs leave no bank
def test_a_run_that_stores_nothing_leaves_no_new_bank(capsys, tmp_path, clips):
    bad = tmp_path / "bad.mp4"
    bad.write_text("this is not a video\n" * 20)
    # every input unreadable
    code, _, err = cli(capsys, "index", "--bank", tmp_path / "new", bad)
    assert code == 1, err
    assert not (tmp_path / "new").exists()
    code, _, err = cli(capsys, "index", "--bank", tmp_path / "new_sharded", "--shards", "2", bad)
    assert code == 1, err
    assert not (tmp_path / "new_sharded").exists()
    # an existing empty directory is kept, emptied of what the run made
    (tmp_path / "empty_dir").mkdir()
    code, _, err = cli(capsys, "index", "--bank", tmp_path / "empty_dir", bad)
    assert code == 1 and list((tmp_path / "empty_dir").iterdir()) == []
    # a bad option found once the bank exists (the CNN's thread count)
    code, _, err = cli(capsys, "index", "--bank", tmp_path / "new", "--threads", "0", clips["ref_x"])
    assert code == 2
    assert_one_error_line(err, "threads")
    assert not (tmp_path / "new").exists()
    # an existing (empty) bank is never deleted
    existing = fake_bank(capsys, tmp_path / "existing")
    code, _, err = cli(capsys, "index", "--bank", existing, bad)
    assert code == 1
    with Bank.open(existing) as b:
        assert b.list() == []


# ---------------------------------------------------------------------- 5. invalid --id
@pytest.mark.parametrize("ref_id", ["a/b", "..", "evil\u202egnp.exe", "zero\u200bwidth", " padded"])
def test_invalid_id_is_a_usage_error(capsys, tmp_path, clips, ref_id):
    code, out, err = cli(capsys, "index", "--bank", tmp_path / "bank", "--id", ref_id, clips["ref_x"])
    assert code == 2 and out == ""
    assert_one_error_line(err, "invalid reference id")
    assert not (tmp_path / "bank").exists()


# ---------------------------------------------------------------------- 7. a second writer
class HeldLock:
    """The writer lock of a bank held by this test process (as another vmatch would hold it)."""

    def __init__(self, bank: Path) -> None:
        self.fd = os.open(bank / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def test_second_index_waits_for_the_writer_and_loses_nothing(capsys, tmp_path, clips, monkeypatch):
    """Beside a writer that holds the lock longer than a write used to wait (made 0.3 s here),
    index says once what it waits for, then indexes every input once the lock is free."""
    monkeypatch.setattr(bank_mod, "WRITER_WAIT_S", 0.3, raising=False)
    bank = fake_bank(capsys, tmp_path / "b")
    held = HeldLock(bank)
    result: dict[str, int] = {}
    refs = [clips["ref_x"], clips["ref_y"], clips["ref_z"]]
    capsys.readouterr()
    worker = threading.Thread(target=lambda: result.update(code=main(["index", "--bank", str(bank), *map(str, refs)])))
    worker.start()
    err = ""
    try:
        deadline = time.monotonic() + 60
        while "vmatch: waiting for" not in err and time.monotonic() < deadline and worker.is_alive():
            time.sleep(0.05)
            err += capsys.readouterr().err
        time.sleep(1.0)  # well past WRITER_WAIT_S
        assert worker.is_alive()
    finally:
        held.release()
        worker.join(120)
    err += capsys.readouterr().err
    assert (f"vmatch: waiting for {bank / LOCK_NAME}: another process (pid {os.getpid()}) is writing this bank; "
            "Ctrl-C to stop") in err.splitlines(), err
    assert err.count("vmatch: waiting for") == 1
    assert result["code"] == 0, err
    with Bank.open(bank) as b:
        assert [r.reference for r in b.list()] == ["ref_x", "ref_y", "ref_z"]


def test_no_wait_refuses_at_once(capsys, tmp_path, clips):
    bank = fake_bank(capsys, tmp_path / "b")
    held = HeldLock(bank)
    try:
        t0 = time.monotonic()
        code, out, err = cli(capsys, "index", "--bank", bank, "--no-wait", clips["ref_x"])
        assert time.monotonic() - t0 < 10
    finally:
        held.release()
    assert code == 2 and out == ""
    assert_one_error_line(err, str(bank), "bank is being written by another process", f"(pid {os.getpid()})")
    with Bank.open(bank) as b:
        assert b.list() == []


def test_ctrl_c_while_waiting_exits_130(capsys, tmp_path, clips):
    bank = fake_bank(capsys, tmp_path / "b")
    held = HeldLock(bank)
    try:
        # As from a terminal: Ctrl-C's default disposition, even where this test runs with SIGINT
        # ignored (a non-interactive shell's background job, as some CI runners start it).
        proc = subprocess.Popen([sys.executable, "-m", "vmatch.cli", "index", "--bank", str(bank), str(clips["ref_x"])],
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        first = proc.stderr.readline()
        assert first.startswith("vmatch: waiting for"), first
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    finally:
        held.release()
    assert proc.returncode == 130, rest
    assert "interrupted" in rest and "Traceback" not in rest
    with Bank.open(bank) as b:
        assert b.list() == []


def test_a_writer_waiting_on_a_bank_that_is_discarded_stops(tmp_path):
    """A run that created a bank and stored nothing removes it; a writer that waited for its
    lock meanwhile is told the bank is gone instead of writing into a deleted file."""
    from vmatch.errors import BankNotFoundError

    creator = Bank.open(tmp_path / "b", create=True, model=FAKE)
    assert creator.created
    creator.lock_for_writing()
    waiter = Bank.open(tmp_path / "b")
    assert not waiter.created
    outcome: list[BaseException] = []

    def wait_for_lock() -> None:
        try:
            waiter.lock_for_writing(on_wait=lambda holder: outcome.append(None))
        except BaseException as e:  # noqa: BLE001 - reported below
            outcome.append(e)

    t = threading.Thread(target=wait_for_lock)
    t.start()
    deadline = time.monotonic() + 10
    while not outcome and time.monotonic() < deadline:
        time.sleep(0.02)
    assert creator.discard_if_empty()
    t.join(10)
    waiter.close()
    assert not (tmp_path / "b").exists()
    assert outcome[0] is None and isinstance(outcome[1], BankNotFoundError), outcome
    assert "removed while this process waited" in str(outcome[1])

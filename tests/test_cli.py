"""The command line contract: ``vmatch index | match | remove | info | list``.

Most commands run in-process through ``vmatch.cli.main`` (the CNN loads once per process); the
JSON contract, the kill -9 and the Ctrl-C tests run ``python -m vmatch.cli`` as a real subprocess.
Videos come from ``match_set`` / ``bad_inputs`` (conftest.py) or are generated here.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import MATCH_REFERENCES, MatchSet, cli, scene_clip, write_clip
from vmatch.bank import Bank
from vmatch.cli import main
from vmatch.decode import sha256_file
from vmatch.embed import FakeEmbedder
from vmatch.models import get_model_spec
from vmatch.types import VideoEmbedding

SEGMENT_KEYS = {"query_start", "query_end", "reference_start", "reference_end", "score"}
STEP = 1.0 + 1e-6  # one sampling step at 1 frame per second


def cli_sub(*args, cwd=None, timeout=180) -> subprocess.CompletedProcess:
    """Run ``python -m vmatch.cli ARGS`` as a separate process."""
    return subprocess.run([sys.executable, "-m", "vmatch.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("vmatch: error:")]


def ref_ids(bank_dir: Path) -> list[str]:
    with Bank.open(bank_dir) as bank:
        return [r.reference for r in bank.list()]


@pytest.fixture(scope="session")
def cli_bank(tmp_path_factory: pytest.TempPathFactory, match_set: MatchSet) -> Path:
    """The references of ``match_set`` indexed by ``vmatch index --bank DIR <directory>``. Read-only."""
    bank = tmp_path_factory.mktemp("cli_bank") / "bank"
    assert main(["index", "--bank", str(bank), str(match_set.directory / "refs")]) == 0
    return bank


@pytest.fixture(scope="session")
def model_threshold() -> float:
    from vmatch.embed import make_embedder
    from vmatch.match import calibration_for

    return calibration_for(make_embedder()).threshold


def small_clip(path: Path, seed: int, seconds: float) -> Path:
    return write_clip(path, scene_clip(seed, 0, seconds))


# ------------------------------------------------------------------ match: the JSON contract
def test_match_json_contract_end_to_end(cli_bank, match_set, model_threshold):
    """One JSON object per query per line, with exactly the contract's keys and types, the query
    path echoed, the threshold, matches sorted by score, and segments locating the planted copy."""
    cases = ["trim", "insert", "fps15"]
    paths = [match_set.planted[c].query for c in cases]
    p = cli_sub("match", "--bank", cli_bank, "--json", *paths)
    assert p.returncode == 0, p.stderr
    assert error_lines(p.stderr) == []
    lines = p.stdout.splitlines()
    assert len(lines) == len(cases), p.stdout
    durations = {"trim": 9.0, "insert": 25.0, "fps15": 16.0}
    for case, path, line in zip(cases, paths, lines):
        truth = match_set.planted[case]
        obj = json.loads(line)
        assert isinstance(obj, dict) and set(obj) == {"query", "duration", "threshold", "matches"}
        assert obj["query"] == str(path)
        assert isinstance(obj["duration"], float) and obj["duration"] == pytest.approx(durations[case], abs=0.1)
        assert isinstance(obj["threshold"], float) and obj["threshold"] == pytest.approx(model_threshold, abs=1e-6)
        matches = obj["matches"]
        assert isinstance(matches, list) and matches
        scores = [m["score"] for m in matches]
        assert scores == sorted(scores, reverse=True)
        for m in matches:
            # signal_type: issue 5; the verification evidence: issue 14
            assert set(m) == {"reference", "score", "signal_type", "segments", "cnn_score", "content_inliers",
                              "verified_frames"}
            assert m["score"] <= m["cnn_score"] and m["content_inliers"] > 0 and m["verified_frames"] >= 1
            assert m["signal_type"] == "cnn"  # these queries are edited copies: no exact hash matches
            assert isinstance(m["reference"], str) and m["reference"] in MATCH_REFERENCES
            assert isinstance(m["score"], float) and m["score"] >= obj["threshold"]
            assert isinstance(m["segments"], list) and m["segments"]
            for s in m["segments"]:
                assert set(s) == SEGMENT_KEYS and all(isinstance(s[k], float) for k in SEGMENT_KEYS)
                assert s["query_start"] <= s["query_end"] and s["reference_start"] <= s["reference_end"]
                assert 0 <= s["query_start"] and s["query_end"] <= obj["duration"]
        top = matches[0]
        assert top["reference"] == truth.reference
        seg = top["segments"][0]
        got = [seg["query_start"], seg["query_end"], seg["reference_start"], seg["reference_end"]]
        want = [truth.query_start, truth.query_end, truth.reference_start, truth.reference_end]
        assert np.all(np.abs(np.subtract(got, want)) <= STEP), (got, want)
        assert seg["score"] == pytest.approx(top["score"], abs=1e-4)


def test_min_score_lists_lower_scoring_references(capsys, cli_bank, match_set, model_threshold):
    """Default: only matches >= the threshold. ``--min-score -1``: every aligned reference (a
    superset), sorted, same scores. A floor above every score lists nothing."""
    q = match_set.planted["slow"].query
    code, out, _ = cli(capsys, "match", "--bank", cli_bank, "--json", q)
    assert code == 0
    default = json.loads(out)["matches"]
    code, out, _ = cli(capsys, "match", "--bank", cli_bank, "--json", "--min-score", "-1", q)
    assert code == 0 and len(out.splitlines()) == 1
    everything = json.loads(out)["matches"]
    assert default[0]["reference"] == "ref_charlie"
    assert all(m["score"] >= model_threshold for m in default)
    assert {m["reference"] for m in default} <= {m["reference"] for m in everything} <= set(MATCH_REFERENCES)
    assert [m["score"] for m in everything] == sorted((m["score"] for m in everything), reverse=True)
    by_ref = {m["reference"]: m["score"] for m in everything}
    assert all(by_ref[m["reference"]] == m["score"] for m in default)
    assert [m["reference"] for m in everything if m["score"] >= model_threshold] == [m["reference"] for m in default]
    top = everything[0]["score"]
    code, out, _ = cli(capsys, "match", "--bank", cli_bank, "--json", "--min-score", top + 0.01, q)
    assert code == 0 and json.loads(out)["matches"] == []
    code, out, _ = cli(capsys, "match", "--bank", cli_bank, "--json", "--min-score", top - 0.01, q)
    assert [m["reference"] for m in json.loads(out)["matches"]] == ["ref_charlie"]


def _mmss(t: float) -> str:
    return f"{int(t // 60)}:{t % 60:04.1f}"


def test_text_table_names_reference_and_times(capsys, cli_bank, match_set):
    q = match_set.planted["insert"].query
    code, out, _ = cli(capsys, "match", "--bank", cli_bank, "--json", q)
    seg = json.loads(out)["matches"][0]["segments"][0]
    code, out, err = cli(capsys, "match", "--bank", cli_bank, q)
    assert code == 0 and not out.lstrip().startswith("{")
    assert str(q) in out and "ref_bravo" in out
    line = next(line for line in out.splitlines() if "ref_bravo" in line)
    for t in (seg["query_start"], seg["query_end"], seg["reference_start"], seg["reference_end"]):
        assert _mmss(t) in line, (t, line)
    assert _mmss(seg["query_start"]) == "0:08.0" and _mmss(seg["reference_start"]) == "0:05.0"
    # A query without any match says so.
    code, out, _ = cli(capsys, "match", "--bank", cli_bank, "--min-score", "1", q)
    assert code == 0 and "no match" in out and "ref_bravo" not in out


# ------------------------------------------------------------------ index
def test_index_with_id_single_file_only(capsys, tmp_path, match_set):
    bank = tmp_path / "bank"
    delta, alpha = match_set.references["ref_delta"], match_set.references["ref_alpha"]
    code, _, err = cli(capsys, "index", "--bank", bank, "--id", "custom name", delta)
    assert code == 0, err
    code, out, _ = cli(capsys, "list", "--bank", bank, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["reference"], r["n_frames"], r["source_name"]) for r in rows] == [("custom name", 20, "ref_delta.mp4")]
    # --id with two files (or a directory of several): usage error, nothing written.
    gen = Bank.open(bank).generation
    for args in ([delta, alpha], [match_set.directory / "refs"]):
        code, _, err = cli(capsys, "index", "--bank", bank, "--id", "x", *args)
        assert code == 2, err
        assert len(error_lines(err)) == 1 and "--id" in err
    with Bank.open(bank) as b:
        assert b.generation == gen and [r.reference for r in b.list()] == ["custom name"]
    # --id with two files into a bank that does not exist yet: not even created.
    code, _, _ = cli(capsys, "index", "--bank", tmp_path / "other", "--id", "x", delta, alpha)
    assert code == 2 and not (tmp_path / "other").exists()


def test_index_directory_recursively_names_by_stem(capsys, tmp_path):
    src = tmp_path / "videos"
    small_clip(src / "top_clip.mp4", 1601, 4)
    small_clip(src / "sub" / "deeper" / "inner_clip.mkv", 1602, 3)
    small_clip(src / "sub" / ".hidden_clip.mp4", 1603, 2)  # hidden: skipped
    (src / "sub" / "notes.txt").write_text("not a video")
    bank = tmp_path / "bank"
    code, out, err = cli(capsys, "index", "--bank", bank, src)
    assert code == 0, err
    assert error_lines(err) == []
    assert re.search(r"indexed 2 video\(s\): 7 frames, 7\.0 s of video in [\d.]+ s", err), err
    with Bank.open(bank) as b:
        assert [(r.reference, r.n_frames, r.source_name) for r in b.list()] == [
            ("inner_clip", 3, "inner_clip.mkv"),
            ("top_clip", 4, "top_clip.mp4"),
        ]
        assert b.snapshot().index.ntotal == 7


def test_index_workers_and_skip_nonref_flags(capsys, tmp_path):
    """--workers 2 --skip-nonref indexes the same files with the same frame times as --workers 0."""
    src = tmp_path / "videos"
    for i in range(3):
        small_clip(src / f"clip_{i}.mp4", 1610 + i, 3 + i)
    times = {}
    for flags in (["--workers", "0"], ["--workers", "2", "--skip-nonref"]):
        bank = tmp_path / f"bank{flags[1]}"
        code, _, err = cli(capsys, "index", "--bank", bank, *flags, src)
        assert code == 0, err
        assert re.search(r"indexed 3 video\(s\): 12 frames", err), err
        with Bank.open(bank) as b:
            times[flags[1]] = {r.reference: list(b.reference_embedding(r.reference).timestamps) for r in b.list()}
    assert times["0"] == times["2"] and len(times["0"]) == 3


def test_index_keyframes_flag(capsys, tmp_path):
    """--keyframes 4: a GOP up to 4 s long is stored as its keyframe alone; a bad value is a usage error."""
    src = tmp_path / "videos"
    write_clip(src / "short.mp4", scene_clip(1620, 0, 3), gop=1000)  # one GOP of 3 s
    bank = tmp_path / "bank"
    code, _, err = cli(capsys, "index", "--bank", bank, "--keyframes", "4", src)
    assert code == 0, err
    with Bank.open(bank) as b:
        assert list(b.reference_embedding("short").timestamps) == [0.0]
    code, _, err = cli(capsys, "index", "--bank", tmp_path / "bank2", "--keyframes", "-1", src)
    assert code == 2 and "keyframe_gop" in err


def test_index_fast_flag(capsys, tmp_path, monkeypatch):
    """--fast: references sampled at 0.5 frame/s in keyframe mode (2 s) with skip_nonref and, on a CPU with native
    bf16, in bf16; an explicit --fps / --keyframes / --precision wins; not with --ray."""
    import vmatch.parallel as parallel_mod
    from vmatch.options import DecodeOptions, FAST_REFERENCE_MODE

    seen = []
    real = parallel_mod.index_files

    def spy(bank, paths, embedder, **kw):
        d = kw["decode"]
        seen.append((d.fps, d.keyframe_gop, d.skip_nonref and d.skip_loop_filter, embedder.precision))
        return real(bank, paths, embedder, **kw)

    monkeypatch.setattr(parallel_mod, "index_files", spy)
    src = tmp_path / "videos"
    write_clip(src / "short.mp4", scene_clip(1640, 0, 6), gop=1000)  # one GOP of 6 s: decoded in full
    monkeypatch.setattr("vmatch.embed.cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr("vmatch.embed.runtime.cpu_has_native_bf16", lambda: False)  # resolve_precision's
    code, _, err = cli(capsys, "index", "--bank", tmp_path / "b1", "--device", "cpu", "--fast", src)
    assert code == 0, err
    with Bank.open(tmp_path / "b1") as b:
        assert list(b.reference_embedding("short").timestamps) == [0.0, 2.0, 4.0]
    code, _, err = cli(capsys, "index", "--bank", tmp_path / "b2", "--device", "cpu", "--fast", "--fps", "1",
                       "--keyframes", "8", "--precision", "fp32", src)
    assert code == 0, err
    with Bank.open(tmp_path / "b2") as b:
        assert list(b.reference_embedding("short").timestamps) == [0.0]  # the GOP stood for by its keyframe
    monkeypatch.setattr("vmatch.embed.cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr("vmatch.embed.runtime.cpu_has_native_bf16", lambda: True)  # resolve_precision's
    code, _, err = cli(capsys, "index", "--bank", tmp_path / "b3", "--device", "cpu", "--fast", src)
    assert code == 0, err
    assert seen == [(0.5, 2.0, True, "fp32"), (1.0, 8.0, True, "fp32"), (0.5, 2.0, True, "bf16")]
    code, _, err = cli(capsys, "index", "--bank", tmp_path / "b4", "--fast", "--ray-address", "local", src)
    assert code == 2 and "--ray" in err
    assert FAST_REFERENCE_MODE == DecodeOptions(fps=0.5, keyframe_gop=2.0, skip_nonref=True, skip_loop_filter=True)


def test_index_precision_flag(capsys, tmp_path):
    """--precision: fp32 indexes as the default does; one the CPU cannot run is a usage error before any bank
    exists; an unknown value is refused by the parser."""
    src = tmp_path / "videos"
    small_clip(src / "clip.mp4", 1630, 3)
    code, _, err = cli(capsys, "index", "--bank", tmp_path / "bank", "--device", "cpu", "--precision", "fp32", src)
    assert code == 0, err
    code, _, err = cli(capsys, "index", "--bank", tmp_path / "bank16", "--device", "cpu", "--precision", "fp16", src)
    assert code == 2 and "fp16" in err and "CUDA only" in err
    assert not (tmp_path / "bank16").exists()
    code, _, err = cli(capsys, "index", "--bank", tmp_path / "bank8", "--precision", "int8", src)
    assert code == 2 and "invalid choice" in err and not (tmp_path / "bank8").exists()


def test_reindex_same_id_replaces(capsys, tmp_path):
    a = small_clip(tmp_path / "clip_a.mp4", 1701, 5)
    b = small_clip(tmp_path / "clip_b.mp4", 1702, 3)
    bank = tmp_path / "bank"
    assert cli(capsys, "index", "--bank", bank, a)[0] == 0
    assert cli(capsys, "index", "--bank", bank, a)[0] == 0  # same file again: still one
    code, out, _ = cli(capsys, "list", "--bank", bank)
    assert code == 0 and len(out.splitlines()) == 1 and out.startswith("clip_a\t")
    assert cli(capsys, "index", "--bank", bank, "--id", "clip_a", b)[0] == 0  # other content, same id
    code, out, _ = cli(capsys, "list", "--bank", bank, "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["reference"], r["n_frames"], r["sha256"]) for r in rows] == [("clip_a", 3, sha256_file(b))]
    code, out, _ = cli(capsys, "info", "--bank", bank, "--json")
    info = json.loads(out)
    assert info["references"] == 1 and info["frames"] == 3


def test_default_bank_is_index_in_cwd(capsys, tmp_path, monkeypatch, match_set):
    monkeypatch.chdir(tmp_path)
    clip = small_clip(tmp_path / "here.mp4", 1801, 4)
    code, _, err = cli(capsys, "index", "here.mp4")
    assert code == 0, err
    assert (tmp_path / "index" / "bank.sqlite").is_file()
    assert ref_ids(tmp_path / "index") == ["here"]
    code, out, _ = cli(capsys, "list", "--json")
    assert code == 0 and json.loads(out)["reference"] == "here"
    code, out, _ = cli(capsys, "info", "--json")
    assert code == 0 and json.loads(out)["references"] == 1
    code, out, _ = cli(capsys, "match", "--json", clip)
    assert code == 0 and json.loads(out)["matches"][0]["reference"] == "here"
    code, out, _ = cli(capsys, "remove", "here")
    assert code == 0 and ref_ids(tmp_path / "index") == []
    # Elsewhere there is no ./index: a usage error naming it.
    monkeypatch.chdir(match_set.directory)
    code, _, err = cli(capsys, "info")
    assert code == 2 and "index" in err


# ------------------------------------------------------------------ remove, info, list
def _fake_bank(path: Path, ids: list[str]) -> Path:
    spec = FakeEmbedder().spec
    with Bank.open(path, create=True, model=spec) as bank:
        for i, rid in enumerate(ids):
            f = np.random.default_rng(i).normal(size=(5, spec.dim)).astype(np.float32)
            f /= np.linalg.norm(f, axis=1, keepdims=True)
            bank.add(VideoEmbedding(rid, np.arange(5.0), f, 5.0, spec.model_id))
    return path


def test_match_ray_stdout_carries_only_the_reports(capsys, tmp_path, monkeypatch):
    """`match --ray --json`: what Ray prints in this process while it runs (start-up lines, a
    raylet warning under load) goes to stderr; stdout is one JSON object per input, in order."""
    import vmatch.cli.match_cmd as match_cmd  # where `match --ray` looks up its engine
    from vmatch.types import MatchReport

    class NoisyEngine:  # stands in for RayEngine: prints on stdout as Ray's driver may
        def __enter__(self):
            print("(raylet) starting")
            return self

        def __exit__(self, *exc):
            print("(raylet) shutting down")
            return False

        def match(self, bank, files, **kw):
            for f in files:
                print("(raylet) [Warning] heartbeat late")
                yield MatchReport(query=str(f), duration=1.0, threshold=0.2)

    monkeypatch.setattr(match_cmd, "_ray_engine", lambda bank, args: NoisyEngine())
    bank = _fake_bank(tmp_path / "b", ["r1"])
    clip = small_clip(tmp_path / "q.mp4", 3, 2.0)
    missing = tmp_path / "missing.mp4"
    code, out, err = cli(capsys, "match", "--bank", bank, "--ray", "--json", "--threshold", "0.2", clip, missing)
    assert code == 1  # the missing input
    rows = [json.loads(line) for line in out.splitlines()]  # every stdout line is a report
    assert [r["query"] for r in rows] == [str(missing), str(clip)]
    assert err.count("(raylet)") == 3


def test_remove_existing_and_missing_ids(capsys, tmp_path):
    bank = _fake_bank(tmp_path / "bank", ["keep_me", "drop_me", "drop_too"])
    code, out, err = cli(capsys, "remove", "--bank", bank, "drop_me", "no_such_id", "drop_too")
    assert code == 1
    assert sorted(out.splitlines()) == ["removed drop_me", "removed drop_too"]
    lines = error_lines(err)
    assert len(lines) == 1 and "no_such_id" in lines[0] and str(bank) in lines[0]
    assert ref_ids(bank) == ["keep_me"]
    with Bank.open(bank) as b:
        assert b.snapshot().index.ntotal == 5
    code, out, err = cli(capsys, "remove", "--bank", bank, "keep_me")
    assert code == 0 and out.strip() == "removed keep_me" and err == ""
    assert ref_ids(bank) == []


def test_info_and_list(capsys, cli_bank, match_set):
    code, out, _ = cli(capsys, "info", "--bank", cli_bank, "--json")
    assert code == 0
    info = json.loads(out)
    assert info["references"] == 4 and info["frames"] == 110
    assert info["seconds"] == pytest.approx(110.0, abs=0.5)
    assert info["model_id"] == get_model_spec().model_id
    code, out, _ = cli(capsys, "info", "--bank", cli_bank)
    assert code == 0
    assert re.search(r"^references:\s+4$", out, re.M) and re.search(r"^frames:\s+110$", out, re.M)
    assert get_model_spec().model_id in out and str(cli_bank) in out

    code, out, _ = cli(capsys, "list", "--bank", cli_bank, "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["reference"] for r in rows] == sorted(MATCH_REFERENCES)
    for r in rows:
        path = match_set.references[r["reference"]]
        seconds = MATCH_REFERENCES[r["reference"]][1]
        assert r["n_frames"] == int(seconds) and r["duration"] == pytest.approx(seconds, abs=0.05)
        assert r["sha256"] == sha256_file(path) and r["source_name"] == path.name
    code, out, _ = cli(capsys, "list", "--bank", cli_bank)
    assert code == 0
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == sorted(MATCH_REFERENCES)
    assert "30 frames" in lines[0] and "20 frames" in lines[3]


# ------------------------------------------------------------------ usage errors (exit 2)
@pytest.mark.parametrize("command", [["match", "x.mp4"], ["info"], ["list"], ["remove", "some_id"]])
def test_missing_bank_is_a_usage_error(capsys, tmp_path, command):
    bank = tmp_path / "no_bank_here"
    code, out, err = cli(capsys, command[0], "--bank", bank, *command[1:])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and str(bank) in err and err.startswith("vmatch: error:")
    assert not bank.exists()


def test_corrupted_bank_is_a_usage_error(capsys, tmp_path, match_set):
    bank = tmp_path / "bank"
    bank.mkdir()
    garbage = np.random.default_rng(5).integers(0, 256, 8192, dtype=np.uint8).tobytes()
    (bank / "bank.sqlite").write_bytes(garbage)
    q = match_set.planted["trim"].query
    for command in (["match", q], ["match", "--json", q], ["info"], ["list"], ["remove", "x"],
                    ["index", match_set.references["ref_delta"]]):
        code, out, err = cli(capsys, command[0], "--bank", bank, *command[1:])
        assert code == 2, (command, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "corrupted" in lines[0] and str(bank) in lines[0], (command, err)
        assert out == ""
    assert (bank / "bank.sqlite").read_bytes() == garbage  # never "repaired" by overwriting


def _damaged_bank(path: Path, how: str) -> Path:
    spec = FakeEmbedder().spec
    with Bank.open(path, create=True, model=spec) as bank:
        for i in range(30):
            f = np.random.default_rng(i).normal(size=(200, spec.dim)).astype(np.float32)
            f /= np.linalg.norm(f, axis=1, keepdims=True)
            bank.add(VideoEmbedding(f"r{i}", np.arange(200.0), f, 200.0, spec.model_id))
    db = path / "bank.sqlite"
    if how == "damaged_pages":  # a valid header and schema, noise over pages in the middle
        data = bytearray(db.read_bytes())
        mid = len(data) // 2
        data[mid : mid + 20000] = np.random.default_rng(1).integers(0, 256, 20000, dtype=np.uint8).tobytes()
        db.write_bytes(bytes(data))
    else:
        with sqlite3.connect(db) as conn:
            conn.execute("DROP TABLE refs")
    return path


@pytest.mark.parametrize("how", ["damaged_pages", "missing_table"])
def test_damaged_sqlite_bank_is_a_usage_error(capsys, tmp_path, match_set, how):
    """A bank.sqlite that SQLite opens but cannot read through (damaged pages, a table gone) is
    reported as corrupted (exit 2, one line), never as a traceback or as a failure of the inputs."""
    q = match_set.planted["trim"].query
    for command in (["info"], ["list"], ["match", "--json", q], ["remove", "r3"],
                    ["index", match_set.references["ref_delta"]]):
        bank = _damaged_bank(tmp_path / f"{how}_{command[0]}", how)
        code, out, err = cli(capsys, command[0], "--bank", bank, *command[1:])
        assert code == 2, (command, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "corrupted" in lines[0] and str(bank) in lines[0], (command, err)
        assert "error" not in out
    from vmatch.errors import BankError

    with pytest.raises(BankError, match="corrupted"):
        with Bank.open(_damaged_bank(tmp_path / f"{how}_api", how)) as b:
            b.list()
            b.snapshot()


def test_model_mismatch_is_a_usage_error(capsys, tmp_path, match_set):
    clip = match_set.references["ref_delta"]
    fake_bank = tmp_path / "fake_bank"
    Bank.open(fake_bank, create=True, model=FakeEmbedder().spec).close()
    code, _, err = cli(capsys, "index", "--bank", fake_bank, "--model", "effnet-lite0-gem", clip)
    assert code == 2
    assert len(error_lines(err)) == 1 and FakeEmbedder().spec.model_id in err and get_model_spec().model_id in err
    assert ref_ids(fake_bank) == []
    # Without --model the bank's own model is used.
    code, _, err = cli(capsys, "index", "--bank", fake_bank, clip)
    assert code == 0, err
    assert ref_ids(fake_bank) == ["ref_delta"]
    # A bank of the default model refuses another registered model, and an unknown one.
    real_bank = tmp_path / "real_bank"
    Bank.open(real_bank, create=True).close()
    for model in ("effnet-lite0-gem-raw", "no-such-model"):
        code, _, err = cli(capsys, "index", "--bank", real_bank, "--model", model, clip)
        assert code == 2 and len(error_lines(err)) == 1 and model in err
    assert ref_ids(real_bank) == []


@pytest.mark.parametrize(
    "args",
    [["match", "--fps", "0", "x.mp4"], ["index", "--fps", "abc", "x.mp4"], ["index"], ["match", "--bank", "b"],
     ["index", "--batch-size", "0", "x.mp4"], ["index", "--workers", "-1", "x.mp4"], ["frobnicate"], ["match", "--min-score", "high", "x.mp4"], []],
)
def test_bad_flags_exit_2(capsys, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, *args)
    assert code == 2 and out == "" and err
    assert list(tmp_path.iterdir()) == []  # no bank created


# ------------------------------------------------------------------ bad inputs (exit 1)
def _check_bad_input_errors(err: str, bad_inputs) -> None:
    lines = error_lines(err)
    for name, (path, words) in bad_inputs.items():
        mine = [line for line in lines if str(path) in line]
        assert len(mine) == 1, (name, err)
        assert words in mine[0], (name, mine[0])
    assert len(lines) == len(bad_inputs), err
    assert not any(line.startswith(("Traceback", "  File")) for line in err.splitlines()), err


def test_index_bad_inputs_are_reported_and_skipped(capsys, tmp_path, bad_inputs, match_set):
    good = match_set.references["ref_delta"]
    paths = [p for p, _ in bad_inputs.values()]
    args = paths[:3] + [good] + paths[3:]  # failures before and after the good file
    bank = tmp_path / "bank"
    code, out, err = cli(capsys, "index", "--bank", bank, *args)
    assert code == 1
    _check_bad_input_errors(err, bad_inputs)
    assert re.search(r"indexed 1 video\(s\): 20 frames", err), err
    with Bank.open(bank) as b:
        assert [(r.reference, r.n_frames) for r in b.list()] == [("ref_delta", 20)]
        assert b.snapshot().index.ntotal == 20
    # Only bad inputs: exit 1, nothing written.
    code, _, err = cli(capsys, "index", "--bank", bank, *paths)
    assert code == 1
    assert ref_ids(bank) == ["ref_delta"]


def test_match_bad_inputs_give_error_objects(capsys, cli_bank, bad_inputs, match_set, model_threshold):
    good = match_set.planted["trim"].query
    paths = [p for p, _ in bad_inputs.values()]
    code, out, err = cli(capsys, "match", "--bank", cli_bank, "--json", paths[0], good, *paths[1:])
    assert code == 1
    _check_bad_input_errors(err, bad_inputs)
    objs = [json.loads(line) for line in out.splitlines()]
    assert len(objs) == len(paths) + 1
    by_query = {o["query"]: o for o in objs}
    assert set(by_query) == {str(p) for p in paths} | {str(good)}
    for name, (path, words) in bad_inputs.items():
        o = by_query[str(path)]
        assert set(o) == {"query", "duration", "threshold", "error"}, o
        assert str(path) in o["error"] and words in o["error"] and "\n" not in o["error"]
        assert o["threshold"] == pytest.approx(model_threshold, abs=1e-6)
    ok = by_query[str(good)]
    assert set(ok) == {"query", "duration", "threshold", "matches"}
    assert ok["matches"][0]["reference"] == "ref_alpha"
    # The text table reports the errors too.
    code, out, err = cli(capsys, "match", "--bank", cli_bank, paths[0], good)
    assert code == 1 and "ERROR" in out and "ref_alpha" in out


# ------------------------------------------------------------------ interruption
N_KILL_VIDEOS = 8
KILL_SECONDS = 25


@pytest.fixture(scope="session")
def kill_videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("kill_videos")
    return [write_clip(d / f"kv_{i}.mp4", scene_clip(1900 + i, 0, KILL_SECONDS)) for i in range(N_KILL_VIDEOS)]


def _sigint_default() -> None:
    """In the child: SIGINT back to its default, so that Python installs its KeyboardInterrupt
    handler even when the tests run in the background (a shell starts background jobs with SIGINT
    ignored, and Python keeps an inherited SIG_IGN)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_index_and_wait_for_first_reference(bank: Path, videos: list[Path]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "vmatch.cli", "index", "--bank", str(bank), *map(str, videos)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_default)
    db = bank / "bank.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"index ended (rc {proc.returncode}) before it could be interrupted: {err}")
        if db.exists():
            try:  # read-only: the poll itself must not write to the bank
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                    if conn.execute("SELECT count(*) FROM refs").fetchone()[0] >= 1:
                        return proc
            except sqlite3.Error:
                pass  # not created yet
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no reference was written within 120 s")


def _check_complete(bank_dir: Path) -> dict[str, VideoEmbedding]:
    """Every listed reference holds all of its frames; the frame index holds exactly those."""
    with Bank.open(bank_dir) as bank:
        refs = bank.list()
        assert refs
        embs = {r.reference: bank.reference_embedding(r.reference) for r in refs}
        for r in refs:
            assert r.n_frames == KILL_SECONDS == len(embs[r.reference]), r
            np.testing.assert_array_equal(embs[r.reference].timestamps, np.arange(float(KILL_SECONDS)))
        assert bank.snapshot().index.ntotal == sum(r.n_frames for r in refs)
        assert bank.info()["frames"] == sum(r.n_frames for r in refs)
    return embs


def test_kill_9_during_index_leaves_a_usable_bank(capsys, tmp_path, kill_videos):
    bank = tmp_path / "bank"
    proc = _start_index_and_wait_for_first_reference(bank, kill_videos)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = _check_complete(bank)
    assert 1 <= len(before) < N_KILL_VIDEOS, "the kill came too late to test anything"
    assert set(before) <= {p.stem for p in kill_videos}
    code, out, err = cli(capsys, "info", "--bank", bank, "--json")
    assert code == 0, err
    assert json.loads(out)["references"] == len(before)

    # A second run completes the bank (the dead writer's lock does not block it).
    code, _, err = cli(capsys, "index", "--bank", bank, *kill_videos)
    assert code == 0, err
    after = _check_complete(bank)
    assert sorted(after) == sorted(p.stem for p in kill_videos)
    # What survived the kill is exactly what a fresh index of the file gives.
    for rid, emb in before.items():
        np.testing.assert_allclose(emb.features, after[rid].features, atol=1e-5)


def test_ctrl_c_during_index_exits_130_with_a_loadable_bank(capsys, tmp_path, kill_videos):
    bank = tmp_path / "bank"
    proc = _start_index_and_wait_for_first_reference(bank, kill_videos)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    done = _check_complete(bank)
    assert 1 <= len(done) < N_KILL_VIDEOS, "the interruption came too late to test anything"
    code, out, err = cli(capsys, "info", "--bank", bank, "--json")
    assert code == 0 and json.loads(out)["references"] == len(done)
    # The bank was closed properly: its frame index is saved for the current generation.
    with Bank.open(bank) as b:
        assert (bank / f"index.{b.generation}.faiss").is_file()


# ------------------------------------------------------------------ signals without media: hash + lookup
def test_hash_then_lookup_gives_the_matches_of_match(capsys, cli_bank, match_set, tmp_path):
    """`vmatch hash` on the client + `vmatch lookup` on the server == `vmatch match` on the video:
    same references, same segments, scores within 1e-3 (features travel as float16)."""
    q = match_set.planted["insert"].query
    code, out, err = cli(capsys, "hash", "--out", tmp_path, q)
    assert code == 0, err
    line = json.loads(out)
    sig = Path(line["cnn"]["path"])
    assert sig == tmp_path / (q.stem + ".vmsig") and sig.is_file()
    assert line["md5"] == hashlib.md5(q.read_bytes()).hexdigest()
    assert line["sha1"] == hashlib.sha1(q.read_bytes()).hexdigest()
    # no frames, no media: ~1 KB of embedding and up to 2 x 512 keypoints (36 B) per sampled second
    assert sig.stat().st_size < 40_000 * 26
    code, out, _ = cli(capsys, "lookup", "--bank", cli_bank, "--json", sig)
    assert code == 0
    by_sig = json.loads(out)
    code, out, _ = cli(capsys, "match", "--bank", cli_bank, "--json", q)
    by_video = json.loads(out)
    assert by_sig["query"] == str(sig) and by_sig["duration"] == by_video["duration"]
    assert by_sig["threshold"] == by_video["threshold"]
    assert [m["reference"] for m in by_sig["matches"]] == [m["reference"] for m in by_video["matches"]]
    assert by_video["matches"] and by_video["matches"][0]["reference"] == "ref_bravo"
    for a, b in zip(by_sig["matches"], by_video["matches"]):
        assert a["score"] == pytest.approx(b["score"], abs=1e-3)
        assert [(s["query_start"], s["query_end"], s["reference_start"], s["reference_end"]) for s in a["segments"]] \
            == [(s["query_start"], s["query_end"], s["reference_start"], s["reference_end"]) for s in b["segments"]]


def test_lookup_bad_signal_files(capsys, cli_bank, match_set, tmp_path):
    """Garbage, a truncated signal, and a signal of another model: one error line each naming the
    file, an "error" object in the JSON, the good file still answered, exit 1."""
    from vmatch.embed import FakeEmbedder
    from vmatch.sample import embed_video
    from vmatch.signals import cnn

    q = match_set.planted["trim"].query
    code, out, _ = cli(capsys, "hash", "--out", tmp_path, q)
    good = Path(json.loads(out)["cnn"]["path"])
    garbage = tmp_path / "garbage.vmsig"
    garbage.write_bytes(b"not a signal at all")
    truncated = tmp_path / "truncated.vmsig"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    fake = FakeEmbedder()
    other = cnn.write(tmp_path / "other.vmsig", embed_video(q, fake), model=fake.spec.to_dict(), fps=1.0)
    code, out, err = cli(capsys, "lookup", "--bank", cli_bank, "--json", garbage, truncated, other, good)
    assert code == 1
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["query"] for r in rows] == [str(garbage), str(truncated), str(other), str(good)]
    assert all("error" in r and "matches" not in r for r in rows[:3])
    assert "not a vmatch-cnn-signal file" in rows[0]["error"] and "model" in rows[2]["error"]
    assert rows[3]["matches"] and rows[3]["matches"][0]["reference"] == match_set.planted["trim"].reference
    errs = err.strip().splitlines()
    assert len(errs) == 3 and all(str(p) in e for p, e in zip((garbage, truncated, other), errs))


# ------------------------------------------------------------------ hostile and unusual inputs (issue 17)
def _npy_bytes(a) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def _forged_signal(path: Path, model_id: str, ts, feats=None, *, features_raw: bytes | None = None) -> Path:
    import zipfile

    from vmatch.verify import empty

    header = {"format": "vmatch-cnn-signal", "version": 2, "model_id": model_id, "model": {}, "video_id": "v",
              "duration": 10.0, "fps": 1.0, "n_blank": 0, "sha256": ""}
    n = len(np.asarray(ts).reshape(-1))
    e = empty()
    none = type(e)(np.zeros(n, np.int32), e.coords, e.descriptors, e.static,
                   type(e)(np.zeros(n, np.int32), e.coords, e.descriptors, e.static))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("header.npy", _npy_bytes(np.frombuffer(json.dumps(header).encode(), np.uint8)))
        zf.writestr("timestamps.npy", _npy_bytes(ts))
        zf.writestr("features.npy", features_raw if features_raw is not None else _npy_bytes(feats))
        for k, v in none.to_arrays().items():  # frames without keypoints
            zf.writestr(f"{k}.npy", _npy_bytes(v))
    return path


def test_lookup_malformed_signals_are_named_and_the_rest_answered(capsys, cli_bank, match_set, tmp_path):
    """A signal declaring 10^10 x 256 features, 1-D features, features of the wrong width, and
    timestamps of the wrong length: one error line each naming the file, no traceback, the good
    signal after them still answered, exit 1."""
    import io

    with Bank.open(cli_bank) as b:
        model_id = b.model_id
    q = match_set.planted["trim"].query
    code, out, _ = cli(capsys, "hash", "--out", tmp_path, q)
    good = Path(json.loads(out)["cnn"]["path"])
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f2", "fortran_order": False, "shape": (10**10, 256)})
    bad = [
        _forged_signal(tmp_path / "huge.vmsig", model_id, np.arange(3.0), features_raw=hdr.getvalue() + bytes(64)),
        _forged_signal(tmp_path / "flat.vmsig", model_id, np.arange(4.0), np.ones(4, np.float16)),
        _forged_signal(tmp_path / "narrow.vmsig", model_id, np.arange(4.0), np.ones((4, 16), np.float16)),
        _forged_signal(tmp_path / "short_ts.vmsig", model_id, np.arange(3.0), np.ones((4, 256), np.float16)),
    ]
    code, out, err = cli(capsys, "lookup", "--bank", cli_bank, "--json", *bad, good)
    assert code == 1 and "Traceback" not in err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["query"] for r in rows] == [str(p) for p in (*bad, good)]
    for p, r, words in zip(bad, rows, ("declares (10000000000, 256)", "2-D", "16-d", "3 timestamps for 4")):
        assert "matches" not in r and r["error"].startswith(f"{p}: ") and words in r["error"]
    assert rows[-1]["matches"][0]["reference"] == match_set.planted["trim"].reference
    assert len(error_lines(err)) == len(bad)


def test_lookup_hash_list_skips_bad_lines_only(capsys, tmp_path):
    """A list with a byte order mark, a malformed line and a non-UTF-8 line: the good lines are
    still looked up (their match reported), each bad line named with its number, exit 1."""
    bank = tmp_path / "bank"
    md5 = "0123456789abcdef0123456789abcdef"
    pdq = "f" * 64
    src = tmp_path / "bank.txt"
    src.write_text(f"md5 {md5} ref-md5\npdq {pdq} ref-pdq\n")
    assert cli(capsys, "import", "--bank", bank, src)[0] == 0
    for kind, value, ref in (("md5", md5, "ref-md5"), ("pdq", pdq, "ref-pdq")):
        lst = tmp_path / f"received_{kind}.txt"
        lst.write_bytes(b"\xef\xbb\xbf" + f"{value}\n".encode() + b"not-a-hash\n" + b"caf\xe9 " + b"0" * 32 + b"\n")
        code, out, err = cli(capsys, "lookup", "--bank", bank, "--json", "--signal-type", kind, lst)
        assert code == 1 and "Traceback" not in err, err
        report = json.loads(out)
        assert [m["reference"] for m in report["matches"]] == [ref], (kind, report)
        errs = error_lines(err)
        assert len(errs) == 2 and f"{lst}:2:" in errs[0] and f"{lst}:3: not UTF-8" in errs[1], errs
        clean = tmp_path / f"clean_{kind}.txt"
        clean.write_bytes(b"\xef\xbb\xbf" + f"{value}\n".encode())  # a BOM alone costs nothing
        code, out, err = cli(capsys, "lookup", "--bank", bank, "--json", "--signal-type", kind, clean)
        assert code == 0 and [m["reference"] for m in json.loads(out)["matches"]] == [ref], err


def test_hash_and_export_long_names(capsys, tmp_path):
    """`hash` on a 250-character file name writes both signal files (names cut to 255 bytes, no
    temporary file left) and goes on with the next video; `export` of a 250-character id writes
    its vPDQ file; an --out that cannot be a directory is one error line, exit 2."""
    long_video = small_clip(tmp_path / ("v" * 250 + ".mp4"), 1701, 2.0)
    other = small_clip(tmp_path / "other.mp4", 1702, 2.0)
    out_dir = tmp_path / "sigs"
    code, out, err = cli(capsys, "hash", "--out", out_dir, long_video, other)
    assert code == 0 and "Traceback" not in err, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["file"] for line in lines] == [str(long_video), str(other)]
    for line in lines:
        for key in ("cnn", "vpdq"):
            p = Path(line[key]["path"])
            assert p.is_file() and len(p.name.encode()) <= 255
    assert sorted(p.name for p in out_dir.iterdir() if p.name.startswith(".")) == []
    long_id = "r" * 250
    bank = tmp_path / "bank"
    vp = Path(lines[0]["vpdq"]["path"])
    assert cli(capsys, "import", "--bank", bank, "--signal-type", "vpdq", "--id", long_id, vp)[0] == 0
    code, out, err = cli(capsys, "export", "--bank", bank, "--signal-type", "vpdq", "--out", tmp_path / "exp")
    assert code == 0 and "Traceback" not in err, err
    written = Path(out.strip())
    assert written.is_file() and written.name.startswith("r" * 200) and len(written.name.encode()) <= 255
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code, out, err = cli(capsys, "export", "--bank", bank, "--signal-type", "vpdq", "--out", blocker / "sub")
    assert code == 2 and "Traceback" not in err
    assert len(error_lines(err)) == 1 and str(blocker / "sub") in err


@pytest.mark.parametrize("args", [
    ["match", "--threshold", "nan"], ["match", "--threshold", "1e400"], ["match", "--min-score", "inf"],
    ["match", "--threshold", "2"], ["lookup", "--threshold", "nan"],
])
def test_non_finite_or_out_of_range_scores_are_usage_errors(capsys, cli_bank, match_set, args):
    """Refused before any work (they would print NaN/Infinity, which is not JSON)."""
    code, out, err = cli(capsys, *args, "--bank", cli_bank, "--json", match_set.planted["trim"].query)
    assert code == 2 and "Traceback" not in err and out == ""
    assert "finite number within [-1, 1]" in err


@pytest.mark.parametrize("args, words", [
    (["--port", "99999"], "1..65535"), (["--max-upload-mb", "nan"], "finite number > 0"),
    (["--max-upload-mb", "inf"], "finite number > 0"), (["--job-timeout", "-1"], "finite number > 0"),
])
def test_serve_bad_numbers_are_usage_errors(capsys, tmp_path, args, words):
    code, out, err = cli(capsys, "serve", "--bank-root", tmp_path, *args)
    assert code == 2 and "Traceback" not in err and words in err


def test_index_refuses_a_still_image(capsys, tmp_path):
    import av

    png = tmp_path / "picture.png"
    with av.open(str(png), "w", format="image2") as c:
        s = c.add_stream("png", rate=1)
        s.width, s.height, s.pix_fmt = 32, 24, "rgb24"
        for pkt in [*s.encode(av.VideoFrame.from_ndarray(np.zeros((24, 32, 3), np.uint8), format="rgb24")), *s.encode()]:
            c.mux(pkt)
    video = small_clip(tmp_path / "video.mp4", 1703, 2.0)
    code, out, err = cli(capsys, "index", "--bank", tmp_path / "bank", png, video)
    assert code == 1
    assert error_lines(err) == [f"vmatch: error: {png}: is a still image (png), not a video; vmatch matches videos"]
    assert ref_ids(tmp_path / "bank") == ["video"]


def test_serve_passes_allow_test_models(capsys, tmp_path, monkeypatch):
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    for flags, allowed in (([], False), (["--allow-test-models"], True)):
        code, _, err = cli(capsys, "serve", "--bank-root", tmp_path, "--port", "8123", *flags)
        assert code == 0, err
        assert seen["app"].state.vmatch.config.allow_test_models is allowed and seen["port"] == 8123


def test_ray_flag_never_takes_the_path_after_it():
    """`--ray` is a flag: `index --bank b --ray known_videos/` indexes known_videos/ (the README's
    example); the cluster is named with --ray-address."""
    from vmatch.cli import _build_parser

    args = _build_parser().parse_args(["index", "--bank", "b", "--ray", "known_videos/"])
    assert args.ray is True and args.paths == ["known_videos/"] and args.ray_address is None
    args = _build_parser().parse_args(["match", "--bank", "b", "--ray-address", "local", "--json", "q.mp4"])
    assert args.ray_address == "local" and args.paths == ["q.mp4"]

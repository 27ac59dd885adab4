"""Every matching path reports the same verified result (issue 14 item 4, issue 15): the Python
API (``Bank.match``), the CLI (``vmatch match --json``), a sharded bank (API and CLI), ``vmatch
lookup`` of the query's ``.vmsig`` signal, the HTTP service and Ray.

One bank of the real default model (EfficientNet-Lite0 on CPU, pair verification on), three
queries: a copy of a reference's middle hidden after unrelated footage, a mirrored copy (the
verification's mirrored keypoints) and unrelated footage. The reports are compared whole (every
score, segment and verification detail), the query's name aside.
"""

from __future__ import annotations

import json

import pytest

from copyclips import make_copy_set  # the shared synthetic copy set
from vmatch.cli import main

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("paths")
    refs, named = make_copy_set(d, 2300, n_refs=3)
    queries = [named["hidden"], named["mirrored"], named["unrelated"]]
    root = d / "banks"
    root.mkdir()
    bank = root / "main"
    assert main(["index", "--bank", str(bank), "--device", "cpu", str(refs)]) == 0
    from vmatch import Bank

    with Bank.open(bank, device="cpu") as b:
        expected = [b.match(q).to_dict() for q in queries]
    sharded = root / "sharded"  # beside it in the bank root, so the service serves it too
    assert main(["shard", "split", "--bank", str(bank), "--out", str(sharded), "--shards", "2"]) == 0
    return {"dir": d, "root": root, "bank": bank, "sharded": sharded, "queries": queries, "expected": expected}


def _without_query(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "query"}


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_the_reports_are_verified_copies_not_trivial(setup):
    """The comparison below means something: the copies are found and verified, the unrelated
    query is not, so a path that skipped verification or lost a match would differ."""
    hidden, mirrored, unrelated = setup["expected"]
    for rep, ref in ((hidden, "ref_a"), (mirrored, "ref_b")):
        cnn = [m for m in rep["matches"] if m["signal_type"] == "cnn"]
        assert [m["reference"] for m in cnn] == [ref], rep
        assert cnn[0]["content_inliers"] > 0 and cnn[0]["score"] >= rep["threshold"], cnn[0]
        assert cnn[0]["score"] <= cnn[0]["cnn_score"]
    seg = [m for m in hidden["matches"] if m["signal_type"] == "cnn"][0]["segments"][0]
    assert abs(seg["query_start"] - 3.0) <= 1.01 and abs(seg["reference_start"] - 2.0) <= 1.01
    assert [m for m in unrelated["matches"] if m["signal_type"] == "cnn"] == []


def test_cli_match_reports_what_the_api_reports(setup, capsys):
    capsys.readouterr()
    assert main(["match", "--bank", str(setup["bank"]), "--device", "cpu", "--json", *map(str, setup["queries"])]) == 0
    got = _json_lines(capsys.readouterr().out)
    assert got == setup["expected"]


def test_sharded_bank_reports_what_the_single_bank_reports(setup, capsys):
    sharded = setup["sharded"]
    from vmatch.shards import ShardedBank

    with ShardedBank.open(sharded, device="cpu") as sb:
        api = [sb.match(q).to_dict() for q in setup["queries"]]
    assert api == setup["expected"]
    capsys.readouterr()
    assert main(["match", "--bank", str(sharded), "--device", "cpu", "--json", *map(str, setup["queries"])]) == 0
    assert _json_lines(capsys.readouterr().out) == setup["expected"]


def test_lookup_of_the_vmsig_reports_what_matching_the_video_reports(setup, capsys):
    out = setup["dir"] / "signals"
    assert main(["hash", "--device", "cpu", "--out", str(out), *map(str, setup["queries"])]) == 0
    sigs = [out / f"{q.stem}.vmsig" for q in setup["queries"]]
    assert all(s.is_file() for s in sigs)
    capsys.readouterr()
    assert main(["lookup", "--bank", str(setup["bank"]), "--json", *map(str, sigs)]) == 0
    got = _json_lines(capsys.readouterr().out)
    assert [_without_query(r) for r in got] == [_without_query(r) for r in setup["expected"]]


def test_http_service_reports_what_the_api_reports(setup):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    from test_service import Server, auth  # the service test's subprocess server

    from vmatch.service.keys import KeyStore

    key, _ = KeyStore(setup["root"]).create("paths", "match")
    srv = Server(setup["root"], "--device", "cpu", "--workers", "1", "--threads", "2",
                 log=setup["dir"] / "server.log")
    srv.start()
    try:
        srv.wait_ready(key)
        with httpx.Client(base_url=srv.url, headers=auth(key), timeout=300) as c:
            for bank in ("main", "sharded"):  # the sharded bank is served by the same opener
                for q, expected in zip(setup["queries"], setup["expected"]):
                    with open(q, "rb") as fh:
                        r = c.post(f"/banks/{bank}/match", files={"file": (q.name, fh, "application/octet-stream")},
                                   params={"mode": "sync"})
                    assert r.status_code == 200, (bank, r.text)
                    assert _without_query(r.json()) == _without_query(expected), bank
            status = c.get("/status")
            assert status.status_code == 200, status.text
            served = {b["name"]: b for b in status.json()["banks"]}
            assert set(served) >= {"main", "sharded"}, status.json()
            assert served["sharded"]["references"] == 3 and served["sharded"]["fresh"], served
    finally:
        srv.stop()


@pytest.mark.slow
def test_ray_reports_what_the_local_cli_reports(setup, capsys):
    pytest.importorskip("ray", reason="Ray is not installed: pip install 'vmatch[ray]'")
    capsys.readouterr()
    assert main(["match", "--bank", str(setup["bank"]), "--device", "cpu", "--ray", "--json",
                 *map(str, setup["queries"])]) == 0
    assert _json_lines(capsys.readouterr().out) == setup["expected"]

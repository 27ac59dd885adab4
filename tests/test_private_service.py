"""The private (PSI) mode over HTTP, as a device and an operator use it: the real server (``vmatch
serve`` in a subprocess, the default model on CPU), a bank of tiny synthetic references.

A curator publishes the table; the device fetches it, checks its commitment and makes vouchers
locally (``vmatch.private.make_vouchers``), then submits the bundles of a hidden copy and of
unrelated footage: the two answers are the same but for the bundle id, so the device cannot tell
a banked video from another; the operator's results show the copy opened and matched to its
reference, the other below the threshold. Replayed, altered and foreign-table bundles are refused
before anything is processed; a bank without a table answers 404.
"""

from __future__ import annotations

import hashlib
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("nacl", reason="the private mode needs PyNaCl: pip install 'vmatch[private]'")
pytest.importorskip("Crypto", reason="the private mode needs pycryptodome: pip install 'vmatch[private]'")
pytest.importorskip("cryptography", reason="the private mode needs cryptography: pip install 'vmatch[private]'")

from test_service import Server, auth  # noqa: E402  (the service test's subprocess server)

from copyclips import make_copy_set  # noqa: E402  (the shared synthetic copy set)
from vmatch.cli import main  # noqa: E402
from vmatch.service.keys import KeyStore  # noqa: E402

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("private_service")
    refs, queries = make_copy_set(d, 2400)
    queries = {k: queries[k] for k in ("hidden", "unrelated")}  # a copy and a video of nothing banked
    root = d / "banks"
    root.mkdir()
    assert main(["index", "--bank", str(root / "main"), "--device", "cpu", str(refs)]) == 0
    store = KeyStore(root)
    keys = {scope: store.create(scope, scope)[0] for scope in ("match", "curate")}
    srv = Server(root, "--device", "cpu", "--workers", "1", "--threads", "2", log=d / "server.log")
    srv.start()
    try:
        srv.wait_ready(keys["curate"])
        with httpx.Client(base_url=srv.url, timeout=300) as c:
            yield {"dir": d, "root": root, "queries": queries, "keys": keys, "client": c, "server": srv}
    finally:
        srv.stop()


def _as(served, scope: str) -> dict:
    return auth(served["keys"][scope])


def _post_bundle(c, headers, data: bytes, bank: str = "main"):
    return c.post(f"/banks/{bank}/private/vouchers", content=data,
                  headers={**headers, "Content-Type": "application/octet-stream"})


def _results(c, headers, n: int, timeout: float = 120.0, **params) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        r = c.get("/banks/main/private/results", headers=headers, params=params)
        assert r.status_code == 200, r.text
        got = r.json()["results"]
        if len(got) >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def test_private_mode_over_http(served):
    from vmatch.embed import make_embedder
    from vmatch.private import make_vouchers
    from vmatch.private.bundle import Bundle, loads_bundle
    from vmatch.private.table import loads_table
    from vmatch.sample import embed_video

    c, dev, cur = served["client"], _as(served, "match"), _as(served, "curate")

    # no table yet: 404 naming the fix; publishing needs curate
    r = c.get("/banks/main/private/table", headers=dev)
    assert r.status_code == 404 and r.json()["error"] == "no_table", r.text
    assert "POST /banks/{bank}/private/table" in r.json()["detail"]
    assert c.post("/banks/main/private/table", headers=dev).status_code == 403

    r = c.post("/banks/main/private/table", headers=cur, params={"threshold": 3, "mode": "sync"})
    assert r.status_code == 201, r.text
    pub = r.json()
    assert pub["version"] == 1 and pub["threshold"] == 3 and pub["keys"] > 0 and pub["slots"] >= pub["keys"], pub
    assert len(pub["commitment"]) == 64 and pub["bytes"] > 32 * pub["slots"]

    # the device: fetch the table, check it against the commitment, make vouchers locally
    r = c.get("/banks/main/private/table", headers=dev)
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream", r.text
    assert r.headers["x-vmatch-table-commitment"] == pub["commitment"] == hashlib.sha256(r.content).hexdigest()
    assert len(r.content) == pub["bytes"]
    table = loads_table(r.content, commitment=r.headers["x-vmatch-table-commitment"])
    assert table.header.table_version == 1 and table.header.threshold == 3
    embedder = make_embedder(table.header.model_name, device="cpu")
    bundles = {k: make_vouchers(embed_video(p, embedder, keypoints="query", hash_file=False), table).to_bytes()
               for k, p in served["queries"].items()}
    ids = {k: loads_bundle(b).bundle_id.hex() for k, b in bundles.items()}

    # both answers are the same but for the bundle id: the device cannot tell banked from not
    answers = {k: _post_bundle(c, dev, b) for k, b in bundles.items()}
    for k, a in answers.items():
        assert a.status_code == 202 and a.json() == {"accepted": ids[k]}, a.text
    same = [a.content.replace(ids[k].encode(), b"<id>") for k, a in answers.items()]
    assert same[0] == same[1], same
    hdrs = [{h: v for h, v in a.headers.items() if h != "date"} for a in answers.values()]
    assert hdrs[0] == hdrs[1], hdrs

    # refused before processing: a replay (while processed or after), one byte flipped, a foreign table
    r = _post_bundle(c, dev, bundles["hidden"])
    assert r.status_code == 409 and r.json()["error"] == "replayed_bundle" and ids["hidden"] in r.json()["detail"], r.text
    flipped = bytearray(bundles["unrelated"])
    flipped[len(flipped) // 2] ^= 0x01
    r = _post_bundle(c, dev, bytes(flipped))
    assert r.status_code == 400 and r.json()["error"] == "invalid_bundle" and "digest" in r.json()["detail"], r.text
    b = loads_bundle(bundles["unrelated"])
    foreign = Bundle(bytes(16), "ab" * 32, b.vouchers, b.blobs).to_bytes()
    r = _post_bundle(c, dev, foreign)
    assert r.status_code == 400 and r.json()["error"] == "unknown_table" and "never published" in r.json()["detail"], r.text
    assert _post_bundle(c, dev, b"").status_code == 400  # empty_upload
    r = c.post("/banks/main/private/vouchers", content=bundles["hidden"], headers={**dev, "Content-Type": "text/plain"})
    assert r.status_code == 415, r.text

    # the operator's view: the copy opened and matched its reference, the other below the threshold
    assert c.get("/banks/main/private/results", headers=dev).status_code == 403
    results = {x["bundle"]: x for x in _results(c, cur, 2)}
    assert set(results) == set(ids.values()), results
    hidden, unrelated = results[ids["hidden"]], results[ids["unrelated"]]
    assert hidden["status"] == "opened" and hidden["table"] == pub["commitment"], hidden
    cnn = [m for m in hidden["report"]["matches"] if m["signal_type"] == "cnn"]
    assert [m["reference"] for m in cnn] == ["ref_a"], hidden
    assert cnn[0]["content_inliers"] > 0 and hidden["opened_frames"] >= 3  # verified, as plain matches are
    assert unrelated["status"] == "below_threshold" and set(unrelated) == {"bundle", "table", "vouchers", "status"}
    opened = c.get("/banks/main/private/results", headers=cur, params={"status": "opened"}).json()["results"]
    assert [x["bundle"] for x in opened] == [ids["hidden"]]
    r = _post_bundle(c, dev, bundles["unrelated"])  # recorded: still a replay
    assert r.status_code == 409, r.text

    # a second table: the old one's vouchers are still accepted, the new one is served
    r = c.post("/banks/main/private/table", headers=cur, params={"mode": "sync"})
    assert r.status_code == 201 and r.json()["version"] == 2 and r.json()["threshold"] == 3, r.text
    r2 = c.get("/banks/main/private/table", headers=dev)
    assert r2.headers["x-vmatch-table-commitment"] == r.json()["commitment"] != pub["commitment"]
    again = make_vouchers(embed_video(served["queries"]["unrelated"], embedder, keypoints="query", hash_file=False),
                          table).to_bytes()
    assert _post_bundle(c, dev, again).status_code == 202

    # a bank without references: no table to serve, none to publish
    assert c.post("/banks", json={"name": "empty"}, headers=cur).status_code == 201
    r = c.get("/banks/empty/private/table", headers=dev)
    assert r.status_code == 404 and r.json()["error"] == "no_table", r.text
    r = c.post("/banks/empty/private/table", headers=cur, params={"mode": "sync"})
    assert r.status_code == 400 and "no reference frames" in r.json()["detail"], r.text
    assert c.get("/banks/nope/private/table", headers=dev).status_code == 404

    schema = c.get("/openapi.json").json()
    assert {"/banks/{bank}/private/table", "/banks/{bank}/private/vouchers", "/banks/{bank}/private/results"} <= set(schema["paths"])
    assert schema["components"]["schemas"]["PrivateAccepted"]["properties"]["accepted"]["description"]
    assert served["server"].alive()

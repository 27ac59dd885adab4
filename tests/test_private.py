"""The private (PSI) mode, issue 16: a copy opens and is reported as plain matching reports it;
what does not match stays closed, also to a server holding its secret and every bank key, and
also after the bank changed; below the threshold the server's view does not tell how many frames
matched; the table tells the device nothing; altered and replayed bundles are refused.

One bank of the real default model (EfficientNet-Lite0 on CPU), tiny synthetic videos.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nacl", reason="the private mode needs PyNaCl: pip install 'vmatch[private]'")
pytest.importorskip("Crypto", reason="the private mode needs pycryptodome: pip install 'vmatch[private]'")
pytest.importorskip("cryptography", reason="the private mode needs cryptography: pip install 'vmatch[private]'")

from copyclips import make_copy_set  # noqa: E402  (the shared synthetic copy set)
from vmatch.bank import Bank  # noqa: E402
from vmatch.cli import main  # noqa: E402
from vmatch.keypoints import LocalFeatures  # noqa: E402
from vmatch.private import PrivateError, PrivateStore, make_vouchers, match_vouchers, publish  # noqa: E402
from vmatch.private import aead, group  # noqa: E402
from vmatch.private.bundle import SLOT_BYTES  # noqa: E402
from vmatch.private.lsh import reference_keys  # noqa: E402
from vmatch.private.server import open_bundle, open_shares  # noqa: E402
from vmatch.private.table import N_HASHES, bank_keys, loads_table  # noqa: E402
from vmatch.sample import embed_video  # noqa: E402
from vmatch.types import VideoEmbedding  # noqa: E402

@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("private")
    refs, queries = make_copy_set(d, 2400)
    bank_dir = d / "bank"
    assert main(["index", "--bank", str(bank_dir), "--device", "cpu", str(refs)]) == 0
    bank = Bank.open(bank_dir, device="cpu")
    table = publish(bank)
    embedder = bank.embedder()
    embs = {k: embed_video(p, embedder, keypoints="query", hash_file=False) for k, p in queries.items()}
    plain = {k: bank.match(p).to_dict() for k, p in queries.items()}
    yield {"dir": d, "refs": refs, "bank": bank, "table": table, "queries": queries, "embs": embs, "plain": plain}
    bank.close()


def _alpha(bank) -> bytes:
    with PrivateStore(bank.path) as store:
        return store.secret()


def _cnn(report: dict) -> list[str]:
    return [m["reference"] for m in report["matches"] if m["signal_type"] == "cnn"]


def _slice(emb: VideoEmbedding, keep: np.ndarray, times: np.ndarray | None = None) -> VideoEmbedding:
    keep = np.asarray(keep, bool)
    return VideoEmbedding(video_id=emb.video_id, timestamps=emb.timestamps[keep] if times is None else times,
                          features=emb.features[keep], duration=emb.duration, model_id=emb.model_id,
                          local=emb.local.select(keep))


def _opening_frames(setup, emb: VideoEmbedding) -> list[int]:
    """The frames of ``emb`` whose vouchers the server can open (each tried alone, no synthetic)."""
    alpha = _alpha(setup["bank"])
    out = []
    for i in range(len(emb)):
        b = make_vouchers(_slice(emb, np.arange(len(emb)) == i), setup["table"], synthetic_frames=0)
        if open_shares(b, setup["table"], alpha):
            out.append(i)
    return out


def test_copies_open_and_report_what_plain_matching_reports(setup):
    for name, ref in (("hidden", "ref_a"), ("mirrored", "ref_b")):
        assert _cnn(setup["plain"][name]) == [ref], setup["plain"][name]
        data = make_vouchers(setup["embs"][name], setup["table"]).to_bytes()
        res = match_vouchers(setup["bank"], data, source=name)
        assert res.status == "opened", res.to_dict()
        rep = res.report.to_dict()
        assert _cnn(rep) == [ref], rep
        seg = rep["matches"][0]["segments"][0]
        plain_seg = setup["plain"][name]["matches"][0]["segments"][0]
        # the opened frames lie inside the copy: the private segment is within the plain one (one step of slack)
        assert seg["query_start"] >= plain_seg["query_start"] - 1.01 and seg["query_end"] <= plain_seg["query_end"] + 1.01
        assert rep["matches"][0]["content_inliers"] > 0  # verified as plain matches are
    res = match_vouchers(setup["bank"], make_vouchers(setup["embs"]["unrelated"], setup["table"]).to_bytes())
    assert res.status == "below_threshold" and res.report is None
    assert set(res.to_dict()) == {"bundle", "table", "vouchers", "status"}  # no count of what opened


def test_non_matching_vouchers_open_to_nothing_even_with_the_secret_and_every_bank_key(setup):
    bank, table = setup["bank"], setup["table"]
    alpha = _alpha(bank)
    bundle = make_vouchers(setup["embs"]["unrelated"], table, synthetic_frames=0)
    assert open_shares(bundle, table, alpha) == {}
    # Every point the server could try: alpha*Q, every table entry, alpha*H(x) of every bank key.
    keys = list(bank_keys(bank, table.header.keys))
    candidates = [table.entry(s) for s in range(table.header.slots)]
    candidates += [group.mul(alpha, group.hash_to_group(k)) for k in keys]
    commitment = bytes.fromhex(table.commitment)
    bid = bundle.bundle_id
    for v, voucher in enumerate(bundle.vouchers[:40]):  # 40 vouchers x 3 slots x every candidate
        for j in range(N_HASHES):
            slot = voucher[j * SLOT_BYTES : (j + 1) * SLOT_BYTES]
            q = slot[:32]
            for s in [group.mul(alpha, q), *candidates]:
                k = aead.outer_key(s, commitment=commitment, bundle_id=bid, index=v, slot=j, q=q)
                assert aead.open_(k, slot[32:], bid) is None


def test_below_the_threshold_the_server_cannot_tell_how_many_frames_matched(setup):
    table = setup["table"]
    t = table.header.threshold
    alpha = _alpha(setup["bank"])
    copy = setup["embs"]["hidden"]
    opening = _opening_frames(setup, copy)
    assert len(opening) >= t, opening  # the copy would open as a whole
    unrelated = setup["embs"]["unrelated"]
    assert _opening_frames(setup, unrelated) == []
    # A: t-1 real matching frames among unrelated ones, no synthetic frame. B: no real match, t-1 synthetic.
    k = t - 1
    real = _slice(copy, np.isin(np.arange(len(copy)), opening[:k]))
    n_u = len(unrelated)
    mixed = VideoEmbedding(
        video_id="mixed", timestamps=np.arange(k + n_u, dtype=float), features=np.concatenate([real.features, unrelated.features]),
        duration=float(k + n_u), model_id=copy.model_id, local=LocalFeatures.concat([real.local, unrelated.local]))
    a = make_vouchers(mixed, table, synthetic_frames=0)
    b = make_vouchers(_slice(unrelated, np.ones(n_u, bool)), table, synthetic_frames=k)
    view_a, view_b = open_shares(a, table, alpha), open_shares(b, table, alpha)
    # What the server sees before the threshold: as many opened frames, payloads of one size and format.
    assert len(view_a) == len(view_b) == k
    assert {len(s) + len(i) for s, i in view_a.values()} == {len(s) + len(i) for s, i in view_b.values()}
    assert len(a.vouchers) == len(b.vouchers)  # the same number of frames in all
    ra, rb = open_bundle(a, table, alpha), open_bundle(b, table, alpha)
    assert not ra.above_threshold and not rb.above_threshold
    da = match_vouchers(setup["bank"], a.to_bytes()).to_dict()
    db = match_vouchers(setup["bank"], b.to_bytes()).to_dict()
    for d in (da, db):
        d.pop("bundle")
    assert da == db  # the same record: status and voucher count only


def test_the_table_tells_the_device_nothing_and_is_committed(setup):
    table = setup["table"]
    entries = [table.entry(s) for s in range(table.header.slots)]
    assert all(group.is_point(e) for e in entries)  # no empty marker: filled and random slots look alike
    assert len(set(entries)) == len(entries)
    data = table.to_bytes()
    assert loads_table(data, commitment=table.commitment).commitment == table.commitment
    altered = bytearray(data)
    altered[-5] ^= 1
    with pytest.raises(PrivateError, match="commitment"):
        loads_table(bytes(altered), commitment=table.commitment)
    # The device's view of a banked key and of another: three positions holding valid points.
    banked = reference_keys(setup["bank"].reference_embedding("ref_a").features[:1], table.header.keys)[0][0]
    other = os.urandom(10)
    for key in (banked, other):
        assert all(group.is_point(table.entry(p)) for p in table.positions(key))


def test_altered_and_replayed_bundles_are_refused_with_a_clear_error(setup):
    bank, table = setup["bank"], setup["table"]
    bundle = make_vouchers(setup["embs"]["hidden"], table)
    data = bundle.to_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    with pytest.raises(PrivateError, match="digest"):
        match_vouchers(bank, bytes(flipped), source="up.vmpv")
    with pytest.raises(PrivateError, match="up.vmpv"):
        match_vouchers(bank, data[:-100], source="up.vmpv")
    assert match_vouchers(bank, data).status == "opened"
    with pytest.raises(PrivateError, match="replayed"):
        match_vouchers(bank, data)
    # A sender that also rewrites the digest: an altered blob of an opened frame fails its tag.
    from vmatch.private.bundle import Bundle

    other = make_vouchers(setup["embs"]["hidden"], table)
    blobs = [bytes(b[:-1]) + bytes([b[-1] ^ 1]) for b in other.blobs]
    with pytest.raises(PrivateError, match="authentication tag"):
        match_vouchers(bank, Bundle(other.bundle_id, other.table_commitment, other.vouchers, blobs).to_bytes())
    # Vouchers moved into another bundle (a new id) are bound to theirs: they open nothing.
    moved = Bundle(os.urandom(16), other.table_commitment, other.vouchers, other.blobs)
    assert open_shares(moved, table, _alpha(bank)) == {}
    with pytest.raises(PrivateError, match="never published"):
        match_vouchers(bank, Bundle(os.urandom(16), "00" * 32, [], []).to_bytes())


def test_vouchers_made_against_an_old_table_stay_closed_after_the_bank_changes(setup, tmp_path):
    refs = setup["refs"]
    bank_dir = tmp_path / "bank2"
    assert main(["index", "--bank", str(bank_dir), "--device", "cpu", str(refs / "ref_b.mp4")]) == 0
    with Bank.open(bank_dir, device="cpu") as bank:
        old = publish(bank)
        stale = make_vouchers(setup["embs"]["hidden"], old, synthetic_frames=0)  # ref_a is not banked yet
        bank.add(refs / "ref_a.mp4")
        new = publish(bank)
        assert new.header.table_version == old.header.table_version + 1
        assert open_shares(stale, old, _alpha(bank)) == {}
        assert match_vouchers(bank, stale.to_bytes()).status == "below_threshold"
        fresh = match_vouchers(bank, make_vouchers(setup["embs"]["hidden"], new).to_bytes())
        assert fresh.status == "opened" and _cnn(fresh.report.to_dict()) == ["ref_a"]


def test_cli_publish_voucher_match(setup, tmp_path, capsys):
    bank_dir = tmp_path / "bank3"
    assert main(["index", "--bank", str(bank_dir), "--device", "cpu", str(setup["refs"])]) == 0
    capsys.readouterr()
    table = tmp_path / "table.vmpt"
    assert main(["private", "publish", "--bank", str(bank_dir), "--out", str(table)]) == 0
    pub = json.loads(capsys.readouterr().out)
    assert pub["bytes"] == table.stat().st_size and pub["version"] == 1
    out = tmp_path / "vouchers"
    q = setup["queries"]
    assert main(["private", "voucher", "--device", "cpu", "--table", str(table), "--commitment", pub["commitment"],
                 "--out", str(out), str(q["hidden"]), str(q["unrelated"]), str(tmp_path / "missing.mp4")]) == 1
    made = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [Path(m["file"]).name for m in made] == ["hidden.mp4", "unrelated.mp4"]  # the bad input named, others done
    assert main(["private", "voucher", "--table", str(table), "--commitment", "ab" * 32, "--out", str(out),
                 str(q["hidden"])]) == 2
    assert "commitment" in capsys.readouterr().err
    assert main(["private", "match", "--bank", str(bank_dir), "--json", *(m["vouchers"] for m in made)]) == 0
    res = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert res[0]["status"] == "opened" and _cnn(res[0]["report"]) == ["ref_a"]
    assert res[1]["status"] == "below_threshold"
    assert main(["private", "match", "--bank", str(bank_dir), made[0]["vouchers"]]) == 1
    assert "replayed" in capsys.readouterr().err


def test_device_side_runs_without_torch(setup, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from vmatch.onnx_embed import export_onnx

    model = export_onnx(tmp_path / "m.onnx")
    table = tmp_path / "t.vmpt"
    table.write_bytes(setup["table"].to_bytes())
    code = f"""
import sys
from vmatch.cli import main
rc = main(["private", "voucher", "--onnx", {str(model)!r}, "--table", {str(table)!r}, "--out", {str(tmp_path)!r},
           {str(setup["queries"]["hidden"])!r}])
assert rc == 0, rc
assert "torch" not in sys.modules, "the device side imported torch"
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    res = match_vouchers(setup["bank"], (tmp_path / "hidden.vmpv").read_bytes())
    assert res.status == "opened" and _cnn(res.report.to_dict()) == ["ref_a"]

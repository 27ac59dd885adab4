"""Exact hashes (MD5, SHA-1) in banks: stored at indexing, matched by `match`, imported and
exported as lists, looked up without media; hash-only references beside CNN references."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from vmatch import synth
from vmatch.bank import Bank
from vmatch.cli import main
from vmatch.embed import FakeEmbedder


def cli(capsys, *args):
    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def clips(tmp_path):
    out = {}
    for name, seed in (("alpha", 31), ("beta", 32)):
        frames = synth.scene_frames(seed, width=96, height=64, n_frames=80, fps=10)
        out[name] = synth.write_video(tmp_path / f"{name}.mp4", frames, fps=10, codec="mpeg4")
    return out


@pytest.fixture
def fake_bank(tmp_path):
    path = tmp_path / "bank"
    Bank.open(path, create=True, model=FakeEmbedder().spec).close()
    return path


def _digests(p: Path) -> dict[str, str]:
    data = p.read_bytes()
    return {"md5": hashlib.md5(data).hexdigest(), "sha1": hashlib.sha1(data).hexdigest()}


def test_index_stores_hashes_and_match_reports_them(capsys, clips, fake_bank):
    assert cli(capsys, "index", "--bank", fake_bank, clips["alpha"])[0] == 0
    d = _digests(clips["alpha"])
    with Bank.open(fake_bank) as bank:
        assert bank.hashes() == [("alpha", "md5", d["md5"]), ("alpha", "sha1", d["sha1"])]
        assert bank.lookup_hash("md5", d["md5"].upper()) == ["alpha"]  # canonical form
        assert bank.info()["hashes"] == {"md5": 1, "sha1": 1}
    code, out, _ = cli(capsys, "match", "--bank", fake_bank, "--json", clips["alpha"], clips["beta"])
    assert code == 0
    same, other = (json.loads(line) for line in out.splitlines())
    kinds = [(m["reference"], m["signal_type"]) for m in same["matches"]]
    assert kinds[:2] == [("alpha", "md5"), ("alpha", "sha1")] and ("alpha", "cnn") in kinds
    exact = same["matches"][0]
    assert exact["score"] == 1.0 and exact["segments"][0]["query_end"] == pytest.approx(same["duration"])
    assert all(m["signal_type"] == "cnn" for m in other["matches"])  # different bytes: no exact hit
    # Re-indexing replaces the hashes with the new file's; removing drops them.
    assert cli(capsys, "index", "--bank", fake_bank, "--id", "alpha", clips["beta"])[0] == 0
    with Bank.open(fake_bank) as bank:
        assert {v for _, _, v in bank.hashes()} == set(_digests(clips["beta"]).values())
        bank.remove(["alpha"])
        assert bank.hashes() == [] and not bank.has_hashes()


def test_import_export_lookup_without_media(capsys, clips, tmp_path, fake_bank):
    a, b = _digests(clips["alpha"]), _digests(clips["beta"])
    lst = tmp_path / "list.txt"
    lst.write_text(f"# shared list\nmd5 {a['md5']} known-1\nsha1 {b['sha1'].upper()} known-2\n\nmd5 {a['md5']} known-1\n")
    code, _, err = cli(capsys, "import", "--bank", fake_bank, lst)
    assert code == 0 and "imported 2 new hash(es) of 3 good line(s)" in err
    # CNN references and hash-only references live side by side
    assert cli(capsys, "index", "--bank", fake_bank, clips["beta"])[0] == 0
    code, out, _ = cli(capsys, "list", "--bank", fake_bank, "--json")
    rows = {r["reference"]: r for r in map(json.loads, out.splitlines())}
    assert rows["known-1"]["n_frames"] == 0 and rows["beta"]["n_frames"] > 0
    code, out, _ = cli(capsys, "export", "--bank", fake_bank, "--signal-type", "md5")
    assert code == 0 and out.splitlines() == sorted([f"md5 {a['md5']} known-1", f"md5 {b['md5']} beta"],
                                                    key=lambda l: l.split()[2])
    q = tmp_path / "q.txt"
    q.write_text(f"{a['md5']}\n{'0' * 32}\n")
    code, out, _ = cli(capsys, "lookup", "--bank", fake_bank, "--json", "--signal-type", "md5", q)
    rep = json.loads(out)
    assert code == 0 and [(m["reference"], m["signal_type"], m["score"]) for m in rep["matches"]] == [("known-1", "md5", 1.0)]
    # match of the media whose MD5 was shared finds the hash-only reference too
    code, out, _ = cli(capsys, "match", "--bank", fake_bank, "--json", clips["alpha"])
    kinds = {(m["reference"], m["signal_type"]) for m in json.loads(out)["matches"]}
    assert ("known-1", "md5") in kinds
    code, out, _ = cli(capsys, "match", "--bank", fake_bank, "--json", clips["beta"])
    kinds = {(m["reference"], m["signal_type"]) for m in json.loads(out)["matches"]}
    assert {("known-2", "sha1"), ("beta", "md5"), ("beta", "sha1"), ("beta", "cnn")} <= kinds


def test_malformed_hash_lines_are_skipped_with_their_line_number(capsys, tmp_path, fake_bank):
    """Each malformed line (wrong length, non-hex, unknown signal type, missing id, bad id) is
    reported with its line number and skipped; the good lines are imported; exit 1."""
    good1, good2 = "a" * 32, "b" * 40
    f = tmp_path / "list.txt"
    f.write_text("\n".join([
        f"md5 {good1} ok-1",            # 1
        "md5 zz12 id",                  # 2 non-hex, wrong length
        "sha256 " + "c" * 64 + " id",   # 3 unknown signal type
        "md5 " + "d" * 32,              # 4 no id
        "md5 " + "e" * 32 + " bad/id",  # 5 bad id
        "md5 " + "f" * 31 + " short",   # 6 wrong length
        f"sha1 {good2} ok-2",           # 7
    ]) + "\n")
    code, _, err = cli(capsys, "import", "--bank", fake_bank, f)
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("vmatch: error:")]
    assert [int(line.split(":")[3]) for line in lines] == [2, 3, 4, 5, 6]
    assert "invalid MD5 value" in lines[0] and "unknown signal type" in lines[1] and "invalid reference id" in lines[3]
    assert "imported 2 new hash(es) of 2 good line(s)" in err and "5 malformed line(s) skipped" in err
    with Bank.open(fake_bank) as bank:
        assert bank.hashes() == [("ok-1", "md5", good1), ("ok-2", "sha1", good2)]
    code, _, err = cli(capsys, "import", "--bank", fake_bank, tmp_path / "missing.txt")
    assert code == 2 and "missing.txt" in err


# ------------------------------------------------------------------ vPDQ in banks
@pytest.fixture
def reencoded(clips, tmp_path):
    """alpha decoded and re-encoded at another quality and codec: different bytes, same content."""
    from vmatch.decode import iter_frames

    frames = np.stack([f for _, f in iter_frames(clips["alpha"], fps=10, size=None)])
    return synth.write_video(tmp_path / "alpha_copy.mp4", frames, fps=10, codec="libx264", crf=30)


def test_vpdq_indexed_matched_and_reported_with_both_percentages(capsys, clips, reencoded, fake_bank):
    assert cli(capsys, "index", "--bank", fake_bank, "--vpdq", clips["alpha"], clips["beta"])[0] == 0
    with Bank.open(fake_bank) as bank:
        assert bank.info()["vpdq_references"] == 2 and len(bank.vpdq_of("alpha")) == 8
    code, out, _ = cli(capsys, "match", "--bank", fake_bank, "--json", reencoded)
    assert code == 0
    rep = json.loads(out)
    vp = [m for m in rep["matches"] if m["signal_type"] == "vpdq"]
    assert [m["reference"] for m in vp] == ["alpha"]  # beta: different content, no vPDQ match
    assert vp[0]["query_match_percent"] >= 80 and 0 <= vp[0]["compared_match_percent"] <= 100
    assert vp[0]["score"] == pytest.approx(vp[0]["query_match_percent"] / 100, abs=1e-3)
    assert vp[0]["segments"] == []
    assert not any(m["signal_type"] in ("md5", "sha1") for m in rep["matches"])  # other bytes


def test_vpdq_hash_import_lookup_export_without_media(capsys, clips, reencoded, tmp_path, fake_bank):
    code, out, err = cli(capsys, "hash", "--out", tmp_path / "sig", clips["alpha"])
    assert code == 0, err
    vfile = Path(json.loads(out)["vpdq"]["path"])
    assert vfile.name == "alpha.vpdq.txt" and len(vfile.read_text().splitlines()) == 8
    code, _, err = cli(capsys, "import", "--bank", fake_bank, "--signal-type", "vpdq", "--id", "shared-7", vfile)
    assert code == 0 and "shared-7 (8 frames)" in err
    # a platform checks the vPDQ it computed for an upload, without the bank ever seeing media
    code, out, _ = cli(capsys, "hash", "--out", tmp_path / "q", reencoded)
    qfile = Path(json.loads(out)["vpdq"]["path"])
    code, out, _ = cli(capsys, "lookup", "--bank", fake_bank, "--json", "--signal-type", "vpdq", qfile)
    rep = json.loads(out)
    assert code == 0 and [(m["reference"], m["signal_type"]) for m in rep["matches"]] == [("shared-7", "vpdq")]
    # and `match` of the upload itself finds the hash-only reference by its vPDQ
    code, out, _ = cli(capsys, "match", "--bank", fake_bank, "--json", reencoded)
    assert ("shared-7", "vpdq") in {(m["reference"], m["signal_type"]) for m in json.loads(out)["matches"]}
    # export writes the same hash back
    code, out, _ = cli(capsys, "export", "--bank", fake_bank, "--signal-type", "vpdq", "--out", tmp_path / "ex")
    assert code == 0 and (tmp_path / "ex" / "shared-7.vpdq.txt").read_text() == vfile.read_text()
    code, _, err = cli(capsys, "export", "--bank", fake_bank, "--signal-type", "vpdq")
    assert code == 2 and "--out" in err
    bad = tmp_path / "bad.vpdq.txt"
    bad.write_text("this is not a vpdq line\n")
    code, _, err = cli(capsys, "import", "--bank", fake_bank, "--signal-type", "vpdq", bad)
    assert code == 2 and "bad.vpdq.txt" in err


def test_shared_vpdq_finds_its_clip_even_mirrored(capsys, clips, tmp_path, fake_bank):
    """A vPDQ list made from a clip and imported without media finds the clip, also after a
    horizontal flip (the query's dihedral PDQ variants are matched too)."""
    from vmatch.decode import iter_frames

    code, out, _ = cli(capsys, "hash", "--out", tmp_path / "sig", clips["alpha"])
    vfile = Path(json.loads(out)["vpdq"]["path"])
    assert cli(capsys, "import", "--bank", fake_bank, "--signal-type", "vpdq", "--id", "shared", vfile)[0] == 0
    frames = np.stack([f for _, f in iter_frames(clips["alpha"], fps=10, size=None)])
    mirrored = synth.write_video(tmp_path / "mirrored.mp4", synth.hflip(frames), fps=10, codec="libx264", crf=28)
    code, out, _ = cli(capsys, "match", "--bank", fake_bank, "--json", mirrored)
    vp = [m for m in json.loads(out)["matches"] if m["signal_type"] == "vpdq"]
    assert [m["reference"] for m in vp] == ["shared"] and vp[0]["query_match_percent"] >= 80
    # without the dihedral variants the mirrored copy is not found by the plain rule
    from vmatch.signals.vpdq import hash_video, is_match, match_vpdq, read_file

    assert not is_match(match_vpdq(hash_video(mirrored), read_file(vfile)))


def test_pdq_list_import_lookup_and_match_of_a_video_holding_the_image(capsys, clips, tmp_path, fake_bank):
    """A shared list of image PDQ hashes (e.g. of a still taken from a video): imported without
    media, found by `match` in a video showing that image (even mirrored), by `lookup`, exported back."""
    from vmatch.decode import iter_frames
    from vmatch.signals.pdq import pdq_hash

    frames = np.stack([f for _, f in iter_frames(clips["alpha"], fps=10, size=None)])
    still_hex, quality = pdq_hash(frames[30])
    assert quality >= 50
    lst = tmp_path / "pdq.txt"
    lst.write_text(f"pdq {still_hex} still-3s\npdq {'g' * 64} bad\n")
    code, _, err = cli(capsys, "import", "--bank", fake_bank, lst)
    assert code == 1 and ":2: invalid PDQ value" in err  # the good line is still imported
    mirrored = synth.write_video(tmp_path / "mirrored.mp4", synth.hflip(frames), fps=10, codec="libx264", crf=23)
    for video in (clips["alpha"], mirrored):
        code, out, _ = cli(capsys, "match", "--bank", fake_bank, "--json", video)
        pdq = [m for m in json.loads(out)["matches"] if m["signal_type"] == "pdq"]
        assert [m["reference"] for m in pdq] == ["still-3s"], video
        assert pdq[0]["distance"] <= 31 and 2.0 <= pdq[0]["query_time"] <= 4.0
    code, out, _ = cli(capsys, "match", "--bank", fake_bank, "--json", clips["beta"])
    assert not [m for m in json.loads(out)["matches"] if m["signal_type"] == "pdq"]
    q = tmp_path / "q.txt"
    q.write_text(f"{still_hex}\n")
    code, out, _ = cli(capsys, "lookup", "--bank", fake_bank, "--json", "--signal-type", "pdq", q)
    m = json.loads(out)["matches"]
    assert code == 0 and [(x["reference"], x["distance"]) for x in m] == [("still-3s", 0)]
    code, out, _ = cli(capsys, "export", "--bank", fake_bank, "--signal-type", "pdq")
    assert out.splitlines() == [f"pdq {still_hex} still-3s"]

"""Tests of vmatch.signals.registry: the signal types (md5, sha1, pdq, vpdq, cnn) and their registry.

Each registered type round-trips a valid value and refuses a bad one with a message naming it; the
registry refuses an unknown name naming the valid ones; the classes' rules are the numbers the
bank, the matching code and the CLI use today.
"""

from __future__ import annotations

import hashlib
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vmatch.errors import UsageError
from vmatch.signals import registry
from vmatch.signals.registry import (
    EXACT_SIGNAL_TYPES,
    LIST_SIGNAL_TYPES,
    LOOKUP_SIGNAL_TYPES,
    SIGNAL_TYPES,
    STORED_SIGNAL_TYPES,
    CNNSignal,
    MD5Signal,
    PDQSignal,
    SHA1Signal,
    SignalType,
    VPDQSignal,
    get_signal_type,
    list_signal_type,
    signal_type_names,
)

PDQ_HEX = "e271017837246aaccddea259648fb7d62f435c89d9e99b2497763e216c8d055c"
VPDQ_TEXT = f"0,100,{PDQ_HEX},0.000\n25,90,{'0' * 64},1.000\n"


def _cnn_bytes(n: int = 7) -> bytes:
    """A valid .vmsig of ``n`` random frames with local features (as tests/test_signals_cnn.py builds)."""
    from vmatch.signals import cnn
    from vmatch.types import VideoEmbedding
    from vmatch.verify import LocalFeatures

    rng = np.random.default_rng(0)

    def local(mirrored):
        counts = rng.integers(0, 9, n).astype(np.int32)
        k = int(counts.sum())
        return LocalFeatures(counts, rng.uniform(0, 300, (k, 2)).astype(np.float32),
                             rng.integers(0, 256, (k, 32)).astype(np.uint8), rng.random(k) < 0.3,
                             local(False) if mirrored else None)

    f = rng.normal(size=(n, 16)).astype(np.float32)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    emb = VideoEmbedding("clip", np.arange(n) * 1.001 + 0.04, f, n + 0.5, "m-v1-abc", sha256="ab" * 32, n_blank=2,
                         local=local(True))
    return cnn.dumps(emb, model={"name": "m"}, fps=1.0)


#: (valid value as a user may give it, its canonical form or None: the same, a bad value, words
#: the refusal must contain).
CASES = {
    "md5": (" D41D8CD98F00B204E9800998ECF8427E\n", "d41d8cd98f00b204e9800998ecf8427e", "d41d8c", "32 hex digits"),
    "sha1": ("DA39A3EE5E6B4B0D3255BFEF95601890AFD80709", "da39a3ee5e6b4b0d3255bfef95601890afd80709",
             "xyz" * 13 + "x", "40 hex digits"),
    "pdq": (PDQ_HEX.upper(), PDQ_HEX, PDQ_HEX[:-1] + "g", "64 hex digits"),
    "vpdq": (VPDQ_TEXT, VPDQ_TEXT, "0,100,abc,0.000", "is not 64 hex digits"),
}


def test_registry_holds_the_five_types_in_order():
    assert list(SIGNAL_TYPES) == ["md5", "sha1", "pdq", "vpdq", "cnn"]
    assert all(SIGNAL_TYPES[name].name == name and issubclass(SIGNAL_TYPES[name], SignalType) for name in SIGNAL_TYPES)
    assert [MD5Signal, SHA1Signal, PDQSignal, VPDQSignal, CNNSignal] == list(SIGNAL_TYPES.values())
    with pytest.raises(TypeError):
        SIGNAL_TYPES["md5"] = MD5Signal  # immutable
    with pytest.raises(TypeError, match="signal type"):
        PDQSignal()


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_type_round_trips_a_valid_value(name):
    given, canonical, _, _ = CASES[name]
    t = get_signal_type(name)
    assert t.normalize(given) == canonical
    assert t.normalize(canonical) == canonical  # canonical values are fixed points


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_type_refuses_a_bad_value_naming_it(name):
    _, _, bad, words = CASES[name]
    with pytest.raises(UsageError) as err:
        get_signal_type(name).normalize(bad)
    assert words in str(err.value) and (bad[:20] in str(err.value) or name == "vpdq")


def test_vpdq_signal_string_form_and_empty_hash():
    from vmatch.signals.vpdq import from_text, to_signal_str

    sig = to_signal_str(from_text(VPDQ_TEXT))
    assert VPDQSignal.parse(sig) == [f.__class__(i, f.hex, f.quality, f.timestamp)
                                     for i, f in enumerate(from_text(VPDQ_TEXT))]
    assert VPDQSignal.normalize(sig) == VPDQ_TEXT.replace("25,90", "1,90")  # no frame numbers in that form
    with pytest.raises(UsageError, match="q.txt: no vPDQ frames in it"):
        VPDQSignal.normalize("  \n", source="q.txt")


def test_cnn_round_trips_a_signal_file_and_refuses_others():
    data = _cnn_bytes()
    assert CNNSignal.normalize(data) == data
    emb, header = CNNSignal.parse(data, source="x.vmsig")
    assert header["format"] == CNNSignal.FORMAT and header["version"] == CNNSignal.VERSION and len(emb) == 7
    with pytest.raises(UsageError, match="x.vmsig"):
        CNNSignal.normalize(b"not a zip", source="x.vmsig")
    with pytest.raises(UsageError, match="bytes of a .vmsig file"):
        CNNSignal.normalize("text")
    with pytest.raises(UsageError, match="not compared value to value"):
        CNNSignal.compare(data, data)


def test_unknown_names_are_refused_naming_the_valid_ones():
    with pytest.raises(UsageError, match=r"unknown signal type 'sha256'; expected one of md5, sha1, pdq, vpdq, cnn"):
        get_signal_type("sha256")
    with pytest.raises(UsageError, match="expected one of md5, sha1, pdq, vpdq, cnn"):
        get_signal_type(None)
    for bad in ("vpdq", "cnn", "MD5"):
        with pytest.raises(UsageError, match=rf"unsupported hash signal type '{bad}'; use one of md5, sha1, pdq$"):
            list_signal_type(bad)
    assert list_signal_type("pdq") is PDQSignal


def test_compare_follows_each_rule():
    assert MD5Signal.compare("D41D8CD98F00B204E9800998ECF8427E", "d41d8cd98f00b204e9800998ecf8427e").match
    assert not SHA1Signal.compare("0" * 40, "1" * 40).match
    near = f"{int(PDQ_HEX, 16) ^ (2**31 - 1):064x}"  # 31 bits flipped: still a match (inclusive)
    far = f"{int(PDQ_HEX, 16) ^ (2**32 - 1):064x}"
    c = PDQSignal.compare(PDQ_HEX, near)
    assert (c.match, c.details, c.score) == (True, {"distance": 31}, 1.0 - 31 / 256.0)
    assert not PDQSignal.compare(PDQ_HEX, far).match
    frames = VPDQSignal.parse(VPDQ_TEXT)
    c = VPDQSignal.compare(frames[:1], frames)  # the query's frame matches; the all-zero one is far
    assert c.match and c.score == 1.0 and c.details["compared_match_percent"] == 50.0


def test_hash_file_of_the_digests(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc" * 1000)
    assert MD5Signal.hash_file(p) == hashlib.md5(b"abc" * 1000).hexdigest()
    assert SHA1Signal.hash_file(p, chunk=7) == hashlib.sha1(b"abc" * 1000).hexdigest()


def test_pdq_hash_frames_is_pdq_hash_batch():
    from vmatch.signals.pdq import pdq_hash_batch

    rgb = np.random.default_rng(0).integers(0, 256, (2, 40, 48, 3), dtype=np.uint8)
    batch = pdq_hash_batch(rgb)
    assert PDQSignal.hash_frames(rgb) == list(zip(batch.hex(), batch.quality.tolist()))
    q = PDQSignal.query_frames([PDQ_HEX, "0" * 64])
    assert [(f.frame_number, f.hex, f.quality, f.timestamp) for f in q] == [(0, PDQ_HEX, 100, 0.0), (1, "0" * 64, 100, 0.0)]


def test_roles_and_name_queries():
    assert EXACT_SIGNAL_TYPES == signal_type_names(exact=True) == ("md5", "sha1")
    assert LIST_SIGNAL_TYPES == ("md5", "sha1", "pdq")
    assert STORED_SIGNAL_TYPES == ("md5", "sha1", "pdq", "vpdq")
    assert sorted(LOOKUP_SIGNAL_TYPES) == sorted(SIGNAL_TYPES)
    assert signal_type_names(in_lists=False, stored=True) == ("vpdq",)


# ------------------------------------------------------------------ the numbers in use today


def test_rules_are_the_banks_and_the_matchers():
    from vmatch import bank
    from vmatch.signals import cnn, exact, hashlist, vpdq

    sig = inspect.signature(bank.Bank.match_pdq).parameters
    assert (sig["radius"].default, sig["min_quality"].default) == (PDQSignal.DISTANCE_THRESHOLD, PDQSignal.QUALITY_THRESHOLD) == (31, 50)
    sig = inspect.signature(bank.Bank.match_vpdq).parameters
    assert sig["query_match_threshold"].default == VPDQSignal.QUERY_MATCH_THRESHOLD_PERCENT == 80.0
    assert sig["compared_match_threshold"].default == VPDQSignal.INDEX_MATCH_THRESHOLD_PERCENT == 0.0
    assert (vpdq.VPDQ_DISTANCE_THRESHOLD, vpdq.VPDQ_QUALITY_THRESHOLD) == (VPDQSignal.DISTANCE_THRESHOLD, VPDQSignal.QUALITY_THRESHOLD) == (31, 50)
    assert vpdq.VPDQ_QUERY_MATCH_THRESHOLD_PERCENT == VPDQSignal.QUERY_MATCH_THRESHOLD_PERCENT
    assert vpdq.VPDQ_INDEX_MATCH_THRESHOLD_PERCENT == VPDQSignal.INDEX_MATCH_THRESHOLD_PERCENT
    assert vpdq.SIGNAL_TYPE == VPDQSignal.name
    assert exact.EXACT_SIGNAL_TYPES == EXACT_SIGNAL_TYPES
    assert bank.LIST_SIGNAL_TYPES == LIST_SIGNAL_TYPES == hashlist.LINE_SIGNAL_TYPES
    assert (bank.PDQ, bank.VPDQ) == (PDQSignal.name, VPDQSignal.name)
    assert (cnn.FORMAT, cnn.VERSION, cnn.SUFFIX) == (CNNSignal.FORMAT, CNNSignal.VERSION, CNNSignal.FILE_SUFFIX)
    assert PDQSignal.score(31) == 1.0 - 31 / 256.0  # with_pdq_matches' score
    assert {t: MD5Signal.HEX_LENGTH if t == "md5" else SHA1Signal.HEX_LENGTH for t in EXACT_SIGNAL_TYPES} == {
        t: exact.HEX_LENGTHS[t] for t in EXACT_SIGNAL_TYPES}


@pytest.mark.parametrize("value", [PDQ_HEX, f" {PDQ_HEX.upper()}\t", PDQ_HEX[:-1], PDQ_HEX + "0", "z" * 64, 5, None, ""])
def test_pdq_normalize_is_the_banks(value):
    from vmatch.bank import _check_hashes, normalize_pdq

    def outcome(f):
        try:
            return f(value)
        except UsageError as e:
            return f"UsageError: {e}"

    assert outcome(PDQSignal.normalize) == outcome(normalize_pdq)
    assert outcome(lambda v: [("pdq", list_signal_type("pdq").normalize(v))]) == outcome(lambda v: _check_hashes({"pdq": v}))


def test_list_signal_type_message_is_the_banks():
    from vmatch.bank import _check_hashes

    for bad in ("vpdq", "sha256"):
        with pytest.raises(UsageError) as theirs:
            _check_hashes({bad: "00"})
        with pytest.raises(UsageError) as ours:
            list_signal_type(bad)
        assert str(ours.value) == str(theirs.value)


def test_cli_choices_are_the_registrys():
    from vmatch.cli import _build_parser

    parser = _build_parser()
    sub = next(a for a in parser._actions if a.choices and "lookup" in a.choices).choices

    def choices(cmd):
        return next(a.choices for a in sub[cmd]._actions if "--signal-type" in a.option_strings)

    assert tuple(choices("lookup")) == LOOKUP_SIGNAL_TYPES
    assert tuple(choices("import")) == tuple(choices("export")) == STORED_SIGNAL_TYPES


def test_vpdq_id_from_name_is_the_types_rule():
    from vmatch.signals.hashlist import vpdq_id_from_name

    for name in ("dir/clip.vpdq.txt", "clip.JSON", "clip.mp4.txt", "clip"):
        assert vpdq_id_from_name(name) == VPDQSignal.ref_id_from_name(name)
    assert VPDQSignal.ref_id_from_name("a/b/clip.vpdq.txt") == "clip"


def test_registry_imports_nothing_heavy():
    code = ("import sys, vmatch.signals.registry as r; r.get_signal_type('vpdq');"
            "print(sorted(m for m in ('numpy', 'torch', 'av', 'faiss') if m in sys.modules))")
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root).stdout
    assert out.strip() == "[]"
    assert registry.__name__ == "vmatch.signals.registry"

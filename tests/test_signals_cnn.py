"""The vmatch-cnn-signal file format: round trip, refusals."""

import io
import json

import numpy as np
import pytest

from vmatch.errors import ModelMismatchError, UsageError
from vmatch.signals import cnn
from vmatch.types import VideoEmbedding
from vmatch.verify import LocalFeatures


def _local(n, seed=0, mirrored=True):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 9, n).astype(np.int32)
    k = int(counts.sum())
    m = _local(n, seed + 1, mirrored=False) if mirrored else None
    return LocalFeatures(counts, rng.uniform(0, 300, (k, 2)).astype(np.float32),
                         rng.integers(0, 256, (k, 32)).astype(np.uint8), rng.random(k) < 0.3, m)


def _emb(n=7, d=16, seed=0, model_id="m-v1-abc"):
    f = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    return VideoEmbedding("clip", np.arange(n) * 1.001 + 0.04, f, n + 0.5, model_id, sha256="ab" * 32, n_blank=2,
                          local=_local(n, seed))


def test_round_trip(tmp_path):
    e = _emb()
    p = cnn.write(tmp_path / "x.vmsig", e, model={"name": "m"}, fps=1.0)
    got, header = cnn.read(p)
    assert header["format"] == "vmatch-cnn-signal" and header["version"] == 2 and header["model"] == {"name": "m"}
    assert (got.video_id, got.duration, got.model_id, got.sha256, got.n_blank) == ("clip", 7.5, "m-v1-abc", "ab" * 32, 2)
    np.testing.assert_array_equal(got.timestamps, e.timestamps)
    np.testing.assert_allclose(got.features, e.features, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(got.features, axis=1), 1.0, atol=1e-6)
    for a, b in ((got.local, e.local), (got.local.mirrored, e.local.mirrored)):  # the verification evidence
        np.testing.assert_array_equal(a.counts, b.counts)
        np.testing.assert_array_equal(a.descriptors, b.descriptors)
        np.testing.assert_array_equal(a.static, b.static)
        np.testing.assert_allclose(a.coords, b.coords, atol=1 / 32)  # stored in 1/16 px
    assert not list(tmp_path.glob(".*tmp*"))


def test_a_signal_without_local_features_is_refused():
    import dataclasses

    e = _emb()
    with pytest.raises(UsageError, match="clip: a signal needs the query's local features"):
        cnn.dumps(dataclasses.replace(e, local=None), model={}, fps=1.0)
    with pytest.raises(UsageError, match="clip: a signal needs the query's local features"):
        cnn.dumps(dataclasses.replace(e, local=_local(7, mirrored=False)), model={}, fps=1.0)
    # version 1 (no local features): refused with what to do
    buf = io.BytesIO()
    np.savez(buf, header=_header(version=1), timestamps=np.arange(2.0), features=np.ones((2, 8), np.float16))
    with pytest.raises(UsageError, match=r"old\.vmsig: vmatch-cnn-signal version 1 is not supported .* `vmatch hash`"):
        cnn.loads(buf.getvalue(), source="old.vmsig")
    # local features of another number of frames than the embeddings
    data = _signal(np.arange(3.0), np.ones((3, 8), np.float16), local_frames=2)
    with pytest.raises(UsageError, match=r"bad\.vmsig: inconsistent .*local features missing or not one per frame"):
        cnn.loads(data, source="bad.vmsig")


def test_empty_embedding_round_trip():
    from vmatch.verify import empty

    e = VideoEmbedding("black", np.zeros(0), np.zeros((0, 16), np.float32), 3.0, "m", n_blank=3, local=empty(True))
    got, _ = cnn.loads(cnn.dumps(e, model={}, fps=1.0))
    assert len(got) == 0 and got.duration == 3.0 and got.n_blank == 3


def test_refusals(tmp_path):
    data = cnn.dumps(_emb(), model={}, fps=1.0)
    with pytest.raises(UsageError, match="src: not a vmatch-cnn-signal file"):
        cnn.loads(b"hello", source="src")
    with pytest.raises(UsageError, match="src"):
        cnn.loads(data[: len(data) // 2], source="src")
    buf = io.BytesIO()
    np.savez(buf, header=np.frombuffer(json.dumps({"format": "vmatch-cnn-signal", "version": 99}).encode(), np.uint8),
             timestamps=np.zeros(0), features=np.zeros((0, 4), np.float16))
    with pytest.raises(UsageError, match="version 99 is not supported"):
        cnn.loads(buf.getvalue(), source="src")
    buf = io.BytesIO()
    np.savez(buf, header=np.array([object()], dtype=object), timestamps=np.zeros(0), features=np.zeros((0, 4)))
    with pytest.raises(UsageError, match="src"):  # pickled objects are never loaded
        cnn.loads(buf.getvalue(), source="src")
    with pytest.raises(ModelMismatchError, match="x.vmsig"):
        cnn.check_model(_emb(), "other-model", source="x.vmsig")
    with pytest.raises(UsageError, match="cannot read"):
        cnn.read(tmp_path / "missing.vmsig")


# ---------------------------------------------------------------------------------- hostile files
def _zip(members: dict[str, bytes]) -> bytes:
    """A ZIP holding ``members`` (name -> raw .npy bytes), deflated like numpy.savez_compressed."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, raw in members.items():
            zf.writestr(name, raw)
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(a), allow_pickle=False)
    return buf.getvalue()


def _header(**extra) -> np.ndarray:
    h = {"format": "vmatch-cnn-signal", "version": 2, "model_id": "m-v1-abc", "model": {}, "video_id": "v",
         "duration": 10.0, "fps": 1.0, "n_blank": 0, "sha256": "", **extra}
    return np.frombuffer(json.dumps(h).encode(), np.uint8)


def _signal(ts, feats, local_frames=None, **header) -> bytes:
    n = len(ts) if local_frames is None else local_frames
    local = {f"{k}.npy": _npy(v) for k, v in _local(max(0, n)).to_arrays().items()}
    return _zip({"header.npy": _npy(_header(**header)), "timestamps.npy": _npy(ts), "features.npy": _npy(feats),
                 **local})


def test_decompression_bomb_is_refused_before_it_expands():
    """A signal of compressed zeros whose members expand past the bound is refused from the ZIP's
    declared sizes, without allocating what it expands to."""
    import tracemalloc
    import zipfile

    n = cnn.MAX_EXPANDED_BYTES // (2 * 256) + 4096  # just over the bound, as a 256-d float16 array
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("header.npy", _npy(_header()))
        zf.writestr("timestamps.npy", _npy(np.arange(3.0)))
        with zf.open("features.npy", "w", force_zip64=True) as f:
            hdr = io.BytesIO()
            np.lib.format.write_array_header_1_0(hdr, {"descr": "<f2", "fortran_order": False, "shape": (n, 256)})
            f.write(hdr.getvalue())
            chunk = bytes(2**20)
            for _ in range(n * 512 // len(chunk) + 1):
                f.write(chunk)
    data = buf.getvalue()
    assert len(data) < 1_000_000  # a small upload
    tracemalloc.start()
    try:
        with pytest.raises(UsageError, match=rf"bomb\.vmsig: expands to \d+ bytes when decompressed; .* at most {cnn.MAX_EXPANDED_BYTES}"):
            cnn.loads(data, source="bomb.vmsig")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20


def test_declared_shape_larger_than_its_data_is_refused_unallocated():
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f2", "fortran_order": False, "shape": (10**10, 256)})
    data = _zip({"header.npy": _npy(_header()), "timestamps.npy": _npy(np.arange(3.0)),
                 "features.npy": hdr.getvalue() + bytes(64)})
    with pytest.raises(UsageError, match=r"big\.vmsig: features: declares \(10000000000, 256\)"):
        cnn.loads(data, source="big.vmsig")


def test_small_bound_applies():
    e = _emb(n=50, d=16)
    data = cnn.dumps(e, model={}, fps=1.0)
    assert len(cnn.loads(data)[0]) == 50
    with pytest.raises(UsageError, match="at most 1000 bytes"):
        cnn.loads(data, source="s", max_bytes=1000)


@pytest.mark.parametrize("ts, feats, msg", [
    (np.arange(4.0), np.zeros(4, np.float16), r"features must be 2-D \[frames, dim\], got shape \(4,\)"),
    (np.arange(4.0), np.zeros((0,), np.float16), r"features must be 2-D"),
    (np.arange(4.0), np.zeros((4, 0), np.float16), r"features are 0-d"),
    (np.arange(3.0), np.ones((4, 8), np.float16), r"3 timestamps for 4 feature rows"),
    (np.arange(4.0).reshape(2, 2), np.ones((2, 8), np.float16), r"timestamps must be 1-D"),
    (np.array([0.0, np.nan]), np.ones((2, 8), np.float16), r"NaN or infinite"),
    (np.array([1.0, 0.0]), np.ones((2, 8), np.float16), r"strictly increasing"),
    (np.arange(2.0), np.ones((2, 8), np.int64), r"dtype <i8 is not allowed"),
])
def test_malformed_arrays_are_named(ts, feats, msg):
    with pytest.raises(UsageError, match=r"bad\.vmsig: .*" + msg):
        cnn.loads(_signal(ts, feats), source="bad.vmsig")


def test_malformed_header_is_named():
    with pytest.raises(UsageError, match=r"bad\.vmsig: .*makes 256-d"):
        cnn.loads(_signal(np.arange(2.0), np.ones((2, 8), np.float16), model={"name": "m", "dim": 256}), source="bad.vmsig")
    with pytest.raises(UsageError, match=r"bad\.vmsig: inconsistent"):
        cnn.loads(_signal(np.arange(2.0), np.ones((2, 8), np.float16), duration="long"), source="bad.vmsig")
    with pytest.raises(UsageError, match=r"bad\.vmsig: inconsistent"):
        cnn.loads(_signal(np.arange(2.0), np.ones((2, 8), np.float16), duration=1e400), source="bad.vmsig")
    raw = _zip({"header.npy": _npy(np.frombuffer(b"\xff\xfe", np.uint8)), "timestamps.npy": _npy(np.arange(2.0)),
                "features.npy": _npy(np.ones((2, 8), np.float16))})
    with pytest.raises(UsageError, match=r"bad\.vmsig: not a readable"):
        cnn.loads(raw, source="bad.vmsig")


def test_wrong_width_for_the_bank_is_refused():
    e = _emb(n=3, d=16)
    cnn.check_model(e, "m-v1-abc", source="x.vmsig", dim=16)
    with pytest.raises(UsageError, match=r"x\.vmsig: features are 16-d, the bank's model m-v1-abc makes 256-d"):
        cnn.check_model(e, "m-v1-abc", source="x.vmsig", dim=256)


def test_oversized_file_is_refused_unread(tmp_path):
    p = tmp_path / "huge.vmsig"
    p.write_bytes(b"PK" + bytes(2000))
    with pytest.raises(UsageError, match=r"huge\.vmsig: is 2002 bytes; .* at most 1000"):
        cnn.read(p, max_bytes=1000)


def test_corrupt_deflate_stream_is_named():
    """A member whose compressed bytes are damaged (zlib.error inside zipfile) is a UsageError."""
    import zipfile

    data = bytearray(cnn.dumps(_emb(n=40, d=64), model={}, fps=1.0))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("features.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start + 20, start + 60):
        data[i] ^= 0x5A
    with pytest.raises(UsageError, match=r"bad\.vmsig: not a readable"):
        cnn.loads(bytes(data), source="bad.vmsig")

"""The vmatch-cnn-signal file format: round trip, refusals."""

import io
import json

import numpy as np
import pytest

from vmatch.errors import ModelMismatchError, UsageError
from vmatch.signals import cnn
from vmatch.types import VideoEmbedding


def _emb(n=7, d=16, seed=0, model_id="m-v1-abc"):
    f = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    return VideoEmbedding("clip", np.arange(n) * 1.001 + 0.04, f, n + 0.5, model_id, sha256="ab" * 32, n_blank=2)


def test_round_trip(tmp_path):
    e = _emb()
    p = cnn.write(tmp_path / "x.vmsig", e, model={"name": "m"}, fps=1.0)
    got, header = cnn.read(p)
    assert header["format"] == "vmatch-cnn-signal" and header["version"] == 1 and header["model"] == {"name": "m"}
    assert (got.video_id, got.duration, got.model_id, got.sha256, got.n_blank) == ("clip", 7.5, "m-v1-abc", "ab" * 32, 2)
    np.testing.assert_array_equal(got.timestamps, e.timestamps)
    np.testing.assert_allclose(got.features, e.features, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(got.features, axis=1), 1.0, atol=1e-6)
    assert not list(tmp_path.glob(".*tmp*"))


def test_empty_embedding_round_trip():
    e = VideoEmbedding("black", np.zeros(0), np.zeros((0, 16), np.float32), 3.0, "m", n_blank=3)
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

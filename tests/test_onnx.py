"""The embed stage without torch (vmatch/onnx_embed.py, issue 16): the ONNX export of the default
model gives the torch embedder's embeddings (cosine >= 0.999 per frame, same model_id), a whole
video's signal through the one sampling loop matches the torch one, the client path imports no
torch, and bad files are named with the reason."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("onnx", reason="pip install 'vmatch[onnx]' to test the ONNX export")
pytest.importorskip("onnxruntime", reason="pip install 'vmatch[client]' to test the ONNX embedder")

from vmatch import synth  # noqa: E402
from vmatch.embed import make_embedder  # noqa: E402
from vmatch.errors import ModelError, UsageError  # noqa: E402
from vmatch.onnx_embed import OnnxEmbedder, export_onnx  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_onnx(tmp_path_factory.mktemp("onnx") / "effnet.onnx")


@pytest.fixture(scope="module")
def torch_embedder():
    return make_embedder(device="cpu")


def test_export_gives_the_torch_embeddings(exported, torch_embedder):
    onnx_emb = OnnxEmbedder(exported, batch_size=3)
    assert onnx_emb.spec == torch_embedder.spec and onnx_emb.spec.model_id == torch_embedder.spec.model_id
    rng = np.random.default_rng(0)
    frames = np.concatenate([
        synth.scene_frames(7, width=224, height=224, n_frames=5, fps=1.0),
        rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8),  # noise
        np.full((1, 224, 224, 3), 200, np.uint8),  # flat
    ])
    a, b = torch_embedder.embed(frames), onnx_emb.embed(frames)
    assert b.shape == a.shape and b.dtype == np.float32
    cos = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.999, cos
    assert onnx_emb.embed(frames[:0]).shape == (0, a.shape[1])
    with pytest.raises(UsageError):
        onnx_emb.embed(frames[:, :100])


def test_video_signal_through_the_sampling_loop_matches(exported, torch_embedder, tmp_path):
    from vmatch.sample import embed_video

    video = synth.write_video(tmp_path / "v.mp4", synth.scene_frames(11, width=160, height=90, n_frames=100, fps=25),
                              fps=25, codec="mpeg4")
    a = embed_video(video, torch_embedder, keypoints="none")
    b = embed_video(video, OnnxEmbedder(exported), keypoints="none")
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    assert ((a.features * b.features).sum(axis=1)).min() >= 0.999


def test_client_path_imports_no_torch(exported, tmp_path):
    video = synth.write_video(tmp_path / "c.mp4", synth.scene_frames(12, width=64, height=48, n_frames=30, fps=10),
                              fps=10, codec="mpeg4")
    code = textwrap.dedent(f"""
        import sys
        from vmatch.onnx_embed import OnnxEmbedder
        from vmatch.sample import embed_video
        emb = embed_video({str(video)!r}, OnnxEmbedder({str(exported)!r}), keypoints="none")
        assert len(emb) == 3, len(emb)
        heavy = [m for m in ("torch", "torchvision", "faiss") if m in sys.modules]
        assert not heavy, heavy
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr


def test_bad_files_are_named(tmp_path, exported):
    with pytest.raises(ModelError, match="no such ONNX model file"):
        OnnxEmbedder(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"junk\.onnx: not a loadable ONNX model"):
        OnnxEmbedder(junk)
    import onnx

    plain = onnx.load(str(exported))
    del plain.metadata_props[:]
    stripped = tmp_path / "plain.onnx"
    onnx.save(plain, str(stripped))
    with pytest.raises(ModelError, match="not a vmatch embedder export"):
        OnnxEmbedder(stripped)
    with pytest.raises(UsageError, match="batch_size"):
        OnnxEmbedder(exported, batch_size=0)


def test_export_refuses_the_test_model_and_leaves_nothing(tmp_path):
    from vmatch.embed import FakeEmbedder

    with pytest.raises(UsageError, match="no network to export"):
        export_onnx(tmp_path / "fake.onnx", FakeEmbedder().spec)
    with pytest.raises(UsageError, match="unknown model"):
        export_onnx(tmp_path / "x.onnx", "no-such-model")
    assert list(tmp_path.iterdir()) == []


def test_cli_export_model_then_lookup_of_an_onnx_signal(tmp_path, capsys):
    """`vmatch export-model` writes a file a client loads; the client's .vmsig (ONNX embeddings
    through the one sampling loop) finds the copy in a bank indexed with torch."""
    import json

    from vmatch.cli import main
    from vmatch.sample import embed_video
    from vmatch.signals import cnn

    out = tmp_path / "m.onnx"
    assert main(["export-model", "--out", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == str(out) and info["dim"] == 256 and info["bytes"] == out.stat().st_size
    frames = synth.scene_frames(21, width=160, height=90, n_frames=150, fps=25)
    ref = synth.write_video(tmp_path / "ref.mp4", frames, fps=25, codec="mpeg4")
    query = synth.write_video(tmp_path / "q.mp4", np.ascontiguousarray(frames[25:125]), fps=25, codec="mpeg4")
    assert main(["index", "--bank", str(tmp_path / "bank"), "--device", "cpu", str(ref)]) == 0
    client = OnnxEmbedder(out)
    sig = cnn.write(tmp_path / "q.vmsig", embed_video(query, client), model=client.spec.to_dict(), fps=1.0)
    capsys.readouterr()
    assert main(["lookup", "--bank", str(tmp_path / "bank"), "--json", str(sig)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert [m["reference"] for m in rep["matches"] if m["signal_type"] == "cnn"] == ["ref"], rep

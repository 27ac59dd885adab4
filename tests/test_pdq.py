"""Tests of vmatch.signals.pdq: PDQ hashes in torch against Meta's reference (the ``pdqhash`` package).

The comparison tests need ``pdqhash`` (``pip install pdqhash``, a test-only dependency that builds the
ThreatExchange C++ sources); they are skipped without it. Images are generated with numpy: smooth
random scenes of many sizes (odd ones, 64x64 which the reference hashes without filtering, up to
640x480), plus flat and nearly flat frames whose hashes are decided by float rounding noise alone.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vmatch.errors import UsageError
from vmatch.signals.pdq import (
    DIHEDRAL_NAMES,
    PDQBatch,
    bits_to_hex,
    hamming,
    hex_to_bits,
    pack_bits,
    pdq_hash,
    pdq_hash_batch,
    unpack_bits,
)

# (height, width): odd and even sizes, portrait and landscape, tiny (below the reference's minimum of
# 5 pixels a side), exactly 64x64 (no filtering in the reference), up to 640x480.
SIZES = [
    (64, 64), (65, 63), (5, 5), (7, 11), (48, 80), (96, 96), (100, 120), (127, 129), (128, 128),
    (144, 176), (180, 320), (199, 301), (240, 320), (256, 256), (288, 352), (320, 320), (333, 257),
    (360, 480), (401, 599), (480, 640), (640, 480), (64, 320), (600, 450), (4, 90),
]  # fmt: skip
PER_SIZE = 12

#: Transforms of an image whose hash should match each dihedral variant of the original.
TRANSFORMS = {
    "original": lambda im: im,
    "rotate90": lambda im: np.rot90(im, 1),
    "rotate180": lambda im: np.rot90(im, 2),
    "rotate270": lambda im: np.rot90(im, 3),
    "flip_x": lambda im: im[::-1],
    "flip_y": lambda im: im[:, ::-1],
    "transpose": lambda im: im.transpose(1, 0, 2),
    "transverse": lambda im: im.transpose(1, 0, 2)[::-1, ::-1],
}


def smooth_scene(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random RGB scene: bilinear-upsampled coarse noise, a few discs and bars, light noise."""
    rng = np.random.default_rng(seed)
    gh, gw = max(2, height // rng.integers(8, 40)), max(2, width // rng.integers(8, 40))
    coarse = rng.uniform(0, 255, (gh, gw, 3))
    ys = np.linspace(0, gh - 1, height)
    xs = np.linspace(0, gw - 1, width)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, gh - 1)
    x1 = np.minimum(x0 + 1, gw - 1)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    img = (
        coarse[y0][:, x0] * (1 - fy) * (1 - fx)
        + coarse[y1][:, x0] * fy * (1 - fx)
        + coarse[y0][:, x1] * (1 - fy) * fx
        + coarse[y1][:, x1] * fy * fx
    )
    yy, xx = np.mgrid[0:height, 0:width]
    for _ in range(int(rng.integers(0, 4))):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        radius = rng.uniform(0.05, 0.4) * min(height, width)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = rng.uniform(0, 255, 3)
    if rng.random() < 0.3:
        lo, hi = sorted(rng.integers(0, width, 2))
        img[:, lo : hi + 1] = rng.uniform(0, 255, 3)
    img += rng.normal(0, rng.uniform(0, 10), img.shape)
    return np.ascontiguousarray(np.clip(np.rint(img), 0, 255).astype(np.uint8))


def flat_scene(height: int, width: int, kind: int) -> np.ndarray:
    """Low-quality frames: constant, constant with +-1 noise, a faint gradient, a black frame."""
    rng = np.random.default_rng(1000 + kind)
    if kind == 0:
        return np.full((height, width, 3), 128, np.uint8)
    if kind == 1:
        base = np.full((height, width, 3), 77.0)
        return np.clip(base + rng.integers(-1, 2, base.shape), 0, 255).astype(np.uint8)
    if kind == 2:
        ramp = np.linspace(100, 104, width)[None, :, None]
        return np.ascontiguousarray(np.broadcast_to(np.rint(ramp), (height, width, 3)).astype(np.uint8))
    return np.zeros((height, width, 3), np.uint8)


def make_images() -> list[np.ndarray]:
    images: list[np.ndarray] = []
    for k, (h, w) in enumerate(SIZES):
        for i in range(PER_SIZE):
            images.append(smooth_scene(h, w, seed=100 * k + i))
    for kind in range(4):
        for h, w in ((64, 64), (120, 160), (333, 257)):
            images.append(flat_scene(h, w, kind))
    return images


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return make_images()


@pytest.fixture(scope="module")
def pdqhash_mod():
    return pytest.importorskip(
        "pdqhash", reason="pdqhash (Meta's PDQ reference, test-only: pip install pdqhash) is not installed"
    )


def _distances(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    return (np.asarray(ours, dtype=np.uint8) != np.asarray(theirs, dtype=np.uint8)).sum(axis=-1)


def _check_stats(dist: np.ndarray, dq: np.ndarray) -> None:
    dist = np.asarray(dist).ravel()
    assert np.median(dist) == 0, f"median Hamming distance {np.median(dist)}"
    assert np.percentile(dist, 99) <= 4, f"p99 Hamming distance {np.percentile(dist, 99)}"
    # On x86-64 the emulation is exact; leave room for reference builds with FMA contraction.
    assert (dist == 0).mean() >= 0.95, f"only {(dist == 0).mean():.1%} identical hashes"
    assert np.abs(dq).max() <= 2, f"quality differs by up to {np.abs(dq).max()}"


# --------------------------------------------------------------------------------------------------
# Against the reference
# --------------------------------------------------------------------------------------------------


def test_matches_pdqhash(images, pdqhash_mod):
    batch = pdq_hash_batch(images, exact=True)  # a list of many sizes: grouped internally
    assert batch.bits.shape == (len(images), 256) and batch.bits.dtype == np.uint8
    assert batch.quality.shape == (len(images),) and batch.quality.dtype == np.int32
    ref = [pdqhash_mod.compute(im) for im in images]
    dist = _distances(batch.bits, np.stack([r[0] for r in ref]))
    dq = batch.quality - np.array([r[1] for r in ref])
    _check_stats(dist, dq)


def test_dihedral_matches_pdqhash(images, pdqhash_mod):
    batch = pdq_hash_batch(images, dihedral=True, exact=True)
    assert batch.bits.shape == (len(images), 8, 256) and batch.dihedral
    ref = [pdqhash_mod.compute_dihedral(im) for im in images]
    theirs = np.stack([np.stack(r[0]) for r in ref])
    dist = _distances(batch.bits, theirs)
    dq = batch.quality - np.array([r[1] for r in ref])
    _check_stats(dist, dq)


def _flat(im: np.ndarray) -> bool:
    """Whether ``im`` is one of :func:`flat_scene`'s frames (at most 2 grey levels a pixel apart per
    channel, or a 4-level ramp): its hash is decided by float rounding noise alone (quality 0)."""
    return int(im.max()) - int(im.min()) <= 4


def _fast_vs_reference(images, ours, theirs_bits, theirs_quality, label):
    """Check the fast path's statistics against the reference on the textured images (flat frames:
    same quality only, their bits are rounding noise in both) and print how many are identical."""
    textured = np.array([not _flat(im) for im in images])
    dist = _distances(ours.bits, theirs_bits)
    dq = ours.quality - theirs_quality
    assert np.array_equal(dq[~textured], np.zeros((~textured).sum(), dq.dtype))
    d = dist[textured].ravel()
    print(
        f"\nfast path vs {label}: {textured.sum()} textured images, {d.size} hashes, "
        f"{(d == 0).sum()} bit-identical ({(d == 0).mean():.1%}), median {np.median(d):.0f}, "
        f"p99 {np.percentile(d, 99):.1f}, max {d.max()}; quality max |diff| {np.abs(dq).max()}, "
        f"{(dq == 0).mean():.1%} equal; flat frames: {(~textured).sum()}"
    )
    assert np.median(d) == 0, f"median Hamming distance {np.median(d)}"
    assert np.percentile(d, 99) <= 4, f"p99 Hamming distance {np.percentile(d, 99)}"
    assert (d == 0).mean() >= 0.9, f"only {(d == 0).mean():.1%} identical hashes"
    assert np.abs(dq).max() <= 2, f"quality differs by up to {np.abs(dq).max()}"


def test_fast_path_is_the_cpu_default(images):
    subset = images[::7]
    default = pdq_hash_batch(subset)
    fast = pdq_hash_batch(subset, exact=False)
    assert np.array_equal(default.bits, fast.bits) and np.array_equal(default.quality, fast.quality)


def test_fast_close_to_pdqhash(images, pdqhash_mod):
    batch = pdq_hash_batch(images, exact=False)
    assert batch.bits.shape == (len(images), 256) and batch.bits.dtype == np.uint8
    assert batch.quality.shape == (len(images),) and batch.quality.dtype == np.int32
    ref = [pdqhash_mod.compute(im) for im in images]
    _fast_vs_reference(images, batch, np.stack([r[0] for r in ref]), np.array([r[1] for r in ref]), "pdqhash")


def test_fast_dihedral_close_to_pdqhash(images, pdqhash_mod):
    batch = pdq_hash_batch(images, dihedral=True, exact=False)
    assert batch.bits.shape == (len(images), 8, 256)
    ref = [pdqhash_mod.compute_dihedral(im) for im in images]
    theirs = np.stack([np.stack(r[0]) for r in ref])
    _fast_vs_reference(images, batch, theirs, np.array([r[1] for r in ref]), "pdqhash dihedral")


def test_fast_close_to_exact(images):
    fast = pdq_hash_batch(images, exact=False)
    exact = pdq_hash_batch(images, exact=True)
    _fast_vs_reference(images, fast, exact.bits, exact.quality, "exact path")


def test_fast_64x64_and_shapes():
    """64x64 (no filter, identity matrices), odd sizes, and a 720p frame."""
    imgs = [smooth_scene(64, 64, seed=s) for s in range(10)]
    for i, got in enumerate(pdq_hash_batch(np.stack(imgs), exact=False).bits):
        want = pdq_hash_batch(imgs[i][None], exact=True).bits[0]
        assert _distances(got, want) <= 4
    big = smooth_scene(720, 1280, seed=3)
    a = pdq_hash_batch(big[None], exact=False)
    b = pdq_hash_batch(big[None], exact=True)
    assert _distances(a.bits[0], b.bits[0]) <= 4 and abs(int(a.quality[0]) - int(b.quality[0])) <= 2


@pytest.mark.parametrize("dim", [5, 6, 7, 11, 63, 64, 65, 127, 128, 129, 255, 301, 640, 720, 1081])
def test_fast_filter_matrix_is_the_exact_scan(dim):
    """The fast path's per-axis matrix equals the exact path's two box scans (run in float64 on the
    identity) followed by the decimation."""
    from vmatch.signals.pdq import (
        _box_scan,
        _decimation_indices,
        _filter_matrix,
        _window_size,
    )

    box = _box_scan(torch.eye(dim, dtype=torch.float64), _window_size(dim), dim=0).numpy()
    want = (box @ box)[_decimation_indices(dim)]
    np.testing.assert_allclose(_filter_matrix(dim), want, rtol=0, atol=1e-15)


def test_fast_path_restores_torch_threads():
    before = torch.get_num_threads()
    pdq_hash_batch(np.stack([smooth_scene(120, 160, seed=1)] * 2), exact=False)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("exact", [True, False])
def test_tiny_images_get_zero_hash(pdqhash_mod, exact):
    for h, w in ((4, 90), (90, 4), (1, 1), (5, 4)):
        img = smooth_scene(h, w, seed=h * 100 + w)
        batch = pdq_hash_batch(img[None], exact=exact)
        assert not batch.bits.any() and batch.quality[0] == 0
        ref_bits, ref_q = pdqhash_mod.compute(img)
        assert not np.asarray(ref_bits).any() and ref_q == 0


def test_64x64_is_not_filtered_like_the_reference(pdqhash_mod):
    """The reference hashes 64x64 luma as is, but its dihedral path filters it (window 1)."""
    imgs = [smooth_scene(64, 64, seed=s) for s in range(20)]
    plain = pdq_hash_batch(np.stack(imgs), exact=True)
    dihedral = pdq_hash_batch(np.stack(imgs), dihedral=True, exact=True)
    for i, img in enumerate(imgs):
        assert np.array_equal(plain.bits[i], pdqhash_mod.compute(img)[0])
        assert np.array_equal(dihedral.bits[i], np.stack(pdqhash_mod.compute_dihedral(img)[0]))


@pytest.mark.parametrize("exact", [True, False])
def test_inputs_numpy_tensor_list_and_chunks_agree(images, exact):
    subset = [im for im in images if im.shape[:2] == (100, 120)]
    stack = np.stack(subset)
    ref = pdq_hash_batch(stack, exact=exact)
    for other in (
        pdq_hash_batch(torch.from_numpy(stack), exact=exact),
        pdq_hash_batch(list(subset), exact=exact),
        pdq_hash_batch(stack, batch_size=5, exact=exact),
        pdq_hash_batch(np.ascontiguousarray(stack[:, :, :, :])[:, :, :, :], batch_size=1, exact=exact),
    ):
        assert np.array_equal(other.bits, ref.bits)
        assert np.array_equal(other.quality, ref.quality)
    hex1, q1 = pdq_hash(subset[3], exact=exact)
    assert hex1 == ref.hex()[3] and q1 == ref.quality[3]
    # Non-contiguous views are hashed as the images they show.
    flipped = stack[:, ::-1]
    assert np.array_equal(
        pdq_hash_batch(flipped, exact=exact).bits,
        pdq_hash_batch(np.ascontiguousarray(flipped), exact=exact).bits,
    )


def test_list_of_sizes_keeps_input_order(images):
    picks = [images[0], images[40], images[1], images[100], images[41]]
    batch = pdq_hash_batch(picks)
    for i, im in enumerate(picks):
        single = pdq_hash_batch(im[None])
        assert np.array_equal(batch.bits[i], single.bits[0])
        assert batch.quality[i] == single.quality[0]


def test_empty_inputs():
    assert pdq_hash_batch(np.zeros((0, 32, 32, 3), np.uint8)).bits.shape == (0, 256)
    assert pdq_hash_batch([]).bits.shape == (0, 256)
    assert pdq_hash_batch([], dihedral=True).bits.shape == (0, 8, 256)


def test_quality_low_for_flat_high_for_scenes():
    flat = pdq_hash_batch(np.stack([flat_scene(120, 160, k) for k in range(4)]))
    assert (flat.quality < 10).all()
    scenes = pdq_hash_batch(np.stack([smooth_scene(240, 320, seed=s) for s in range(5)]))
    assert (scenes.quality >= 50).all()


# --------------------------------------------------------------------------------------------------
# Dihedral variants vs transformed images
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("size", [(64, 64), (320, 320), (576, 320), (320, 64)])
def test_dihedral_variants_equal_hashes_of_transformed_images(size, exact):
    """On sizes where the reference's box windows and decimation grid are symmetric (odd multiples of
    64 pixels a side), rotating/flipping the image and permuting/negating the DCT agree. On other
    sizes they differ by a few to ~20 bits, in the reference as here (its own tests allow +40)."""
    assert list(TRANSFORMS) == list(DIHEDRAL_NAMES)
    for seed in range(3):
        img = smooth_scene(*size, seed=seed)
        variants = pdq_hash_batch(img[None], dihedral=True, exact=exact).bits[0]
        for k, (name, transform) in enumerate(TRANSFORMS.items()):
            direct = pdq_hash_batch(np.ascontiguousarray(transform(img))[None], exact=exact).bits[0]
            assert _distances(variants[k], direct) <= 2, (size, seed, name)


def test_flipped_image_close_to_flip_variant_on_any_size():
    for h, w in ((240, 320), (333, 257), (480, 640)):
        img = smooth_scene(h, w, seed=7)
        variants = pdq_hash_batch(img[None], dihedral=True).bits[0]
        mirrored = pdq_hash_batch(img[None, :, ::-1]).bits[0]
        upside_down = pdq_hash_batch(img[None, ::-1]).bits[0]
        assert _distances(variants[DIHEDRAL_NAMES.index("flip_y")], mirrored) <= 32
        assert _distances(variants[DIHEDRAL_NAMES.index("flip_x")], upside_down) <= 32


# --------------------------------------------------------------------------------------------------
# Bit layout and helpers
# --------------------------------------------------------------------------------------------------


def test_hex_round_trip_and_layout(images):
    batch = pdq_hash_batch(np.stack(images[:12]))
    hexes = batch.hex()
    assert all(len(h) == 64 and h == h.lower() for h in hexes)
    assert np.array_equal(hex_to_bits(hexes), batch.bits)
    assert np.array_equal(hex_to_bits(hexes[0]), batch.bits[0])
    assert bits_to_hex(batch.bits[0]) == [hexes[0]]
    assert bits_to_hex(hex_to_bits(hexes)) == hexes
    # Bits are the hex digits' binary expansion, most significant first.
    assert "".join(map(str, batch.bits[0])) == format(int(hexes[0], 16), "0256b")
    packed = pack_bits(batch.bits)
    assert packed.shape == (12, 32) and packed.dtype == np.uint8
    assert [p.tobytes() for p in packed] == [bytes.fromhex(h) for h in hexes]
    assert np.array_equal(unpack_bits(packed), batch.bits)
    assert np.array_equal(batch.packed(), packed)
    for a, b in ((0, 1), (2, 5), (3, 3)):
        assert hamming(hexes[a], hexes[b]) == int((batch.bits[a] != batch.bits[b]).sum())
    assert hamming("f" * 64, "0" * 64) == 256
    dih = pdq_hash_batch(np.stack(images[:2]), dihedral=True)
    assert len(dih.hex()) == 2 and all(len(row) == 8 for row in dih.hex())
    assert dih.hex()[1][0] == bits_to_hex(dih.bits[1, 0])[0]
    assert dih.packed().shape == (2, 8, 32)


def test_known_reference_bit_order(pdqhash_mod):
    """Bit m of pdqhash.compute's array is bit 255 - m of Hash256 (word k >> 4, bit k & 15)."""
    img = smooth_scene(90, 70, seed=3)
    bits = pdq_hash_batch(img[None]).bits[0]
    ref = np.asarray(pdqhash_mod.compute(img)[0])
    assert np.array_equal(bits, ref)
    value = int(pdq_hash(img)[0], 16)
    words = [(value >> (16 * w)) & 0xFFFF for w in range(16)]
    assert [(words[k >> 4] >> (k & 15)) & 1 for k in range(256)][::-1] == list(ref)


def test_faiss_binary_index_distances_equal_hamming(images):
    faiss = pytest.importorskip("faiss", reason="faiss is not installed")
    batch = pdq_hash_batch(np.stack(images[:12]))
    index = faiss.IndexBinaryFlat(256)
    index.add(batch.packed())
    dist, ids = index.search(batch.packed()[:3], 12)
    hexes = batch.hex()
    for q in range(3):
        for d, j in zip(dist[q], ids[q], strict=True):
            assert d == hamming(hexes[q], hexes[j])


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def test_usage_errors():
    good = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(UsageError, match="uint8"):
        pdq_hash_batch(good.astype(np.float32))
    with pytest.raises(UsageError, match="pdq_hash"):
        pdq_hash_batch(good[0])
    with pytest.raises(UsageError, match="RGB"):
        pdq_hash_batch(np.zeros((2, 16, 16, 4), np.uint8))
    with pytest.raises(UsageError, match="frames\\[1\\]"):
        pdq_hash_batch([good[0], good[0, :, :, 0]])
    with pytest.raises(UsageError):
        pdq_hash_batch("not frames")
    with pytest.raises(UsageError, match="batch_size"):
        pdq_hash_batch(good, batch_size=0)
    with pytest.raises(UsageError, match="device"):
        pdq_hash_batch(good, device="tpu")
    with pytest.raises(UsageError, match="dihedral"):
        pdq_hash_batch(good, dihedral="yes")
    with pytest.raises(UsageError, match="exact"):
        pdq_hash_batch(good, exact="no")
    with pytest.raises(UsageError):
        pdq_hash(good)
    with pytest.raises(UsageError, match="64 hex"):
        hex_to_bits("abc")
    with pytest.raises(UsageError, match="64 hex"):
        hamming("g" * 64, "0" * 64)
    with pytest.raises(UsageError, match="0 or 1"):
        bits_to_hex(np.full(256, 2))
    with pytest.raises(UsageError):
        bits_to_hex(np.zeros((2, 8, 256), np.uint8))
    with pytest.raises(UsageError):
        unpack_bits(np.zeros(31, np.uint8))
    assert isinstance(pdq_hash_batch(good), PDQBatch)


# --------------------------------------------------------------------------------------------------
# GPU
# --------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(images):
    subset = images[::3]
    cpu = pdq_hash_batch(subset, dihedral=True, exact=True)
    gpu = pdq_hash_batch(subset, device="cuda", dihedral=True)
    dist = _distances(cpu.bits, gpu.bits)
    assert dist.max() <= 2 and (dist == 0).mean() >= 0.99
    assert np.abs(cpu.quality - gpu.quality).max() <= 1
    # A tensor already on the GPU, one size, several chunks.
    same = [im for im in images if im.shape[:2] == (480, 640)]
    stack = torch.from_numpy(np.stack(same)).cuda()
    on_gpu = pdq_hash_batch(stack, device="cuda", batch_size=5)
    on_cpu = pdq_hash_batch(np.stack(same), exact=True)
    assert _distances(on_gpu.bits, on_cpu.bits).max() <= 2
    assert np.array_equal(on_gpu.quality, on_cpu.quality)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fast_path_close_to_cpu(images):
    """exact=False on CUDA (not the default there): the same matrix products as on CPU."""
    subset = [im for im in images[::3] if not _flat(im)]
    cpu = pdq_hash_batch(subset, exact=False)
    gpu = pdq_hash_batch(subset, device="cuda", exact=False)
    dist = _distances(cpu.bits, gpu.bits)
    assert np.median(dist) == 0 and np.percentile(dist, 99) <= 4
    assert np.abs(cpu.quality - gpu.quality).max() <= 2

"""Pair verification (vmatch/verify.py): local features tell a copy from a look-alike."""

import numpy as np
import pytest

from vmatch import verify as V
from vmatch.errors import UsageError
from vmatch.types import Segment


def _texture(seed: int, h: int = 224, w: int = 224) -> np.ndarray:
    """A picture with structure at several scales (blobs and edges), RGB uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(60):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), int(rng.integers(3, 25)), c, -1)
        else:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(5, 40)), y + int(rng.integers(5, 40))), c, -1)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _edit(rgb: np.ndarray) -> np.ndarray:
    """A copy as an uploader makes it: crop to 80 %, scaled back, brighter, with a caption band."""
    import cv2

    h, w = rgb.shape[:2]
    out = cv2.resize(rgb[int(h * 0.1): int(h * 0.9), int(w * 0.1): int(w * 0.9)], (w, h))
    out = np.clip(out.astype(np.int16) + 25, 0, 255).astype(np.uint8)
    out[h - 30: h - 8, 20: w - 20] = (255, 255, 255)
    return out


def _seg(n: int) -> Segment:
    return Segment(0.0, float(n - 1), 0.0, float(n - 1), 1.0)


def _video(frames, *, query: bool):
    ex = V.Extractor(aspect=1.0, mirrored=query, max_keypoints=V.QUERY_KEYPOINTS if query else V.DETECT_KEYPOINTS)
    ex.add_many(np.stack(frames))
    ts = np.arange(len(frames), dtype=np.float64)
    loc = ex.result()
    return ts, (loc if query else V.prepare_reference(loc, ts))


def test_a_copy_verifies_and_a_look_alike_does_not():
    ref = [_texture(s) for s in range(6)]
    rt, rl = _video(ref, query=False)
    qt, copy = _video([_edit(f) for f in ref], query=True)
    ev = V.verify(copy, qt, rl, rt, _seg(6))
    # A look-alike: pictures of the same generator (same kind of shapes, colours, noise), other seeds.
    _, other = _video([_texture(100 + s) for s in range(6)], query=True)
    ev_other = V.verify(other, qt, rl, rt, _seg(6))
    p = V.VerifyParams()
    assert ev.frames == 6 and ev.content_inliers >= p.evidence_hi, ev
    # Random consensus of RANSAC over ~500 tentative matches: a handful of inliers, the noise floor
    # that evidence_lo sits above.
    assert V.weight(ev, p) == 1.0 and V.weight(ev_other, p) <= 0.2, ev_other
    assert V.fused_score(0.4, ev, p) == pytest.approx(0.4) and V.fused_score(0.4, ev_other, p) <= 0.08
    assert V.weight(None, p) == 0.0


def test_a_flipped_copy_verifies_through_the_query_mirror():
    ref = [_texture(s) for s in range(4)]
    rt, rl = _video(ref, query=False)
    qt, flipped = _video([np.ascontiguousarray(f[:, ::-1]) for f in ref], query=True)
    assert V.weight(V.verify(flipped, qt, rl, rt, _seg(4))) == 1.0
    no_mirror = V.LocalFeatures(flipped.counts, flipped.coords, flipped.descriptors, flipped.static)
    assert V.weight(V.verify(no_mirror, qt, rl, rt, _seg(4))) <= 0.3


def _static_camera(bg: np.ndarray, obj: np.ndarray, positions) -> list[np.ndarray]:
    out = []
    for x, y in positions:
        f = bg.copy()
        f[y: y + obj.shape[0], x: x + obj.shape[1]] = obj
        out.append(f)
    return out


def test_static_background_is_not_evidence():
    """One fixed camera: its background is in every video it records. A recording at another time
    (other objects) must not verify; a copy of the reference, where the objects match, must."""
    bg = _texture(7)
    bg[:, :, :] = (bg.astype(np.int16) // 2 + 60).astype(np.uint8)  # dimmer: the objects stand out
    objs = [_texture(50 + i, 70, 70) for i in range(8)]
    ref = _static_camera(bg, objs[0], [(10 + 15 * i, 20 + 10 * i) for i in range(8)])
    ref = [f if i < 4 else _static_camera(bg, objs[1], [(120 - 12 * i, 130)])[0] for i, f in enumerate(ref)]
    rt, rl = _video(ref, query=False)
    ex = V.Extractor(aspect=1.0)
    ex.add_many(np.stack(ref))
    flagged = V.with_static(ex.result(), rt)
    assert 0.3 < flagged.static.mean() < 0.95  # background keypoints found static, object ones not
    assert rl.static.mean() < flagged.static.mean()  # stored: the non-static ones first
    qt, copy = _video([_edit(f) for f in ref], query=True)
    other_time = [_static_camera(bg, objs[2 + i % 6], [(140 - 10 * i, 30 + 12 * i)])[0] for i in range(8)]
    _, sibling = _video(other_time, query=True)
    ev_copy = V.verify(copy, qt, rl, rt, _seg(8))
    ev_sib = V.verify(sibling, qt, rl, rt, _seg(8))
    # Without static flags the background alone verifies the other recording...
    assert V.weight(V.verify(sibling, qt, ex.result(), rt, _seg(8))) == 1.0
    # ...with them it is no evidence of a copy.
    assert V.weight(ev_sib) <= 0.2, ev_sib  # even a CNN score of 1 then stays below the 0.203 threshold
    assert V.weight(ev_copy) == 1.0, ev_copy


def test_bytes_round_trip_select_and_concat():
    rt, rl = _video([_texture(s) for s in range(3)], query=False)
    back = V.LocalFeatures.from_bytes(rl.to_bytes(), source="x")
    np.testing.assert_array_equal(back.counts, rl.counts)
    np.testing.assert_array_equal(back.descriptors, rl.descriptors)
    np.testing.assert_array_equal(back.static, rl.static)
    np.testing.assert_allclose(back.coords, rl.coords, atol=1 / 32)
    _, q = _video([_texture(s) for s in range(3)], query=True)
    two = V.LocalFeatures.concat([q.select(np.array([True, False, True])), q.select(np.array([False, True, False]))])
    assert len(two) == 3 and len(two.mirrored) == 3
    np.testing.assert_array_equal(two.frame(2)[1], q.frame(1)[1])
    np.testing.assert_array_equal(two.mirrored.frame(1)[1], q.mirrored.frame(2)[1])
    with pytest.raises(ValueError, match="with and without mirrored"):
        V.LocalFeatures.concat([q, rl])
    with pytest.raises(UsageError, match="bad: unreadable local features"):
        V.LocalFeatures.from_bytes(b"junk", source="bad")
    with pytest.raises(ValueError, match="keypoints counted"):
        V.LocalFeatures(np.array([3]), np.zeros((2, 2)), np.zeros((2, 32), np.uint8), np.zeros(2, bool))
    # The SIFT set travels with the ORB one: bytes, select, concat; and it is checked.
    assert rl.sift is not None and back.sift is not None and back.sift.reference
    np.testing.assert_array_equal(back.sift.descriptors, rl.sift.descriptors)
    np.testing.assert_array_equal(back.sift.static, rl.sift.static)
    assert back.sift.descriptors.shape[1] == 128 and rl.sift.counts.sum() > 0
    np.testing.assert_array_equal(two.sift.frame(2)[1], q.sift.frame(1)[1])
    with pytest.raises(ValueError, match="with and without SIFT"):
        V.LocalFeatures.concat([q, V.LocalFeatures(q.counts, q.coords, q.descriptors, q.static, q.mirrored)])
    with pytest.raises(ValueError, match="SIFT keypoints of 1 frames"):
        V.LocalFeatures(q.counts, q.coords, q.descriptors, q.static, sift=q.sift.take(0))
    with pytest.raises(ValueError, match="expected 128"):
        V.LocalFeatures(q.counts, q.coords, q.descriptors, q.static,
                        sift=V.LocalFeatures(q.counts, q.coords, q.descriptors, q.static))


def test_local_features_of_the_orb_only_format_are_still_read():
    """A bank row or signal written before SIFT (format 1, no SIFT set) reads back, without SIFT."""
    import io

    _, q = _video([_texture(s) for s in range(2)], query=True)
    orb_only = V.LocalFeatures(q.counts, q.coords, q.descriptors, q.static, q.mirrored)
    buf = io.BytesIO()
    np.savez(buf, version=np.array([1], "<i4"), **orb_only.to_arrays())
    back = V.LocalFeatures.from_bytes(buf.getvalue(), source="old")
    assert back.sift is None and len(back) == 2 and back.mirrored is not None


def test_sift_finds_a_small_copy_and_its_mirror():
    """SIFT's evidence: a copy shrunk to a picture-in-picture inset (150 of 224 px), also mirrored,
    verifies through the SIFT set alone (its mirror by descriptor permutation, no second pass);
    blurred as well, SIFT keeps more evidence of it than ORB."""
    import cv2

    ref = [_texture(s) for s in range(4)]
    rt, rl = _video(ref, query=False)

    def inset(f, flip, blur):
        g = cv2.resize(f, (150, 150), interpolation=cv2.INTER_AREA)
        g = cv2.GaussianBlur(g, (3, 3), 0) if blur else g
        out = _texture(900)
        out[20:170, 30:180] = g[:, ::-1] if flip else g
        return out

    def parts(q):
        sift_only = V.LocalFeatures(np.zeros(len(q), np.int32), np.zeros((0, 2)), np.zeros((0, 32), np.uint8),
                                    np.zeros(0, bool), sift=q.sift)
        return sift_only, V.LocalFeatures(q.counts, q.coords, q.descriptors, q.static, q.mirrored)

    for flip in (False, True):
        qt, q = _video([inset(f, flip, False) for f in ref], query=True)
        sift_only, _ = parts(q)
        ev = V.verify(sift_only, qt, rl, rt, _seg(4))
        assert V.weight(ev) == 1.0, (flip, ev)
        # Both kinds together: the better of the two per frame pair.
        assert V.verify(q, qt, rl, rt, _seg(4)).content_inliers >= ev.content_inliers
        qt, q = _video([inset(f, flip, True) for f in ref], query=True)
        sift_only, orb_only = parts(q)
        e_sift = V.verify(sift_only, qt, rl, rt, _seg(4)).content_inliers
        e_orb = V.verify(orb_only, qt, rl, rt, _seg(4)).content_inliers
        assert e_sift > e_orb, (flip, e_sift, e_orb)
    # The permutation is what a mirror's SIFT descriptors are: close to a second SIFT pass.
    g = cv2.cvtColor(ref[0], cv2.COLOR_RGB2GRAY)
    sift = cv2.SIFT_create(nfeatures=300)
    kp, d = sift.detectAndCompute(g, None)
    km, dm = sift.detectAndCompute(np.ascontiguousarray(g[:, ::-1]), None)
    p = np.array([k.pt for k in kp])
    pm = np.array([k.pt for k in km])
    pm[:, 0] = g.shape[1] - 1 - pm[:, 0]
    i, j = np.nonzero(np.abs(p[:, None] - pm[None]).max(axis=2) < 0.5)
    assert len(i) >= 20
    _, dperm, _ = V.mirror_sift((p.astype(np.float32), d.astype(np.float32), np.zeros(len(p), bool)))
    assert np.median(np.linalg.norm(dperm[i] - dm[j], axis=1)) < 0.2 * np.median(np.linalg.norm(d[i] - dm[j], axis=1))


def test_work_size_restores_the_display_aspect():
    assert V.work_size((224, 224), 16 / 9) == (398, 224)
    assert V.work_size((224, 224), 9 / 16) == (224, 398)
    assert V.work_size((224, 224), 1.0) == (224, 224)
    assert V.work_size((224, 224), 5.0) == (448, 224)  # clamped to 2:1
    assert V.work_size((224, 224), 0.0) == (224, 224)  # unknown aspect: as sampled


def test_params_are_checked():
    with pytest.raises(UsageError):
        V.VerifyParams(frames=0)
    with pytest.raises(UsageError):
        V.VerifyParams(evidence_lo=30, evidence_hi=20)

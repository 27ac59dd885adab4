"""Option records of an index run (issue 15): DecodeOptions, IndexOptions, the fast mode as one
constant, one DEFAULT_FPS, and the ThreadPolicy the caller passes (one count of the cores)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vmatch.errors import UsageError
from vmatch.options import (
    BLANK_STD, DecodeOptions, DEFAULT_FPS, FAST_REFERENCE_MODE, IndexOptions, check_keyframe_gop,
)
from vmatch.threads import available_cores, share_cores, ThreadPolicy


def test_defaults_are_the_exact_sampling_of_one_frame_a_second():
    d = DecodeOptions()
    assert (d.fps, d.keyframe_gop, d.skip_nonref, d.skip_loop_filter, d.blank_std, d.keypoints) == (
        DEFAULT_FPS, 0.0, False, False, BLANK_STD, "reference")
    assert DEFAULT_FPS == 1.0 and not d.sparse
    assert IndexOptions() == IndexOptions(vpdq=False, chunk_frames=None, queue_chunks=None, save_every=300.0)


def test_fast_mode_is_one_decode_options_and_its_dense_pass_is_exact():
    assert FAST_REFERENCE_MODE == DecodeOptions(fps=0.5, keyframe_gop=2.0, skip_nonref=True, skip_loop_filter=True)
    assert FAST_REFERENCE_MODE.sparse
    dense = FAST_REFERENCE_MODE.dense()
    assert (dense.fps, dense.keyframe_gop, dense.skip_nonref, dense.skip_loop_filter) == (1.0, 0.0, True, True)
    assert DecodeOptions(fps=4.0, keyframe_gop=1.5).dense().fps == 4.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        FAST_REFERENCE_MODE.fps = 1.0  # type: ignore[misc]


def test_records_are_normalised_and_checked_when_made():
    d = DecodeOptions(fps=2, keyframe_gop=np.float32(1.5), skip_nonref=1)
    assert d.fps == 2.0 and isinstance(d.fps, float) and d.keyframe_gop == 1.5 and d.skip_nonref is True
    for bad, match in ((dict(fps=0), "sampling rate"), (dict(fps="x"), "sampling rate"),
                       (dict(fps=121), "sampling rate"),
                       (dict(keyframe_gop=-1), "keyframe_gop"), (dict(keyframe_gop=True), "keyframe_gop"),
                       (dict(keyframe_gop=float("inf")), "keyframe_gop"), (dict(keypoints="all"), "keypoints")):
        with pytest.raises(UsageError, match=match):
            DecodeOptions(**bad)
    for bad, match in ((dict(chunk_frames=0), "chunk_frames"), (dict(queue_chunks=1.5), "queue_chunks"),
                       (dict(save_every=-1), "save_every"), (dict(save_every=float("nan")), "save_every")):
        with pytest.raises(UsageError, match=match):
            IndexOptions(**bad)
    assert IndexOptions(save_every=float("inf")).save_every == float("inf")  # never saved mid-run


def test_keyframe_gop_rule_is_the_decoders():
    """options.check_keyframe_gop (no decoder import) says what vmatch.decode.check_keyframe_gop says."""
    decode = pytest.importorskip("vmatch.decode")
    for value in (0, 2, 1.5, np.int64(3), np.float32(0.5), -1, True, "2", float("nan"), None):
        try:
            want = ("ok", decode.check_keyframe_gop(value))
        except UsageError as e:
            want = ("error", str(e))
        try:
            got = ("ok", check_keyframe_gop(value))
        except UsageError as e:
            got = ("error", str(e))
        assert got == want, value


def test_thread_policy_defaults_derive_from_the_cores():
    p = ThreadPolicy(cores=6)
    assert p.decode_workers("cpu") == 6 and p.decode_workers("cuda:0") == 5
    assert p.cnn_threads_low() == 2 and ThreadPolicy(cores=2).cnn_threads_low() == 1
    assert ThreadPolicy(cores=1).decode_workers("cuda") == 1
    # FFmpeg threads: FFmpeg's default with one worker, 1 each while files wait, the cores shared at the end
    assert p.decoder_threads_for(0, 10, 1) == 0 and p.decoder_threads_for(0, 10, 0) == 0
    assert [p.decoder_threads_for(r, 5, 3) for r in range(5)] == [1, 1, 1, 3, 6]
    q = ThreadPolicy(workers=2, cnn_threads=3, decoder_threads=0, cores=6)
    assert (q.decode_workers("cpu"), q.cnn_threads_low(), q.decoder_threads_for(4, 5, 2)) == (2, 3, 0)
    assert ThreadPolicy().n_cores() == available_cores()
    assert share_cores(4, 10) == 2 and share_cores(8, 2) == 1 and share_cores(1) == available_cores()


def test_thread_policy_is_checked_when_made():
    for bad, match in ((dict(workers=-1), "workers"), (dict(workers=1.5), "workers"), (dict(workers=True), "workers"),
                       (dict(cnn_threads=0), "cnn_threads"), (dict(decoder_threads=-1), "decoder_threads"),
                       (dict(cores=0), "cores")):
        with pytest.raises(UsageError, match=match):
            ThreadPolicy(**bad)


def test_service_counts_cores_as_the_indexer(tmp_path, monkeypatch):
    """The service's default job workers and CNN threads come from the same core count as an index run."""
    import vmatch.service.config as config
    import vmatch.threads as threads

    monkeypatch.setattr(threads, "available_cores", lambda: 6)
    monkeypatch.setattr(config, "available_cores", lambda: 6)
    c = config.ServiceConfig(bank_root=tmp_path)
    assert c.workers == 4 and c.cnn_threads == 1
    assert config.ServiceConfig(bank_root=tmp_path, workers=2).cnn_threads == 3


def test_index_videos_takes_records_only(tmp_path):
    from vmatch.pipeline import index_videos

    with pytest.raises(UsageError, match="decode must be a DecodeOptions"):
        index_videos(None, [], decode={"fps": 1.0})
    with pytest.raises(TypeError):
        index_videos(None, [], fps=1.0)  # the keyword arguments of before issue 15

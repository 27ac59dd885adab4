"""Overlapped indexing (vmatch.parallel): decode workers ahead of the CNN through a bounded queue.

The same bank as the sequential path (ThreadPolicy(workers=0)), whatever the number of workers; bad files
reported and skipped while the others go through; memory bounded by the queue; Ctrl-C stops the
workers and keeps the files stored before. The fast FakeEmbedder stands in for the CNN, except in
the one test that compares with the real model.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from conftest import scene_clip, write_clip
from vmatch import synth
from vmatch.bank import Bank
from vmatch.embed import FakeEmbedder
from vmatch.errors import UsageError
from vmatch.options import DecodeOptions
from vmatch.pipeline import index_videos
from vmatch.threads import ThreadPolicy


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Six clips of different lengths and seeds, an all-black one and a text file named .mp4."""
    d = tmp_path_factory.mktemp("parallel_media")
    out = [write_clip(d / f"clip_{i}.mp4", scene_clip(2000 + i, 0, 2 + 3 * i)) for i in range(6)]
    out.insert(2, write_clip(d / "black.mp4", synth.black_frames(50, 96, 64)))
    bad = d / "not_a_video.mp4"
    bad.write_text("hello, I am text")
    out.insert(4, bad)
    return out


def _bank(path, embedder):
    bank = Bank.open(path, create=True, model=embedder.spec)
    bank.set_embedder(embedder)
    return bank


def _contents(bank):
    out = {}
    for ref in bank.list():
        e = bank.reference_embedding(ref.reference)
        out[ref.reference] = (e.timestamps, e.features, ref.duration, ref.sha256, ref.extra)
    return out


@pytest.mark.parametrize("workers", [1, 3])
def test_workers_give_the_same_bank_as_the_sequential_path(tmp_path, files, workers):
    emb = FakeEmbedder()
    with _bank(tmp_path / "seq", emb) as seq, _bank(tmp_path / "par", emb) as par:
        s0 = index_videos(seq, files, threads=ThreadPolicy(workers=0))
        errors = []
        s1 = index_videos(par, files, threads=ThreadPolicy(workers=workers), on_error=lambda p, m: errors.append(p))
        a, b = _contents(seq), _contents(par)
    assert sorted(a) == sorted(b) == [f"clip_{i}" for i in range(6)]
    for rid in a:
        np.testing.assert_array_equal(a[rid][0], b[rid][0])  # same sampled presentation times
        np.testing.assert_allclose(a[rid][1], b[rid][1], atol=1e-6)
        assert a[rid][2:] == b[rid][2:]
    assert (s1.videos, s1.frames, round(s1.seconds, 6)) == (s0.videos, s0.frames, round(s0.seconds, 6))
    assert sorted(p for p, _ in s1.failed) == sorted(p for p, _ in s0.failed) == sorted(
        [str(files[2]), str(files[4])])
    assert sorted(errors) == sorted(p for p, _ in s1.failed)
    assert all(p in m for p, m in s1.failed)  # each message names its file


def test_real_model_features_do_not_depend_on_batching(tmp_path, files):
    """The CNN sees batches made across files; a frame's embedding must not depend on its batch."""
    with Bank.open(tmp_path / "seq", create=True) as seq, Bank.open(tmp_path / "par", create=True) as par:
        par.set_embedder(seq.embedder())
        index_videos(seq, files[:4], threads=ThreadPolicy(workers=0))
        index_videos(par, files[:4], threads=ThreadPolicy(workers=2))
        a, b = _contents(seq), _contents(par)
    assert sorted(a) == sorted(b) and len(a) == 3
    for rid in a:
        np.testing.assert_allclose(a[rid][1], b[rid][1], atol=2e-4)


class _SlowCountingEmbedder(FakeEmbedder):
    """Counts frames handed to the CNN and sleeps per batch (a CNN slower than the decoder)."""

    def __init__(self, decoded: list[int]) -> None:
        super().__init__()
        self.decoded = decoded
        self.embedded = 0
        self.max_in_flight = 0

    def embed(self, frames):
        self.max_in_flight = max(self.max_in_flight, self.decoded[0] - self.embedded)
        time.sleep(0.05)
        self.embedded += len(frames)
        return super().embed(frames)


def test_memory_is_bounded_by_the_queue(tmp_path, monkeypatch):
    """A 60 s video at 4 fps (240 frames) with a slow CNN: the frames decoded but not yet embedded
    never exceed what the queue, the workers' chunks and one batch can hold."""
    import vmatch.decode

    long_clip = write_clip(tmp_path / "long.mp4", scene_clip(3001, 0, 60, fps=5), fps=5)
    decoded = [0]
    real_iter = vmatch.decode.iter_frames

    def counting_iter(*a, **k):
        for item in real_iter(*a, **k):
            decoded[0] += 1
            yield item

    monkeypatch.setattr(vmatch.decode, "iter_frames", counting_iter)
    emb = _SlowCountingEmbedder(decoded)
    emb.batch_size = 8
    with _bank(tmp_path / "b", emb) as bank:
        s = index_videos(bank, [long_clip], decode=DecodeOptions(fps=4.0), threads=ThreadPolicy(workers=1))
    assert s.videos == 1 and s.frames == decoded[0] >= 235
    chunk, queue_chunks = 8, 4  # index_files defaults for batch 8, one worker
    bound = (queue_chunks + 2) * chunk + emb.batch_size
    assert 0 < emb.max_in_flight <= bound, (emb.max_in_flight, bound)


def test_interrupt_stops_workers_and_keeps_finished_files(tmp_path, files):
    class Interrupting(FakeEmbedder):
        calls = 0

        def embed(self, frames):
            Interrupting.calls += 1
            if Interrupting.calls == 4:
                raise KeyboardInterrupt
            return super().embed(frames)

    emb = Interrupting()
    emb.batch_size = 2
    good = [f for i, f in enumerate(files) if i not in (2, 4)]
    with _bank(tmp_path / "b", emb) as bank:
        s = index_videos(bank, good, threads=ThreadPolicy(workers=2))
        stored = [r.reference for r in bank.list()]
    assert s.interrupted
    assert len(stored) == s.videos < len(good)
    deadline = time.monotonic() + 5
    while any(t.name.startswith("vmatch-decode") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "decode workers still running after the interrupt"
        time.sleep(0.05)


def test_bad_workers_argument(tmp_path, files):
    with _bank(tmp_path / "b", FakeEmbedder()) as bank:
        for bad in (-1, 1.5, True):
            with pytest.raises(UsageError, match="workers"):
                index_videos(bank, files[:1], threads=ThreadPolicy(workers=bad))


@pytest.mark.parametrize("workers", [0, 2])
def test_keyframe_mode_indexes_fewer_frames_and_never_loses_a_file(tmp_path, workers):
    """Keyframe mode stores the keyframes of short GOPs; a clip whose only keyframe is black (a
    fade-in) is sampled exactly instead of being reported as blank."""
    fps = 10
    short_gops = write_clip(tmp_path / "gop1.mp4", scene_clip(3100, 0, 6.0, fps=fps), fps=fps, gop=10)
    clip = scene_clip(3101, 0, 2.0, fps=fps)
    leader = np.concatenate([synth.black_frames(fps, clip.shape[2], clip.shape[1]), clip])
    black_key = write_clip(tmp_path / "black_key.mp4", leader, fps=fps, gop=100)
    emb = FakeEmbedder()
    with _bank(tmp_path / "exact", emb) as exact, _bank(tmp_path / "kf", emb) as kf:
        index_videos(exact, [short_gops, black_key], threads=ThreadPolicy(workers=workers),
                     decode=DecodeOptions(fps=2.0))
        s = index_videos(kf, [short_gops, black_key], threads=ThreadPolicy(workers=workers),
                         decode=DecodeOptions(fps=2.0, keyframe_gop=1.5))
        assert not s.failed
        a, b = _contents(exact), _contents(kf)
    assert np.allclose(a["gop1"][0], np.arange(12) / 2)  # exact: every 0.5 s
    assert np.allclose(b["gop1"][0], np.arange(6))  # keyframes only: one per 1-s GOP
    keep = np.isin(a["gop1"][0], b["gop1"][0])
    # The same frames, the same embeddings up to float32 rounding (the CNN batches differ: 1.5e-7 seen)
    assert np.allclose(a["gop1"][1][keep], b["gop1"][1], atol=1e-6)
    assert np.allclose(b["black_key"][0], a["black_key"][0]) and len(a["black_key"][0]) == 4


@pytest.mark.parametrize("workers", [0, 2])
def test_sparse_sampling_never_loses_a_short_clip(tmp_path, workers):
    """Sampled at 0.5 frame/s, a 1.6-s clip that opens on 1 s of black has one sample, black: it is sampled
    again at 1 frame/s (the default rate) instead of being reported as blank. A file that is blank at 1
    frame/s too is still refused."""
    from vmatch.sample import DENSE_FPS

    fps = 10
    clip = scene_clip(3102, 0, 0.6, fps=fps)
    leader = np.concatenate([synth.black_frames(fps, clip.shape[2], clip.shape[1]), clip])
    short = write_clip(tmp_path / "short.mp4", leader, fps=fps)
    black = write_clip(tmp_path / "black.mp4", synth.black_frames(3 * fps, clip.shape[2], clip.shape[1]), fps=fps)
    with _bank(tmp_path / "b", FakeEmbedder()) as bank:
        s = index_videos(bank, [short, black], threads=ThreadPolicy(workers=workers), decode=DecodeOptions(fps=0.5))
        assert [p for p, _ in s.failed] == [str(black)]
        got = _contents(bank)["short"][0]
    assert DENSE_FPS == 1.0 and np.allclose(got, [1.0])


def test_sample_video_has_the_same_dense_pass(tmp_path):
    """sample_video (what Ray's decode tasks run) samples the clip of the test above like the local
    flow: its one black sample at 0.5 frame/s is replaced by the frames at 1 frame/s."""
    from vmatch.sample import content_frames, sample_video, SampleCounts

    fps = 10
    clip = scene_clip(3102, 0, 0.6, fps=fps)
    leader = np.concatenate([synth.black_frames(fps, clip.shape[2], clip.shape[1]), clip])
    short = write_clip(tmp_path / "short.mp4", leader, fps=fps)
    local = [t for t, _ in content_frames(short, SampleCounts(), DecodeOptions(fps=0.5), size=(64, 64))]
    sampled = sample_video(short, size=(64, 64), fps=0.5)
    assert np.allclose(sampled.timestamps, local) and np.allclose(local, [1.0])
    assert len(sampled.frames) == 1 and sampled.n_blank == 1


def test_keyframe_gop_is_checked(tmp_path, files):
    with _bank(tmp_path / "b", FakeEmbedder()) as bank, pytest.raises(UsageError, match="keyframe_gop"):
        index_videos(bank, files[:1], decode=DecodeOptions(keyframe_gop=-1))


def test_workers_take_the_largest_files_first(tmp_path, files):
    """Longest-processing-time-first: the pool starts the largest file first, so that a long file does not
    decode alone at the end; with one worker the files are therefore stored largest first."""
    from vmatch.parallel import largest_first

    missing = tmp_path / "gone.mp4"
    paths = [*files, missing]
    sizes = [p.stat().st_size if p.exists() else 0 for p in paths]
    order = largest_first(paths)
    assert sorted(order) == list(range(len(paths)))
    assert [sizes[i] for i in order] == sorted(sizes, reverse=True)
    assert order[-1] == len(paths) - 1  # unreadable: last
    stored = []
    with _bank(tmp_path / "b", FakeEmbedder()) as bank:
        index_videos(bank, files, threads=ThreadPolicy(workers=1), on_done=lambda p, e: stored.append(p))
    good = [str(files[i]) for i in largest_first(files) if files[i].stem.startswith("clip_")]
    assert stored == good and stored != [str(f) for f in files if f.stem.startswith("clip_")]


def test_index_videos_takes_the_writer_lock_once_before_decoding(tmp_path, files, caplog, monkeypatch):
    """Beside another writer, index_videos waits for the lock before it decodes anything (one
    warning saying so) however long that is (beyond the bounded wait of a single write, made
    0.2 s here), then stores every readable file: none is lost to a timed-out wait."""
    import fcntl
    import os

    import vmatch.bank as bank_mod

    monkeypatch.setattr(bank_mod, "WRITER_WAIT_S", 0.2, raising=False)
    good = [f for f in files if f.stem.startswith("clip_")][:3]
    with _bank(tmp_path / "b", FakeEmbedder()) as bank:
        fd = os.open(tmp_path / "b" / bank_mod.LOCK_NAME, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = {}
        t = threading.Thread(target=lambda: result.update(s=index_videos(bank, good, threads=ThreadPolicy(workers=2))))
        t.start()
        time.sleep(3.0)  # the three clips decode and embed in well under a second
        assert t.is_alive() and bank.list() == []
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        t.join(60)
        assert not result["s"].failed and result["s"].videos == 3
        assert sorted(r.reference for r in bank.list()) == sorted(f.stem for f in good)
    waits = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    assert len(waits) == 1 and "another process" in waits[0]

"""Scale-out on Ray (vmatch.distributed): a real local cluster (a head and a second node, each its
own raylet and worker processes on 127.0.0.1), generated videos, banks compared with a local run's.

Skipped when Ray is not installed (``pip install 'vmatch[ray]'``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'vmatch[ray]' to run the scale-out tests")

from vmatch import synth  # noqa: E402
from vmatch.bank import Bank  # noqa: E402
from vmatch.cli import main  # noqa: E402
from vmatch.distributed import RayEngine, RayOptions  # noqa: E402
from vmatch.embed import FakeEmbedder  # noqa: E402
from vmatch.options import DecodeOptions  # noqa: E402
from vmatch.pipeline import index_videos  # noqa: E402

pytestmark = pytest.mark.slow

#: (seed, seconds) of the generated reference videos
REFS = {f"ray_ref_{i}": (3000 + i, 4.0 + (i % 3)) for i in range(8)}


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node and a worker node started as separate raylets (``ray.cluster_utils.Cluster``),
    in a short private temp dir (RAY_TMPDIR) so they never touch another cluster; shut down after."""
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="vmr", dir="/tmp")
    old = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = tmp
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "object_store_memory": 150 << 20})
    worker = cluster.add_node(num_cpus=2, object_store_memory=150 << 20)
    cluster.wait_for_nodes()
    try:
        yield cluster, worker
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        if old is None:
            os.environ.pop("RAY_TMPDIR", None)
        else:
            os.environ["RAY_TMPDIR"] = old


@pytest.fixture(scope="module")
def ref_videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ray_refs")
    out = {}
    for rid, (seed, secs) in REFS.items():
        frames = synth.scene_frames(seed, width=64, height=48, n_frames=int(secs * 10), fps=10.0)
        out[rid] = synth.write_video(d / f"{rid}.mp4", frames, fps=10, codec="mpeg4")
    return out


def _fake_bank(path: Path) -> Bank:
    return Bank.open(path, create=True, model=FakeEmbedder().spec)


def _local_bank(path: Path, files, embedder) -> Path:
    with Bank.open(path, create=True, model=embedder.spec) as bank:
        bank.set_embedder(embedder)
        s = index_videos(bank, files)
        assert not s.failed
    return path


def _bank_rows(path: Path) -> dict:
    """Everything a bank holds per reference (features separately, for a tolerance)."""
    with Bank.open(path) as bank:
        out = {}
        for info in bank.list():
            emb = bank.reference_embedding(info.reference)
            hashes = sorted((t, v) for r, t, v in bank.hashes() if r == info.reference)
            out[info.reference] = {
                "duration": info.duration, "n_frames": info.n_frames, "sha256": info.sha256,
                "source_name": info.source_name, "extra": info.extra, "hashes": hashes,
                "timestamps": emb.timestamps.tolist(), "features": emb.features.copy(),
            }
        return out


def _assert_same_banks(a: Path, b: Path, *, atol: float = 1e-5) -> None:
    ra, rb = _bank_rows(a), _bank_rows(b)
    assert sorted(ra) == sorted(rb)
    for rid in ra:
        fa, fb = ra[rid].pop("features"), rb[rid].pop("features")
        assert ra[rid] == rb[rid], rid
        np.testing.assert_allclose(fa, fb, atol=atol, err_msg=rid)


def _count_rows(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path / "bank.sqlite") as c:
        return c.execute("SELECT count(*) FROM refs").fetchone()[0]


def test_index_on_cluster_equals_local_run_then_skips(ray_cluster, ref_videos, tmp_path):
    """Distributed indexing (2 nodes, 2 embedding actors) stores the same references, timestamps,
    hashes and features as a local run; a second run skips every file (content already there)."""
    cluster, _ = ray_cluster
    files = sorted(ref_videos.values())
    local = _local_bank(tmp_path / "local", files, FakeEmbedder())
    with _fake_bank(tmp_path / "dist") as bank, RayEngine(
        bank.spec, RayOptions(address=cluster.address, num_actors=2, max_in_flight=4)
    ) as engine:
        s = engine.index(bank, files)
        assert (s.videos, s.failed, s.skipped) == (len(files), [], [])
        again = engine.index(bank, files)
        assert again.videos == 0 and len(again.skipped) == len(files)
    _assert_same_banks(local, tmp_path / "dist")


def test_real_model_bank_equals_local_run(ray_cluster, ref_videos, tmp_path):
    """Same with the EfficientNet-Lite0 embedder (CPU actors): features within float tolerance."""
    from vmatch.embed import make_embedder

    cluster, _ = ray_cluster
    files = sorted(ref_videos.values())[:3]
    emb = make_embedder(None, device="cpu", threads=1)
    local = _local_bank(tmp_path / "local", files, emb)
    with Bank.open(tmp_path / "dist", create=True, model=emb.spec) as bank, RayEngine(
        bank.spec, RayOptions(address=cluster.address, num_actors=1, device="cpu")
    ) as engine:
        s = engine.index(bank, files)
        assert s.videos == 3 and not s.failed
    _assert_same_banks(local, tmp_path / "dist", atol=1e-4)


def test_killed_actor_process_videos_redone_bank_exact(ray_cluster, ref_videos, tmp_path):
    """SIGKILL an embedding actor's process after the first video is stored: its videos are
    redone by the restarted actor, and the bank ends with every reference exactly once, with
    the local run's features."""
    cluster, _ = ray_cluster
    files = sorted(ref_videos.values())
    local = _local_bank(tmp_path / "local", files, FakeEmbedder())
    killed: list[int] = []
    with _fake_bank(tmp_path / "dist") as bank, RayEngine(
        bank.spec, RayOptions(address=cluster.address, num_actors=2, max_in_flight=6)
    ) as engine:
        pids = engine.actor_pids()

        def kill_once(path, emb):
            if not killed:
                os.kill(pids[1], signal.SIGKILL)
                killed.append(pids[1])

        s = engine.index(bank, files, on_done=kill_once)
        assert killed and s.videos == len(files) and not s.failed
        new_pids = engine.actor_pids()
        assert new_pids[1] != pids[1]  # the actor was restarted in a new process
    assert _count_rows(tmp_path / "dist") == len(files)
    _assert_same_banks(local, tmp_path / "dist")


def test_killed_worker_node_videos_retried_elsewhere(ray_cluster, ref_videos, tmp_path):
    """Kill the whole second node (its raylet and every worker on it) mid-run: the videos it held
    are retried on the head; every reference once; a run started again skips them all."""
    cluster, worker = ray_cluster
    files = sorted(ref_videos.values())
    local = _local_bank(tmp_path / "local", files, FakeEmbedder())
    done = threading.Event()
    with _fake_bank(tmp_path / "dist") as bank, RayEngine(
        bank.spec, RayOptions(address=cluster.address, num_actors=2, max_in_flight=6)
    ) as engine:

        def kill_node(path, emb):
            if not done.is_set():
                done.set()
                cluster.remove_node(worker, allow_graceful=False)

        s = engine.index(bank, files, on_done=kill_node)
        assert done.is_set() and s.videos == len(files) and not s.failed
        assert engine.index(bank, files).videos == 0
    assert _count_rows(tmp_path / "dist") == len(files)
    _assert_same_banks(local, tmp_path / "dist")


def test_failed_input_named_and_others_indexed(ray_cluster, ref_videos, tmp_path):
    cluster, _ = ray_cluster
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video\n" * 10)
    files = [bad, *sorted(ref_videos.values())[:2]]
    with _fake_bank(tmp_path / "dist") as bank, RayEngine(
        bank.spec, RayOptions(address=cluster.address, num_actors=1)
    ) as engine:
        s = engine.index(bank, files)
    assert s.videos == 2 and len(s.failed) == 1
    assert s.failed[0][0] == str(bad) and str(bad) in s.failed[0][1]


def test_cli_index_and_match_with_ray_same_output(ray_cluster, ref_videos, tmp_path, capsys):
    """`vmatch index --ray ADDR` then `vmatch match --ray ADDR --json` print what the local
    commands print (same JSON lines, input order)."""
    cluster, _ = ray_cluster
    refs = sorted(ref_videos.values())
    qdir = tmp_path / "q"
    frames = np.concatenate([synth.scene_frames(4000, width=64, height=48, n_frames=30, fps=10.0),
                             synth.scene_frames(3001, width=64, height=48, n_frames=40, fps=10.0)])
    q1 = synth.write_video(qdir / "q1.mp4", frames, fps=10, codec="mpeg4")
    q2 = synth.write_video(qdir / "q2.mp4", synth.scene_frames(4001, width=64, height=48, n_frames=40, fps=10.0),
                           fps=10, codec="mpeg4")
    missing = tmp_path / "missing.mp4"
    for name in ("local", "dist"):
        _fake_bank(tmp_path / name).close()
    assert main(["index", "--bank", str(tmp_path / "local"), *map(str, refs)]) == 0
    assert main(["index", "--bank", str(tmp_path / "dist"), "--ray-address", cluster.address, *map(str, refs)]) == 0
    _assert_same_banks(tmp_path / "local", tmp_path / "dist")
    capsys.readouterr()
    args = ["--json", "--min-score", "0", str(q1), str(missing), str(q2)]
    assert main(["match", "--bank", str(tmp_path / "local"), *args]) == 1
    local_out = capsys.readouterr().out
    assert main(["match", "--bank", str(tmp_path / "local"), "--ray-address", cluster.address, *args]) == 1
    ray_out = capsys.readouterr().out
    # stdout is the reports and nothing else (the in-process test cluster can print a raylet
    # warning under load: `match --ray` sends what Ray prints to stderr).
    assert ray_out == local_out and len(local_out.splitlines()) == 3
    rows = [json.loads(x) for x in local_out.splitlines()]
    assert [r["query"] for r in rows] == [str(missing), str(q1), str(q2)]  # unreadable paths first, as locally
    assert "error" in rows[0] and rows[1]["matches"][0]["reference"] == "ray_ref_1"


def _readme_commands(prefix: str) -> list[list[str]]:
    """The README's command lines that start with ``prefix``, split as a shell would (a trailing
    ``> FILE`` redirection dropped: the test reads stdout itself)."""
    import shlex

    readme = Path(__file__).resolve().parent.parent / "README.md"
    lines = [line.split("#", 1)[0].strip() for line in readme.read_text().splitlines()]
    out = [shlex.split(line.split(">", 1)[0]) for line in lines if line.startswith(prefix)]
    assert out, f"no `{prefix}` line in README.md"
    return out


def test_readme_ray_commands_run_as_written(ray_cluster, ref_videos, tmp_path, monkeypatch, capsys):
    """"A local cluster" of the README's Ray section, its `vmatch index` and `vmatch match` lines
    exactly as written (`--ray` is followed by the paths): the cluster comes from $RAY_ADDRESS, as
    the README says, and the reports equal those of a local run."""
    cluster, _ = ray_cluster
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    (index_cmd,) = _readme_commands("vmatch index --bank refs_bank --ray ")
    (match_cmd,) = _readme_commands("vmatch match --bank refs_bank --ray ")
    videos, uploads = tmp_path / index_cmd[-1], tmp_path / match_cmd[-1]
    videos.mkdir()
    for f in sorted(ref_videos.values())[:3]:
        (videos / f.name).write_bytes(f.read_bytes())
    frames = np.concatenate([synth.scene_frames(4100, width=64, height=48, n_frames=30, fps=10.0),
                             synth.scene_frames(3001, width=64, height=48, n_frames=40, fps=10.0)])
    synth.write_video(uploads / "u1.mp4", frames, fps=10, codec="mpeg4")
    _fake_bank(tmp_path / "refs_bank").close()  # the fake model: the README's commands on a small bank
    assert main(index_cmd[1:]) == 0
    with Bank.open(tmp_path / "refs_bank") as bank:
        assert sorted(r.reference for r in bank.list()) == sorted(f.stem for f in videos.iterdir())
    capsys.readouterr()
    assert main(match_cmd[1:]) == 0
    ray_out = capsys.readouterr().out
    monkeypatch.delenv("RAY_ADDRESS")
    assert main([a for a in match_cmd[1:] if a != "--ray"]) == 0
    assert ray_out == capsys.readouterr().out
    assert json.loads(ray_out)["matches"][0]["reference"] == "ray_ref_1"


def test_without_ray_flag_ray_is_never_imported(ref_videos, tmp_path):
    """A local `index` and `match` never import Ray."""
    bank = tmp_path / "b"
    _fake_bank(bank).close()
    f = str(sorted(ref_videos.values())[0])
    code = (
        "import sys\n"
        "from vmatch.cli import main\n"
        f"assert main(['index', '--bank', {str(bank)!r}, {f!r}]) == 0\n"
        f"assert main(['match', '--bank', {str(bank)!r}, '--json', {f!r}]) == 0\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
        "assert 'vmatch.distributed' not in sys.modules\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_index_sharded_bank_on_cluster(ray_cluster, ref_videos, tmp_path, capsys):
    """`index --ray` into a new 3-shard bank: each reference in its shard, once; the sharded
    bank holds what a single local bank holds, and `match --ray` on it prints what a local
    `match` on the single bank prints."""
    from vmatch.shards import ShardedBank, shard_of

    cluster, _ = ray_cluster
    files = sorted(ref_videos.values())
    local = _local_bank(tmp_path / "local", files, FakeEmbedder())
    ShardedBank.open(tmp_path / "sh", create=True, n_shards=3, model=FakeEmbedder().spec).close()
    assert main(["index", "--bank", str(tmp_path / "sh"), "--ray-address", cluster.address, *map(str, files)]) == 0
    with ShardedBank.open(tmp_path / "sh") as sh, Bank.open(local) as one:
        for i, b in enumerate(sh.shards):
            assert all(shard_of(r.reference, 3) == i for r in b.list())
        assert [r.reference for r in sh.list()] == [r.reference for r in one.list()]
        for r in one.list():
            np.testing.assert_allclose(sh.reference_embedding(r.reference).features,
                                       one.reference_embedding(r.reference).features, atol=1e-5)
    queries = [str(files[2]), str(files[5])]
    capsys.readouterr()
    assert main(["match", "--bank", str(local), "--json", "--min-score", "0", *queries]) == 0
    local_out = capsys.readouterr().out
    assert main(["match", "--bank", str(tmp_path / "sh"), "--ray-address", cluster.address, "--json", "--min-score", "0",
                 *queries]) == 0
    assert capsys.readouterr().out == local_out
    assert json.loads(local_out.splitlines()[0])["matches"][0]["reference"] == files[2].stem


def test_interrupted_run_started_again_skips_what_is_in_the_bank(ray_cluster, ref_videos, tmp_path):
    """Ctrl-C (KeyboardInterrupt) after 3 videos: the bank holds those 3, whole; the same command
    started again skips them by content hash and indexes the rest; the bank equals a local run's."""
    cluster, _ = ray_cluster
    files = sorted(ref_videos.values())
    local = _local_bank(tmp_path / "local", files, FakeEmbedder())
    stored: list[str] = []

    def interrupt_after_three(path, emb):
        stored.append(path)
        if len(stored) == 3:
            raise KeyboardInterrupt

    with _fake_bank(tmp_path / "dist") as bank, RayEngine(
        bank.spec, RayOptions(address=cluster.address, num_actors=1)
    ) as engine:
        first = engine.index(bank, files, on_done=interrupt_after_three)
        assert first.interrupted and first.videos == 3
    assert _count_rows(tmp_path / "dist") == 3
    with Bank.open(tmp_path / "dist") as bank, RayEngine(bank.spec, RayOptions(address=cluster.address)) as engine:
        again = engine.index(bank, files)
    assert sorted(p for p, _ in again.skipped) == sorted(stored)
    assert again.videos == len(files) - 3 and not again.failed
    _assert_same_banks(local, tmp_path / "dist")


def test_long_video_in_windows_equals_local_run(ray_cluster, tmp_path):
    """A video longer than ``chunk_frames`` sampled frames is decoded in windows on several tasks
    (sampling at 2 frames/s, windows of 5 frames); merged, it is the local run's reference:
    same timestamps (no frame lost or repeated at a boundary), same blank count, same features."""
    cluster, _ = ray_cluster
    frames = synth.scene_frames(3100, width=64, height=48, n_frames=130, fps=10.0)
    frames[40:58] = 0  # a black stretch across a window boundary: blank frames, counted once
    vids = [synth.write_video(tmp_path / "long_a.mp4", frames, fps=10, codec="mpeg4"),
            synth.write_video(tmp_path / "long_b.mp4", frames[::-1].copy(), fps=7, codec="mpeg4")]
    fake = FakeEmbedder()
    with Bank.open(tmp_path / "local", create=True, model=fake.spec) as bank:
        bank.set_embedder(fake)
        assert not index_videos(bank, vids, decode=DecodeOptions(fps=2.0)).failed
    with _fake_bank(tmp_path / "dist") as bank, RayEngine(
        bank.spec, RayOptions(address=cluster.address, num_actors=2, chunk_frames=5)
    ) as engine:
        s = engine.index(bank, vids, fps=2.0)
        assert s.videos == 2 and not s.failed and s.windows >= 10
    _assert_same_banks(tmp_path / "local", tmp_path / "dist")


def test_cli_ray_local_starts_and_stops_its_own_cluster(ray_cluster, ref_videos, tmp_path):
    """`--ray local`: a private local Ray instance for the run, shut down afterwards."""
    _fake_bank(tmp_path / "b").close()
    files = [str(f) for f in sorted(ref_videos.values())[:2]]
    assert main(["index", "--bank", str(tmp_path / "b"), "--ray-address", "local", *files]) == 0
    assert not ray.is_initialized()
    with Bank.open(tmp_path / "b") as bank:
        assert len(bank.list()) == 2

"""The HTTP service under bad input and ordinary uploads (issue 17).

Two kinds of servers: the real one (``vmatch serve`` in a subprocess, ``Server`` of
``test_service``) where the process matters (FFmpeg's threads, uvicorn's access log, a client
closing its socket), and the app in-process (``fastapi.testclient``, real job threads) for the
routes' answers. Both use the weight-free ``fake-thumbnail`` embedder.
"""

from __future__ import annotations

import io
import json
import math
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from test_service import Server, auth  # noqa: E402

from vmatch import synth  # noqa: E402
from vmatch.service.keys import KeyStore  # noqa: E402

FAKE = "fake-thumbnail"
#: Seconds any one request of the concurrency test may take (they take well under 5 s unloaded).
REQUEST_LIMIT = 60.0


# ------------------------------------------------------------------------------------------ media
@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """H.264 (MP4) and VP9 (WebM) clips, and still images: PNG, JPEG, a GIF of one frame."""
    d = tmp_path_factory.mktemp("rel_media")
    frames = synth.scene_frames(1701, width=160, height=90, n_frames=75, fps=25)
    out = {
        "h264": synth.write_video(d / "clip_h264.mp4", frames, fps=25, codec="libx264"),
        "vp9": synth.write_video(d / "clip_vp9.webm", frames, fps=25, codec="libvpx-vp9"),
        "gif1": synth.write_video(d / "one_frame.gif", frames[:1], fps=10, codec="gif"),
        "png": _still(d / "still.png", "png", "rgb24"),
        "jpeg": _still(d / "still.jpg", "mjpeg", "yuvj420p"),
    }
    return out


def _still(path: Path, codec: str, pix_fmt: str) -> Path:
    import av

    with av.open(str(path), "w", format="image2") as c:
        s = c.add_stream(codec)
        s.width, s.height, s.pix_fmt = 64, 48, pix_fmt
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 120, np.uint8), format="rgb24").reformat(format=pix_fmt)
        for p in [*s.encode(frame), *s.encode()]:
            c.mux(p)
    return path


def _post_file(client, url: str, path: Path, **kw):
    with open(path, "rb") as fh:
        return client.post(url, files={"file": (path.name, fh, "application/octet-stream")}, **kw)


# ------------------------------------------------------------------------------------------ in-process app
@pytest.fixture
def make_app(tmp_path):
    """Factory ``make_app(**config) -> (client, keys)``: the app in-process (lifespan run, real
    job threads) over a fresh bank root with a bank ``b`` of the fake model; keys by scope."""
    from fastapi.testclient import TestClient

    from vmatch.service import ServiceConfig, create_app

    opened = []

    def make(**opts):
        root = tmp_path / f"root{len(opened)}"
        store = KeyStore(root)
        keys = {s: store.create(s, s)[0] for s in ("admin", "match", "curate")}
        opts = {"default_model": FAKE, "preload_model": False, "device": "cpu", **opts}
        client = TestClient(create_app(ServiceConfig(bank_root=root, **opts)), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        client.headers.update(auth(keys["admin"]))
        assert client.post("/banks", json={"name": "b"}).status_code == 201
        return client, keys

    yield make
    for c in opened:
        c.__exit__(None, None, None)


def _error(r, status: int, code: str, *words: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["error"] == code, body
    for w in words:
        assert w in body["detail"], (w, body)
    return body


# ------------------------------------------------------------------------------------------ 1. no deadlock
@pytest.fixture
def plain_server(tmp_path):
    """``vmatch serve`` with the fake model, 4 workers, the access log on (``--log-level info``)."""
    root = tmp_path / "root"
    key, _ = KeyStore(root).create("admin", "admin")
    srv = Server(root, "--model", FAKE, "--workers", "4", "--queue-size", "64", "--log-level", "info",
                 log=tmp_path / "server.log")
    srv.key = key
    srv.start()
    try:
        srv.wait_ready(key)
        assert httpx.post(srv.url + "/banks", json={"name": "b"}, headers=auth(key)).status_code == 201
        yield srv
    finally:
        srv.stop()


def test_h264_and_vp9_uploads_never_hang(plain_server, media):
    """8 clients upload H.264 and VP9 clips to every media route at once: every request answers
    within REQUEST_LIMIT, ``/status/live`` answers after, SIGTERM stops the server, no upload is
    left. (With PyAV's log callback installed, the first uploads hung forever: an FFmpeg frame
    thread waited for the GIL held by the job thread waiting for it.)"""
    srv = plain_server
    routes = ("/banks/b/match", "/banks/b/references?id=r{n}", "/hash")
    failures: list[str] = []

    def client(n: int) -> None:
        with httpx.Client(base_url=srv.url, headers=auth(srv.key), timeout=REQUEST_LIMIT) as c:
            for codec in ("h264", "vp9") if n % 2 else ("vp9", "h264"):
                for route in routes:
                    url = route.format(n=n)
                    t0 = time.monotonic()
                    try:
                        r = _post_file(c, url, media[codec])
                    except httpx.TimeoutException:
                        failures.append(f"{codec} {url}: no answer in {REQUEST_LIMIT:g} s")
                        return  # one hang is enough: do not wait for the others
                    if r.status_code not in (200, 201):
                        failures.append(f"{codec} {url}: {r.status_code} {r.text[:200]}")
                    assert time.monotonic() - t0 < REQUEST_LIMIT + 5

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(client, range(8)))
    assert not failures, failures[:4]
    assert httpx.get(srv.url + "/status/live", timeout=5).json() == {"status": "up"}
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(30) is not None  # subprocess.TimeoutExpired if SIGTERM were ignored
    assert list((srv.root / ".uploads").iterdir()) == []


def test_the_service_process_never_installs_pyav_logging(tmp_path, media):
    """After the app's startup and an upload probed and decoded, PyAV's log callback is still off
    (``av.logging.get_level()`` None: PyAV's own no-log callback); and no module of the package
    turns it on (``set_level`` with a level, ``Capture``)."""
    code = f"""
import av.logging
from fastapi.testclient import TestClient
from vmatch.service import ServiceConfig, create_app
from vmatch.service.keys import KeyStore
root = {str(tmp_path / "root")!r}
key, _ = KeyStore(root).create("k", "admin")
app = create_app(ServiceConfig(bank_root=root, default_model="fake-thumbnail", preload_model=False, device="cpu"))
with TestClient(app) as c:
    with open({str(media["h264"])!r}, "rb") as fh:
        r = c.post("/hash", files={{"file": ("a.mp4", fh)}}, headers={{"Authorization": "Bearer " + key}})
    assert r.status_code == 200, r.text
    print("level", av.logging.get_level())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["level", "None"], out.stdout
    package = Path(__file__).resolve().parents[1] / "vmatch"
    offenders = [f"{p}:{i}" for p in package.rglob("*.py") for i, line in enumerate(p.read_text().splitlines(), 1)
                 if re.search(r"logging\.(set_level\((?!None)|Capture\b)", line.split("#")[0])]
    assert not offenders, offenders


# ------------------------------------------------------------------------------------------ 2. lookup as a job, signals
def _vpdq_text() -> str:
    return "0,100," + "f" * 64 + ",0.000\n1,100," + "0" * 64 + ",1.000\n"


def test_lookup_runs_in_the_job_queue(make_app):
    """POST /lookup is a job: with the only worker busy and no queue it gets 503 queue_full +
    Retry-After, and mode=async gives a job of kind lookup."""
    client, keys = make_app(workers=1, queue_size=0)
    state = client.app.state.vmatch
    release = threading.Event()
    blocker = state.jobs.submit("hold", lambda deadline: release.wait(30) and {}, owner="test")
    try:
        r = client.post("/banks/b/lookup", params={"signal_type": "vpdq"}, content=_vpdq_text(),
                        headers={"Content-Type": "text/plain"})
        _error(r, 503, "queue_full")
        assert int(r.headers["retry-after"]) >= 1
    finally:
        release.set()
    blocker.future.result(30)
    r = client.post("/banks/b/lookup", params={"signal_type": "vpdq", "mode": "async"}, content=_vpdq_text(),
                    headers={"Content-Type": "text/plain"})
    assert r.status_code == 202, r.text
    job = state.jobs.get(r.json()["job_id"])
    job.future.result(30)
    assert job.kind == "lookup" and job.status == "done" and job.result["matches"] == []
    r = client.post("/banks/b/lookup", params={"signal_type": "vpdq"}, content=_vpdq_text(),
                    headers={"Content-Type": "text/plain"})
    assert r.status_code == 200 and r.json()["query"] == "body", r.text


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _signal(ts, feats, *, model_id: str, dim: int | None = None, features_npy: bytes | None = None) -> bytes:
    """A .vmsig written member by member (as ``np.savez_compressed`` does), so that any array
    (or a forged ``features.npy``) can be put in it."""
    from vmatch.verify import empty

    header = {"format": "vmatch-cnn-signal", "version": 2, "model_id": model_id, "model": {"name": FAKE, "dim": dim},
              "video_id": "v", "duration": 4.0, "fps": 1.0, "n_blank": 0, "sha256": ""}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("header.npy", _npy(np.frombuffer(json.dumps(header).encode(), np.uint8)))
        z.writestr("timestamps.npy", _npy(np.asarray(ts, "<f8")))
        z.writestr("features.npy", features_npy if features_npy is not None else _npy(np.asarray(feats, "<f2")))
        n = len(np.asarray(ts).reshape(-1))
        e = empty(mirrored=True)
        zero = type(e)(np.zeros(n, np.int32), e.coords, e.descriptors, e.static, type(e)(np.zeros(n, np.int32), e.coords, e.descriptors, e.static))
        for k, v in zero.to_arrays().items():  # no keypoints in any frame: valid, and nothing to verify
            z.writestr(f"{k}.npy", _npy(v))
    return buf.getvalue()


def _forged_npy_header(shape: tuple[int, ...]) -> bytes:
    """A features.npy whose header declares ``shape`` (float16) but that holds 64 bytes of data."""
    head = f"{{'descr': '<f2', 'fortran_order': False, 'shape': {shape}, }}".encode()
    head += b" " * (63 - (10 + len(head)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head + b"\0" * 64


def test_malformed_and_oversized_signals_are_400_naming_the_file(make_app):
    client, _ = make_app()
    bank = client.get("/banks/b").json()
    mid = bank["model_id"]
    dim = 64  # the fake model's width
    ts = np.arange(4.0)
    good = np.eye(4, dim)
    from vmatch.signals.cnn import MAX_EXPANDED_BYTES

    bomb_rows = (MAX_EXPANDED_BYTES + (6 << 20)) // (2 * dim)  # float16 zeros just over the bound, ~0.5 MB compressed
    bomb = io.BytesIO()
    np.savez_compressed(bomb, header=np.frombuffer(json.dumps({"format": "vmatch-cnn-signal", "version": 2,
                                                               "model_id": mid, "duration": 1.0}).encode(), np.uint8),
                        timestamps=np.zeros(1), features=np.zeros((bomb_rows, dim), np.float16))
    assert len(bomb.getvalue()) < 1 << 20
    crc_broken = bytearray(_signal(ts, good, model_id=mid, dim=dim))
    i = crc_broken.find(b"features.npy") + len("features.npy")  # its deflated data follows the name
    crc_broken[i + 20 : i + 60] = bytes(range(40))
    zlib_broken = bytearray(crc_broken)
    zlib_broken[i : i + 4] = b"\xff" * 4  # a reserved deflate block type: zlib.error, not a CRC error
    cases = {
        "bomb.vmsig": (bomb.getvalue(), "expands to"),
        "declared_huge.vmsig": (_signal(ts, None, model_id=mid, dim=256,
                                        features_npy=_forged_npy_header((10**10, 256))), "declares"),
        "features_1d.vmsig": (_signal(ts, np.zeros(4), model_id=mid), "2-D"),
        "features_empty.vmsig": (_signal(np.zeros(0), np.zeros((0, 0)), model_id=mid), "0-d"),
        "wrong_width.vmsig": (_signal(ts, np.eye(4, dim + 1), model_id=mid, dim=dim + 1), f"{dim + 1}-d"),
        "short_timestamps.vmsig": (_signal(np.arange(3.0), good, model_id=mid, dim=dim), "3 timestamps"),
        "nan_features.vmsig": (_signal(ts, np.full((4, dim), np.nan), model_id=mid, dim=dim), "NaN"),
        "not_a_zip.vmsig": (b"hello, not a signal", "not a vmatch-cnn-signal"),
        "bad_crc.vmsig": (bytes(crc_broken), "CRC"),
        "broken_deflate.vmsig": (bytes(zlib_broken), "compressed data is corrupt"),
    }
    for name, (data, words) in cases.items():
        r = client.post("/banks/b/lookup", params={"signal_type": "cnn"}, files={"file": (name, data)})
        _error(r, 400, "invalid_hash_file", name, words)
    r = client.post("/banks/b/lookup", params={"signal_type": "cnn"},
                    files={"file": ("other_model.vmsig", _signal(ts, good, model_id="effnet-x", dim=dim))})
    _error(r, 422, "model_mismatch", "other_model.vmsig")
    r = client.post("/banks/b/lookup", params={"signal_type": "cnn"},
                    files={"file": ("fine.vmsig", _signal(ts, good, model_id=mid, dim=dim))})
    assert r.status_code == 200 and r.json()["query"] == "fine.vmsig", r.text


# ------------------------------------------------------------------------------------------ 3. from-path
def test_from_path_unusable_paths_are_400(make_app, tmp_path, media):
    root = tmp_path / "media_root"
    root.mkdir()
    (root / "loop_a").symlink_to(root / "loop_b")
    (root / "loop_b").symlink_to(root / "loop_a")
    (root / "clip.mp4").write_bytes(media["h264"].read_bytes())
    client, _ = make_app(media_root=root)
    cases = {
        "loop_a": "symbolic link loop",
        "loop_a/clip.mp4": "symbolic link loop",
        "x" * 300 + ".mp4": "too long",
        "d/" * 2100 + "clip.mp4": "too long",
    }
    for path, words in cases.items():
        r = client.post("/banks/b/references/from-path", json={"path": path})
        body = _error(r, 400, "invalid_path", words, path[:50])
        assert len(body["detail"]) < 400 and str(root) not in body["detail"], body
    r = client.post("/banks/b/references/from-path", json={"path": "clip.mp4"})
    assert r.status_code == 201, r.text


# ------------------------------------------------------------------------------------------ 4. secrets in logs
def test_secret_query_parameters_are_redacted():
    from vmatch.service.logs import redact

    assert redact("/banks?api_key=SECRET1&x=2") == "/banks?api_key=[REDACTED]&x=2"
    assert redact('GET /s?API-KEY=S2;Token=S3&access_token=S4 HTTP/1.1"') == \
        'GET /s?API-KEY=[REDACTED];Token=[REDACTED]&access_token=[REDACTED] HTTP/1.1"'
    assert redact("/a?api%5Fkey=S5&password=S6&mode=sync") == "/a?api%5Fkey=[REDACTED]&password=[REDACTED]&mode=sync"
    assert redact("/banks/b/match?mode=async&threshold=0.2") == "/banks/b/match?mode=async&threshold=0.2"


def test_access_log_never_holds_a_key_sent_in_the_query(plain_server):
    srv = plain_server
    r = httpx.get(srv.url + "/banks", params={"api_key": "SECRET123"})
    assert r.status_code == 401
    r = httpx.get(srv.url + "/status/live", params={"Token": "SECRET456", "mode": "x"})
    assert r.status_code == 200
    time.sleep(0.5)
    log = srv.log.read_text()
    assert '"GET /banks?api_key=[REDACTED] HTTP/1.1" 401' in log, log[-2000:]
    assert "Token=[REDACTED]&mode=x" in log
    assert "SECRET123" not in log and "SECRET456" not in log


# ------------------------------------------------------------------------------------------ 5. auth before the body
def test_authentication_comes_before_body_validation(make_app):
    client, keys = make_app()
    bad = {"content": b"{bad json", "headers": {"Content-Type": "application/json", "Authorization": ""}}
    _error(client.post("/banks", **bad), 401, "missing_api_key")
    bad["headers"]["Authorization"] = "Bearer vmk_nope_nope"
    _error(client.post("/banks", **bad), 401, "invalid_api_key")
    bad["headers"]["Authorization"] = f"Bearer {keys['match']}"
    _error(client.post("/banks", **bad), 403, "insufficient_scope")
    _error(client.post("/banks/b/references/from-path", **bad), 403, "insufficient_scope")
    bad["headers"]["Authorization"] = f"Bearer {keys['curate']}"
    _error(client.post("/banks", **bad), 422, "invalid_request", "JSON")
    r = client.get("/banks/b/lookup", params={"signal_type": "tlsh", "value": "0"}, headers={"Authorization": ""})
    _error(r, 401, "missing_api_key")


# ------------------------------------------------------------------------------------------ 6. client leaves mid-upload
def test_client_closing_mid_upload_is_a_one_line_499(plain_server):
    srv = plain_server
    head = (f"POST /banks/b/match HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {srv.key}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(head + b"\0" * 5000)
        time.sleep(0.5)
    deadline = time.monotonic() + 20
    metrics = ""
    while time.monotonic() < deadline:
        metrics = httpx.get(srv.url + "/metrics", headers=auth(srv.key), timeout=10).text
        if 'route="/banks/{bank}/match",status="499"' in metrics:
            break
        time.sleep(0.2)
    assert 'vmatch_http_requests_total{method="POST",route="/banks/{bank}/match",status="499"} 1' in metrics, metrics
    assert 'status="500"' not in metrics
    log = srv.log.read_text()
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]
    lines = [x for x in log.splitlines() if "closed the connection during the upload" in x]
    assert len(lines) == 1 and "POST /banks/b/match after 5000 of 10000000 bytes" in lines[0], lines
    assert list((srv.root / ".uploads").iterdir()) == []


# ------------------------------------------------------------------------------------------ 7. Retry-After
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _queue(clock, workers: int = 2, queue_size: int = 4):
    from vmatch.service.jobs import JobQueue
    from vmatch.service.metrics import Metrics

    return JobQueue(workers=workers, queue_size=queue_size, timeout=60, ttl=60, max_kept=100, metrics=Metrics(),
                    clock=clock)


def _fill_with_slow_jobs(q, release: threading.Event) -> list:
    jobs = [q.submit("slow", lambda d: release.wait(30) and {}, owner="t") for _ in range(q.capacity)]
    deadline = time.monotonic() + 10
    while q.running < q.workers and time.monotonic() < deadline:
        time.sleep(0.01)
    return jobs


def test_retry_after_counts_the_jobs_ahead_and_their_run_time():
    from vmatch.service.jobs import QueueFull

    clock = _Clock()
    q = _queue(clock)
    first, second = threading.Event(), threading.Event()
    try:
        for _ in range(10):  # 10 jobs of 0 s done
            q.submit("quick", lambda d: {}, owner="t").future.result(10)
        jobs = _fill_with_slow_jobs(q, first)  # 2 running + 4 queued
        clock.now += 16.0  # the running ones have run 16 s
        with pytest.raises(QueueFull) as e:
            q.submit("more", lambda d: {}, owner="t")
        assert e.value.retry_after == math.ceil(6 * 16.0 / 2)  # 48 s, not 1
        first.set()
        for j in jobs:
            j.future.result(10)
        # Finished: 10 + 4 runs of 0 s and 2 of 16 s, a mean of 2 s; the new running ones have
        # just started, so the finished ones set the pace: 6 jobs x 2 s / 2 workers.
        _fill_with_slow_jobs(q, second)
        with pytest.raises(QueueFull) as e:
            q.submit("more", lambda d: {}, owner="t")
        assert e.value.retry_after == 6
    finally:
        first.set()
        second.set()
        q.shutdown()


def test_retry_after_is_at_least_one_second():
    clock = _Clock()
    q = _queue(clock, workers=1, queue_size=0)
    try:
        q.submit("quick", lambda d: {}, owner="t").future.result(10)
        assert q.retry_after() == 1
    finally:
        q.shutdown()


# ------------------------------------------------------------------------------------------ 8. test model
def test_the_test_model_needs_the_test_option(make_app):
    client, keys = make_app(default_model="effnet-lite0-gem")
    r = client.post("/banks", json={"name": "t", "model": FAKE}, headers=auth(keys["curate"]))
    body = _error(r, 400, "unknown_model", FAKE)
    assert "effnet-lite0-gem" in body["detail"]
    _error(client.post("/banks", json={"name": "t", "model": "nope"}), 400, "unknown_model", "nope")
    assert "fake" not in client.post("/banks", json={"name": "t", "model": "nope"}).json()["detail"]
    client2, keys2 = make_app(default_model="effnet-lite0-gem", allow_test_models=True)
    r = client2.post("/banks", json={"name": "t", "model": FAKE}, headers=auth(keys2["curate"]))
    assert r.status_code == 201 and r.json()["model_id"].startswith(FAKE), r.text
    # A server whose operator chose the test model as its default (the tests' servers) uses it.
    client3, _ = make_app()
    assert client3.get("/banks/b").json()["model_id"].startswith(FAKE)
    assert client3.post("/banks", json={"name": "t", "model": FAKE}).status_code == 201


# ------------------------------------------------------------------------------------------ 9. still images
@pytest.mark.parametrize("route", ["/banks/b/match", "/banks/b/references?id=s", "/hash"])
def test_still_images_are_not_videos(make_app, media, route):
    client, _ = make_app()
    for kind, words in (("png", "png"), ("jpeg", "jpeg"), ("gif1", "GIF of one frame")):
        r = _post_file(client, route, media[kind])
        _error(r, 422, "not_a_video", media[kind].name, "still image", words)
    assert client.get("/banks/b").json()["references"] == 0


# ------------------------------------------------------------------------------------------ 10. numbers, config
@pytest.mark.parametrize("value", ["nan", "NaN", "1e400", "inf", "-inf", "-1e400", "2"])
@pytest.mark.parametrize("param", ["threshold", "min_score"])
def test_scores_must_be_finite_within_bounds(make_app, media, param, value):
    client, _ = make_app()
    r = _post_file(client, "/banks/b/match", media["h264"], params={param: value})
    _error(r, 422, "invalid_request", param)
    r = client.post("/banks/b/lookup", params={"signal_type": "cnn", param: value}, files={"file": ("x.vmsig", b"PK")})
    _error(r, 422, "invalid_request", param)


@pytest.mark.parametrize("field,value,words", [
    ("workers", 0, "--workers must be at least 1, got 0"),
    ("queue_size", -1, "--queue-size must be at least 0"),
    ("sync_wait", math.nan, "--sync-wait must be a finite number >= 0, got nan"),
    ("sync_max_duration", math.inf, "--sync-max-duration must be a finite number"),
    ("job_timeout", math.inf, "--job-timeout must be a finite number > 0, got inf"),
    ("max_duration", 0, "--max-duration must be a finite number > 0"),
    ("torch_threads", 0, "--threads must be at least 1"),
    ("max_upload_bytes", -(1 << 20), "--max-upload-mb must be at least one byte, got -1 MiB"),
    ("max_side", 10**6, "--max-side must be at most 8192"),
    ("workers", 2.5, "--workers must be at least 1, got 2.5"),
    ("device", "gpu", "--device must be auto, cpu, cuda or cuda:N"),
])
def test_service_config_refuses_bad_values(tmp_path, field, value, words):
    from vmatch.errors import UsageError
    from vmatch.service import ServiceConfig

    with pytest.raises(UsageError) as e:
        ServiceConfig(bank_root=tmp_path, **{field: value})
    assert words in str(e.value)


@pytest.mark.parametrize("flags,words", [
    (["--port", "99999"], "--port: must be a TCP port within 1..65535, got 99999"),  # argparse: usage + 1 line
    (["--queue-size", "-1"], "--queue-size must be at least 0"),  # ServiceConfig: exactly 1 line
    (["--sync-wait", "nan"], "--sync-wait must be a finite number"),
])
def test_serve_with_a_bad_option_exits_2_with_one_line(tmp_path, flags, words):
    out = subprocess.run([sys.executable, "-m", "vmatch.cli", "serve", "--bank-root", str(tmp_path), *flags],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out
    assert "Traceback" not in out.stderr and words in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    if lines[0].startswith("usage:"):
        lines = [x for x in lines if "error:" in x]
    assert len(lines) == 1, out.stderr


# ------------------------------------------------------------------------------------------ headers, caps
def test_mp4_frame_size_reads_the_declared_size_within_bounds(media, tmp_path, monkeypatch):
    from vmatch import headers
    from vmatch.headers import MAX_BOXES, mp4_frame_size

    assert mp4_frame_size(media["h264"]) == (160, 90)
    assert mp4_frame_size(media["vp9"]) is None and mp4_frame_size(media["png"]) is None
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(media["h264"].read_bytes()[:200])
    assert mp4_frame_size(truncated) is None
    many = tmp_path / "many_boxes.mp4"  # an ftyp, then a million empty 'free' boxes
    many.write_bytes(b"\0\0\0\x08ftyp" + b"\0\0\0\x08free" * 1_000_000)
    reads = []
    read_at = headers._Reader.read_at
    monkeypatch.setattr(headers._Reader, "read_at", lambda self, pos, n: reads.append(pos) or read_at(self, pos, n))
    assert mp4_frame_size(many) is None
    assert len(reads) <= MAX_BOXES + 1 < 1_000_000


def test_lookup_files_are_capped_at_the_signal_bound(make_app):
    from vmatch.signals.cnn import MAX_EXPANDED_BYTES

    client, _ = make_app()
    r = client.post("/banks/b/lookup", params={"signal_type": "cnn"}, content=b"PK" + b"\0" * MAX_EXPANDED_BYTES,
                    headers={"Content-Type": "application/octet-stream"})
    _error(r, 413, "upload_too_large", str(MAX_EXPANDED_BYTES))

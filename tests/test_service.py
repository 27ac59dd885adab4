"""The HTTP service, tested as a platform uses it: the real server (``vmatch serve``, uvicorn) in a
subprocess on 127.0.0.1, a real HTTP client (httpx), tiny generated videos.

Servers: ``main`` (the EfficientNet model on CPU, 2 workers, small queue and tight limits),
``tight`` (the fake embedder, a 1 ms job time limit), ``fuzzed`` (the fake embedder, fuzzed from
its OpenAPI description) and short-lived ones for the crash test.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from vmatch import synth  # noqa: E402
from vmatch.service.keys import KeyStore  # noqa: E402

W, H, F = 160, 90, 25


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``vmatch serve`` in a subprocess."""

    def __init__(self, root: Path, *flags: str, log: Path) -> None:
        self.root, self.flags, self.log = root, flags, log
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> "Server":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "vmatch.cli", "serve", "--bank-root", str(self.root), "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "warning", *self.flags],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited: {self.log.read_text()[-3000:]}"
            try:
                if httpx.get(self.url + "/status/live", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server did not start: {self.log.read_text()[-3000:]}")

    def wait_ready(self, key: str, timeout: float = 90.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = httpx.get(self.url + "/status", headers=auth(key), timeout=10)
            if r.status_code == 200:
                return r.json()
            time.sleep(0.3)
        raise AssertionError(f"server not ready: {r.text}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and \
            httpx.get(self.url + "/status/live", timeout=5).json() == {"status": "up"}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _clip(path: Path, seed: int, seconds: float, *, start: float = 0.0, w: int = W, h: int = H, fps: int = F,
          **opts) -> Path:
    frames = synth.scene_frames(seed, width=w, height=h, n_frames=int(round(seconds * fps)), fps=fps,
                                first_frame=int(round(start * fps)))
    return synth.write_video(path, frames, fps=fps, codec="mpeg4", **opts)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("svc_clips")
    media = d / "media"
    media.mkdir()
    out: dict[str, Path] = {"media_root": media}
    out["ref_a"] = _clip(media / "ref_a.mp4", 2101, 8.0)
    out["ref_b"] = _clip(media / "ref_b.mp4", 2102, 6.0)
    # 3 s of unrelated footage, then seconds 2-7 of ref_a.
    q = np.concatenate([
        synth.scene_frames(2103, width=W, height=H, n_frames=3 * F, fps=F),
        synth.scene_frames(2101, width=W, height=H, n_frames=5 * F, fps=F, first_frame=2 * F),
    ])
    out["query"] = synth.write_video(d / "query.mp4", q, fps=F, codec="mpeg4")
    out["unrelated"] = _clip(d / "unrelated.mp4", 2104, 5.0)
    out["long"] = _clip(d / "long.mp4", 2105, 12.0, w=64, h=48)  # > --sync-max-duration 10
    out["too_long"] = _clip(d / "too_long.mp4", 2106, 31.0, w=32, h=24, fps=5)  # > --max-duration 30
    out["many_frames"] = _clip(d / "many_frames.mp4", 2107, 21.0, w=32, h=24, fps=100)  # 2100 > --max-frames 2000
    out["outside"] = _clip(d / "outside.mp4", 2108, 2.0, w=64, h=48)  # not under the media root
    # Bad inputs.
    (d / "garbage.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    out["garbage"] = d / "garbage.mp4"
    data = out["ref_b"].read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) * 2 // 5])  # moov at the end: lost
    out["truncated"] = d / "truncated.mp4"
    out["image"] = _png(d / "still.png")
    out["huge_header"] = _huge_header_mov(d / "huge.mov")
    out["audio"] = synth.write_audio(d / "tone.m4a", seconds=1.0)
    return out


def _png(path: Path) -> Path:
    import av

    with av.open(str(path), "w", format="image2") as c:
        s = c.add_stream("png")
        s.width, s.height, s.pix_fmt = 64, 48, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 120, np.uint8), format="rgb24")
        for p in [*s.encode(frame), *s.encode()]:
            c.mux(p)
    return path


def _huge_header_mov(path: Path) -> Path:
    """A QuickTime file of raw video whose sample description declares 16384x16384 frames."""
    import av

    tmp = path.with_suffix(".small.mov")
    with av.open(str(tmp), "w") as c:
        s = c.add_stream("rawvideo", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "rgb24"
        for k in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * k, np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    data = bytearray(tmp.read_bytes())
    tmp.unlink()
    entry = data.find(b"stsd") + 12  # size(4) of the first sample entry; its type follows
    assert data[entry + 4 : entry + 8] == b"raw "
    off = entry + 8 + 6 + 2 + 16  # reserved, data ref index, predefined/reserved -> width, height
    assert struct.unpack(">HH", data[off : off + 4]) == (64, 48)
    data[off : off + 4] = struct.pack(">HH", 16384, 16384)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("svc_main")
    store = KeyStore(root)
    out = {"root": root}
    for name, scopes in (("admin", "admin"), ("match", "match"), ("curate", "curate"), ("both", "match,curate"),
                         ("doomed", "match")):
        out[name], rec = store.create(name, scopes)
        out[name + "_id"] = rec.key_id
    return out


@pytest.fixture(scope="module")
def main(keys, clips, tmp_path_factory):
    root = keys["root"]
    uploads = tmp_path_factory.mktemp("svc_uploads")
    srv = Server(root, "--device", "cpu", "--workers", "2", "--threads", "1", "--queue-size", "1",
                 "--max-upload-mb", "2", "--max-duration", "30", "--max-frames", "2000", "--sync-max-duration", "10",
                 "--media-root", str(clips["media_root"]), "--upload-dir", str(uploads),
                 log=root.parent / "main-server.log")
    srv.uploads = uploads
    srv.start()
    try:
        srv.wait_ready(keys["admin"])
        c = httpx.Client(base_url=srv.url, headers=auth(keys["admin"]), timeout=300)
        r = c.post("/banks", json={"name": "main"})
        assert r.status_code == 201, r.text
        with open(clips["ref_a"], "rb") as fh:
            r = c.post("/banks/main/references", files={"file": ("ref_a.mp4", fh, "video/mp4")}, params={"vpdq": "true"})
        assert r.status_code == 201, r.text
        srv.client = c
        yield srv
    finally:
        srv.stop()


def _upload(client, url, path: Path, *, key=None, params=None, name=None):
    with open(path, "rb") as fh:
        return client.post(url, files={"file": (name or path.name, fh, "application/octet-stream")},
                           params=params or {}, headers=auth(key) if key else None)


def _bank_state(client) -> tuple:
    info = client.get("/banks/main").json()
    refs = client.get("/banks/main/references").json()["references"]
    return info["generation"], info["hashes"], sorted(r["reference"] for r in refs)


def _wait_job(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("done", "failed"):
            return r.json()
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


# ------------------------------------------------------------------------------------------ auth
def test_auth_missing_wrong_revoked_and_scopes(main, keys, clips):
    url = main.url
    assert httpx.get(url + "/status/live").json() == {"status": "up"}  # the only open endpoint
    for path in ("/status", "/banks", "/metrics", "/banks/main/references", "/jobs/x"):
        r = httpx.get(url + path)
        assert r.status_code == 401 and r.json()["error"] == "missing_api_key", (path, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
    bad = keys["match"][:-4] + "AAAA"
    r = httpx.get(url + "/banks", headers=auth(bad))
    assert r.status_code == 401 and r.json()["error"] == "invalid_api_key"
    r = httpx.get(url + "/banks", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401
    # Scopes: match may match, not curate; curate may curate, not match; admin-only endpoints.
    r = httpx.post(url + "/banks", json={"name": "nope"}, headers=auth(keys["match"]))
    assert r.status_code == 403 and "curate" in r.json()["detail"]
    r = _upload(httpx, url + "/banks/main/match", clips["unrelated"], key=keys["curate"])
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
    assert httpx.get(url + "/metrics", headers=auth(keys["both"])).status_code == 403
    assert httpx.delete(url + "/banks/main", headers=auth(keys["curate"])).status_code == 403
    assert httpx.get(url + "/banks", headers=auth(keys["match"])).status_code == 200
    # Revoked from the command line while the server runs: refused on the next request.
    assert httpx.get(url + "/banks", headers=auth(keys["doomed"])).status_code == 200
    from vmatch.cli import main as cli

    assert cli(["key", "revoke", "--bank-root", str(keys["root"]), keys["doomed_id"]]) == 0
    r = httpx.get(url + "/banks", headers=auth(keys["doomed"]))
    assert r.status_code == 401 and r.json()["error"] == "invalid_api_key"
    # Keys are stored hashed: no secret in the key store file.
    raw = (keys["root"] / ".keys.sqlite").read_bytes()
    assert keys["admin"].encode() not in raw and keys["admin"].split("_")[-1].encode() not in raw


def test_key_cli_create_list(tmp_path, capsys):
    from vmatch.cli import main as cli

    assert cli(["key", "create", "--bank-root", str(tmp_path), "--scope", "match,curate", "--name", "platform-a"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("vmk_")
    assert KeyStore(tmp_path).verify(token).scopes == ("curate", "match")
    assert cli(["key", "list", "--bank-root", str(tmp_path), "--json"]) == 0
    listed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [k["name"] for k in listed] == ["platform-a"] and token not in json.dumps(listed)
    assert cli(["key", "create", "--bank-root", str(tmp_path), "--scope", "root", "--name", "x"]) == 2
    assert cli(["key", "revoke", "--bank-root", str(tmp_path), "nosuchkey"]) == 1


# ------------------------------------------------------------------------------------------ matching
def test_match_upload_gives_the_cli_report(main, keys, clips):
    c = main.client
    r = _upload(c, "/banks/main/match", clips["query"], key=keys["match"])
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["query"] == "query.mp4" and abs(rep["duration"] - 8.0) < 0.05
    cnn = [m for m in rep["matches"] if m["signal_type"] == "cnn"]
    assert [m["reference"] for m in cnn] == ["ref_a"]
    seg = cnn[0]["segments"][0]
    assert abs(seg["query_start"] - 3.0) <= 1.01 and abs(seg["query_end"] - 7.0) <= 1.01
    assert abs(seg["reference_start"] - 2.0) <= 1.01 and abs(seg["reference_end"] - 6.0) <= 1.01
    assert cnn[0]["score"] >= rep["threshold"]
    # The same report as the engine (``vmatch match --json``) gives for the file.
    from vmatch import Bank

    with Bank.open(keys["root"] / "main", device="cpu") as bank:
        expected = bank.match(clips["query"]).to_dict()
    expected["query"] = "query.mp4"
    assert rep == expected
    # Unrelated upload: no match; the raw-body form (octet-stream) works too.
    r = c.post("/banks/main/match", content=clips["unrelated"].read_bytes(),
               headers={**auth(keys["match"]), "Content-Type": "application/octet-stream"})
    assert r.status_code == 200 and r.json()["matches"] == [] and r.json()["query"] == "upload"
    # Byte-identical upload of the reference: md5 and sha1 matches beside the CNN and vPDQ ones.
    r = _upload(c, "/banks/main/match", clips["ref_a"], key=keys["match"])
    kinds = {(m["reference"], m["signal_type"]) for m in r.json()["matches"]}
    assert {("ref_a", "md5"), ("ref_a", "sha1"), ("ref_a", "cnn"), ("ref_a", "vpdq")} <= kinds
    assert list(main.uploads.iterdir()) == []  # every upload deleted once hashed


def test_async_jobs_and_auto_mode(main, keys, clips):
    c = main.client
    r = _upload(c, "/banks/main/match", clips["query"], key=keys["match"], params={"mode": "async"})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert r.headers["location"] == f"/jobs/{job_id}"
    mc = httpx.Client(base_url=main.url, headers=auth(keys["match"]), timeout=60)
    job = _wait_job(mc, job_id)
    assert job["status"] == "done" and job["kind"] == "match" and job["bank"] == "main"
    assert [m["reference"] for m in job["result"]["matches"] if m["signal_type"] == "cnn"] == ["ref_a"]
    # Another key does not see the job.
    assert httpx.get(main.url + f"/jobs/{job_id}", headers=auth(keys["curate"])).status_code == 404
    assert mc.get("/jobs/0123456789abcdef").status_code == 404
    # mode=auto: a video longer than --sync-max-duration (10 s) gets a job id.
    r = _upload(c, "/banks/main/match", clips["long"], key=keys["match"])
    assert r.status_code == 202, r.text
    job = _wait_job(mc, r.json()["job_id"])
    assert job["status"] == "done" and abs(job["result"]["duration"] - 12.0) < 0.1
    # A failed job keeps its error and the status the request would have had.
    r = _upload(c, "/banks/main/match", clips["garbage"], key=keys["match"], params={"mode": "async"})
    assert r.status_code == 422  # checked before the job is queued
    assert list(main.uploads.iterdir()) == []


def test_hash_endpoint(main, keys, clips):
    r = _upload(main.client, "/hash", clips["ref_b"], key=keys["match"])
    assert r.status_code == 200, r.text
    out = r.json()
    data = clips["ref_b"].read_bytes()
    assert out["md5"] == hashlib.md5(data).hexdigest() and out["sha1"] == hashlib.sha1(data).hexdigest()
    assert out["sha256"] == hashlib.sha256(data).hexdigest() and out["file"] == "ref_b.mp4"
    assert out["cnn"]["frames"] == 6 and out["cnn"]["dim"] == 256 and out["cnn"]["model_id"].startswith("effnet")
    from vmatch.signals.vpdq import hash_video, to_text

    assert out["vpdq"]["lines"] == to_text(hash_video(clips["ref_b"])).splitlines()
    assert out["vpdq"]["frames"] == 6


def test_lookup_by_hash_and_hash_files(main, keys, clips):
    c = main.client
    mk = auth(keys["match"])
    md5 = hashlib.md5(clips["ref_a"].read_bytes()).hexdigest()
    r = c.get("/banks/main/lookup", params={"signal_type": "md5", "value": md5.upper()}, headers=mk)
    assert r.status_code == 200 and [(m["reference"], m["signal_type"]) for m in r.json()["matches"]] == [("ref_a", "md5")]
    r = c.get("/banks/main/lookup", params={"signal_type": "sha1", "value": "0" * 40}, headers=mk)
    assert r.status_code == 200 and r.json()["matches"] == []
    r = c.get("/banks/main/lookup", params={"signal_type": "md5", "value": "xyz"}, headers=mk)
    assert r.status_code == 400 and "MD5" in r.json()["detail"]
    r = c.get("/banks/main/lookup", params={"signal_type": "tlsh", "value": "00"}, headers=mk)
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    # A vPDQ hash file (the query's, from /hash) finds ref_a, whose vPDQ was stored.
    lines = _upload(c, "/hash", clips["ref_a"], key=keys["match"]).json()["vpdq"]["lines"]
    r = c.post("/banks/main/lookup", params={"signal_type": "vpdq"}, content="\n".join(lines) + "\n",
               headers={**mk, "Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    m = r.json()["matches"]
    assert m[0]["reference"] == "ref_a" and m[0]["signal_type"] == "vpdq" and m[0]["query_match_percent"] == 100.0
    r = c.post("/banks/main/lookup", params={"signal_type": "vpdq"}, content="not,a,vpdq\n",
               headers={**mk, "Content-Type": "text/plain"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_hash_file"
    # A CNN signal (.vmsig, from `vmatch hash`) matches as the video does.
    from vmatch.embed import make_embedder
    from vmatch.sample import embed_video
    from vmatch.signals import cnn

    emb = make_embedder(device="cpu")
    sig = cnn.dumps(embed_video(clips["query"], emb), model=emb.spec.to_dict(), fps=1.0)
    r = c.post("/banks/main/lookup", params={"signal_type": "cnn"}, files={"file": ("q.vmsig", sig)}, headers=mk)
    assert r.status_code == 200, r.text
    assert [m["reference"] for m in r.json()["matches"]] == ["ref_a"]


def test_import_hash_list_and_remove(main, keys, clips):
    c = main.client
    ck = auth(keys["curate"])
    body = ("# a shared list\nmd5 d41d8cd98f00b204e9800998ecf8427e empty-file\n"
            "sha1 zzzz broken\nmd5 0123 short\n")
    r = c.post("/banks/main/hashes", content=body, headers={**ck, "Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["added"] == 1 and out["lines"] == 1 and len(out["problems"]) == 2
    assert out["problems"][0].startswith("body:3:")
    r = c.get("/banks/main/lookup", params={"signal_type": "md5", "value": "d41d8cd98f00b204e9800998ecf8427e"},
              headers=auth(keys["match"]))
    assert [m["reference"] for m in r.json()["matches"]] == ["empty-file"]
    r = c.post("/banks/main/hashes", content="garbage only\n", headers={**ck, "Content-Type": "text/plain"})
    assert r.status_code == 400 and r.json()["error"] == "no_valid_lines"
    # A byte order mark is dropped; a line that is not UTF-8 costs that line, not the list.
    body = b"\xef\xbb\xbfmd5 " + b"cd" * 16 + b" bom-line\nmd5 " + b"ef" * 16 + b" caf\xe9\n"
    r = c.post("/banks/main/hashes", content=body, headers={**ck, "Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["added"] == 1 and len(out["problems"]) == 1 and out["problems"][0].startswith("body:2: not UTF-8")
    assert c.delete("/banks/main/references/bom-line", headers=ck).status_code == 200
    assert c.get("/banks/main/references/empty-file", headers=ck).json()["n_frames"] == 0
    r = c.delete("/banks/main/references/empty-file", headers=ck)
    assert r.status_code == 200 and r.json() == {"deleted": "empty-file"}
    assert c.delete("/banks/main/references/empty-file", headers=ck).status_code == 404
    assert c.get("/banks/main/references/empty-file", headers=ck).status_code == 404


def test_add_by_path_inside_media_root_only(main, keys, clips):
    c = main.client
    ck = auth(keys["curate"])
    r = c.post("/banks/main/references/from-path", json={"path": "ref_b.mp4", "id": "ref_b"}, headers=ck)
    assert r.status_code == 201, r.text
    assert r.json()["reference"] == "ref_b" and r.json()["n_frames"] == 6
    assert clips["ref_b"].exists()  # a server-side file is not deleted
    for bad in (str(clips["outside"]), "../" + clips["outside"].name, "/etc/passwd"):
        r = c.post("/banks/main/references/from-path", json={"path": bad}, headers=ck)
        assert r.status_code == 403 and r.json()["error"] == "path_outside_root", (bad, r.text)
    r = c.post("/banks/main/references/from-path", json={"path": "missing.mp4"}, headers=ck)
    assert r.status_code == 404
    assert c.delete("/banks/main/references/ref_b", headers=ck).status_code == 200


# ------------------------------------------------------------------------------------------ bad input
def _bad_cases(clips):
    big = b"\0" * (3 << 20)  # over --max-upload-mb 2

    def chunks():
        for i in range(0, len(big), 1 << 16):
            yield big[i : i + (1 << 16)]

    mp = lambda name, data, ctype="application/octet-stream": {"files": {"file": (name, data, ctype)}}  # noqa: E731
    return {
        "garbage": (mp("garbage.mp4", clips["garbage"].read_bytes()), 422, "unreadable_video", "garbage.mp4"),
        "truncated": (mp("truncated.mp4", clips["truncated"].read_bytes()), 422, "unreadable_video", "truncated"),
        "image": (mp("still.png", clips["image"].read_bytes(), "image/png"), 422, "not_a_video", "still image"),
        "audio_only": (mp("tone.m4a", clips["audio"].read_bytes()), 422, "unreadable_video", "no video stream"),
        "empty_body": ({"content": b"", "headers": {"Content-Type": "application/octet-stream"}}, 400,
                       "empty_upload", "empty"),
        "zero_byte_file": (mp("empty.mp4", b""), 400, "empty_upload", "0 bytes"),
        "wrong_content_type": ({"content": clips["ref_b"].read_bytes(), "headers": {"Content-Type": "application/json"}},
                               415, "unsupported_media_type", "application/json"),
        "no_content_type": ({"content": clips["ref_b"].read_bytes(), "headers": {"Content-Type": ""}}, 415,
                            "unsupported_media_type", "Content-Type"),
        "huge_frames": (mp("huge.mov", clips["huge_header"].read_bytes()), 422, "resolution_too_large", "16384x16384"),
        "too_large": ({"content": big, "headers": {"Content-Type": "application/octet-stream"}}, 413,
                      "upload_too_large", "limit"),
        "too_large_streamed": ({"content": chunks(), "headers": {"Content-Type": "application/octet-stream"}}, 413,
                               "upload_too_large", "limit"),
        "too_long": (mp("too_long.mp4", clips["too_long"].read_bytes()), 422, "video_too_long", "30 s"),
        "too_many_frames": (mp("many.mp4", clips["many_frames"].read_bytes()), 422, "too_many_frames", "2000"),
        "form_without_file": ({"data": {"id": "x"}, "files": {"other": ("a.txt", b"abc")}}, 400, "missing_file", "'file'"),
    }


BAD = ["garbage", "truncated", "image", "audio_only", "empty_body", "zero_byte_file", "wrong_content_type",
       "no_content_type", "huge_frames", "too_large", "too_large_streamed", "too_long", "too_many_frames",
       "form_without_file"]


@pytest.mark.parametrize("endpoint", ["/banks/main/references?id=bad", "/banks/main/match", "/hash"])
def test_bad_uploads_are_4xx_and_change_nothing(main, keys, clips, endpoint):
    c = main.client
    before = _bank_state(c)
    cases = _bad_cases(clips)
    for name in BAD:
        kwargs, status, code, words = cases[name]
        kwargs = dict(kwargs)
        headers = {**auth(keys["admin"]), **kwargs.pop("headers", {})}
        headers = {k: v for k, v in headers.items() if v != ""}
        if name == "no_content_type":
            kwargs["content"] = kwargs["content"]
        try:
            r = c.post(endpoint, headers=headers, **kwargs)
        except httpx.TransportError as e:  # the server may close the connection of a refused stream
            pytest.fail(f"{name}: no answer ({e!r})")
        assert r.status_code == status, (name, r.status_code, r.text)
        body = r.json()
        assert body["error"] == code and words in body["detail"], (name, body)
        assert "/.uploads" not in body["detail"] and str(main.uploads) not in body["detail"], body
        assert main.alive(), name
    assert _bank_state(c) == before
    assert list(main.uploads.iterdir()) == []


def test_bad_json_and_names(main, keys):
    c = main.client
    r = c.post("/banks", json={"name": "../etc"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_request" and "name" in r.json()["detail"]
    r = c.get("/banks/.hidden")
    assert r.status_code in (404, 422)
    r = c.post("/banks", json={"name": "x", "model": "no-such-model"})
    assert r.status_code == 400 and "no-such-model" in r.json()["detail"]
    assert c.post("/banks", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 422
    r = c.post("/banks", content=b"[" * 2_000_000, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    r = c.post("/banks", json={"name": "main"})
    assert r.status_code == 409 and r.json()["error"] == "bank_exists"
    r = c.get("/banks/nosuchbank")
    assert r.status_code == 404 and r.json()["error"] == "bank_not_found"
    assert c.get("/no/such/route").json()["error"] == "not_found"


# ------------------------------------------------------------------------------------------ load, consistency
def test_queue_full_answers_503_with_retry_after(main, keys, clips):
    data = clips["query"].read_bytes()

    def submit(_):
        return httpx.post(main.url + "/banks/main/match", params={"mode": "async"}, content=data, timeout=120,
                          headers={**auth(keys["match"]), "Content-Type": "application/octet-stream"})

    with ThreadPoolExecutor(10) as pool:
        rs = list(pool.map(submit, range(10)))
    codes = sorted(r.status_code for r in rs)
    assert set(codes) <= {202, 503} and codes.count(503) >= 1 and codes.count(202) >= 1, codes
    for r in rs:
        if r.status_code == 503:
            assert r.json()["error"] == "queue_full" and int(r.headers["retry-after"]) >= 1
    mc = httpx.Client(base_url=main.url, headers=auth(keys["match"]), timeout=60)
    for r in rs:
        if r.status_code == 202:
            assert _wait_job(mc, r.json()["job_id"])["status"] == "done"
    assert list(main.uploads.iterdir()) == []
    assert main.alive()


def test_matching_sees_whole_changes_while_curating(main, keys, clips):
    """A curator adds and removes ref_b (frames + MD5 + SHA-1 in one change) while two clients match
    the file itself: each report holds all of ref_b's signals or none of them, and both states are
    seen (the curator keeps cycling until they are, at most 10 times)."""
    ck, mk = auth(keys["curate"]), auth(keys["match"])
    stop = threading.Event()
    errors: list[str] = []
    seen: list[frozenset] = []
    data = clips["ref_b"].read_bytes()

    def both_seen() -> bool:
        return any(seen) and not all(seen)

    def curate():
        with httpx.Client(base_url=main.url, headers=ck, timeout=120) as c:
            for _ in range(10):
                r = c.post("/banks/main/references/from-path", json={"path": "ref_b.mp4", "id": "ref_b"},
                           params={"mode": "sync"})
                if r.status_code != 201:
                    errors.append(f"add: {r.status_code} {r.text}")
                time.sleep(0.8)
                r = c.delete("/banks/main/references/ref_b")
                if r.status_code != 200:
                    errors.append(f"remove: {r.status_code} {r.text}")
                time.sleep(0.8)
                if both_seen() and len(seen) >= 6:
                    break
        stop.set()

    def match():
        with httpx.Client(base_url=main.url, headers=mk, timeout=120) as c:
            while not stop.is_set():
                r = c.post("/banks/main/match", params={"mode": "sync"}, files={"file": ("b.mp4", data)})
                if r.status_code == 503:  # the queue is small on purpose
                    time.sleep(float(r.headers.get("retry-after", "1")) / 4)
                    continue
                if r.status_code != 200:
                    errors.append(f"match: {r.status_code} {r.text}")
                    continue
                seen.append(frozenset(m["signal_type"] for m in r.json()["matches"] if m["reference"] == "ref_b"))

    threads = [threading.Thread(target=curate), threading.Thread(target=match), threading.Thread(target=match)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert both_seen(), seen
    for s in seen:
        assert s in (frozenset(), frozenset({"cnn", "md5", "sha1"})), seen
    assert "ref_b" not in _bank_state(main.client)[2]


def test_status_and_metrics(main, keys):
    c = main.client
    st = c.get("/status", headers=auth(keys["match"])).json()
    assert st["status"] == "ready" and st["model_ready"] and st["queue"]["capacity"] == 3
    b = {x["name"]: x for x in st["banks"]}["main"]
    assert b["references"] >= 1 and b["index_file_generation"] == b["generation"]
    text = c.get("/metrics").text
    assert 'vmatch_http_requests_total{method="POST",route="/banks/{bank}/match",status="200"}' in text
    assert 'vmatch_http_request_duration_seconds_bucket{method="POST",route="/banks/{bank}/match",le="+Inf"}' in text
    assert "vmatch_job_queue_depth 0" in text and "vmatch_jobs_running 0" in text
    frames = [float(x.split()[-1]) for x in text.splitlines() if x.startswith("vmatch_frames_embedded_total")]
    assert frames and frames[0] > 20
    assert 'vmatch_jobs_rejected_total' in text and 'status="503"' in text
    schema = c.get("/openapi.json").json()
    assert {"/banks/{bank}/match", "/banks/{bank}/lookup", "/hash", "/jobs/{job_id}", "/status", "/metrics"} <= set(schema["paths"])
    assert schema["components"]["schemas"]["MatchOut"]["properties"]["reference"]["description"]


def test_delete_bank_needs_admin(main, keys, clips):
    c = main.client
    assert c.post("/banks", json={"name": "scratch"}, headers=auth(keys["curate"])).status_code == 201
    assert c.delete("/banks/scratch", headers=auth(keys["curate"])).status_code == 403
    assert c.delete("/banks/scratch").status_code == 200
    assert not (keys["root"] / "scratch").exists()
    assert c.get("/banks/scratch").status_code == 404


# ------------------------------------------------------------------------------------------ tight limits, fuzz, crash
@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    root = tmp_path_factory.mktemp("svc_tight")
    key, _ = KeyStore(root).create("fuzz", "admin")
    srv = Server(root, "--model", "fake-thumbnail", "--workers", "1", "--queue-size", "2", "--job-timeout", "0.001",
                 "--max-upload-mb", "1", log=root.parent / "tight-server.log")
    srv.key = key
    srv.start()
    try:
        srv.wait_ready(key)
        r = httpx.post(srv.url + "/banks", json={"name": "fz"}, headers=auth(key))
        assert r.status_code == 201, r.text
        yield srv
    finally:
        srv.stop()


def test_job_time_limit(tight, clips):
    r = _upload(httpx, tight.url + "/banks/fz/references", clips["long"], key=tight.key, params={"mode": "sync"})
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "time_limit_exceeded" and "0.001 s" in r.json()["detail"]
    assert int(r.headers["retry-after"]) > 0
    refs = httpx.get(tight.url + "/banks/fz/references", headers=auth(tight.key)).json()["references"]
    assert refs == [] and list((tight.root / ".uploads").iterdir()) == []


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    root = tmp_path_factory.mktemp("svc_fuzz")
    key, _ = KeyStore(root).create("fuzz", "admin")
    srv = Server(root, "--model", "fake-thumbnail", "--workers", "1", "--max-upload-mb", "1",
                 log=root.parent / "fuzz-server.log")
    srv.key = key
    srv.start()
    try:
        srv.wait_ready(key)
        r = httpx.post(srv.url + "/banks", json={"name": "fz"}, headers=auth(key))
        assert r.status_code == 201, r.text
        yield srv
    finally:
        srv.stop()


def test_fuzz_openapi_no_5xx(fuzzed):
    """Schemathesis generates requests from the OpenAPI description (12 examples per operation): no
    answer may be a 5xx. Bank-scoped operations target the existing bank ``fz`` (random bank names
    only reach the 404 path)."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(fuzzed.url + "/openapi.json")
    failures: list[str] = []
    n = 0
    for result in schema.get_all_operations():
        op = result.ok()

        @settings(max_examples=12, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case):
            nonlocal n
            n += 1
            if "bank" in (case.path_parameters or {}) and not (case.method == "DELETE" and op.path == "/banks/{bank}"):
                case.path_parameters["bank"] = "fz"  # an existing bank, so that the bodies are exercised
            resp = case.call(base_url=fuzzed.url, headers=auth(fuzzed.key), timeout=60)
            if resp.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {resp.status_code} {resp.text[:300]}")

        run()
    assert n >= 50
    assert not failures, failures[:5]
    assert fuzzed.alive()


def test_crash_loses_no_acknowledged_change(tmp_path, clips):
    root = tmp_path / "root"
    key, _ = KeyStore(root).create("k", "admin")
    srv = Server(root, "--model", "fake-thumbnail", "--workers", "1", log=tmp_path / "crash.log").start()
    try:
        srv.wait_ready(key)
        c = httpx.Client(base_url=srv.url, headers=auth(key), timeout=60)
        assert c.post("/banks", json={"name": "cb"}).status_code == 201
        r = _upload(c, "/banks/cb/references", clips["ref_a"])
        assert r.status_code == 201, r.text
        r = c.post("/banks/cb/hashes", content="md5 " + "ab" * 16 + " listed\n", headers={"Content-Type": "text/plain"})
        assert r.status_code == 200
        srv.kill9()  # no shutdown, no bank close: only what was committed survives
    finally:
        srv.stop()
    srv2 = Server(root, "--model", "fake-thumbnail", "--workers", "1", log=tmp_path / "crash2.log").start()
    try:
        srv2.wait_ready(key)
        c = httpx.Client(base_url=srv2.url, headers=auth(key), timeout=60)
        refs = [x["reference"] for x in c.get("/banks/cb/references").json()["references"]]
        assert refs == ["listed", "ref_a"]
        r = _upload(c, "/banks/cb/match", clips["query"])
        assert r.status_code == 200 and "ref_a" in [m["reference"] for m in r.json()["matches"]]
    finally:
        srv2.stop()


def test_cli_stays_light():
    """`vmatch --help` (and `vmatch key ...`) must not import the web stack or torch."""
    code = ("import sys, vmatch.cli as c; c._build_parser(); import vmatch.service.keys; "
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'pydantic', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

"""Load benchmark of the HTTP service: many concurrent clients matching short clips for a minute.

Starts ``vmatch serve`` (the real EfficientNet model unless ``--model fake-thumbnail``) on
127.0.0.1 with a fresh bank root, creates a key and a bank of a few generated references, then
runs ``--clients`` threads that each POST a short clip to ``/banks/load/match`` (multipart,
``mode=sync``) in a loop for ``--seconds``. Clips are H.264 (libx264, ``--codec``; decoded with
FFmpeg's frame threads as the engine does: the uploads that deadlocked the service in issue 17),
or ``--codec mpeg4`` (the issue-6 runs). A 503/429 is a deliberate back-pressure answer: the
client waits ``Retry-After`` (capped at 2 s) and goes on. Reports latency percentiles of the
answered matches, counts by status class, throughput, the server's peak RSS (``VmHWM``) and the
deepest job queue seen (``/status``), and checks every 200 report (the clips that copy a
reference must find it).

    python benchmarks/service_load.py --clients 32 --seconds 60 [--codec libx264] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _vm_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def make_clips(d: Path, clip_seconds: float, codec: str = "libx264") -> tuple[dict[str, Path], list[tuple[Path, str | None]]]:
    """3 references of 20 s; queries: short copies of each and unrelated clips, all encoded with ``codec``."""
    from vmatch import synth

    w, h, fps = 160, 90, 25
    refs = {}
    for i, seed in enumerate((3101, 3102, 3103)):
        frames = synth.scene_frames(seed, width=w, height=h, n_frames=20 * fps, fps=fps)
        refs[f"ref{i}"] = synth.write_video(d / f"ref{i}.mp4", frames, fps=fps, codec=codec)
    n = int(round(clip_seconds * fps))
    queries: list[tuple[Path, str | None]] = []
    for i, seed in enumerate((3101, 3102, 3103)):
        copy = synth.scene_frames(seed, width=w, height=h, n_frames=n, fps=fps, first_frame=(3 + 4 * i) * fps)
        queries.append((synth.write_video(d / f"q_copy{i}.mp4", copy, fps=fps, codec=codec), f"ref{i}"))
    for j, seed in enumerate((3201, 3202)):
        other = synth.scene_frames(seed, width=w, height=h, n_frames=n, fps=fps)
        queries.append((synth.write_video(d / f"q_other{j}.mp4", other, fps=fps, codec=codec), None))
    return refs, queries


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--clip-seconds", type=float, default=4.0, help="length of each query clip (default 4)")
    ap.add_argument("--workers", type=int, default=None, help="server --workers (default: its own)")
    ap.add_argument("--queue-size", type=int, default=32, help="server --queue-size (default 32)")
    ap.add_argument("--model", default=None, help="server --model (default: the real EfficientNet model)")
    ap.add_argument("--codec", default="libx264", help="encoder of the clips: libx264 (default), mpeg4, libvpx-vp9...")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args(argv)

    import httpx

    from vmatch.service.keys import KeyStore

    work = Path(tempfile.mkdtemp(prefix="vmatch-load-"))
    root = work / "banks"
    key, _ = KeyStore(root).create("load", "admin")
    hdr = {"Authorization": f"Bearer {key}"}
    refs, queries = make_clips(work, args.clip_seconds, args.codec)
    payloads = [(p.name, p.read_bytes(), truth) for p, truth in queries]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "vmatch.cli", "serve", "--bank-root", str(root), "--port", str(port),
           "--log-level", "warning", "--device", "cpu", "--queue-size", str(args.queue_size)]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    if args.model:
        cmd += ["--model", args.model]
    mach = machine()
    log = open(work / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"server exited: {(work / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/status", headers=hdr, timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > 120:
                raise SystemExit("server not ready after 120 s")
            time.sleep(0.3)
        st = httpx.get(url + "/status", headers=hdr).json()
        c = httpx.Client(base_url=url, headers=hdr, timeout=300)
        assert c.post("/banks", json={"name": "load"}).status_code == 201
        for rid, p in refs.items():
            with open(p, "rb") as fh:
                r = c.post("/banks/load/references", params={"id": rid}, files={"file": (p.name, fh)})
            assert r.status_code == 201, r.text
        rss_before_kb = _vm_kb(proc.pid, "VmRSS")

        lock = threading.Lock()
        lat: list[float] = []
        counts = {"2xx": 0, "429": 0, "503": 0, "other": 0}
        wrong: list[str] = []
        other_samples: list[str] = []
        stop_at = time.monotonic() + args.seconds
        max_queue = {"queued": 0, "running": 0}

        def client(i: int) -> None:
            k = i
            with httpx.Client(base_url=url, headers=hdr, timeout=300) as cl:
                while time.monotonic() < stop_at:
                    name, data, truth = payloads[k % len(payloads)]
                    k += 1
                    t = time.perf_counter()
                    try:
                        r = cl.post("/banks/load/match", params={"mode": "sync"},
                                    files={"file": (name, data, "video/mp4")})
                    except httpx.HTTPError as e:
                        with lock:
                            counts["other"] += 1
                            other_samples.append(repr(e)[:200])
                        continue
                    dt = time.perf_counter() - t
                    code = r.status_code
                    with lock:
                        if 200 <= code < 300:
                            counts["2xx"] += 1
                            lat.append(dt)
                            found = {m["reference"] for m in r.json()["matches"] if m["signal_type"] == "cnn"}
                            if found != ({truth} if truth else set()):
                                wrong.append(f"{name}: {sorted(found)}")
                        elif code in (429, 503):
                            counts[str(code)] += 1
                        else:
                            counts["other"] += 1
                            other_samples.append(f"{code} {r.text[:200]}")
                    if code in (429, 503):
                        time.sleep(min(2.0, float(r.headers.get("retry-after", "1"))))

        def sampler() -> None:
            with httpx.Client(base_url=url, headers=hdr, timeout=30) as cl:
                while time.monotonic() < stop_at:
                    try:
                        q = cl.get("/status").json()["queue"]
                        max_queue["queued"] = max(max_queue["queued"], q["queued"])
                        max_queue["running"] = max(max_queue["running"], q["running"])
                    except Exception:
                        pass
                    time.sleep(0.5)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        threads.append(threading.Thread(target=sampler))
        t_start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t_start
        peak_kb = _vm_kb(proc.pid, "VmHWM")
        metrics = c.get("/metrics").text
        frames = sum(float(x.split()[-1]) for x in metrics.splitlines() if x.startswith("vmatch_frames_embedded_total"))
        alive = c.get("/status/live").status_code == 200
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()

    a = np.array(lat) if lat else np.zeros(1)
    out = {
        "command": "python benchmarks/service_load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": mach,
        "server": {"workers": st["queue"]["workers"], "capacity": st["queue"]["capacity"],
                   "model": st["models_loaded"]},
        "clients": args.clients, "seconds": round(wall, 1), "clip_seconds": args.clip_seconds, "codec": args.codec,
        "load_average_end": round(os.getloadavg()[0], 1),
        "counts": counts, "matches_per_second": round(counts["2xx"] / wall, 2),
        "video_seconds_per_second": round(counts["2xx"] * args.clip_seconds / wall, 1),
        "latency_s": {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
                      "p99": round(float(np.percentile(a, 99)), 3), "max": round(float(a.max()), 3)},
        "peak_rss_mb": round(peak_kb / 1024, 1), "rss_before_load_mb": round(rss_before_kb / 1024, 1),
        "max_queue_seen": max_queue, "frames_embedded": int(frames),
        "wrong_reports": len(wrong), "server_alive_after": alive,
        "other_samples": other_samples[:5], "wrong_samples": wrong[:5],
    }
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    ok = counts["other"] == 0 and not wrong and alive
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

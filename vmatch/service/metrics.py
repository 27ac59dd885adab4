"""Service metrics in the Prometheus text exposition format (version 0.0.4), no dependencies.

One :class:`Metrics` object per app (no global registry): request counts and latency histograms
per route, jobs by kind and outcome, job run time, queue depth, frames embedded, upload bytes.
"""

from __future__ import annotations

import bisect
import threading
from typing import Callable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    esc = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for v in values)
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, esc)) + "}"


class _Counter:
    def __init__(self, name: str, help_: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.label_names = name, help_, labels
        self.values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, by: float = 1.0) -> None:
        with self._lock:
            self.values[labels] = self.values.get(labels, 0.0) + by

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            items = sorted(self.values.items()) or ([((), 0.0)] if not self.label_names else [])
        out += [f"{self.name}{_labels(self.label_names, k)} {v:g}" for k, v in items]
        return out


class _Histogram:
    def __init__(self, name: str, help_: str, labels: tuple[str, ...] = (), buckets=LATENCY_BUCKETS) -> None:
        self.name, self.help, self.label_names, self.buckets = name, help_, labels, tuple(buckets)
        self.values: dict[tuple[str, ...], list] = {}  # labels -> [bucket counts..., sum, count]
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            v = self.values.setdefault(labels, [0] * len(self.buckets) + [0.0, 0])
            i = bisect.bisect_left(self.buckets, value)
            if i < len(self.buckets):
                v[i] += 1
            v[-2] += value
            v[-1] += 1

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            items = sorted((k, list(v)) for k, v in self.values.items())
        for k, v in items:
            acc = 0
            for b, c in zip(self.buckets, v):
                acc += c
                out.append(f"{self.name}_bucket{_labels(self.label_names + ('le',), k + (f'{b:g}',))} {acc}")
            out.append(f"{self.name}_bucket{_labels(self.label_names + ('le',), k + ('+Inf',))} {v[-1]}")
            out.append(f"{self.name}_sum{_labels(self.label_names, k)} {v[-2]:.6f}")
            out.append(f"{self.name}_count{_labels(self.label_names, k)} {v[-1]}")
        return out


class Metrics:
    """The metrics of one service instance."""

    def __init__(self) -> None:
        self.requests = _Counter("vmatch_http_requests_total", "HTTP requests by method, route and status code.",
                                 ("method", "route", "status"))
        self.latency = _Histogram("vmatch_http_request_duration_seconds",
                                  "HTTP request latency (until the response is sent) by method and route.",
                                  ("method", "route"))
        self.jobs = _Counter("vmatch_jobs_total", "Jobs finished by kind and outcome (done, failed, timeout).",
                             ("kind", "outcome"))
        self.job_seconds = _Histogram("vmatch_job_duration_seconds", "Run time of jobs (not queue wait) by kind.",
                                      ("kind",))
        self.rejected = _Counter("vmatch_jobs_rejected_total", "Jobs refused because the queue was full (503).")
        self.frames = _Counter("vmatch_frames_embedded_total", "Sampled frames embedded by the CNN.")
        self.upload_bytes = _Counter("vmatch_upload_bytes_total", "Bytes of uploaded media received.")
        self._gauges: list[tuple[str, str, Callable[[], float]]] = []

    def gauge(self, name: str, help_: str, read: Callable[[], float]) -> None:
        """Register a gauge read when metrics are rendered."""
        self._gauges.append((name, help_, read))

    def render(self) -> str:
        lines: list[str] = []
        for m in (self.requests, self.latency, self.jobs, self.job_seconds, self.rejected, self.frames,
                  self.upload_bytes):
            lines += m.render()
        for name, help_, read in self._gauges:
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} gauge", f"{name} {float(read()):g}"]
        return "\n".join(lines) + "\n"

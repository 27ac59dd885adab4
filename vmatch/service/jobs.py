"""Jobs: heavy work (decode, embed, hash, match) runs in a bounded pool of worker threads.

``JobQueue.submit`` refuses a job when ``workers + queue_size`` jobs are already queued or
running (:class:`QueueFull`, answered 503 with ``Retry-After``: the jobs ahead times their
expected run time, over the workers), so memory and latency stay bounded under load. A job gets a :class:`Deadline`: the work checks it between frames and stops
with :class:`~vmatch.service.errors.JobTimeout` past the per-job time limit. Finished jobs stay
readable (``GET /jobs/{id}``) for ``job_ttl`` seconds, at most ``max_jobs_kept`` of them.
"""

from __future__ import annotations

import concurrent.futures
import datetime as _dt
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

from vmatch.errors import VmatchError
from vmatch.service.errors import JobTimeout, ServiceError, from_vmatch
from vmatch.service.metrics import Metrics

log = logging.getLogger(__name__)


#: Finished jobs whose mean run time estimates the next ones (Retry-After).
RECENT_JOBS = 20
#: Expected run time of a job before any has finished or started, seconds.
DEFAULT_JOB_SECONDS = 2.0
#: Longest Retry-After answered, seconds.
MAX_RETRY_AFTER = 600


class QueueFull(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"job queue full; retry after {retry_after} s")
        self.retry_after = retry_after


class Deadline:
    """The time limit of one job; ``check()`` raises JobTimeout once it has passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def check(self, *_: Any) -> None:
        if time.monotonic() > self.end:
            raise JobTimeout(f"the job ran longer than its time limit of {self.seconds:g} s")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Job:
    id: str
    kind: str
    owner: str
    bank: str | None
    status: str = "queued"  # queued | running | done | failed
    created_at: str = field(default_factory=_now)
    started_at: str | None = None
    finished_at: str | None = None
    result: dict | None = None
    error: ServiceError | None = None
    future: concurrent.futures.Future | None = None
    finished_mono: float | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id, "kind": self.kind, "bank": self.bank, "status": self.status,
            "created_at": self.created_at, "started_at": self.started_at, "finished_at": self.finished_at,
            "result": self.result, "error": self.error.to_dict() if self.error is not None else None,
            "http_status": (self.error.status if self.error is not None else None),
        }


class JobQueue:
    """A bounded pool of worker threads with job records."""

    def __init__(self, *, workers: int, queue_size: int, timeout: float, ttl: float, max_kept: int,
                 metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = workers
        self.capacity = workers + queue_size
        self.timeout = timeout
        self.ttl = ttl
        self.max_kept = max_kept
        self.metrics = metrics
        self._clock = clock  # run times and Retry-After (injectable for tests)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vmatch-job")
        self._lock = threading.Lock()
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queued = 0
        self._started: dict[str, float] = {}  # running job id -> start time
        self._recent: deque[float] = deque(maxlen=RECENT_JOBS)  # run times of the last finished jobs

    # -------------------------------------------------------------- state
    @property
    def queued(self) -> int:
        return self._queued

    @property
    def running(self) -> int:
        return len(self._started)

    def job_seconds(self) -> float:
        """The expected run time of a job: the mean of the last :data:`RECENT_JOBS` finished ones,
        or, when the running ones have already run longer on average, that (the slow jobs now
        running have not finished yet, so the finished ones would underestimate them); with
        neither, :data:`DEFAULT_JOB_SECONDS`. Call with the lock held."""
        now = self._clock()
        finished = sum(self._recent) / len(self._recent) if self._recent else None
        running = sum(now - t for t in self._started.values()) / len(self._started) if self._started else None
        known = [x for x in (finished, running) if x is not None]
        return max(known) if known else DEFAULT_JOB_SECONDS

    def retry_after(self) -> int:
        """Seconds until the jobs now queued and running are done: (queued + running) × expected
        run time / workers, rounded up, at least 1 s (at most :data:`MAX_RETRY_AFTER`)."""
        with self._lock:
            jobs = self._queued + len(self._started)
            seconds = jobs * self.job_seconds() / max(1, self.workers)
        return max(1, min(MAX_RETRY_AFTER, math.ceil(seconds)))

    # -------------------------------------------------------------- submit / run
    def submit(self, kind: str, work: Callable[[Deadline], dict], *, owner: str, bank: str | None = None,
               on_refused: Callable[[], None] | None = None) -> Job:
        """Queue ``work(deadline) -> result dict``; QueueFull when the queue is full (then
        ``on_refused`` runs first, e.g. to delete the upload)."""
        with self._lock:
            full = self._queued + len(self._started) >= self.capacity
            if not full:
                self._expire()
                job = Job(id=secrets.token_hex(16), kind=kind, owner=owner, bank=bank)
                self._jobs[job.id] = job
                self._queued += 1
        if full:
            self.metrics.rejected.inc()
            if on_refused is not None:
                on_refused()
            raise QueueFull(self.retry_after())
        job.future = self._pool.submit(self._run, job, work)
        return job

    def _run(self, job: Job, work: Callable[[Deadline], dict]) -> Job:
        with self._lock:
            self._queued -= 1
            t0 = self._started[job.id] = self._clock()
        job.status = "running"
        job.started_at = _now()
        outcome = "failed"
        try:
            job.result = work(Deadline(self.timeout))
            job.status = "done"
            outcome = "done"
        except ServiceError as e:
            job.error = e
        except JobTimeout as e:
            job.error = ServiceError(503, "time_limit_exceeded", f"{e}; try a shorter video or retry later",
                                     headers={"Retry-After": "60"})
            outcome = "timeout"
        except VmatchError as e:
            job.error = from_vmatch(e)
        except Exception as e:  # a bug or an environment failure: logged, answered 500
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.error = ServiceError(500, "internal_error", f"the job failed unexpectedly ({type(e).__name__}); see the server log")
        finally:
            dt = self._clock() - t0
            if job.status != "done":
                job.status = "failed"
            job.finished_at = _now()
            job.finished_mono = time.monotonic()
            with self._lock:
                del self._started[job.id]
                self._recent.append(dt)
            self.metrics.jobs.inc(job.kind, outcome)
            self.metrics.job_seconds.observe(dt, job.kind)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._expire()
            return self._jobs.get(job_id)

    def _expire(self) -> None:
        now = time.monotonic()
        for jid in [j for j, job in self._jobs.items()
                    if job.finished_mono is not None and now - job.finished_mono > self.ttl]:
            del self._jobs[jid]
        while len(self._jobs) > self.max_kept:
            done = next((j for j, job in self._jobs.items() if job.finished_mono is not None), None)
            if done is None:
                break
            del self._jobs[done]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

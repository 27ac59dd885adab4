"""The Ray engine's driver: :class:`RayEngine` starts the embedding actors, then runs the index
driver (:meth:`RayEngine.index`: digest, skip, decode in windows, embed, store one video per
transaction) and the match driver (:meth:`RayEngine.match`: decode and hash, embed, then search,
align and report on the driver), with back-pressure and resubmission of lost work.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from vmatch.distributed.cluster import _import_ray, _remote_path, connect, RayOptions
from vmatch.distributed.jobs import _Job, _Task, RayIndexSummary
from vmatch.distributed.tasks import _decode_task, _digest_task, _EmbedWorker, EmbeddedVideo
from vmatch.distributed.windows import merge_windows, window_count
from vmatch.errors import DecodeError, UsageError, VmatchError
from vmatch.index import store_video
from vmatch.match import calibration_for, match_embedding, MatchParams, resolve_threshold, with_hash_matches
from vmatch.options import DEFAULT_FPS
from vmatch.sample import BLANK_STD
from vmatch.types import MatchReport, VideoEmbedding

log = logging.getLogger("vmatch.distributed")  # the name it logged under as one module


class RayEngine:
    """Decode + embed on a Ray cluster for one model; index into or match against a bank.

    Example:
        >>> with Bank.open("index", create=True) as bank, RayEngine(bank.spec) as engine:  # doctest: +SKIP
        ...     summary = engine.index(bank, ["refs/a.mp4", "refs/b.mp4"])
        ...     reports = list(engine.match(bank, ["up.mp4"]))

    Args:
        spec: the :class:`~vmatch.models.ModelSpec` to embed with (the bank's).
        options: :class:`RayOptions`.
    """

    def __init__(self, spec, options: RayOptions = RayOptions()) -> None:
        ray = _import_ray()
        self._ray = ray
        self._actors: list = []
        self.spec = spec
        self.options = options
        self._owns_ray = connect(options.address)
        try:
            res = ray.cluster_resources()
            gpus = int(res.get("GPU", 0))
            cpus = float(res.get("CPU", 1))
            use_gpu = gpus > 0 and options.device != "cpu"
            if options.device.startswith("cuda") and gpus == 0:
                raise UsageError(f"--device {options.device}: the Ray cluster has no GPU; use --device auto or cpu")
            n = options.num_actors or (gpus if use_gpu else max(1, int(cpus // 2)))
            if use_gpu:
                actor_opts = {"num_gpus": 1, "num_cpus": 1}
                threads = options.threads
            else:
                # leave at least one CPU to the decode tasks, or nothing would ever be decoded
                actor_cpus = min(options.actor_num_cpus, max(0.01, (cpus - 1.0) / n))
                if actor_cpus < options.actor_num_cpus:
                    log.warning("the cluster has %g CPUs: each of the %d embedding actors reserves %.2f "
                                "so that decode tasks can run", cpus, n, actor_cpus)
                actor_opts = {"num_cpus": actor_cpus}
                threads = options.threads or max(1, int(np.ceil(options.actor_num_cpus)))
            device = options.device if (use_gpu or options.device != "auto") else "cpu"
            cls = ray.remote(_EmbedWorker).options(
                max_restarts=4 * (options.max_retries + 1), max_task_retries=options.max_retries, **actor_opts
            )
            self._actors = [
                cls.remote(spec.to_json(), device, options.batch_size, threads, options.precision) for _ in range(n)
            ]
            self._load = [0] * n
            self.uses_gpu = use_gpu
            self._digest = ray.remote(_digest_task).options(num_cpus=1, max_retries=options.max_retries)
            self._decode = ray.remote(_decode_task).options(num_cpus=1, max_retries=options.max_retries)
            self.max_in_flight = options.max_in_flight or 2 * n + 2
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ life cycle
    @property
    def num_actors(self) -> int:
        return len(self._actors)

    def actor_pids(self) -> list[int]:
        """Process ids of the embedding actors (for monitoring and fault tests)."""
        return self._ray.get([a.pid.remote() for a in self._actors])

    def close(self) -> None:
        """Stop the actors; disconnect from Ray if this engine connected."""
        for a in getattr(self, "_actors", []):
            try:
                self._ray.kill(a)
            except Exception:  # already gone
                pass
        self._actors = []
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns_ray = False

    def __enter__(self) -> "RayEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ helpers
    def _check_bank(self, bank) -> None:
        """Refuse a bank of another model than the one the actors embed with."""
        if bank.model_id != self.spec.model_id:
            raise UsageError(f"bank {bank.path} holds model {bank.model_id}, engine embeds {self.spec.model_id}")

    def _pick_actor(self) -> int:
        return int(np.argmin(self._load))

    def _submit_embed(self, job: _Job, *, fps: float, digests: bool, vpdq: bool, variants: bool,
                      window: int = 0, chunk: int | None = None, last: bool = True, keypoints: str = "query"):
        """Decode (one window of) ``job``'s file on a CPU task and embed it on the least loaded
        actor; returns the actor call's reference (and records the actor in ``job.actor``).
        The last window runs to the end of the file (the header's duration may be short)."""
        size = tuple(self.spec.input_size)
        dref = self._decode.remote(
            _remote_path(job.path), size, fps, BLANK_STD, start_index=window * (chunk or 0),
            max_frames=None if last else chunk,
            digests=digests, vpdq=vpdq, vpdq_variants=variants, keypoints=keypoints,
        )
        job.actor = self._pick_actor()
        self._load[job.actor] += 1
        return self._actors[job.actor].embed.remote(dref, job.ref_id)

    def _classify(self, exc: BaseException, path: Path) -> str | None:
        """The message of an input's own failure (not retried), naming ``path`` as the user gave
        it, or None for a system failure (a dead worker, actor or node: retried)."""
        msg = self._cause(exc)
        remote = _remote_path(path)
        if msg is not None and msg.startswith(remote + ":") and remote != str(path):
            msg = str(path) + msg[len(remote):]
        return msg

    def _cause(self, exc: BaseException) -> str | None:
        ray = self._ray
        if isinstance(exc, ray.exceptions.RayTaskError):
            cause = getattr(exc, "cause", None)
            if isinstance(cause, VmatchError):
                return str(cause)
            if cause is not None and not isinstance(cause, ray.exceptions.RayError):
                return f"{type(cause).__name__}: {cause}"
            return None
        if isinstance(exc, VmatchError):
            return str(exc)
        return None

    # ------------------------------------------------------------------ indexing
    def index(
        self,
        bank,
        paths: Iterable[str | os.PathLike],
        *,
        fps: float = DEFAULT_FPS,
        ref_id: str | None = None,
        vpdq: bool = False,
        skip_existing: bool = True,
        on_error: Callable[[str, str], None] | None = None,
        on_done: Callable[[str, VideoEmbedding], None] | None = None,
        progress: Callable[[float], None] | None = None,
        save_every: float = 300.0,
    ) -> RayIndexSummary:
        """Index ``paths`` into ``bank`` on the cluster (see the module docstring).

        Each file is first hashed on a CPU task; a file whose sha256 is already in the bank is
        skipped (``skip_existing``), so a run started again after an interruption only does the
        rest. The others are decoded on CPU tasks and embedded on the actors; the driver stores
        each embedding as it arrives, one transaction per video (``store_video``).

        Returns:
            A :class:`RayIndexSummary`; ``failed`` names each file that could not be indexed
            and why, ``skipped`` the files already in the bank.
        """
        from vmatch.sample import check_fps

        fps = check_fps(fps)
        self._check_bank(bank)
        paths = [Path(p) for p in paths]
        if ref_id is not None and len(paths) != 1:
            raise UsageError("--id can only be used with exactly one video file")
        ray = self._ray
        summary = RayIndexSummary()
        t0 = last_save = time.monotonic()
        chunk = self.options.chunk_frames
        queue = deque(_Task(_Job(p, ref_id if ref_id is not None else p.stem, "digest"), -1) for p in paths)
        inflight: dict = {}

        def fail(job: _Job, msg: str) -> None:
            if not job.failed:
                job.failed = True
                summary.failed.append((str(job.path), msg))
                if on_error is not None:
                    on_error(str(job.path), msg)

        def submit(task: _Task) -> None:
            job = task.job
            if task.window < 0:
                inflight[self._digest.remote(_remote_path(job.path))] = task
                return
            windowed = job.windows > 1
            ref = self._submit_embed(job, fps=fps, digests=False, vpdq=vpdq and task.window == 0, variants=False,
                                     window=task.window, chunk=chunk if windowed else None,
                                     last=task.window == job.windows - 1, keypoints="reference")
            task.actor = job.actor
            inflight[ref] = task

        def store(job: _Job) -> None:
            parts = [job.parts[w] for w in range(job.windows)]
            emb = merge_windows(parts)
            try:
                store_video(bank, job.path, emb, digests=job.digests, fps=fps, vpdq=parts[0].vpdq)
            except (DecodeError, UsageError) as e:  # e.g. every frame blank: this file's fault
                fail(job, str(e))
                return
            summary.videos += 1
            summary.windows += job.windows
            summary.frames += len(emb)
            summary.seconds += emb.duration
            if progress is not None:
                progress(emb.duration)
            if on_done is not None:
                on_done(str(job.path), emb)

        try:
            while queue or inflight:
                while queue and len(inflight) < self.max_in_flight:
                    submit(queue.popleft())
                ready, _ = ray.wait(list(inflight), num_returns=1)
                task = inflight.pop(ready[0])
                job = task.job
                if task.actor >= 0:
                    self._load[task.actor] -= 1
                try:
                    value = ray.get(ready[0])
                except Exception as e:  # noqa: BLE001 - sorted below: the input's fault or the cluster's
                    msg = self._classify(e, job.path)
                    if job.failed:
                        pass
                    elif msg is not None:
                        fail(job, msg)
                    elif job.attempt < self.options.max_retries:
                        job.attempt += 1
                        summary.retries += 1
                        log.warning("%s: worker lost (%s); retrying (attempt %d)", job.path, type(e).__name__,
                                    job.attempt + 1)
                        queue.appendleft(_Task(job, task.window))
                    else:
                        fail(job, f"{job.path}: gave up after {job.attempt + 1} attempts: the Ray worker died "
                                  f"({type(e).__name__}: {str(e)[:300]})")
                    continue
                if job.failed:
                    continue
                if task.window < 0:
                    holders = bank.find_by_sha256(value.digests["sha256"]) if skip_existing else []
                    if holders:
                        summary.skipped.append((str(job.path), holders[0]))
                        if progress is not None:
                            progress(0.0)
                        continue
                    job.stage, job.digests, job.attempt = "embed", value.digests, 0
                    job.windows = window_count(value.duration, fps, chunk)
                    for w in range(job.windows):  # ahead of new files: finish what is started
                        queue.appendleft(_Task(job, job.windows - 1 - w))
                    continue
                job.parts[task.window] = value
                if len(job.parts) == job.windows:
                    store(job)
                    if time.monotonic() - last_save > save_every:
                        bank.save_index()
                        last_save = time.monotonic()
        except KeyboardInterrupt:
            summary.interrupted = True
            for ref in inflight:
                try:
                    ray.cancel(ref, force=False)
                except Exception:  # noqa: BLE001 - best effort; the bank is consistent anyway
                    pass
        finally:
            summary.elapsed = time.monotonic() - t0
        return summary

    # ------------------------------------------------------------------ matching
    def match(
        self,
        bank,
        paths: Iterable[str | os.PathLike],
        *,
        fps: float = DEFAULT_FPS,
        params: MatchParams | None = None,
        min_score: float | None = None,
    ) -> Iterator[MatchReport]:
        """Match query files against ``bank`` (a :class:`~vmatch.bank.Bank` or
        :class:`~vmatch.shards.ShardedBank`): decode (and hash, when the bank holds hash signals)
        on CPU tasks, embed on the actors, search and align on the driver.

        Yields one :class:`MatchReport` per file, in input order, the same as
        :meth:`Bank.match` gives for it; a file that cannot be read gets a report with ``error``.
        """
        from vmatch.match import hash_signals_needed
        from vmatch.sample import check_fps

        fps = check_fps(fps)
        params = params or MatchParams()
        self._check_bank(bank)
        calibration = calibration_for(bank.embedder())
        threshold = resolve_threshold(calibration, params.threshold)
        exact, has_vpdq, has_pdq = hash_signals_needed(bank)
        ray = self._ray
        paths = [Path(p) for p in paths]
        queue = deque(_Job(p, str(p), "embed") for p in paths)
        inflight: dict = {}
        done: dict[int, MatchReport] = {}
        order = {id(j): i for i, j in enumerate(queue)}
        next_out = 0

        def submit(job: _Job) -> None:
            ref = self._submit_embed(job, fps=fps, digests=exact, vpdq=False, variants=has_vpdq or has_pdq)
            inflight[ref] = job

        while queue or inflight:
            while queue and len(inflight) < self.max_in_flight:
                submit(queue.popleft())
            ready, _ = ray.wait(list(inflight), num_returns=1)
            job = inflight.pop(ready[0])
            self._load[job.actor] -= 1
            i = order[id(job)]
            try:
                value: EmbeddedVideo = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001
                msg = self._classify(e, job.path)
                if msg is None and job.attempt < self.options.max_retries:
                    job.attempt += 1
                    submit(job)
                    continue
                msg = msg or f"{job.path}: gave up: the Ray worker died ({type(e).__name__})"
                done[i] = MatchReport(query=str(job.path), duration=0.0, threshold=threshold, error=msg)
            else:
                q = value.embedding
                report = match_embedding(
                    bank, q, calibration=calibration, params=params, min_score=min_score, query_name=str(job.path)
                )
                done[i] = with_hash_matches(
                    bank, report, job.path, q.duration, digests=value.digests, variants=value.vpdq_variants
                )
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1

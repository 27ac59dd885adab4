"""Scale-out on Ray: decode on CPU tasks, embed on actors, write the bank from the driver.

Where it sits: the same flow as a local run (decode -> sample -> embed -> bank; or -> match),
spread over a Ray cluster::

    driver                      CPU tasks (any node)              embedding actors (GPU or CPU)
    ------                      --------------------              -----------------------------
    list files ──────────────▶  digest(file): md5/sha1/sha256
    skip sha256 already in bank
    ────────────────────────▶   decode(file): sampled frames ──▶  embed(frames) -> VideoEmbedding
    store_video(bank, ...)  ◀───────────────────────────────────────────────┘
    (one writer, one SQLite transaction per video: the local add path)

* Only the driver opens the bank, and it writes each video with :func:`vmatch.index.store_video`,
  the same atomic add path as ``vmatch index`` without Ray; workers return typed records
  (:class:`~vmatch.sample.SampledVideo`, :class:`~vmatch.types.VideoEmbedding`, numpy arrays),
  serialised by Ray on the wire only. Nothing is pickled to disk.
* **Back-pressure**: at most ``max_in_flight`` remote calls (a file's digest, or the decode and
  embedding of one window of a file) are between "submitted" and "received"; decoded frames wait
  in Ray's object store for an actor, bounded by that window. A video longer than
  ``chunk_frames`` sampled frames is decoded in windows on parallel tasks and merged on the
  driver before it is stored, so no object holds more than ``chunk_frames`` frames.
* **Faults**: decode/digest tasks have ``max_retries``; actors restart (``max_restarts``) and retry
  their calls (``max_task_retries``); on top of that the driver resubmits a video whose task or
  actor died (a killed worker process or node) up to ``max_retries`` times. A video is written
  only when its embedding has arrived, so the bank holds every reference once, never half of one.
  A run started again skips the files whose content sha256 is already in the bank.
* Files must be readable at the same path on every node (a shared or object file system), and
  vmatch must be installed on every node (same version).

``import ray`` happens only inside this module, and this module is imported only when ``--ray``
is given, so a local run never loads Ray.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from vmatch.errors import DecodeError, UsageError, VmatchError
from vmatch.match import calibration_for, match_embedding, MatchParams, with_hash_matches
from vmatch.index import store_video
from vmatch.pipeline import IndexSummary
from vmatch.sample import BLANK_STD, embed_sampled, sample_video, SampledVideo
from vmatch.verify import LocalFeatures
from vmatch.types import MatchReport, VideoEmbedding

log = logging.getLogger(__name__)

__all__ = ["RayOptions", "RayEngine", "DecodedVideo", "connect"]


@dataclass(frozen=True)
class RayOptions:
    """How to use the Ray cluster.

    Attributes:
        address: ``None``: the cluster named by ``RAY_ADDRESS`` or the one ``ray start`` started
            on this machine, else a new local cluster for this run; ``"local"``: always a new
            local cluster; ``"auto"``: an existing cluster (error if none); ``"HOST:PORT"`` or
            ``"ray://HOST:PORT"``: that cluster.
        num_actors: embedding actors; default: one per GPU of the cluster, else one per 2 CPUs.
        actor_num_cpus: CPUs reserved by a CPU embedding actor (GPU actors reserve 1 GPU, 1 CPU).
        device: the actors' torch device: "auto" (the GPU Ray assigned, else CPU), "cpu", "cuda".
        batch_size: frames per CNN batch.
        threads: torch threads per CPU actor (default: ``actor_num_cpus`` rounded up).
        precision: the actors' CNN arithmetic ("auto", "fp32", "bf16", "fp16"; see
            :func:`vmatch.embed.resolve_precision`; checked on each actor's own device).
        max_in_flight: videos submitted and not yet stored, at most (default 2 per actor + 2).
        max_retries: resubmissions of a video whose worker died, on top of Ray's own retries.
        chunk_frames: sampled frames per decode task when indexing; a longer video is decoded in
            windows of this many frames (in parallel), so that no object carries more than
            ~150 KB x chunk_frames of frames (600: 10 minutes at 1 frame/s, ~90 MB).
    """

    address: str | None = None
    num_actors: int | None = None
    actor_num_cpus: float = 1.0
    device: str = "auto"
    batch_size: int = 32
    threads: int | None = None
    precision: str = "auto"
    max_in_flight: int | None = None
    max_retries: int = 3
    chunk_frames: int = 600

    def __post_init__(self) -> None:
        if self.chunk_frames < 1:
            raise UsageError(f"RayOptions: chunk_frames must be >= 1, got {self.chunk_frames}")
        if self.num_actors is not None and self.num_actors < 1:
            raise UsageError(f"RayOptions: num_actors must be >= 1, got {self.num_actors}")
        if self.actor_num_cpus <= 0:
            raise UsageError(f"RayOptions: actor_num_cpus must be > 0, got {self.actor_num_cpus}")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise UsageError(f"RayOptions: max_in_flight must be >= 1, got {self.max_in_flight}")
        if self.max_retries < 0:
            raise UsageError(f"RayOptions: max_retries must be >= 0, got {self.max_retries}")


@dataclass(frozen=True)
class DecodedVideo:
    """What a decode task returns: the sampled frames of one file, its digests when asked
    (``{"md5", "sha1", "sha256"}``), its vPDQ (indexing with ``--vpdq``) or the vPDQ of its
    eight dihedral variants (matching against a bank that holds vPDQ/PDQ)."""

    path: str
    sampled: SampledVideo
    digests: dict[str, str] | None = None
    vpdq: list | None = None
    vpdq_variants: list | None = None


@dataclass(frozen=True)
class EmbeddedVideo:
    """What an embedding actor returns: the embedding plus what the decode task found."""

    path: str
    embedding: VideoEmbedding
    digests: dict[str, str] | None = None
    vpdq: list | None = None
    vpdq_variants: list | None = None
    blank_timestamps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))


# ---------------------------------------------------------------------- worker-side code
@dataclass(frozen=True)
class FileFacts:
    """What the first task learns of a file: its digests and its duration (0 when unknown)."""

    digests: dict[str, str]
    duration: float


def _digest_task(path: str) -> FileFacts:
    """CPU task: MD5, SHA-1 and SHA-256 of the file (one read), and its duration (header)."""
    from vmatch.decode import probe
    from vmatch.signals.exact import file_hashes

    digests = file_hashes(path)
    info = probe(path)
    return FileFacts(digests, float(info.duration) if info.duration and info.duration > 0 else 0.0)


def _decode_task(
    path: str,
    size: tuple[int, int],
    fps: float,
    blank_std: float,
    *,
    start_index: int = 0,
    max_frames: int | None = None,
    digests: bool = False,
    vpdq: bool = False,
    vpdq_variants: bool = False,
    keypoints: str = "query",
) -> DecodedVideo:
    """CPU task: decode and sample one file, or one window of it, with its local features (and
    hash it, when asked)."""
    sampled = sample_video(path, size=size, fps=fps, blank_std=blank_std, start_index=start_index,
                           max_frames=max_frames, keypoints=keypoints)
    d = vp = variants = None
    if digests:
        from vmatch.signals.exact import file_hashes

        d = file_hashes(path)
    if vpdq:
        from vmatch.signals.vpdq import hash_video

        vp = hash_video(path, device="cpu")
    if vpdq_variants:
        from vmatch.signals.vpdq import hash_video_dihedral

        variants = [list(v) for v in hash_video_dihedral(path, device="cpu")]
    return DecodedVideo(path, sampled, d, vp, variants)


class _EmbedWorker:
    """Ray actor: holds one embedder (the model loaded once) and embeds decoded videos."""

    def __init__(
        self, spec_json: str, device: str, batch_size: int, threads: int | None, precision: str = "auto"
    ) -> None:
        import json

        from vmatch.embed import make_embedder, tune_cpu_allocator
        from vmatch.models import ModelSpec

        tune_cpu_allocator()
        spec = ModelSpec.from_dict(json.loads(spec_json))
        self._embedder = make_embedder(
            spec, device=device, batch_size=batch_size, threads=threads, precision=precision
        )

    def pid(self) -> int:
        """This actor's process id (tests kill it)."""
        return os.getpid()

    def embed(self, decoded: DecodedVideo, video_id: str) -> EmbeddedVideo:
        emb = embed_sampled(decoded.sampled, self._embedder, video_id=video_id)
        return EmbeddedVideo(decoded.path, emb, decoded.digests, decoded.vpdq, decoded.vpdq_variants,
                             decoded.sampled.blank_timestamps)


def merge_windows(parts: list[EmbeddedVideo]) -> VideoEmbedding:
    """One video's embedding from its windows, in order: a frame that a window repeats from the
    one before (same presentation time, a frame on screen across the boundary) is kept once."""
    first = parts[0].embedding
    if len(parts) == 1:
        return first
    ts, fs, locs, blanks = [], [], [], set()
    last = -np.inf
    for p in parts:
        e = p.embedding
        keep = e.timestamps > last
        ts.append(e.timestamps[keep])
        fs.append(e.features[keep])
        locs.append(e.local.select(keep) if e.local is not None else None)
        if len(e.timestamps):
            last = max(last, float(e.timestamps[-1]))
        blanks.update(float(t) for t in p.blank_timestamps)
    timestamps = np.concatenate(ts)
    blanks -= set(timestamps.tolist())
    return VideoEmbedding(
        video_id=first.video_id,
        timestamps=timestamps,
        features=np.concatenate(fs),
        duration=max(p.embedding.duration for p in parts),
        model_id=first.model_id,
        n_blank=len(blanks),
        local=LocalFeatures.concat(locs) if all(x is not None for x in locs) else None,
    )


# ---------------------------------------------------------------------- driver
def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise UsageError(f"Ray is not installed ({e}); install it with pip install 'vmatch[ray]'") from e
    return ray


def connect(address: str | None) -> bool:
    """Connect this process to a Ray cluster (see :attr:`RayOptions.address`).

    Returns:
        True when this call initialised Ray (the caller shuts it down), False when the process
        was already connected.

    Raises:
        UsageError: no cluster at ``address`` (the message names it and says what to do).
    """
    ray = _import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address in (None, "", "local"):
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address or None, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UsageError(
            f"cannot connect to the Ray cluster at {address or 'the default address'} ({e}); start one with "
            "`ray start --head` or pass its address, e.g. --ray HOST:6379"
        ) from e
    return True


@dataclass
class _Job:
    """One video on its way through the cluster (driver-side state)."""

    path: Path
    ref_id: str
    stage: str  # "digest" or "embed"
    attempt: int = 0  # resubmissions after a lost worker (all windows together)
    digests: dict[str, str] | None = None
    actor: int = -1  # match: the actor of its one task
    windows: int = 1
    parts: dict = field(default_factory=dict)  # window -> EmbeddedVideo
    failed: bool = False


@dataclass
class _Task:
    """One remote call in flight: the job, its window (-1: the digest task) and its actor."""

    job: _Job
    window: int
    actor: int = -1


@dataclass
class RayIndexSummary(IndexSummary):
    """:class:`~vmatch.pipeline.IndexSummary` plus the files skipped and the retries made."""

    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, id already holding it)
    retries: int = 0
    windows: int = 0  # decode windows of the videos stored (1 per video unless longer than chunk_frames)


def _remote_path(path: str | os.PathLike) -> str:
    """The path a task on another process (or node) opens: absolute, since its working directory
    is not the driver's (the README's `vmatch index --ray known_videos/` names relative paths)."""
    return os.path.abspath(os.fspath(path))


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
        fps: float = 1.0,
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
        if bank.model_id != self.spec.model_id:
            raise UsageError(f"bank {bank.path} holds model {bank.model_id}, engine embeds {self.spec.model_id}")
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
                    n_targets = math.ceil(value.duration * fps - 1e-9) if value.duration > 0 else 0
                    job.windows = max(1, math.ceil(n_targets / chunk)) if n_targets > chunk else 1
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
        fps: float = 1.0,
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
        if bank.model_id != self.spec.model_id:
            raise UsageError(f"bank {bank.path} holds model {bank.model_id}, engine embeds {self.spec.model_id}")
        calibration = calibration_for(bank.embedder())
        threshold = round(float(params.threshold if params.threshold is not None else calibration.threshold), 6)
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

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

Modules: :mod:`~vmatch.distributed.cluster` (:class:`RayOptions`, connecting, the lazy ``import
ray``), :mod:`~vmatch.distributed.tasks` (decode/digest tasks and the embedding actor, run on the
workers), :mod:`~vmatch.distributed.windows` (windows of long videos, merged on the driver),
:mod:`~vmatch.distributed.jobs` (the driver's bookkeeping records) and
:mod:`~vmatch.distributed.engine` (:class:`RayEngine`: the index and match drivers).

``import ray`` happens only inside this package, and this package is imported only when ``--ray``
is given, so a local run never loads Ray.
"""

from __future__ import annotations

from vmatch.distributed.cluster import connect, RayOptions
from vmatch.distributed.engine import RayEngine
from vmatch.distributed.jobs import RayIndexSummary  # noqa: F401 (re-exported)
from vmatch.distributed.tasks import DecodedVideo, EmbeddedVideo, FileFacts  # noqa: F401 (re-exported)
from vmatch.distributed.windows import merge_windows  # noqa: F401 (re-exported)

__all__ = ["RayOptions", "RayEngine", "DecodedVideo", "connect"]

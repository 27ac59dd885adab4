"""Driver-side bookkeeping of a Ray run: a video on its way through the cluster (:class:`_Job`),
one remote call in flight (:class:`_Task`), and what an indexing run did (:class:`RayIndexSummary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vmatch.pipeline import IndexSummary


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

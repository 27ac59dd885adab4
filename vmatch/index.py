"""The store path: one video file into a bank, in one transaction.

:func:`store_reference` writes an embedded file with its file digests (and vPDQ when given); it is
the one add path, used by local indexing (:func:`add_video`, ``Bank.add``, the parallel executor
of :mod:`vmatch.parallel`, through :func:`store_video`), by the distributed engine's driver and by
the HTTP service, so that all store the same rows. :func:`blank_reason` is the one rule for a video
with nothing to index.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vmatch.errors import DecodeError
from vmatch.options import DEFAULT_FPS
from vmatch.sample import embed_video
from vmatch.signals.registry import EXACT_SIGNAL_TYPES
from vmatch.types import ReferenceInfo, VideoEmbedding


@dataclass(frozen=True)
class StoredReference:
    """What :func:`store_reference` wrote: the embedding as stored (its SHA-256 set) and the
    reference's record as the bank answers it."""

    embedding: VideoEmbedding
    info: ReferenceInfo


def blank_reason(emb: VideoEmbedding) -> str | None:
    """Why ``emb`` cannot be stored (every sampled frame blank: nothing to index), None when it can."""
    if len(emb):
        return None
    return f"all {emb.n_blank} sampled frames are blank (solid colour); nothing to index"


def add_video(
    bank,
    path: Path,
    embedder,
    *,
    fps: float = DEFAULT_FPS,
    ref_id: str | None = None,
    vpdq: bool = False,
    progress: Callable[[float], None] | None = None,
) -> VideoEmbedding:
    """Embed one video file and store it in ``bank`` (one transaction) with its MD5 and SHA-1
    (and vPDQ when asked); its SHA-256 is the reference's content id. Returns the embedding.

    Raises:
        DecodeError: unreadable, or every sampled frame is blank (nothing to index).
    """
    from vmatch.signals.exact import file_hashes

    emb = embed_video(path, embedder, fps=fps, video_id=ref_id, progress=progress, hash_file=False,
                      keypoints="reference")
    digests = file_hashes(path)
    vp = None
    if vpdq and len(emb):
        from vmatch.signals.vpdq import hash_video

        vp = hash_video(path, device=getattr(embedder, "device", "cpu"))
    return store_video(bank, path, emb, digests=digests, fps=fps, vpdq=vp)


def store_video(
    bank,
    path: str | os.PathLike,
    emb: VideoEmbedding,
    *,
    digests: dict[str, str],
    fps: float,
    vpdq: list | None = None,
    source_name: str | None = None,
) -> VideoEmbedding:
    """:func:`store_reference`, returning the embedding as stored (its SHA-256 set).

    Raises:
        DecodeError: every sampled frame was blank (nothing to index).
    """
    return store_reference(bank, path, emb, digests=digests, fps=fps, vpdq=vpdq, source_name=source_name).embedding


def store_reference(
    bank,
    path: str | os.PathLike,
    emb: VideoEmbedding,
    *,
    digests: dict[str, str],
    fps: float,
    vpdq: list | None = None,
    ref_id: str | None = None,
    source_name: str | None = None,
) -> StoredReference:
    """Write the embedding of video file ``path`` into ``bank`` in one transaction, with its MD5
    and SHA-1 (``digests`` from :func:`vmatch.signals.exact.file_hashes`) and optional vPDQ.

    Args:
        ref_id: the reference id (default: the embedding's ``video_id``).
        source_name: the source name stored (default: the file name of ``path``; the service
            stores the upload's display name or the media-root-relative path).

    Raises:
        DecodeError: every sampled frame was blank (:func:`blank_reason`; nothing to index).
    """
    reason = blank_reason(emb)
    if reason is not None:
        raise DecodeError(str(path), reason)
    emb = dataclasses.replace(emb, sha256=digests["sha256"])
    info = bank.add_embedding(
        emb,
        ref_id=ref_id,
        source_name=Path(path).name if source_name is None else source_name,
        extra={"fps": fps, "n_blank": emb.n_blank},
        hashes={t: digests[t] for t in EXACT_SIGNAL_TYPES},
        vpdq=vpdq,
    )
    return StoredReference(embedding=emb, info=info)

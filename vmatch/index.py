"""The store path: one video file into a bank, in one transaction.

:func:`store_video` writes an embedded file with its file digests (and vPDQ when given); it is
the one add path, used by local indexing (:func:`add_video`, ``Bank.add``, the parallel executor
of :mod:`vmatch.parallel`) and by the distributed engine's driver, so that all store the same rows.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

from vmatch.errors import DecodeError
from vmatch.options import DEFAULT_FPS
from vmatch.sample import embed_video
from vmatch.types import VideoEmbedding


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
) -> VideoEmbedding:
    """Write the embedding of video file ``path`` into ``bank`` in one transaction, with its MD5
    and SHA-1 (``digests`` from :func:`vmatch.signals.exact.file_hashes`) and optional vPDQ.

    Raises:
        DecodeError: every sampled frame was blank (nothing to index).
    """
    if len(emb) == 0:
        raise DecodeError(str(path), f"all {emb.n_blank} sampled frames are blank (solid colour); nothing to index")
    emb = dataclasses.replace(emb, sha256=digests["sha256"])
    bank.add_embedding(
        emb,
        source_name=Path(path).name,
        extra={"fps": fps, "n_blank": emb.n_blank},
        hashes={"md5": digests["md5"], "sha1": digests["sha1"]},
        vpdq=vpdq,
    )
    return emb



"""Worker-side code, run on the cluster's processes: the digest and decode tasks (one file, or one
window of a long file) and the embedding actor, with the typed records they return.

Ray pickles these functions, classes and records by reference on the wire: they stay at module
level here, importable on every node (vmatch installed there, same version).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from vmatch.sample import embed_sampled, sample_video, SampledVideo
from vmatch.types import VideoEmbedding


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

"""What matching needs of a bank, as one small protocol that :class:`vmatch.bank.Bank` and
:class:`vmatch.shards.ShardedBank` both implement, and the pipeline facade they share
(``add(path)``, ``match(path)``, the embedder of the bank's model).

Matching (:mod:`vmatch.match`), the Ray engine, the service and the CLI take any
:class:`MatchableBank`: one bank, or N shards searched together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from vmatch.types import ReferenceInfo, VideoEmbedding


@runtime_checkable
class SearchSnapshot(Protocol):
    """One consistent view of a bank for one match: the references searched, in order."""

    ref_ids: list[str]
    timestamps: list[np.ndarray]


@runtime_checkable
class MatchableBank(Protocol):
    """The calls a query's match makes on a bank (frame search, alignment, verification, the
    hash signals). Every step of one match passes the ``snapshot`` it took first."""

    path: Path

    @property
    def spec(self): ...

    @property
    def model_id(self) -> str: ...

    def snapshot(self) -> SearchSnapshot: ...

    def search(self, features: np.ndarray, k: int, *, snapshot=None): ...

    def reference_vectors(self, ref_pos: int, *, snapshot=None) -> np.ndarray: ...

    def local_features(self, ref_pos: int, *, snapshot=None): ...

    def embedder(self): ...

    def has_hashes(self, signal_types: tuple[str, ...] = ...) -> bool: ...

    def lookup_hash(self, signal_type: str, value: str) -> list[str]: ...

    def match_pdq(self, frames: list, **kw) -> list: ...

    def match_vpdq(self, query: list, **kw) -> list: ...


class PipelineFacade:
    """The pipeline's entry points on a bank: embed and store a video file, match a query file.
    A subclass sets ``_device`` and ``_embedder`` (None until first use) and implements
    :class:`MatchableBank`, ``add_embedding`` and ``get``."""

    _device: str
    _embedder: object

    def add(self, item, *, ref_id: str | None = None, fps: float = 1.0, source_name: str = "",
            extra: dict | None = None) -> ReferenceInfo:
        """Add (or replace) one reference.

        Args:
            item: a :class:`VideoEmbedding` (embedded elsewhere with this bank's model), or the
                path of a video file, which is then decoded and embedded with the bank's model.
            ref_id: the reference id; default: the embedding's ``video_id`` / the file name
                without extension. An existing reference with this id is replaced atomically.
            fps: sampling rate for a video file.
            source_name: a note of where it came from (for an embedding; a file's own name is used
                for a path); the media itself is never stored. A path also stores the file's
                MD5 and SHA-1.

        Returns:
            The stored :class:`ReferenceInfo`.
        """
        if not isinstance(item, VideoEmbedding):
            from vmatch.index import add_video

            emb = add_video(self, Path(item), self.embedder(), fps=fps, ref_id=ref_id)
            return self.get(emb.video_id)
        return self.add_embedding(item, ref_id=ref_id, source_name=source_name, extra=extra)

    def embedder(self):
        """The embedder of this bank's model (built on first use, on the bank's device)."""
        if self._embedder is None:
            from vmatch.embed import make_embedder

            self._embedder = make_embedder(self.spec, device=self._device)
        return self._embedder

    def match(self, item, *, fps: float = 1.0, params=None, min_score: float | None = None):
        """Match a query video (path) or :class:`VideoEmbedding` against this bank (a sharded
        bank gives the same report as one bank holding every reference).

        Returns:
            A :class:`~vmatch.types.MatchReport` with matches sorted by score.
        """
        from vmatch.match import match_query

        return match_query(self, item, fps=fps, params=params, min_score=min_score)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

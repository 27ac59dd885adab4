"""vmatch: near-duplicate video matching.

decode (PyAV) -> sample (presentation times) -> embed (CNN, torch) -> bank (FAISS + SQLite)
-> search -> align (temporal) -> report.

Quick use::

    from vmatch import Bank
    with Bank.open("index", create=True) as bank:
        bank.add("known.mp4")
        report = bank.match("upload.mp4")
        for m in report.matches:
            print(m.reference, m.score, m.segments[0])

Heavy dependencies are imported lazily, so ``import vmatch`` is cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "Bank",
    "MatchParams",
    "AlignParams",
    "VideoEmbedding",
    "MatchReport",
    "Match",
    "Segment",
    "embed_video",
    "index_videos",
    "__version__",
]


def __getattr__(name: str):
    if name == "Bank":
        from vmatch.bank import Bank

        return Bank
    if name == "MatchParams":
        from vmatch.match import MatchParams

        return MatchParams
    if name == "embed_video":
        from vmatch.sample import embed_video

        return embed_video
    if name == "index_videos":
        from vmatch.pipeline import index_videos

        return index_videos
    if name == "AlignParams":
        from vmatch.align import AlignParams

        return AlignParams
    if name in ("VideoEmbedding", "MatchReport", "Match", "Segment"):
        from vmatch import types

        return getattr(types, name)
    raise AttributeError(f"module 'vmatch' has no attribute {name!r}")

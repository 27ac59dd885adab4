"""Sharded banks: N ordinary banks, split by reference, built independently, searched together.

Where it sits: embed -> **bank** -> search -> align, for reference sets too large for one bank.

Layout::

    DIR/shards.json        {"format": "vmatch-shards", "version": 1, "shards": N, "model_id": ...}
    DIR/shard-000/ ...     an ordinary bank (bank.sqlite, index.<G>.faiss), one per shard
    DIR/shard-000/ann.faiss + ann.json   optional compressed index of that shard (vmatch.ann)

A reference lives in shard ``sha1(ref_id) mod N`` (:func:`shard_of`), so any process can route
it without asking the others; each shard is a bank with its own writer lock, so N processes (or
machines sharing the directory) can build the N shards at the same time
(``vmatch index --bank DIR --shard I``).

Searching: every shard answers the k-NN search of the query frames; the per-shard lists are
merged into the global top k, which is what one bank holding every reference returns (up to
ties), and alignment reads each candidate's exact stored vectors. So :func:`match` over a
sharded bank gives the same report as over a single bank (tested). A shard with a compressed
index (:mod:`vmatch.ann`, built by ``vmatch shard ann``) is searched with it and keeps its exact
vectors in SQLite (read for the candidates only), so its memory is the compressed codes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vmatch.bank import Bank, FrameHits
from vmatch.bank.files import _bank_owned, _prepare_new_bank_dir
from vmatch.bank.frame_index import empty_hits
from vmatch.bank.protocol import PipelineFacade
from vmatch.errors import BankError, BankNotFoundError, UsageError
from vmatch.shard_ann import (  # noqa: F401 - ANN_*, _AnnView, frames_fingerprint: re-exported
    ANN_INDEX,
    ANN_META,
    _AnnView,
    _FlatView,
    build_ann_index,
    frames_fingerprint,
    load_ann_view,
)
from vmatch.types import ReferenceInfo, VideoEmbedding

MANIFEST = "shards.json"
FORMAT = "vmatch-shards"
VERSION = 1
_SHARD_DIR_RE = re.compile(r"^shard-\d{3,}$")


def is_sharded(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a sharded bank (its ``shards.json``)."""
    return (Path(path) / MANIFEST).is_file()


def shard_of(ref_id: str, n_shards: int) -> int:
    """The shard of reference ``ref_id`` among ``n_shards`` (stable across processes)."""
    return int.from_bytes(hashlib.sha1(ref_id.encode("utf-8")).digest()[:8], "big") % n_shards


def shard_dir(path: str | os.PathLike, i: int) -> Path:
    return Path(path) / f"shard-{i:03d}"


@dataclass
class ShardedSnapshot:
    """One view per shard, with the references of all shards numbered one after the other."""

    views: list
    offsets: np.ndarray  # position of each shard's first reference in ref_ids
    ref_ids: list[str]
    timestamps: list[np.ndarray]

    @property
    def generation(self) -> tuple[int, ...]:
        return tuple(v.generation for v in self.views)


# ---------------------------------------------------------------------- the sharded bank
class ShardedBank(PipelineFacade):
    """N banks used as one: adds are routed by reference id, searches merged.

    It implements :class:`~vmatch.bank.MatchableBank` and offers what indexing uses of a
    :class:`~vmatch.bank.Bank` (``add``, ``add_embedding``, ``find_by_sha256``, ``list``,
    ``remove``, hash signals ...), so ``index_videos``, ``match_query``, the Ray engine and the
    CLI take either.

    Example:
        >>> with ShardedBank.open("big", create=True, n_shards=4) as bank:   # doctest: +SKIP
        ...     bank.add("refs/a.mp4")
        ...     report = bank.match("upload.mp4")
    """

    def __init__(self, path: Path, shards: list[Bank], manifest: dict, *, device: str) -> None:
        self.path = path
        self.shards = shards
        self.manifest = manifest
        self._device = device
        self._embedder = None
        self._views: dict[int, object] = {}
        #: Whether this handle created the sharded bank (so :meth:`discard_if_empty` may delete it).
        self.created = False
        self._created_dir = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = False, n_shards: int | None = None, model=None,
             device: str = "auto") -> "ShardedBank":
        """Open the sharded bank at ``path``; with ``create`` and ``n_shards``, make it if absent.

        Raises:
            BankNotFoundError: no sharded bank there and not asked to create one.
            BankError: a shard is missing or damaged, or ``n_shards`` differs from the manifest.
            ModelMismatchError: ``model`` is not the bank's model.
        """
        from vmatch.models import get_model_spec

        p = Path(path)
        created = created_dir = False
        if not is_sharded(p):
            if not create or n_shards is None:
                raise BankNotFoundError(
                    f"{p}: no sharded bank here ({MANIFEST} missing); create one with "
                    f"`vmatch index --bank {p} --shards N ...` or `vmatch shard split`"
                )
            if n_shards < 1 or n_shards > 4096:
                raise UsageError(f"number of shards must be within 1..4096, got {n_shards}")
            if (p / "bank.sqlite").exists():
                raise BankError(f"{p}: holds an unsharded bank; split it with `vmatch shard split`")
            spec = get_model_spec(model) if isinstance(model, str) else (model or get_model_spec())
            created_dir = _create_sharded(p, n_shards, spec, device=device)
            created = True
        try:
            manifest = json.loads((p / MANIFEST).read_text())
            n = int(manifest["shards"])
            if manifest.get("format") != FORMAT or n < 1:
                raise ValueError("not a vmatch shard manifest")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BankError(f"{p / MANIFEST}: unreadable shard manifest ({e}); restore it") from e
        if manifest.get("version", 0) > VERSION:
            raise BankError(f"{p / MANIFEST}: version {manifest['version']} is newer than this vmatch; upgrade")
        if n_shards is not None and n_shards != n:
            raise BankError(f"{p}: has {n} shards, not {n_shards}")
        shards: list[Bank] = []
        try:
            for i in range(n):
                d = shard_dir(p, i)
                if not (d / "bank.sqlite").exists():
                    raise BankError(f"{d}: shard {i} of {n} is missing; restore it or rebuild it")
                shards.append(Bank.open(d, model=model, device=device))
        except BaseException:
            for b in shards:
                b.close()
            raise
        bank = cls(p, shards, manifest, device=device)
        bank.created, bank._created_dir = created, created_dir
        return bank

    @property
    def n_shards(self) -> int:
        return len(self.shards)

    @property
    def spec(self):
        return self.shards[0].spec

    @property
    def model_id(self) -> str:
        return self.shards[0].model_id

    def shard_for(self, ref_id: str) -> Bank:
        return self.shards[shard_of(ref_id, self.n_shards)]

    def close(self) -> None:
        """Close every shard (saving the FAISS index of those this process changed)."""
        errors = []
        for b in self.shards:
            try:
                b.close()
            except Exception as e:  # noqa: BLE001 - close the others, then report
                errors.append(e)
        self._views.clear()
        if errors:
            raise errors[0]

    def save_index(self) -> None:
        for b in self.shards:
            if b._dirty:
                b.save_index()

    # ------------------------------------------------------------------ writer locks, checks
    def lock_for_writing(self, *, wait: bool = True, on_wait=None, shards: list[int] | None = None) -> None:
        """As :meth:`Bank.lock_for_writing`, for the given shards (default: all), in shard order
        (so two writers never hold one lock each while waiting for the other's)."""
        for i in sorted(range(self.n_shards) if shards is None else shards):
            self.shards[i].lock_for_writing(wait=wait, on_wait=on_wait)

    def verify(self) -> None:
        """As :meth:`Bank.verify`, for every shard."""
        for b in self.shards:
            b.verify()

    def discard_if_empty(self) -> bool:
        """As :meth:`Bank.discard_if_empty`: close, and delete the sharded bank when this handle
        created it and no shard holds anything (all or nothing: a shard is never deleted alone)."""
        if not (self.created and all(b._claim_if_empty() for b in self.shards)):
            self.close()
            return False
        for b in self.shards:
            b.created = b._created_dir = True  # made by this handle's open, with their directories
            b.discard_if_empty()
        with contextlib.suppress(OSError):
            (self.path / MANIFEST).unlink()
        if self._created_dir:
            with contextlib.suppress(OSError):
                self.path.rmdir()
        self._views.clear()
        return True

    # ------------------------------------------------------------------ embedder
    def set_embedder(self, embedder) -> None:
        self.shards[0].set_embedder(embedder)  # checks the model
        self._embedder = embedder

    # ------------------------------------------------------------------ writes (routed by id)
    def add_embedding(self, emb: VideoEmbedding, *, ref_id: str | None = None, **kwargs) -> ReferenceInfo:
        """As :meth:`Bank.add_embedding`, into shard ``shard_of(ref_id)``."""
        rid = ref_id if ref_id is not None else emb.video_id
        return self.shard_for(rid).add_embedding(emb, ref_id=rid, **kwargs)

    def add_hashes(self, items: list[tuple[str, str, str]]) -> int:
        by_shard: dict[int, list] = {}
        for it in items:
            by_shard.setdefault(shard_of(it[0], self.n_shards), []).append(it)
        return sum(self.shards[i].add_hashes(v) for i, v in sorted(by_shard.items()))

    def add_vpdq(self, ref_id: str, frames: list) -> int:
        return self.shard_for(ref_id).add_vpdq(ref_id, frames)

    def remove(self, ref_ids) -> list[str]:
        if isinstance(ref_ids, str):
            ref_ids = [ref_ids]
        return sorted(self._each("remove", list(ref_ids)), key=list(ref_ids).index)

    # ------------------------------------------------------------------ reads (merged)
    def _each(self, method: str, *args, **kw) -> list:
        """What every shard's ``method(*args, **kw)`` returns, one list after the other."""
        return [x for b in self.shards for x in getattr(b, method)(*args, **kw)]

    def list(self) -> list[ReferenceInfo]:
        return sorted(self._each("list"), key=lambda r: r.reference)

    def get(self, ref_id: str) -> ReferenceInfo | None:
        return self.shard_for(ref_id).get(ref_id) or next(
            (r for b in self.shards if (r := b.get(ref_id)) is not None), None
        )

    def find_by_sha256(self, sha256: str) -> list[str]:
        return sorted(self._each("find_by_sha256", sha256))

    def reference_embedding(self, ref_id: str) -> VideoEmbedding:
        for b in [self.shard_for(ref_id), *self.shards]:
            with contextlib.suppress(KeyError):
                return b.reference_embedding(ref_id)
        raise KeyError(ref_id)

    def vpdq_of(self, ref_id: str) -> list:
        return self.shard_for(ref_id).vpdq_of(ref_id)

    def hashes(self, signal_type: str | None = None) -> list[tuple[str, str, str]]:
        return sorted(self._each("hashes", signal_type), key=lambda h: (h[1], h[0], h[2]))

    def lookup_hash(self, signal_type: str, value: str) -> list[str]:
        return sorted(self._each("lookup_hash", signal_type, value))

    def has_hashes(self, signal_types=None) -> bool:
        return any(b.has_hashes() if signal_types is None else b.has_hashes(signal_types) for b in self.shards)

    def match_vpdq(self, query: list, **kw) -> list:
        return sorted(self._each("match_vpdq", query, **kw), key=lambda x: (-x[1].query_match_percent, x[0]))

    def match_pdq(self, frames: list, **kw) -> list:
        return sorted(self._each("match_pdq", frames, **kw), key=lambda x: (x[1], x[0]))

    @property
    def generation(self) -> int:
        """The sum of the shards' generations: it grows with every change of any shard."""
        return sum(b.generation for b in self.shards)

    def readiness(self) -> dict:
        """As :meth:`Bank.readiness`, summed over the shards (None where a shard has none yet)."""
        parts = [b.readiness() for b in self.shards]

        def total(key: str):
            vals = [p[key] for p in parts]
            return None if any(v is None for v in vals) else sum(vals)

        return {"generation": sum(p["generation"] for p in parts), "snapshot_generation": total("snapshot_generation"),
                "index_file_generation": total("index_file_generation"), "fresh": all(p["fresh"] for p in parts)}

    def info(self) -> dict:
        parts = [b.info() for b in self.shards]
        snap = self.snapshot()
        hashes: dict[str, int] = {}
        for p in parts:
            for t, n in p["hashes"].items():
                hashes[t] = hashes.get(t, 0) + n
        return {
            "path": str(self.path),
            "sharded": True,
            "shards": self.n_shards,
            "model_id": self.model_id,
            "generation": sum(p["generation"] for p in parts),
            "hashes": hashes,
            "created_at": min((p["created_at"] for p in parts if p["created_at"]), default=None),
            "references": sum(p["references"] for p in parts),
            "frames": sum(p["frames"] for p in parts),
            "seconds": sum(p["seconds"] for p in parts),
            "hash_only_references": sum(p["hash_only_references"] for p in parts),
            "bytes_on_disk": sum(p["bytes_on_disk"] for p in parts),
            "shard_list": [
                {"path": p["path"], "references": p["references"], "frames": p["frames"], "index": v.kind}
                for p, v in zip(parts, snap.views)
            ],
        }

    # ------------------------------------------------------------------ search
    def _view(self, i: int):
        gen = self.shards[i].generation
        cached = self._views.get(i)
        if cached is not None and cached.generation == gen:
            return cached
        view = load_ann_view(self.shards[i], shard_dir(self.path, i), i, gen) or _FlatView(self.shards[i])
        self._views[i] = view
        return view

    def snapshot(self) -> ShardedSnapshot:
        """One consistent view per shard (each shard's own generation)."""
        views = [self._view(i) for i in range(self.n_shards)]
        sizes = [len(v.ref_ids) for v in views]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        ref_ids = [r for v in views for r in v.ref_ids]
        timestamps = [t for v in views for t in v.timestamps]
        return ShardedSnapshot(views, offsets, ref_ids, timestamps)

    def search(self, features: np.ndarray, k: int, *, snapshot: ShardedSnapshot | None = None) -> FrameHits:
        """Global k-NN: each shard's top k, merged by similarity (ties: shard order, then rank)."""
        snap = snapshot if snapshot is not None else self.snapshot()
        q = np.ascontiguousarray(features, dtype=np.float32)
        nq = q.shape[0]
        refs, frames, sims, total = [], [], [], 0
        for off, view in zip(snap.offsets, snap.views):
            h = view.search(q, k)
            if h.ref_index.shape[1] == 0:
                continue
            total += view.ntotal
            refs.append(np.where(h.ref_index >= 0, h.ref_index + off, -1))
            frames.append(h.frame_index)
            sims.append(np.where(h.ref_index >= 0, h.similarity, -np.inf).astype(np.float32))
        if not refs:
            return empty_hits(nq)
        ref_all, fr_all, sim_all = (np.concatenate(x, axis=1) for x in (refs, frames, sims))
        kk = min(k, total)
        order = np.argsort(-sim_all, axis=1, kind="stable")[:, :kk]
        take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
        ref_top, fr_top, sim_top = take(ref_all), take(fr_all), take(sim_all)
        missing = ref_top < 0
        sim_top = np.where(missing, np.float32(-3.4028235e38), sim_top)
        return FrameHits(ref_top, np.where(missing, -1, fr_top), sim_top)

    def _locate(self, ref_pos: int, snapshot: ShardedSnapshot | None):
        """The view of the shard holding reference ``ref_pos`` of the snapshot, and its position there."""
        snap = snapshot if snapshot is not None else self.snapshot()
        i = int(np.searchsorted(snap.offsets, ref_pos, side="right") - 1)
        return snap.views[i], int(ref_pos - snap.offsets[i])

    def reference_vectors(self, ref_pos: int, *, snapshot: ShardedSnapshot | None = None) -> np.ndarray:
        view, pos = self._locate(ref_pos, snapshot)
        return view.vectors(pos)

    def local_features(self, ref_pos: int, *, snapshot: ShardedSnapshot | None = None):
        """The stored keypoints of the reference at ``ref_pos`` (see :meth:`Bank.local_features`)."""
        view, pos = self._locate(ref_pos, snapshot)
        return view.local(pos)

    # ------------------------------------------------------------------ compressed indexes
    def build_ann(self, kind: str = "auto", *, nprobe: int | None = None, recall_queries: int = 1000,
                  k: int = 10, seed: int = 0, pq_m: int = 32) -> list[dict]:
        """Build each shard's compressed index (``vmatch.ann.choose_index`` by its size unless
        ``kind`` is given), measure its recall@``k`` against exact search on ``recall_queries``
        stored frames, and write ``ann.faiss`` + ``ann.json`` atomically. Returns one record per
        shard (kind, factory, frames, bytes, recall)."""
        rng = np.random.default_rng(seed)
        out = []
        for i, bank in enumerate(self.shards):
            out.append(build_ann_index(bank, shard_dir(self.path, i), i, kind, rng=rng, nprobe=nprobe,
                                       recall_queries=recall_queries, k=k, pq_m=pq_m))
            self._views.pop(i, None)
        return out


def _create_sharded(p: Path, n_shards: int, spec, *, device: str) -> bool:
    """Create the shards and then the manifest of a new sharded bank at ``p`` (a new or empty
    directory); returns whether the directory was made here."""
    def allowed(entry: Path) -> bool:  # shards left by a creation that was interrupted are reused
        return _SHARD_DIR_RE.match(entry.name) is not None or _bank_owned(entry)

    created_dir = _prepare_new_bank_dir(p, allowed)
    for i in range(n_shards):
        Bank.open(shard_dir(p, i), create=True, model=spec, device=device).close()
    manifest = {"format": FORMAT, "version": VERSION, "shards": n_shards, "model_id": spec.model_id,
                "assign": "sha1(ref_id)[:8] big-endian mod shards"}
    tmp = p / f".{MANIFEST}.tmp"
    try:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(tmp, p / MANIFEST)
    except OSError as e:
        raise BankError(f"{p / MANIFEST}: cannot write the shard manifest: {e.strerror or e}") from e
    return created_dir


def open_bank(path: str | os.PathLike, *, create: bool = False, n_shards: int | None = None, model=None,
              device: str = "auto", search_device: str = "cpu"):
    """The bank at ``path``: a :class:`ShardedBank` when the directory holds one (or ``create``
    with ``n_shards`` makes one), else a :class:`~vmatch.bank.Bank`. The one way the CLI and the
    service open a bank by path (both implement :class:`~vmatch.bank.MatchableBank`).

    Raises:
        UsageError: ``search_device`` other than "cpu" for a sharded bank (it searches on the CPU).
        BankNotFoundError, BankError, ModelMismatchError: as :meth:`Bank.open` / :meth:`ShardedBank.open`.
    """
    if is_sharded(path) or (create and n_shards is not None):
        if search_device != "cpu":
            raise UsageError("--search-device cuda is for unsharded banks; a sharded bank searches on the CPU")
        return ShardedBank.open(path, create=create, n_shards=n_shards, model=model, device=device)
    return Bank.open(path, create=create, model=model, device=device, search_device=search_device)


def is_bank_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a bank, sharded or not."""
    return is_sharded(path) or (Path(path) / "bank.sqlite").is_file()

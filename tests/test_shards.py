"""Sharded banks (vmatch.shards) and compressed indexes (vmatch.ann): a sharded bank gives the
same match reports as one bank holding the same references."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vmatch.ann import build_index, choose_index, new_index, recall_at_k
from vmatch.bank import Bank
from vmatch.cli import main
from vmatch.embed import FakeEmbedder, make_embedder
from vmatch.match import MatchParams
from vmatch.sample import embed_video
from vmatch.shard_split import split_bank
from vmatch.shards import ShardedBank, _AnnView, is_sharded, shard_of
from vmatch.types import VideoEmbedding


def _queries(match_set):
    return [t.query for t in match_set.planted.values()] + list(match_set.unrelated)


def _reports(bank, items, **kw):
    return [bank.match(q, min_score=0.0, **kw).to_dict() for q in items]


@pytest.fixture(scope="module")
def real_embeddings(match_set):
    """References and queries of the match set embedded once with EfficientNet-Lite0."""
    emb = make_embedder(None, device="cpu")
    refs = {rid: embed_video(p, emb) for rid, p in match_set.references.items()}
    queries = [embed_video(q, emb, video_id=q.stem) for q in _queries(match_set)]
    return emb, refs, queries


def test_sharded_equals_single_bank_real_model(tmp_path, real_embeddings):
    """Same references in one bank and in 3 shards: identical reports (CNN model, planted
    copies and unrelated queries, every match down to score 0)."""
    emb, refs, queries = real_embeddings
    with Bank.open(tmp_path / "one", create=True, model=emb.spec) as one, ShardedBank.open(
        tmp_path / "sh", create=True, n_shards=3, model=emb.spec
    ) as sh:
        for b in (one, sh):
            b.set_embedder(emb)
            for rid, e in refs.items():
                b.add_embedding(e, ref_id=rid)
        assert sorted(len(b.list()) for b in sh.shards) != [0, 0, 4]  # really spread
        a, b = _reports(one, queries), _reports(sh, queries)
        assert a == b
        assert any(r["matches"] for r in a)


def test_sharded_equals_single_bank_fake_many_refs(tmp_path, match_set):
    """Fake model, files indexed through the CLI into a single bank and a 4-shard bank (one
    `--shard I` run per shard, as independent builds do), and `shard split` of the single bank:
    `match --json` prints the same lines for all three."""
    fake = FakeEmbedder()
    refs = [str(p) for p in match_set.references.values()]
    Bank.open(tmp_path / "one", create=True, model=fake.spec).close()
    ShardedBank.open(tmp_path / "four", create=True, n_shards=4, model=fake.spec).close()
    assert main(["index", "--bank", str(tmp_path / "one"), *refs]) == 0
    for i in range(4):
        assert main(["index", "--bank", str(tmp_path / "four"), "--shard", str(i), *refs]) == 0
    with ShardedBank.open(tmp_path / "four") as sh:
        for i, b in enumerate(sh.shards):
            assert all(shard_of(r.reference, 4) == i for r in b.list())
        assert len(sh.list()) == 4
    with Bank.open(tmp_path / "one") as one:
        split_bank(one, tmp_path / "split", 2).close()
    assert is_sharded(tmp_path / "split") and not is_sharded(tmp_path / "one")
    outs = []
    for name in ("one", "four", "split"):
        outs.append(_cli_out(["match", "--bank", str(tmp_path / name), "--json", "--min-score", "0",
                              *map(str, _queries(match_set))]))
    assert outs[0] == outs[1] == outs[2]
    rows = [json.loads(x) for x in outs[0].splitlines()]
    assert rows[0]["matches"]


def _cli_out(argv):
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) in (0, 1)
    return buf.getvalue()


def test_sharded_bank_routes_writes_and_merges_reads(tmp_path, match_set):
    fake = FakeEmbedder()
    with ShardedBank.open(tmp_path / "s", create=True, n_shards=3, model=fake.spec) as sh:
        sh.set_embedder(fake)
        for p in match_set.references.values():
            sh.add(p)
        info = sh.info()
        assert info["references"] == 4 and info["shards"] == 3
        rid = "ref_alpha"
        assert sh.shard_for(rid).get(rid) is not None
        sha = sh.get(rid).sha256
        assert sh.find_by_sha256(sha) == [rid]
        assert sh.remove([rid]) == [rid] and sh.get(rid) is None and len(sh.list()) == 3
    with pytest.raises(Exception, match="has 3 shards"):
        ShardedBank.open(tmp_path / "s", n_shards=5)


def _synthetic_bank(path, n_refs=60, frames=60, dim=64, seed=0):
    """A sharded fake-model bank of random unit vectors (enough frames to train IVF lists)."""
    spec = FakeEmbedder(dim=dim).spec
    rng = np.random.default_rng(seed)
    sh = ShardedBank.open(path, create=True, n_shards=2, model=spec)
    sh.set_embedder(FakeEmbedder(dim=dim))
    vecs = {}
    for r in range(n_refs):
        x = rng.standard_normal((frames, dim)).astype(np.float32)
        x = np.cumsum(x, axis=0)  # temporally smooth, like video
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        vecs[f"r{r:03d}"] = x
        sh.add_embedding(VideoEmbedding(f"r{r:03d}", np.arange(frames, dtype=float), x, float(frames), spec.model_id))
    return sh, vecs, spec


def test_compressed_shard_index_recall_and_same_report(tmp_path):
    """IVF-Flat searched over every list (nprobe = nlist) is exact: same reports as flat shards;
    IVF-PQ reports its measured recall and still finds the copied reference."""
    sh, vecs, spec = _synthetic_bank(tmp_path / "s")
    try:
        rng = np.random.default_rng(5)
        q = vecs["r007"][10:40] + 0.05 * rng.standard_normal((30, 64)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        query = VideoEmbedding("q", np.arange(30, dtype=float), q, 30.0, spec.model_id)
        params = MatchParams(threshold=0.1, verify=False)  # random vectors: no frames to verify
        flat = sh.match(query, params=params).to_dict()
        assert flat["matches"][0]["reference"] == "r007"
        recs = sh.build_ann("ivf", nprobe=256)
        assert all(r["kind"] == "ivf" and r["recall_at_10"] == 1.0 for r in recs)
        assert {v.kind for v in sh.snapshot().views} == {"ivf"}
        assert sh.match(query, params=params).to_dict() == flat
        recs = sh.build_ann("ivfpq", pq_m=16)
        assert all(r["kind"] == "ivfpq" and 0.0 < r["recall_at_10"] <= 1.0 for r in recs)
        assert all(r["bytes"] < r["frames"] * 64 * 4 for r in recs)  # compressed
        assert sh.match(query, params=params).matches[0].reference == "r007"
        # imported hashes leave the frames (and the compressed index) as they were
        sh.add_hashes([("r002", "md5", "d41d8cd98f00b204e9800998ecf8427e")])
        assert {v.kind for v in sh.snapshot().views} == {"ivfpq"}
        # a change of frames makes that shard's compressed index stale: exact search until rebuilt
        sh.remove(["r001"])
        kinds = [v.kind for v in sh.snapshot().views]
        assert sorted(kinds) == ["flat", "ivfpq"]
    finally:
        sh.close()


def test_damaged_compressed_index_is_not_searched(tmp_path, caplog):
    """ann.json records the SHA-256 of ann.faiss: a damaged file is refused with a warning and
    the shard is searched exactly (the same report as before it was built)."""
    sh, vecs, spec = _synthetic_bank(tmp_path / "s", n_refs=20, frames=30)
    try:
        query = VideoEmbedding("q", np.arange(20, dtype=float), vecs["r007"][5:25], 20.0, spec.model_id)
        params = MatchParams(threshold=0.1, verify=False)  # random vectors: no frames to verify
        exact = sh.match(query, params=params).to_dict()
        sh.build_ann("flat")
        assert all(isinstance(v, _AnnView) for v in sh.snapshot().views)
        i = sh.shards.index(sh.shard_for("r007"))
        ann = tmp_path / "s" / f"shard-{i:03d}" / "ann.faiss"
        data = bytearray(ann.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 2000] = bytes(2000)  # zeroed vectors
        ann.write_bytes(bytes(data))
        sh._views.clear()
        caplog.clear()
        assert sh.match(query, params=params).to_dict() == exact
        assert not isinstance(sh.snapshot().views[i], _AnnView)
        assert [r.getMessage() for r in caplog.records if "does not match ann.json" in r.getMessage()]
    finally:
        sh.close()


def test_choose_index_by_size_and_recall_helper():
    assert choose_index(10_000, 256).kind == "flat"
    assert choose_index(500_000, 256).kind == "ivf"
    assert choose_index(5_000_000, 256).kind == "ivfpq"
    assert choose_index(50_000_000, 256).factory.startswith("OPQ32,IVF")
    assert choose_index(1_000_000, 256).factory == "IVF4096,Flat"
    assert choose_index(10_000_000, 256).factory == "IVF16384,PQ32"
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exact = build_index(x, np.arange(5000), choose_index(5000, 32, "flat"))
    ivf = build_index(x, np.arange(5000), choose_index(5000, 32, "ivf"))
    _, e = exact.search(x[:100], 10)
    _, a = ivf.search(x[:100], 10)
    assert recall_at_k(e, e, 10) == 1.0 and 0.5 < recall_at_k(a, e, 10) <= 1.0


def test_many_list_ivf_assigns_exactly_and_finds_copies():
    """The 10^7-frame recipe (8,192+ lists, inner product), small: its coarse quantiser is exact (an
    approximate one put vectors in the wrong lists: recall@10 0.18 at 10^7), k-means runs 10
    iterations, and trained on 40,000 rows it returns the original of noisy copies at the top."""
    import faiss

    choice = choose_index(5_000_000, 32, "ivfpq", pq_m=8)
    assert choice.nlist == 8192 and choice.factory == "IVF8192,PQ8"
    empty = new_index(32, choice)  # kept alive: the IVF view below points into it
    ivf = faiss.extract_index_ivf(empty)
    quantizer = faiss.downcast_index(ivf.quantizer)
    assert isinstance(quantizer, faiss.IndexFlat) and quantizer.metric_type == faiss.METRIC_INNER_PRODUCT
    assert ivf.cp.niter == 10
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40_000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = build_index(x, np.arange(len(x)), choice)
    src = rng.choice(len(x), 200, replace=False)
    q = x[src] + 0.05 * rng.standard_normal((200, 32)).astype(np.float32)
    _, ids = index.search(q / np.linalg.norm(q, axis=1, keepdims=True), 10)
    assert np.mean([src[i] in ids[i] for i in range(200)]) > 0.9

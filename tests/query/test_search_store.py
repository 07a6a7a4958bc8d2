"""Search over a store filled by hand: the config filter, the captions indexes that
Store.ensure_indexes builds (and rows added after them), and a missing full-text index."""

import numpy as np
import pytest

from vidindex.query import QueryError, search
from vidindex.store import Store

VIDEO = "vid-a"


def caption(i, text, config_id="cfg-a"):
    """A 30 s caption window (i*30, (i+1)*30] of VIDEO."""
    return {"video_id": VIDEO, "config_id": config_id, "t_start_ms": i * 30_000, "t_end_ms": (i + 1) * 30_000,
            "text": text}


@pytest.fixture
def store(tmp_path, embedder):
    return Store(str(tmp_path / "db"), embedder=embedder)


def where(hit):
    return hit.config_id, hit.t_end


def test_config_filter_keeps_one_config(store):
    store.upsert("videos", [{"video_id": VIDEO, "config_id": c, "uri": "/videos/a.mp4", "status": "done"}
                            for c in ("cfg-a", "cfg-b")])
    store.upsert("captions", [caption(0, "a giraffe eats leaves", "cfg-a"), caption(1, "a giraffe drinks", "cfg-b")])
    for mode in ("fts", "vector", "hybrid"):
        assert [where(h) for h in search(store, "giraffe", mode=mode, config_id="cfg-b").hits] == [("cfg-b", 60.0)]
        assert {where(h) for h in search(store, "giraffe", mode=mode).hits} == {("cfg-a", 30.0), ("cfg-b", 60.0)}


def test_vector_index_waits_until_the_table_is_large_enough(store, embedder):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, embedder.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [{**caption(i, f"filler caption number {i}"), "embedding": vectors[i]} for i in range(299)]
    rows.append(caption(299, "a giraffe stretches its neck to eat leaves from a tall tree"))
    store.upsert("captions", rows)

    assert "embedding" not in store.ensure_indexes(vector_min_rows=301)
    done = store.ensure_indexes(vector_min_rows=300)
    assert "IVF_PQ" in done["embedding"]
    indexed = {tuple(index.columns) for index in store.table("captions").list_indices()}
    assert indexed == {("text",), ("embedding",)}
    hits = search(store, "an animal with a long neck eating leaves", mode="vector", limit=3).hits
    assert hits[0].t_end == 300 * 30

    # Rows added after indexing are still found, and folded in by the next call.
    store.upsert("captions", [caption(300, "a hot air balloon rises over the desert")])
    assert search(store, "balloon", mode="fts").hits[0].t_end == 301 * 30
    assert search(store, "hot air balloon in the sky", mode="vector", limit=1).hits[0].t_end == 301 * 30
    assert "optimize" in store.ensure_indexes(vector_min_rows=300)
    assert store.table("captions").index_stats("text_idx").num_unindexed_rows == 0


def test_full_text_search_without_its_index_fails_until_ensure_indexes(store):
    store.upsert("captions", [caption(0, "a giraffe eats leaves")])
    store.table("captions").drop_index("text_idx")
    with pytest.raises(QueryError, match="have no full-text index"):
        search(store, "giraffe", mode="fts")
    assert store.ensure_indexes() == {"text": "created full-text index"}
    assert [h.t_end for h in search(store, "giraffe", mode="fts").hits] == [30.0]


def test_a_full_text_index_without_word_positions_is_rebuilt_for_phrase_search(store):
    """Databases indexed before the index kept word positions: a quoted phrase fails (saying so)
    until the next upkeep (ensure_indexes, run after every index run and by `vidindex maintain`)."""
    from lancedb.index import FTS

    store.upsert("captions", [caption(0, "a red circle on a blue background")])
    store.table("captions").create_index("text", config=FTS(), replace=True)  # as such databases have it
    with pytest.raises(QueryError, match="position"):
        search(store, '"red circle"', mode="fts")
    assert store.ensure_indexes()["text"] == "rebuilt full-text index with word positions (for phrase search)"
    assert [h.t_end for h in search(store, '"red circle"', mode="fts").hits] == [30.0]
    assert "text" not in store.ensure_indexes()  # once

import numpy as np
import pytest

from store_rows import CONFIG, caption
from vidindex.store import StoreError

SCENES = [
    "a man walks a brown dog across an empty parking lot",
    "a delivery truck unloads boxes at the loading dock",
    "a giraffe stretches its neck to eat leaves from a tall tree",
    "two children play football on a grass field",
    "rain falls on a busy city street at night",
    "a chef chops onions in a restaurant kitchen",
]


@pytest.fixture
def corpus(store):
    """Two videos with the same scenes in a different order; 30 s caption windows."""
    rows = [caption(i, text, video_id="cam-1") for i, text in enumerate(SCENES)]
    rows += [caption(i, text, video_id="cam-2") for i, text in enumerate(reversed(SCENES))]
    store.upsert("captions", rows)
    return store


def _where(hit):
    return hit["video_id"], hit["t_end_ms"]


def test_full_text_search_finds_the_caption_with_the_words(corpus):
    hits = corpus.search_text("giraffe", video_id="cam-1")
    assert [_where(h) for h in hits] == [("cam-1", 90_000)]
    assert "giraffe" in hits[0]["text"]


def test_vector_search_finds_the_caption_by_meaning(corpus):
    hits = corpus.search_vector("an animal with a very long neck feeding", video_id="cam-1", limit=3)
    assert _where(hits[0]) == ("cam-1", 90_000)


def test_filters_by_video_and_time_range(corpus):
    # In cam-2 the giraffe is the 4th window: 90-120 s.
    assert [_where(h) for h in corpus.search_text("giraffe", video_id="cam-2")] == [("cam-2", 120_000)]
    assert corpus.search_text("giraffe", video_id="cam-2", t_to="00:01:30") == []  # windows are (start, end]
    assert corpus.search_text("giraffe", video_id="cam-2", t_from=120.001) == []
    hits = corpus.search_vector("a tall animal", t_from="00:01:30.5", t_to=100, config_id=CONFIG, limit=20)
    assert {_where(h) for h in hits} == {("cam-1", 120_000), ("cam-2", 120_000)}


def test_search_escapes_quotes_in_filters(corpus):
    assert corpus.search_text("giraffe", video_id="o'brien") == []


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
    assert _where(store.search_vector("an animal with a long neck eating leaves", limit=3)[0]) == ("vid-a", 300 * 30_000)

    # Rows added after indexing are still found, and folded in by the next call.
    store.upsert("captions", [caption(300, "a hot air balloon rises over the desert")])
    assert store.search_text("balloon")[0]["t_end_ms"] == 301 * 30_000
    assert "optimize" in store.ensure_indexes(vector_min_rows=300)
    assert store.table("captions").index_stats("text_idx").num_unindexed_rows == 0


def test_full_text_search_without_an_index_says_what_to_do(store):
    store.table("captions").drop_index("text_idx")
    with pytest.raises(StoreError, match="no full-text index yet: run ensure_indexes"):
        store.search_text("anything")
    store.ensure_indexes()
    assert store.search_text("anything") == []

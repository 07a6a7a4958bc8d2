from store_rows import caption
from vidindex.store.sql import and_clauses, eq, sql_literal


def test_quotes_stay_inside_the_literal(store):
    assert sql_literal("o'brien") == "'o''brien'"
    store.upsert("captions", [caption(0, video_id="o'brien"), caption(0, video_id="other")])
    assert [r["video_id"] for r in store.rows("captions", video_id="o'brien").to_pylist()] == ["o'brien"]
    assert store.rows("captions", where=eq("video_id", "x' OR '1' = '1")).num_rows == 0


def test_and_clauses_skips_missing_clauses():
    assert and_clauses(eq("a", None), None, "") is None
    assert and_clauses(eq("a", "1"), None, "b > 2") == "(a = '1') AND (b > 2)"

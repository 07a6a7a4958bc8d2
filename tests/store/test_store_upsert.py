import threading

import numpy as np
import pyarrow as pa
import pytest

from store_rows import CONFIG, VIDEO, answer, caption, video_row
from vidindex.store import StoreError, TABLE_NAMES, load_schema


def _keys(store, table):
    key = list(load_schema(table).primary_key)
    return [tuple(row[k] for k in key) for row in store.rows(table).select(key).to_pylist()]


def test_upserting_the_same_rows_twice_keeps_one_row_per_key_and_the_last_values(store):
    store.upsert("captions", [caption(i) for i in range(5)])
    store.upsert("captions", [caption(i, text=f"second run {i}") for i in range(3, 8)])
    keys = _keys(store, "captions")
    assert len(keys) == len(set(keys)) == 8
    texts = {row["t_end_ms"]: row["text"] for row in store.rows("captions").to_pylist()}
    assert texts[30_000] == "window 0: an empty parking lot"
    assert texts[120_000] == "second run 3"


def test_duplicate_keys_within_one_call_keep_the_last_row(store):
    store.upsert("answers", [answer("q1", 1000, "first"), answer("q1", 1000, "last")])
    assert store.rows("answers").column("answer").to_pylist() == ["last"]


def test_arrow_tables_are_accepted_like_lists_of_dicts(store):
    rows = pa.Table.from_pylist([answer("q1", t) for t in (1000, 2000)])
    assert store.upsert("answers", rows) == 2
    assert store.upsert("answers", rows) == 2
    assert store.count("answers") == 2


def test_captions_get_normalized_embeddings_of_their_text(store, embedder):
    store.upsert("captions", [caption(0, "a red car drives away")])
    stored = np.array(store.rows("captions").column("embedding").to_pylist()[0], dtype=np.float32)
    expected = embedder.embed(["a red car drives away"])[0]
    np.testing.assert_allclose(stored, expected, atol=1e-6)
    assert abs(np.linalg.norm(stored) - 1) < 1e-5


def test_unknown_column_is_refused_by_name(store):
    with pytest.raises(StoreError, match=r"answers: unknown column\(s\) \['confidence'\]"):
        store.upsert("answers", [{**answer("q", 1), "confidence": 0.9}])
    assert store.count("answers") == 0


def test_missing_required_column_is_refused_by_name(store):
    row = answer("q", 1)
    del row["answer"]
    with pytest.raises(StoreError, match="column 'answer' is required"):
        store.upsert("answers", [row])


def test_status_must_be_done_failed_or_partial(store):
    with pytest.raises(StoreError, match="status must be one of done, failed, partial, got 'finished'"):
        store.upsert("videos", [video_row(status="finished")])


def test_wrong_types_are_refused_naming_the_table(store):
    with pytest.raises(StoreError, match="answers: rows do not match schemas/answers.json"):
        store.upsert("answers", [answer("q", "not a number")])


def test_concurrent_upserts_through_one_committer_never_duplicate_keys(committer):
    """8 threads upsert overlapping new keys at once; the committer serializes them."""
    errors = []

    def worker(thread):
        try:
            for batch in range(3):
                # Each key is written by 4 threads; half of each batch is new to the table.
                rows = [answer(f"q{(thread + j) % 4}", 1000 * (batch * 10 + j)) for j in range(10)]
                committer.upsert("answers", rows)
                committer.upsert("captions", [caption(batch * 4 + j) for j in range(4)])
        except Exception as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for table in ("answers", "captions"):
        keys = _keys(committer.store, table)
        assert len(keys) == len(set(keys))
    assert committer.store.count("captions") == 12
    assert committer.store.count("answers") == len({(f"q{(t + j) % 4}", b * 10 + j)
                                                    for t in range(8) for b in range(3) for j in range(10)})


def test_reads_for_resume(committer):
    store = committer.store
    committer.start_video(video_row("done-1"))
    committer.finish_video("done-1", CONFIG)
    committer.start_video(video_row("failed-1"))
    committer.finish_video("failed-1", CONFIG, status="failed", error="not a video: moov atom not found")
    committer.start_video(video_row(VIDEO))
    committer.start_video(video_row("done-1", config_id="other-config"))
    assert store.done_video_ids(CONFIG) == {"done-1"}
    assert [row["video_id"] for row in store.videos(status="partial", config_id=CONFIG)] == [VIDEO]
    failed = store.get_video("failed-1", CONFIG)
    assert failed["status"] == "failed" and "moov atom" in failed["error"] and failed["finished_at"] is not None
    assert store.get_video("missing", CONFIG) is None
    assert {table: store.count(table) for table in TABLE_NAMES}["videos"] == 4


def test_a_failed_video_needs_its_error(committer):
    committer.start_video(video_row())
    with pytest.raises(StoreError, match="failed without an error text"):
        committer.finish_video(VIDEO, CONFIG, status="failed")


def test_restarting_a_video_keeps_its_progress_columns(committer):
    committer.start_video(video_row(frames_sampled=10))
    committer.store.update_video(VIDEO, CONFIG, {"last_snapshot_ms": 300_000})
    committer.start_video(video_row())
    row = committer.store.get_video(VIDEO, CONFIG)
    assert row["last_snapshot_ms"] == 300_000 and row["frames_sampled"] == 10 and row["status"] == "partial"

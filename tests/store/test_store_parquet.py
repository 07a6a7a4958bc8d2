import os

import duckdb
import pytest

from store_rows import CONFIG, answer, caption, checkpoint, video_row
from vidindex.store import StoreError, TABLE_NAMES, parquet_glob


def _index_two_videos(committer):
    for video_id, captions in (("cam-1", 10), ("cam-2", 4)):
        committer.start_video(video_row(video_id, duration_s=captions * 30.0))
        rows = {"captions": [caption(i, video_id=video_id) for i in range(captions)],
                "answers": [answer("q1", 30_000, video_id=video_id), answer("q2", 60_000, video_id=video_id)]}
        checkpoint(committer, captions * 30, b"state", rows, video_id=video_id, frames_seen=captions * 30)
        committer.finish_video(video_id, CONFIG)  # exports the video


def _parquet_counts(uri):
    return {t: duckdb.sql(f"SELECT count(*) FROM read_parquet('{parquet_glob(uri, t)}')").fetchall()[0][0]
            for t in TABLE_NAMES}


def test_parquet_rows_equal_table_rows_and_reexport_does_not_duplicate(committer, paths):
    _index_two_videos(committer)
    table_counts = {t: committer.store.count(t) for t in TABLE_NAMES}
    assert table_counts == {"videos": 2, "captions": 14, "answers": 4, "snapshots": 2}
    assert _parquet_counts(paths["parquet"]) == table_counts

    assert committer.export_parquet() == table_counts  # everything again
    committer.export_parquet("cam-1", CONFIG)
    assert _parquet_counts(paths["parquet"]) == table_counts


def test_parquet_layout_and_contents(committer, paths):
    _index_two_videos(committer)
    path = os.path.join(paths["parquet"], "captions", CONFIG, "cam-2.parquet")
    assert os.path.isfile(path)
    assert not [name for _, _, names in os.walk(paths["parquet"]) for name in names if not name.endswith(".parquet")]
    rows = duckdb.sql(
        f"SELECT video_id, t_start_ms, t_end_ms, text, len(embedding) AS dim FROM read_parquet('{path}') ORDER BY t_end_ms"
    ).fetchall()
    assert rows[0] == ("cam-2", 0, 30_000, "window 0: an empty parking lot", 384)
    status = duckdb.sql(f"SELECT video_id, status FROM read_parquet('{parquet_glob(paths['parquet'], 'videos')}') "
                        "ORDER BY video_id").fetchall()
    assert status == [("cam-1", "done"), ("cam-2", "done")]


def test_reexport_after_a_change_replaces_the_old_rows(committer, paths):
    _index_two_videos(committer)
    committer.upsert("captions", [caption(0, "rewritten caption", video_id="cam-1")])
    committer.export_parquet("cam-1", CONFIG)
    texts = duckdb.sql(f"SELECT text FROM read_parquet('{parquet_glob(paths['parquet'], 'captions')}') "
                       "WHERE video_id = 'cam-1' AND t_end_ms = 30000").fetchall()
    assert texts == [("rewritten caption",)]


def test_polars_reads_the_parquet_copy(committer, paths):
    polars = pytest.importorskip("polars")
    _index_two_videos(committer)
    assert polars.read_parquet(parquet_glob(paths["parquet"], "captions")).height == 14


def test_export_without_a_parquet_uri_says_so(paths, store):
    from vidindex.store import Committer

    with pytest.raises(StoreError, match="no parquet_uri"):
        Committer(paths["db"], paths["snapshots"], store=store).export_parquet()

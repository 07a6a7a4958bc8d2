"""ask-archive: one new question over every indexed video from its end snapshot, on real Ray
actors; answers are stored once (in the tables and in the Parquet copy), asking again writes
nothing, and a Ray that ask-archive started is stopped when it returns."""

import duckdb
import pytest

from tests.query.conftest import index_config
from vidindex.index.engine import Engine
from vidindex.query import ask_archive, ask_at, question_id_for
from vidindex.store import Store, parquet_glob

QUESTION = "What color is the shape?"


def answers_of(db, question):
    return Store(db, create=False).rows("answers", where=f"question_id = '{question_id_for(question)}'").to_pylist()


def parquet_answers(parquet_uri, question):
    """(video_id, t_ms, answer) of `question` in the Parquet copy, read as a data lake would."""
    return duckdb.sql(f"SELECT video_id, t_ms, answer FROM read_parquet('{parquet_glob(parquet_uri, 'answers')}') "
                      f"WHERE question_id = '{question_id_for(question)}' ORDER BY video_id").fetchall()


@pytest.fixture(scope="module")
def lake_archive(tmp_path_factory, tiny_dir, video_files, embedder):
    """(db, parquet uri, video ids) of cam0 and cam1 indexed with a Parquet copy of the index."""
    root = tmp_path_factory.mktemp("lake")
    config = index_config(tiny_dir, str(root / "db"), parquet_uri=str(root / "parquet"))
    results = Engine(config).index([video_files["cam0.mp4"], video_files["cam1.mp4"]])
    assert [r.status for r in results] == ["done", "done"]
    return config.db_uri, config.parquet_uri, sorted(r.video_id for r in results)


@pytest.fixture
def without_ray():
    """No Ray running in this process, so ask-archive starts its own."""
    import ray

    if ray.is_initialized():  # a cluster another test package left running
        ray.shutdown()
    return ray


def test_question_id_is_stable():
    qid = question_id_for(QUESTION)
    assert qid == question_id_for(f"  {QUESTION}\n") and qid.startswith("adhoc-") and len(qid) == len("adhoc-") + 12
    assert qid != question_id_for("What colour is the shape?")


def test_on_ray_writes_each_answer_once(archive, ray_local):
    result = ask_archive(archive.db, QUESTION, batch_size=2)  # two batches: both actors work
    assert result.ran_on == "ray"
    assert ray_local.is_initialized()  # the caller's Ray is left running
    assert result.written == 3 and not result.errors
    cams = [archive.video_ids[f"cam{i}.mp4"] for i in range(3)]
    assert sorted(a.video_id for a in result.answers) == sorted(cams)
    assert all(a.t == 10.0 and not a.cached and a.answer for a in result.answers)
    assert [s.video_id for s in result.skipped] == [archive.failed_id]
    assert "failed before its first snapshot" in result.skipped[0].reason
    assert "NotAVideo" in result.skipped[0].reason

    stored = answers_of(archive.db, QUESTION)
    assert len(stored) == 3
    assert {(r["video_id"], r["t_ms"], r["question"], r["answer"]) for r in stored} == \
        {(a.video_id, 10_000, QUESTION, a.answer) for a in result.answers}

    store = Store(archive.db, create=False)
    version = store.table("answers").version
    again = ask_archive(archive.db, QUESTION, batch_size=2)
    assert again.written == 0 and again.ran_on == "none"
    assert all(a.cached for a in again.answers)
    assert [(a.video_id, a.answer) for a in again.answers] == [(a.video_id, a.answer) for a in result.answers]
    assert len(answers_of(archive.db, QUESTION)) == 3
    assert Store(archive.db, create=False).table("answers").version == version  # not even an empty commit

    # Asked again in this process (forced): the same answers, upserted over the same keys.
    local = ask_archive(archive.db, QUESTION, batch_size=2, use_ray=False, force=True)
    assert local.ran_on == "local" and local.written == 3
    assert [(a.video_id, a.answer) for a in local.answers] == [(a.video_id, a.answer) for a in result.answers]
    assert len(answers_of(archive.db, QUESTION)) == 3


def test_answers_reach_the_parquet_copy_and_a_ray_started_here_is_stopped(lake_archive, without_ray):
    db, parquet_uri, video_ids = lake_archive
    result = ask_archive(db, QUESTION, use_ray=True)
    assert result.ran_on == "ray" and result.written == 2 and not result.errors
    assert not without_ray.is_initialized()  # ask-archive started Ray, so it stopped it

    rows = parquet_answers(parquet_uri, QUESTION)
    assert [video_id for video_id, _, _ in rows] == video_ids  # every video, once
    assert rows == sorted((a.video_id, 10_000, a.answer) for a in result.answers)

    # Asked again: nothing new. Forced: the videos' files are exported again, replacing the old ones.
    assert ask_archive(db, QUESTION, use_ray=False).written == 0
    assert ask_archive(db, QUESTION, use_ray=False, force=True).written == 2
    assert parquet_answers(parquet_uri, QUESTION) == rows
    everything = duckdb.sql(f"SELECT count(*) FROM read_parquet('{parquet_glob(parquet_uri, 'answers')}')")
    assert everything.fetchall()[0][0] == len(answers_of(db, QUESTION)) == 2


def test_answer_is_the_answer_as_of_the_end(archive):
    question = "Where is the circle?"
    result = ask_archive(archive.db, question, batch_size=1, use_ray=False)
    assert len(result.answers) == 3
    for answer in result.answers:
        assert answer.answer == ask_at(archive.db, answer.video_id, "end", question).answer


def test_where_selects_videos(archive):
    question = "Is the camera moving?"
    result = ask_archive(archive.db, question, where="uri LIKE '%cam1%'", use_ray=False)
    assert [a.video_id for a in result.answers] == [archive.video_ids["cam1.mp4"]]
    assert not result.skipped and result.written == 1
    assert len(answers_of(archive.db, question)) == 1


def test_at_a_time_uses_the_snapshot_before_it(archive):
    question = "How many shapes are there?"
    result = ask_archive(archive.db, question, at="00:00:05", use_ray=False)
    assert result.at == 5.0
    assert sorted(a.t for a in result.answers) == [4.0, 4.0, 4.0]
    assert {r["t_ms"] for r in answers_of(archive.db, question)} == {4000}


def test_single_video_runs_without_ray(archive):
    result = ask_archive(archive.db, "Is it dark?", where=f"video_id = '{archive.video_ids['cam0.mp4']}'")
    assert result.ran_on == "local" and result.written == 1


@pytest.mark.parametrize("where", ["no_such_column = 1", "status = = 'done'"])
def test_bad_where(archive, where):
    from vidindex.query import QueryError

    with pytest.raises(QueryError, match="bad --where filter .* on table videos"):
        ask_archive(archive.db, QUESTION, where=where)

"""Bad input gets a clear error naming it: unknown database, empty index, bad filter, unknown
video, negative or malformed time, failed video without snapshots; a missing or damaged snapshot
blob is named and passed over."""

import re
from pathlib import Path

import pytest

from vidindex.query import QueryError, ask_archive, ask_at, search
from vidindex.store import Store


def test_unknown_database(tmp_path):
    missing = tmp_path / "nowhere"
    for call in (lambda: search(str(missing), "x"), lambda: ask_at(str(missing), "v", 1, "q?"),
                 lambda: ask_archive(str(missing), "q?")):
        with pytest.raises(QueryError, match=f"cannot open vidindex database {missing}.*does not exist"):
            call()
    assert not missing.exists()  # a query never creates a database


def test_folder_that_is_not_a_database(tmp_path):
    with pytest.raises(QueryError, match="table 'videos' not found"):
        search(str(tmp_path), "x")


def test_empty_index(tmp_path, embedder):
    Store(str(tmp_path / "db"), embedder=embedder)  # the tables, no rows
    with pytest.raises(QueryError, match="no captions in .*nothing is indexed yet"):
        search(str(tmp_path / "db"), "anything")
    with pytest.raises(QueryError, match="no videos are indexed in"):
        ask_archive(str(tmp_path / "db"), "anything?")


@pytest.mark.parametrize("where, problem", [
    ("no_such_column > 1", "no_such_column"),
    ("t_end_ms >", ""),
    ("text = = 'x'", ""),
])
def test_bad_where_filter(archive, where, problem):
    with pytest.raises(QueryError, match="bad --where filter") as error:
        search(archive.db, "balloon", where=where)
    message = str(error.value)
    assert repr(where) in message and "table captions" in message and problem in message
    assert "t_start_ms" in message  # lists the columns one can use


@pytest.mark.parametrize("kwargs, message", [
    ({"t_from": "-5"}, "--from: invalid time '-5'"),
    ({"t_to": "1:75"}, "--to: invalid time '1:75': minutes and seconds must be 00-59"),
    ({"t_from": "soon"}, "--from: invalid time 'soon'"),
    ({"t_from": 8, "t_to": 2}, "--from 8 is after --to 2"),
    ({"mode": "fuzzy"}, "unknown search mode 'fuzzy'"),
    ({"video_id": "no-such-video"}, "unknown video 'no-such-video'"),
    ({"config_id": "0123456789ab"}, "unknown config '0123456789ab'"),
    ({"limit": 0}, "--limit must be a whole number > 0"),
])
def test_bad_search_arguments(archive, kwargs, message):
    with pytest.raises(QueryError) as error:
        search(archive.db, "balloon", **kwargs)
    assert message in str(error.value)


def test_empty_query(archive):
    with pytest.raises(QueryError, match="empty search query"):
        search(archive.db, "  ")


@pytest.mark.parametrize("at, message", [
    (-1, "--at: invalid time -1: must be a finite number of seconds >= 0"),
    ("-00:00:05", "--at: invalid time '-00:00:05'"),
    ("1:2:3:4", "--at: invalid time '1:2:3:4'"),
    ("noon", "--at: invalid time 'noon'"),
    ("nan", "--at: invalid time 'nan'"),
])
def test_bad_time(archive, at, message):
    with pytest.raises(QueryError) as error:
        ask_at(archive.db, archive.video_ids["cam0.mp4"], at, "What is happening?")
    assert message in str(error.value)


def test_unknown_video(archive):
    with pytest.raises(QueryError, match=r"unknown video 'deadbeef' in .* \(4 video rows indexed"):
        ask_at(archive.db, "deadbeef", 3, "What is happening?")


def test_empty_question(archive):
    with pytest.raises(QueryError, match="empty question"):
        ask_at(archive.db, archive.video_ids["cam0.mp4"], 3, " ")
    with pytest.raises(QueryError, match="empty question"):
        ask_archive(archive.db, "")


def test_failed_video_without_snapshots(archive):
    with pytest.raises(QueryError) as error:
        ask_at(archive.db, archive.failed_id, 1, "What is happening?")
    message = str(error.value)
    assert f"video {archive.failed_id!r} failed before its first snapshot and cannot be asked" in message
    assert "NotAVideo" in message and "broken.mp4" in message


def test_missing_snapshot_blob(single_video_db):
    db, video_id = single_video_db
    store = Store(db, create=False)
    end = store.latest_snapshot(video_id, store.videos()[0]["config_id"])
    Path(end["uri"]).unlink()
    # ask falls back to the snapshot before it and replays the rest (tests/reliability checks the answer)
    as_of = ask_at(db, video_id, "end", "What is happening?").as_of
    assert (as_of.snapshot_t, as_of.as_of) == (8.0, 10.0) and as_of.frames_replayed > 0
    assert f"snapshot of video {video_id!r} at 00:00:10 is unusable" in as_of.note
    assert f"snapshot blob {end['uri']} is missing" in as_of.note
    # earlier moments still work: their snapshots are intact
    assert ask_at(db, video_id, 5, "What is happening?").as_of.snapshot_t == 4.0
    # ask-archive reports it per video instead of failing the run
    result = ask_archive(db, "What is happening?", use_ray=False)
    assert not result.answers and result.written == 0
    assert len(result.errors) == 1 and "is missing" in result.errors[0].reason


def test_damaged_snapshot_blob(single_video_db):
    db, video_id = single_video_db
    store = Store(db, create=False)
    first = store.snapshots(video_id, store.videos()[0]["config_id"])[0]
    data = bytearray(Path(first["uri"]).read_bytes())
    data[-1] ^= 0xFF
    Path(first["uri"]).write_bytes(bytes(data))
    as_of = ask_at(db, video_id, 5, "What is happening?").as_of  # no snapshot before it: from the start
    assert as_of.snapshot_t is None and as_of.frames_replayed > 0
    assert re.search("at 00:00:04 is unusable: snapshot blob .* has sha256", as_of.note)


def test_missing_video_file_when_replay_is_needed(single_video_db, tmp_path):
    db, video_id = single_video_db
    store = Store(db, create=False)
    video = store.videos()[0]
    Path(video["uri"].removeprefix("file://")).rename(tmp_path / "moved.mp4")
    try:
        with pytest.raises(QueryError, match=f"cannot replay video {video_id!r} from 00:00:04"):
            ask_at(db, video_id, 5, "What is happening?")
        # at a snapshot, nothing is decoded: still answers
        assert ask_at(db, video_id, 8, "What is happening?").as_of.frames_replayed == 0
    finally:
        (tmp_path / "moved.mp4").rename(video["uri"].removeprefix("file://"))

"""The engine on real synthetic videos, the tiny model and a real LanceDB on disk."""

import os
import queue

import numpy as np
import pytest
import torch

from vidindex.config import Question
from vidindex.index.engine import Engine
from vidindex.query import search
from vidindex.store import BlobInfo, Committer, Store, StoreError
from vidindex.video import sample_frames
from vidindex.video.synthetic import write_video

from .conftest import make_config

TABLES = ("videos", "captions", "answers", "snapshots")
COMPARED = {  # columns that must match between two runs that should be equivalent
    "captions": ("video_id", "config_id", "t_start_ms", "t_end_ms", "text"),
    "answers": ("video_id", "config_id", "question_id", "t_ms", "question", "answer"),
    "snapshots": ("video_id", "config_id", "t_ms", "frames_seen", "bytes"),
    "videos": ("video_id", "config_id", "uri", "status", "frames_sampled", "last_snapshot_ms", "duration_s"),
}


def table_rows(db, table, columns=None):
    rows = Store(str(db)).rows(table).to_pylist()
    columns = columns or COMPARED[table]
    return sorted(tuple(r[c] for c in columns) for r in rows)


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the engine catches it."""


def test_rows_and_times_for_a_known_video(tiny_checkpoint, tiny_model, videos, tmp_path):
    cfg = make_config(tiny_checkpoint, tmp_path / "db")
    [result] = Engine(cfg, model=tiny_model).index([videos["a"]])
    assert (result.status, result.frames, result.snapshots) == ("done", 25, 3)
    captions = Store(str(tmp_path / "db")).rows("captions").to_pylist()
    windows = sorted((c["t_start_ms"], c["t_end_ms"]) for c in captions)
    assert windows == [(0, 5000), (5000, 10000), (10000, 15000), (15000, 20000), (20000, 25000)]
    assert all(c["text"] and len(c["embedding"]) == 384 for c in captions)
    answers = table_rows(tmp_path / "db", "answers", ("question_id", "t_ms"))
    assert answers == [("at", 12500), ("colour", 7000), ("colour", 14000), ("colour", 21000), ("summary", 25000)]
    snaps = table_rows(tmp_path / "db", "snapshots", ("t_ms", "frames_seen"))
    assert snaps == [(10000, 11), (20000, 21), (25000, 25)]  # frames at 0, 1, ..., 24 s
    [video] = Store(str(tmp_path / "db")).rows("videos").to_pylist()
    assert (video["status"], video["frames_sampled"], video["last_snapshot_ms"]) == ("done", 25, 25000)
    assert video["config_id"] == cfg.config_id and '"sample_fps": 1.0' in video["config"]

    # The snapshot at 10 s is the state after exactly the frames up to 10 s, and the caption
    # of (5, 10] is what the model says at that point.
    store = Store(str(tmp_path / "db"))
    row = [s for s in store.snapshots(result.video_id, cfg.config_id) if s["t_ms"] == 10000][0]
    from vidindex.model import Stream
    saved = Stream.from_bytes(tiny_model, store.load_snapshot(row))
    fresh = tiny_model.new_stream()
    with sample_frames(videos["a"], fps=1.0, size=cfg.frame_size, end=10.5) as frames:
        got = [(t, f) for t, f in frames if t <= 10.0]
    fresh.feed(np.stack([f for _, f in got])[None], [[t for t, _ in got]])
    for name, t in fresh.state_tensors().items():
        torch.testing.assert_close(saved.state_tensors()[name], t, atol=1e-4, rtol=0, msg=name)
    caption_10 = [c["text"] for c in captions if c["t_end_ms"] == 10000][0]
    assert fresh.ask([cfg.caption_prompt], max_new_tokens=cfg.max_new_tokens) == [caption_10]


def test_interrupted_run_resumes_to_the_same_tables(tiny_checkpoint, tiny_model, videos, tmp_path):
    full = make_config(tiny_checkpoint, tmp_path / "full")
    Engine(full, model=tiny_model).index([videos["a"], videos["b"]])

    cfg = make_config(tiny_checkpoint, tmp_path / "resumed")

    def crash_after_first_checkpoint(kind, payload):
        if kind == "checkpoint":
            raise Crash()

    with pytest.raises(Crash):
        Engine(cfg, model=tiny_model, on_event=crash_after_first_checkpoint).index([videos["a"], videos["b"]])
    [partial] = Store(str(tmp_path / "resumed")).videos()
    assert (partial["status"], partial["last_snapshot_ms"]) == ("partial", 10000)

    results = Engine(cfg, model=tiny_model).index([videos["a"], videos["b"]])
    assert [r.status for r in results] == ["done", "done"]
    assert results[0].resumed_from_s == 10.0 and results[1].resumed_from_s is None
    assert results[0].frames == 14  # frames at 11..24 s only
    for table in TABLES:
        assert table_rows(tmp_path / "resumed", table) == table_rows(tmp_path / "full", table), table
    # Bit-exact continuation: every snapshot blob equals the uninterrupted run's.
    assert table_rows(tmp_path / "resumed", "snapshots", ("video_id", "t_ms", "sha256")) == \
        table_rows(tmp_path / "full", "snapshots", ("video_id", "t_ms", "sha256"))


def test_second_run_is_a_no_op(tiny_checkpoint, tiny_model, videos, tmp_path):
    cfg = make_config(tiny_checkpoint, tmp_path / "db")
    Engine(cfg, model=tiny_model).index([videos["a"]])
    store = Store(str(tmp_path / "db"))
    versions = {t: store.table(t).version for t in TABLES}
    results = Engine(cfg, model=tiny_model).index([videos["a"]])
    assert [r.status for r in results] == ["skipped"]
    store = Store(str(tmp_path / "db"))
    assert {t: store.table(t).version for t in TABLES} == versions


def test_a_changed_config_indexes_again_beside_the_old_rows(tiny_checkpoint, tiny_model, videos, tmp_path):
    old = make_config(tiny_checkpoint, tmp_path / "db")
    Engine(old, model=tiny_model).index([videos["b"]])
    before = table_rows(tmp_path / "db", "captions")
    new = make_config(tiny_checkpoint, tmp_path / "db", caption_interval=4)
    assert new.config_id != old.config_id
    [result] = Engine(new, model=tiny_model).index([videos["b"]])
    assert result.status == "done"
    after = table_rows(tmp_path / "db", "captions")
    assert [r for r in after if r[1] == old.config_id] == before
    assert {r[3] for r in after if r[1] == new.config_id} == {4000, 8000, 12000, 16000, 17000}


def test_batched_streams_give_the_rows_of_single_streams(tiny_checkpoint, tiny_model, videos, tmp_path):
    alone = make_config(tiny_checkpoint, tmp_path / "alone")
    Engine(alone, model=tiny_model).index([videos["a"], videos["b"]])
    batched = make_config(tiny_checkpoint, tmp_path / "batched", streams_per_gpu=2)
    events = []
    Engine(batched, model=tiny_model, on_event=lambda kind, p: events.append((kind, p["uri"]))).index(
        [videos["a"], videos["b"]])
    starts = [i for i, (kind, _) in enumerate(events) if kind == "start"]
    first_finish = min(i for i, (kind, _) in enumerate(events) if kind == "finish")
    assert len(starts) == 2 and max(starts) < first_finish  # both streams were in flight together
    for table in TABLES:
        assert table_rows(tmp_path / "batched", table) == table_rows(tmp_path / "alone", table), table


def test_bad_videos_fail_alone(tiny_checkpoint, tiny_model, videos, tmp_path):
    cfg = make_config(tiny_checkpoint, tmp_path / "db", streams_per_gpu=2)
    uris = [videos["text"], videos["a"], videos["truncated"], str(tmp_path / "missing.mp4")]
    results = Engine(cfg, model=tiny_model).index(uris)
    status = {r.uri: r for r in results}
    assert status[videos["a"]].status == "done"
    assert status[videos["text"]].status == "failed" and "NotAVideo" in status[videos["text"]].error
    assert status[videos["truncated"]].status == "failed" and "truncated.mp4" in status[videos["truncated"]].error
    assert status[str(tmp_path / "missing.mp4")].status == "failed"
    assert "VideoNotFound" in status[str(tmp_path / "missing.mp4")].error
    rows = {r["uri"].removeprefix("file://"): r for r in Store(str(tmp_path / "db")).videos()}
    assert len(rows) == 4
    assert {r["status"] for u, r in rows.items() if u != videos["a"]} == {"failed"}
    assert all(r["error"] for u, r in rows.items() if u != videos["a"])
    # the good video is complete despite its neighbours
    good = Engine(make_config(tiny_checkpoint, tmp_path / "good"), model=tiny_model)
    good.index([videos["a"]])
    assert [r for r in table_rows(tmp_path / "db", "captions") if r[0] == status[videos["a"]].video_id] == \
        table_rows(tmp_path / "good", "captions")


def test_parquet_copy_has_the_same_rows(tiny_checkpoint, tiny_model, videos, tmp_path):
    import duckdb

    cfg = make_config(tiny_checkpoint, tmp_path / "db", parquet_uri=str(tmp_path / "pq"))
    Engine(cfg, model=tiny_model).index([videos["a"], videos["b"]])
    Engine(cfg, model=tiny_model).index([videos["a"], videos["b"]])  # a re-run must not duplicate rows
    store = Store(str(tmp_path / "db"))
    for table in TABLES:
        n = duckdb.sql(f"select count(*) from read_parquet('{tmp_path}/pq/{table}/*/*.parquet')").fetchall()[0][0]
        assert n == store.count(table), table


def test_search_finds_engine_captions(tiny_checkpoint, tiny_model, videos, tmp_path):
    cfg = make_config(tiny_checkpoint, tmp_path / "db")
    ra, rb = Engine(cfg, model=tiny_model).index([videos["a"], videos["b"]])
    store = Store(str(tmp_path / "db"))
    target = [c for c in store.rows("captions", video_id=rb.video_id).to_pylist() if c["t_end_ms"] == 15000][0]
    by_vector = search(store, target["text"], mode="vector", limit=1).hits
    assert (by_vector[0].video_id, by_vector[0].t_end) == (rb.video_id, 15)
    word = max(target["text"].split(), key=len)

    def by_text(**filters):
        return search(store, word, mode="fts", **filters).hits

    only = by_text(video_id=rb.video_id, t_from=12, t_to=15)  # only (10, 15] overlaps
    assert [(h.video_id, h.t_end) for h in only] == [(rb.video_id, 15)]
    assert (rb.video_id, 15) in [(h.video_id, h.t_end) for h in by_text()]
    assert all(h.video_id == ra.video_id for h in by_text(video_id=ra.video_id))
    assert all(h.t_end <= 10 for h in by_text(video_id=rb.video_id, t_to=5))


def test_snapshot_bytes_never_pass_through_the_writer(tiny_checkpoint, tiny_model, videos, tmp_path):
    cfg = make_config(tiny_checkpoint, tmp_path / "db")
    committer = Committer.from_config(cfg)
    sent = []

    class Spy:
        def __getattr__(self, name):
            def call(*args, **kwargs):
                sent.extend([*args, *kwargs.values()])
                return getattr(committer, name)(*args, **kwargs)
            return call

    [result] = Engine(cfg, model=tiny_model, writer=Spy()).index([videos["b"]])
    assert (result.status, result.snapshots) == ("done", 2)
    assert not any(isinstance(value, (bytes, bytearray, memoryview)) for value in sent)
    blobs = [value for value in sent if isinstance(value, BlobInfo)]  # written by the engine, sent by reference
    assert len(blobs) == 2 and all(os.path.getsize(blob.uri) == blob.bytes for blob in blobs)


def test_an_error_that_is_no_videos_fault_fails_the_videos_held_and_leaves_them_resumable(
        tiny_checkpoint, tiny_model, videos, tmp_path):
    cfg = make_config(tiny_checkpoint, tmp_path / "db", streams_per_gpu=2)
    committer = Committer.from_config(cfg)

    class GoneAfterFirstStart:
        starts = 0

        def __getattr__(self, name):
            return getattr(committer, name)

        def start_video(self, row):
            self.starts += 1
            if self.starts > 1:
                raise StoreError("the committer is gone")
            return committer.start_video(row)

    results = {}
    inbox = queue.SimpleQueue()
    for uri in (videos["a"], videos["b"]):
        inbox.put((uri, lambda result: results.setdefault(result.uri, result)))
    with pytest.raises(StoreError, match="the committer is gone"):
        Engine(cfg, model=tiny_model, writer=GoneAfterFirstStart()).run(inbox)
    assert sorted(results) == sorted([videos["a"], videos["b"]])  # no caller is left waiting
    assert all(r.status == "failed" and "not this video's fault" in r.error for r in results.values())
    assert [v["status"] for v in Store(str(tmp_path / "db")).videos()] == ["partial"]  # a's row untouched


def test_videos_join_in_step_so_each_caption_window_is_one_generate_call(tiny_checkpoint, tiny_model, tmp_path):
    seconds = [9, 23, 14, 31, 6, 17]
    uris = []
    for i, s in enumerate(seconds):
        write_video(tmp_path / f"v{i}.mp4", s, fps=10, width=96, height=64, seed=10 + i)
        uris.append(str(tmp_path / f"v{i}.mp4"))
    questions = [Question("colour", "What colour is the shape?", every=5, at_end=True)]
    fires = []  # per _fire call: (videos due, videos in the batch, whether a window's caption is among them)

    class Recording(Engine):
        def _fire(self, due):
            window = any(ev.actions.caption and not ev.end for _, ev in due)
            fires.append((len(due), len(self._tasks), window))
            super()._fire(due)

    batched = make_config(tiny_checkpoint, tmp_path / "batched", streams_per_gpu=3, questions=questions)
    results = Recording(batched, model=tiny_model).index(uris)
    assert [r.status for r in results] == ["done"] * len(uris)
    windows = [(due, held) for due, held, window in fires if window]
    assert windows and max(held for _, held in windows) == 3
    assert all(due == held for due, held in windows), windows  # every video of the batch, one call
    alone = make_config(tiny_checkpoint, tmp_path / "alone", questions=questions)
    Engine(alone, model=tiny_model).index(uris)
    for table in TABLES:
        assert table_rows(tmp_path / "batched", table) == table_rows(tmp_path / "alone", table), table

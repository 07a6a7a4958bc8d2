"""Two index runs at once on the same existing database (issue 21, fault 1): each run is its own
process with its own engine and committer (two committers writing the same tables), on the same
videos or on overlapping ones. Both runs end, every video done (or skipped: the other run
finished it first); the tables equal one uninterrupted run's, no key twice, and every snapshots
row's blob verifies. tests/store/test_store_concurrent.py covers two runs creating a new database.

The interleavings that broke it are also played step by step in one process: two runs writing
different bytes for one snapshot key (a snapshots row named the other run's bytes), a videos row
written back whole from an earlier read (another run's newer values were lost), and a compaction
preempted by another process's upserts (LanceDB's retryable commit conflict)."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import os
import time
from datetime import timedelta

import pytest

from tests.reliability.conftest import (assert_every_snapshot_loads, assert_no_duplicate_keys, assert_same_tables,
                                        make_config, table_rows)
from tests.store.store_rows import CONFIG, VIDEO, caption, checkpoint, video_row
from vidindex.index.engine import Engine
from vidindex.store import Committer, Store, get_embedder, write_snapshot_blob
from vidindex.store.upkeep import maintain

RUN_TIMEOUT_S = 240  # a run takes ~15 s here; the limit only keeps a hung process from hanging the suite


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the engine catches it."""


def _index_run(name: str, model_dir: str, db: str, uris: list[str], streams: int, barrier, results) -> None:
    """One index run in a process of its own, as `vidindex index` runs in an indexing actor: an
    Engine with its own Committer and Store of the database. Everything slow to load (the model,
    the caption embedder) is loaded before the barrier, so the two runs' writes overlap."""
    from tests.index.conftest import make_config
    from vidindex.index.engine import Engine

    committed = []  # (video_id, t_ms, sha256) of each snapshot this run committed

    def on_event(kind, payload):
        if kind == "checkpoint":
            snapshot = payload["snapshot"]
            committed.append((snapshot["video_id"], snapshot["t_ms"], snapshot["sha256"]))

    try:
        engine = Engine(make_config(model_dir, db, streams_per_gpu=streams), on_event=on_event)
        engine.model.new_stream()
        engine.writer.store.embedder.embed(["warm up"])
        barrier.wait(timeout=RUN_TIMEOUT_S)
        started = time.time()
        outcome = [(r.uri, r.video_id, r.status, r.error, r.resumed_from_s) for r in engine.index(uris)]
        results.put((name, "ended", outcome, committed, (started, time.time())))
    except BaseException as error:  # noqa: BLE001 - reported to the test
        results.put((name, "raised", f"{type(error).__name__}: {error}", committed, None))


def run_at_once(model_dir, db, runs: dict[str, list[str]], streams: int) -> dict[str, tuple]:
    """Start one process per run, let them index at the same moment;
    {name: (how it ended, its results or error, the snapshots it committed, (start, end) epoch s)}."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(len(runs)), ctx.Queue()
    procs = [ctx.Process(target=_index_run, args=(name, str(model_dir), str(db), uris, streams, barrier, results))
             for name, uris in runs.items()]
    for proc in procs:
        proc.start()
    try:
        ended = {}
        for _ in procs:
            name, how, outcome, committed, span = results.get(timeout=RUN_TIMEOUT_S)
            ended[name] = (how, outcome, committed, span)
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    return ended


@pytest.fixture
def existing_db(tmp_path, tiny_checkpoint, tiny_model, videos, reference):
    """A database an earlier run left: video a partial at its snapshot at 10 s (the run died)."""
    config = make_config(tiny_checkpoint, tmp_path / "db")

    def crash_after_the_first_snapshot(kind, payload):
        if kind == "checkpoint":
            raise Crash()

    with pytest.raises(Crash):
        Engine(config, model=tiny_model, on_event=crash_after_the_first_snapshot).index([videos["a"]])
    row = Store(config.db_uri, create=False).get_video(reference.video_ids["a"], config.config_id)
    assert (row["status"], row["last_snapshot_ms"]) == ("partial", 10000)
    return config.db_uri


def assert_both_ended(ended: dict, runs: dict[str, list[str]]) -> dict[str, dict[str, tuple]]:
    """Each run ended without raising, with a result for each of its videos, and the two ran at
    the same time. Returns {run: {uri: (status, error, resumed_from_s)}}."""
    by_run = {}
    for name, uris in runs.items():
        how, outcome, _, _ = ended[name]
        assert how == "ended", f"run {name}: {outcome}"
        by_run[name] = {uri: (status, error, resumed) for uri, _, status, error, resumed in outcome}
        assert sorted(by_run[name]) == sorted(uris), name
    spans = [span for _, _, _, span in ended.values()]
    assert max(start for start, _ in spans) < min(end for _, end in spans), "the runs did not overlap"
    print("runs:", {name: f"{span[1] - span[0]:.1f} s" for name, (_, _, _, span) in ended.items()})
    return by_run


def differing_snapshots(ended: dict) -> list[tuple[str, int]]:
    """(video_id, t_ms) of the snapshots both runs committed with different bytes."""
    first, second = ({(v, t): sha for v, t, sha in committed} for _, _, committed, _ in ended.values())
    return sorted(key for key in first.keys() & second.keys() if first[key] != second[key])


def test_two_runs_of_the_same_videos_on_an_existing_database(existing_db, tiny_checkpoint, videos, reference):
    """Both resume a from its snapshot at 10 s and both index b; one stream per run, so both
    compute the same bytes: the tables equal the reference run's."""
    runs = {"first": [videos["a"], videos["b"]], "second": [videos["a"], videos["b"]]}

    ended = run_at_once(tiny_checkpoint, existing_db, runs, streams=1)

    by_run = assert_both_ended(ended, runs)
    for name, outcome in by_run.items():
        assert outcome[videos["a"]] in (("done", None, 10.0), ("skipped", None, None)), name
        assert outcome[videos["b"]] in (("done", None, None), ("skipped", None, None)), name
    assert differing_snapshots(ended) == []  # one stream per run: the same bytes, so the same blob names
    store = Store(existing_db, create=False)
    # Rows as the reference's; snapshot bytes only up to float rounding: the reference ran in
    # the test process, whose torch thread count other tests may have changed.
    assert_same_tables(store, reference, exact=False)
    assert len(store.videos()) == 2
    assert_no_duplicate_keys(store)
    assert_every_snapshot_loads(store)


def test_two_runs_of_overlapping_videos_batched_on_an_existing_database(existing_db, tiny_checkpoint, videos,
                                                                         reference):
    """Two streams per run: the first batches b with a, the second runs b alone (beside a
    video that cannot be read), so the two runs write different bytes for each snapshot of b at
    the same key. Every snapshots row must name a blob of its own bytes."""
    runs = {"first": [videos["a"], videos["b"], videos["text"]], "second": [videos["text"], videos["b"]]}

    ended = run_at_once(tiny_checkpoint, existing_db, runs, streams=2)

    by_run = assert_both_ended(ended, runs)
    assert by_run["first"][videos["a"]] == ("done", None, 10.0)
    for name, outcome in by_run.items():
        assert outcome[videos["b"]] in (("done", None, None), ("skipped", None, None)), name
        status, error, _ = outcome[videos["text"]]
        assert status == "failed" and error.startswith("NotAVideo"), (name, error)
    b = reference.video_ids["b"]
    if all(outcome[videos["b"]][0] == "done" for outcome in by_run.values()):  # both indexed b, not one of them
        assert {video_id for video_id, _ in differing_snapshots(ended)} == {b}
    store = Store(existing_db, create=False)
    assert_same_tables(store, reference, exact=False)  # batched: see table_rows
    [text] = [row for row in store.videos() if row["uri"] == videos["text"]]
    assert text["status"] == "failed" and text["error"] == by_run["first"][videos["text"]][1]
    assert len(store.videos()) == 3
    assert_no_duplicate_keys(store)
    assert_every_snapshot_loads(store)  # each row names a blob of its own bytes: the race is gone
    print("snapshots of b:", table_rows(store, "snapshots", {b}), "blob files of b:",
          sorted(os.listdir(f"{existing_db}/snapshots/{b}/{reference.config_id}")))


# ---- the interleavings, step by step


@pytest.fixture
def two_committers(tmp_path):
    """Two runs' committers on one database and snapshot root."""
    db, root, embedder = str(tmp_path / "db"), str(tmp_path / "snapshots"), get_embedder()
    return [Committer(db, root, store=Store(db, embedder=embedder)) for _ in range(2)]


def test_two_runs_writing_different_bytes_for_one_snapshot_each_row_names_its_own(two_committers):
    """Run 1 writes its blob, run 2 writes its own (batched differently: other bytes), commits,
    and run 1's commit lands last. Under one name per key the row said run 1's sha256 of run 2's
    bytes; now each blob has a name of its own, the row names run 1's, and run 2's blob is an
    orphan that upkeep deletes once it is old."""
    first, second = two_committers
    first.start_video(video_row())
    states = [bytes([1]) * 4096, bytes([2]) * 4096]  # same shapes, other values
    blobs = [write_snapshot_blob(first.snapshot_root, VIDEO, CONFIG, 10_000, state) for state in states]
    assert blobs[0].uri != blobs[1].uri and blobs[0].bytes == blobs[1].bytes

    second.commit_checkpoint(VIDEO, CONFIG, 10, blobs[1], {"captions": [caption(0, interval_ms=10_000)]},
                             frames_seen=11)
    first.commit_checkpoint(VIDEO, CONFIG, 10, blobs[0], {"captions": [caption(0, interval_ms=10_000)]},
                            frames_seen=11)

    store = Store(first.store.uri, create=False)
    [row] = store.snapshots(VIDEO, CONFIG)
    assert (row["uri"], row["sha256"]) == (blobs[0].uri, hashlib.sha256(states[0]).hexdigest())
    assert store.load_snapshot(row) == states[0]
    assert_no_duplicate_keys(store)
    os.utime(blobs[1].uri, (time.time() - 7200,) * 2)
    figures = maintain(store.uri, first.snapshot_root)
    assert (figures["blobs"]["deleted"], figures["blobs"]["referenced"]) == (1, 1)
    assert not os.path.exists(blobs[1].uri) and store.load_snapshot(row) == states[0]


def test_a_videos_row_is_changed_column_by_column(two_committers, monkeypatch):
    """Run 2 read the videos row before run 1's checkpoint landed, then ends the video: it sets
    its own columns only, so run 1's last_snapshot_ms and frames_sampled stay."""
    first, second = two_committers
    first.start_video(video_row(duration_s=10.0))
    stale = second.store.get_video(VIDEO, CONFIG)
    checkpoint(first, 10, b"state at 10 s", frames_seen=11, video_columns={"frames_sampled": 11})
    monkeypatch.setattr(second.store, "get_video", lambda *key: dict(stale))  # its read, before the checkpoint

    second.finish_video(VIDEO, CONFIG, "done")

    row = Store(first.store.uri, create=False).get_video(VIDEO, CONFIG)
    assert (row["status"], row["last_snapshot_ms"], row["frames_sampled"]) == ("done", 10_000, 11)
    assert row["video_seconds_per_second"] > 0


def retried_commits(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "another writer committed first" in r.getMessage()]


def _upsert_until_stopped(db: str, stop, started) -> None:
    """Another run's committer, a commit every few ms (far more often than a run commits): per
    commit a snapshots row, new or again (a second run of a video upserts the first one's keys),
    and the videos row's resume point. A writer committing back to back with no pause at all can
    preempt a compaction more often than the retries allow; upkeep then reports it and the next
    one compacts."""
    from datetime import datetime, timezone

    from vidindex.store import Store

    store, k = Store(db, create=False), 0
    started.set()
    while not stop.is_set():
        store.upsert("snapshots", [{"video_id": VIDEO, "config_id": CONFIG, "t_ms": k % 20, "uri": f"/blobs/{k}",
                                    "bytes": 1, "sha256": "0" * 64, "frames_seen": k,
                                    "created_at": datetime.now(timezone.utc)}])
        store.update_video(VIDEO, CONFIG, {"last_snapshot_ms": k})
        k += 1
        time.sleep(0.02)


def test_compaction_beside_another_process_upserting_is_retried(two_committers, caplog):
    """A compaction commits a rewrite of the fragments it read; another process's upsert
    committed meanwhile preempts it ("Retryable commit conflict ... Please retry"), often. The
    store tries it again: upkeep beside a running index reports no error."""
    first, _ = two_committers
    first.start_video(video_row())
    ctx = mp.get_context("spawn")
    stop, started = ctx.Event(), ctx.Event()
    writer = ctx.Process(target=_upsert_until_stopped, args=(first.store.uri, stop, started))
    writer.start()
    try:
        assert started.wait(timeout=RUN_TIMEOUT_S)
        time.sleep(1.0)  # some fragments to compact
        caplog.set_level(logging.INFO, logger="vidindex.store.lance_store")
        errors, upkeeps, began = [], 0, time.perf_counter()
        while len(retried_commits(caplog)) < 3 and time.perf_counter() - began < 30:
            errors += maintain(first.store.uri, first.snapshot_root, keep_versions_for=timedelta(hours=1))["errors"]
            upkeeps += 1
    finally:
        stop.set()
        writer.join(timeout=30)
    assert writer.exitcode == 0
    retried = retried_commits(caplog)
    print(f"{upkeeps} upkeeps in {time.perf_counter() - began:.1f} s, {len(retried)} commits retried:", *retried,
          sep="\n")
    assert errors == [] and retried  # preempted, and then done
    store = Store(first.store.uri, create=False)
    assert_no_duplicate_keys(store)
    assert store.count("snapshots") == 20 and store.get_video(VIDEO, CONFIG)["last_snapshot_ms"] > 20

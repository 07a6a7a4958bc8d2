"""Tables and snapshot blobs on S3 (a moto server) while the server goes away, fails requests or
answers slowly. What retries: s3fs's botocore client (blobs) and LanceDB's object store (tables),
each with exponential backoff inside every call. Whatever outlasts the retries leaves the video
resumable from its last committed snapshot, nothing half-written; the next run completes it and
ends with exactly the rows of a run that never saw a fault."""

from __future__ import annotations

import queue
import threading

from tests.reliability.conftest import (assert_every_snapshot_loads, assert_no_duplicate_keys, assert_same_tables,
                                        engine_for, make_config, table_rows)
from vidindex.store import Store, StoreError


def s3_config(tiny_checkpoint, bucket: str):
    return make_config(tiny_checkpoint, f"s3://{bucket}/db", snapshot_uri=f"s3://{bucket}/snapshots")


def assert_blobs_whole(s3, bucket: str, store: Store, reference) -> None:
    """Every object under snapshots/ is a whole blob at its final name: the one a snapshots row
    names, with its sha256, or (written, never committed) the fault-free run's blob of that key.
    No temporary object is left."""
    import hashlib

    committed = {row["uri"]: row["sha256"] for row in store.rows("snapshots").to_pylist()}
    expected = {(row[0], row[2]): row[4] for row in reference.rows("snapshots")}  # (video_id, t_ms) -> sha256
    objects = s3.objects(f"{bucket}/snapshots/")
    assert set(committed) <= {f"s3://{bucket}/{key}" for key in objects}
    for key, data in objects.items():
        name = key.rsplit("/", 1)[-1]
        assert not name.startswith("."), f"temporary object left: {key}"
        time_part, name_digest = name.split(".")[0].split("-")  # <t_ms>-<sha256 prefix>.safetensors
        video_id, t_ms = key.split("/")[1], int(time_part)
        digest = hashlib.sha256(data).hexdigest()
        assert digest.startswith(name_digest), f"{key} holds other bytes than its name says"
        assert digest == committed.get(f"s3://{bucket}/{key}", expected[(video_id, t_ms)]), key


def test_server_stopped_mid_run_and_restarted(healthy_s3, retry_watch, tiny_checkpoint, tiny_model, videos,
                                              reference):
    s3 = healthy_s3
    bucket = s3.new_bucket()
    config = s3_config(tiny_checkpoint, bucket)
    # The server stops once the first snapshot is committed and comes back as soon as a client
    # has seen it gone and retries (botocore logs each retry): an outage the retries ride out.
    retry_watch.on_retry = lambda: threading.Thread(target=s3.start).start()
    stopped = []

    def stop_after_first_checkpoint(kind, payload):
        if kind == "checkpoint" and not stopped:
            stopped.append(payload["t_s"])
            s3.stop()

    engine = engine_for(config, tiny_model, lance_options=s3.lance_options(), fs_options=s3.fs_options(),
                        on_event=stop_after_first_checkpoint)
    results = engine.index([videos["a"], videos["b"]])

    assert [(r.status, r.error) for r in results] == [("done", None), ("done", None)]
    assert stopped == [10.0] and s3.starts == 2 and retry_watch.retries >= 1
    store = Store(config.db_uri, create=False, lance_options=s3.lance_options(), fs_options=s3.fs_options())
    assert_same_tables(store, reference)
    assert_no_duplicate_keys(store)
    assert_every_snapshot_loads(store)
    assert_blobs_whole(s3, bucket, store, reference)


def test_failing_and_slow_requests_are_retried(healthy_s3, tiny_checkpoint, tiny_model, videos, reference):
    s3 = healthy_s3
    bucket = s3.new_bucket()
    config = s3_config(tiny_checkpoint, bucket)
    s3.fail_every, s3.delay_every, s3.delay_s = 7, 9, 0.2  # every 7th request answered 503 SlowDown, every 9th late

    engine = engine_for(config, tiny_model, lance_options=s3.lance_options(), fs_options=s3.fs_options())
    results = engine.index([videos["b"]])

    assert [(r.status, r.error) for r in results] == [("done", None)]
    paths = [path for _, path in s3.failed]
    assert any("/db/" in p for p in paths) and any("/snapshots/" in p for p in paths), paths  # both clients hit
    assert s3.delayed > 0
    s3.reset_faults()
    store = Store(config.db_uri, create=False, lance_options=s3.lance_options(), fs_options=s3.fs_options())
    assert_same_tables(store, reference, "b")
    assert_no_duplicate_keys(store)
    assert_every_snapshot_loads(store)
    assert_blobs_whole(s3, bucket, store, reference)


def test_outage_longer_than_the_retries_leaves_videos_resumable(healthy_s3, tiny_checkpoint, tiny_model, videos,
                                                                reference, caplog):
    s3 = healthy_s3
    bucket = s3.new_bucket()
    config = s3_config(tiny_checkpoint, bucket)
    # Few, short retries: the outage below outlasts them in seconds.
    impatient = {"lance_options": s3.lance_options(retries=1, retry_timeout_s=2), "fs_options": s3.fs_options(2)}

    def stop_for_good_after_first_checkpoint(kind, payload):
        if kind == "checkpoint":
            s3.stop()

    engine = engine_for(config, tiny_model, on_event=stop_for_good_after_first_checkpoint, **impatient)
    results = {}
    inbox = queue.SimpleQueue()
    for name in ("a", "b"):
        inbox.put((videos[name], lambda result, name=name: results.setdefault(name, result)))
    inbox.put(None)
    try:
        engine.run(inbox)
    except StoreError:  # the store is gone: the run may end with it (not a video's fault)
        pass
    a, b = reference.video_ids["a"], reference.video_ids["b"]
    blob_20 = f"s3://{bucket}/snapshots/{a}/{reference.config_id}/{reference.blob_name('a', 20000)}"
    assert results["a"].status == "failed" and f"cannot write snapshot blob {blob_20}: " in results["a"].error
    assert f"video {videos['a']} failed: StoreError: cannot write snapshot blob {blob_20}" in caplog.text
    assert results["b"].status == "failed" and "not this video's fault: StoreError" in results["b"].error

    s3.start()
    store = Store(config.db_uri, create=False, lance_options=s3.lance_options(), fs_options=s3.fs_options())
    [row] = store.videos()  # b never started; a stays partial at its last committed snapshot
    assert (row["video_id"], row["status"], row["last_snapshot_ms"]) == (a, "partial", 10000)
    assert [s["t_ms"] for s in store.snapshots(a, reference.config_id)] == [10000]
    for table in ("captions", "answers", "snapshots"):  # exactly a's rows up to its snapshot, nothing after
        assert table_rows(store, table) == reference.rows_until(table, "a", 10000), table
    assert_every_snapshot_loads(store)
    assert_blobs_whole(s3, bucket, store, reference)

    results = engine_for(config, tiny_model, lance_options=s3.lance_options(),
                         fs_options=s3.fs_options()).index([videos["a"], videos["b"]])
    assert [(r.status, r.resumed_from_s) for r in results] == [("done", 10.0), ("done", None)]
    assert_same_tables(store, reference)
    assert_no_duplicate_keys(store)
    assert_every_snapshot_loads(store)
    assert_blobs_whole(s3, bucket, store, reference)
    assert b in {r["video_id"] for r in store.videos(status="done")}

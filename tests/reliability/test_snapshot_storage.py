"""Snapshot storage that fills up, turns read-only or drops a connection in the middle of a run
(FlakyDisk, a real fsspec filesystem over a local folder). A permanent fault fails that video
alone with an error naming its blob and the problem, at its last good snapshot, with nothing
half-written; the other videos of the same batch end done; the next run resumes it. A transient
fault is retried (vidindex.store.blobs) and costs nothing."""

from __future__ import annotations

import os
import re

import pytest

from tests.reliability.conftest import (FlakyDisk, assert_every_snapshot_loads, assert_no_duplicate_keys,
                                        assert_same_tables, engine_for, make_config, table_rows)
from vidindex.store import Store


def snapshot_files(root: str) -> list[str]:
    """Every file under the flaky disk's root, relative to it (temporary ones included), with the
    hash in each blob's name shown as <sha>: <t_ms>-<sha>.safetensors."""
    folder = root.removeprefix("flakydisk://")
    return sorted(re.sub(r"-[0-9a-f]{16}\.safetensors", "-<sha>.safetensors", os.path.relpath(os.path.join(d, f), folder))
                  for d, _, files in os.walk(folder) for f in files)


@pytest.mark.parametrize("fault, problem", [("full", "[Errno 28] No space left on device"),
                                            ("readonly", "[Errno 13] Permission denied")])
def test_storage_full_or_unwritable_fails_that_video_alone(fault, problem, flaky_disk, tmp_path, tiny_checkpoint,
                                                           tiny_model, videos, reference, caplog):
    a, b, config_id = reference.video_ids["a"], reference.video_ids["b"], reference.config_id
    config = make_config(tiny_checkpoint, tmp_path / "db", snapshot_uri=flaky_disk, streams_per_gpu=2)
    FlakyDisk.fail(fragment=f"/{a}/", kind=fault, allowed=1)  # a's first snapshot lands, its second does not

    results = engine_for(config, tiny_model).index([videos["a"], videos["b"]])

    # Batched with b, a's state is not the reference run's: its blob's name holds a hash of its own.
    blob_20 = re.escape(f"{flaky_disk}/{a}/{config_id}/0000020000-") + r"[0-9a-f]{16}\.safetensors"
    failure = f"StoreError: cannot write snapshot blob {blob_20}: {re.escape(problem)}"
    assert results[0].status == "failed"
    assert re.match(failure, results[0].error)
    assert re.search(f"video {re.escape(videos['a'])} failed: {failure}", caplog.text)
    assert (results[1].status, results[1].error) == ("done", None)  # same batch, same disk, other folder

    store = Store(config.db_uri, create=False)
    row = store.get_video(a, config_id)
    assert (row["status"], row["last_snapshot_ms"]) == ("failed", 10000) and row["error"] == results[0].error
    for table in ("captions", "answers", "snapshots"):  # a's rows up to its last good snapshot, nothing after
        assert table_rows(store, table, {a}, exact=False) == reference.rows_until(table, "a", 10000, exact=False)
    assert_same_tables(store, reference, "b", exact=False)  # batched with a: see table_rows
    assert_every_snapshot_loads(store)
    # Nothing half-written: a's folder holds its one good blob; the partial temporary file is gone.
    assert [f for f in snapshot_files(flaky_disk) if f.startswith(a)] == [f"{a}/{config_id}/0000010000-<sha>.safetensors"]
    if fault == "full":
        assert any(re.fullmatch(r"\.0000020000-[0-9a-f]{16}\.safetensors\.tmp-[0-9a-f]{32}", os.path.basename(p))
                   for p in FlakyDisk.opened)

    FlakyDisk.heal()  # space freed, permissions fixed: the next run resumes a from 10 s
    results = engine_for(config, tiny_model).index([videos["a"], videos["b"]])
    assert [(r.status, r.resumed_from_s) for r in results] == [("done", 10.0), ("skipped", None)]
    assert_same_tables(store, reference, exact=False)
    assert_no_duplicate_keys(store)
    assert_every_snapshot_loads(store)


def test_a_transient_write_error_is_retried(flaky_disk, tmp_path, tiny_checkpoint, tiny_model, videos, reference,
                                            caplog):
    b, config_id = reference.video_ids["b"], reference.config_id
    config = make_config(tiny_checkpoint, tmp_path / "db", snapshot_uri=flaky_disk)
    FlakyDisk.fail(fragment=f"/{b}/", kind="blip", times=2)  # the first snapshot's first two tries

    [result] = engine_for(config, tiny_model).index([videos["b"]])

    assert (result.status, result.error, result.snapshots) == ("done", None, 2)
    retried = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert len(retried) == 2 and all(
        f"write of snapshot blob {flaky_disk}/{b}/{config_id}/{reference.blob_name('b', 10000)} failed "
        "(ConnectionResetError" in message for message in retried)
    store = Store(config.db_uri, create=False)
    assert_same_tables(store, reference, "b")
    assert_every_snapshot_loads(store)
    assert snapshot_files(flaky_disk) == [f"{b}/{config_id}/0000010000-<sha>.safetensors",
                                          f"{b}/{config_id}/0000017000-<sha>.safetensors"]

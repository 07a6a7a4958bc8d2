"""The checkpoint invariant: blob (written by the engine), then rows up to t, then the snapshots
row, then the videos row; a crash between any two steps leaves no snapshot a reader would trust.
The committer never takes blob bytes: it refuses a blob that is missing or of another size."""

import hashlib
import inspect
import os

import fsspec
import pytest

from store_rows import CONFIG, VIDEO, answer, caption, checkpoint, video_row
from vidindex.store import BlobInfo, Committer, SnapshotIntegrityError, Store, StoreError
from vidindex.store.lance_store import Store as StoreClass

STATE = b"\x00safetensors-bytes\xff" * 1000
STATE_NAME = f"0000300000-{hashlib.sha256(STATE).hexdigest()[:16]}.safetensors"  # t_ms, then its bytes' hash


def _rows_up_to(t_s):
    count = int(t_s // 30)
    return {"captions": [caption(i) for i in range(count)], "answers": [answer("people", t_s * 1000)]}


def test_checkpoint_commits_blob_rows_snapshot_row_then_video(committer, paths):
    committer.start_video(video_row(duration_s=900.0))
    snapshot = checkpoint(committer, 300, STATE, _rows_up_to(300), frames_seen=300,
                          video_columns={"frames_sampled": 300})
    expected_uri = f"{paths['snapshots']}/{VIDEO}/{CONFIG}/{STATE_NAME}"
    assert snapshot["uri"] == expected_uri
    assert snapshot["bytes"] == len(STATE) and snapshot["sha256"] == hashlib.sha256(STATE).hexdigest()
    with open(expected_uri, "rb") as file:
        assert file.read() == STATE
    assert os.listdir(os.path.dirname(expected_uri)) == [STATE_NAME]  # no temp files left

    store = Store(paths["db"], create=False)  # a fresh reader
    assert store.count("captions") == 10 and store.count("answers") == 1
    latest = store.latest_snapshot(VIDEO, CONFIG)
    assert latest["t_ms"] == 300_000 and latest["frames_seen"] == 300
    assert store.load_snapshot(latest) == STATE
    video = store.get_video(VIDEO, CONFIG)
    assert video["last_snapshot_ms"] == 300_000 and video["frames_sampled"] == 300 and video["status"] == "partial"


def test_later_checkpoints_move_the_resume_point(committer):
    committer.start_video(video_row())
    checkpoint(committer, 300, b"state at 300", _rows_up_to(300), frames_seen=300)
    checkpoint(committer, "00:10:00", b"state at 600", _rows_up_to(600), frames_seen=600)
    row, blob = committer.store.latest_loadable_snapshot(VIDEO, CONFIG)
    assert row["t_ms"] == 600_000 and blob == b"state at 600"
    assert [s["t_ms"] for s in committer.store.snapshots(VIDEO, CONFIG)] == [300_000, 600_000]
    assert committer.store.count("captions") == 20  # the rows up to 300 were not duplicated


class _Crash(BaseException):
    """Stands for the process dying: nothing in the committer catches it."""


@pytest.mark.parametrize("crash_before", ["captions", "snapshots"])
def test_crash_before_the_snapshot_row_leaves_no_trusted_snapshot(committer, paths, monkeypatch, crash_before):
    committer.start_video(video_row())
    real_upsert = StoreClass.upsert

    def upsert_then_die(self, table, rows):
        if table == crash_before:
            raise _Crash()
        return real_upsert(self, table, rows)

    monkeypatch.setattr(StoreClass, "upsert", upsert_then_die)
    with pytest.raises(_Crash):
        checkpoint(committer, 300, STATE, _rows_up_to(300), frames_seen=300)
    monkeypatch.undo()

    blob = f"{paths['snapshots']}/{VIDEO}/{CONFIG}/{STATE_NAME}"
    assert os.path.exists(blob)  # step 1 happened ...
    reader = Store(paths["db"], create=False)
    assert reader.latest_snapshot(VIDEO, CONFIG) is None  # ... but nothing vouches for it
    assert reader.latest_loadable_snapshot(VIDEO, CONFIG) is None
    assert reader.get_video(VIDEO, CONFIG)["last_snapshot_ms"] is None

    # The resumed run redoes the checkpoint with the same keys: nothing is duplicated.
    checkpoint(committer, 300, STATE, _rows_up_to(300), frames_seen=300)
    assert reader.count("captions") == 10 and reader.count("snapshots") == 1
    assert reader.latest_loadable_snapshot(VIDEO, CONFIG)[1] == STATE


def test_crash_after_the_snapshot_row_keeps_a_complete_snapshot(committer, paths, monkeypatch):
    committer.start_video(video_row())

    def die(self, *args, **kwargs):
        raise _Crash()

    monkeypatch.setattr(StoreClass, "update_video", die)
    with pytest.raises(_Crash):
        checkpoint(committer, 300, STATE, _rows_up_to(300), frames_seen=300)
    monkeypatch.undo()
    reader = Store(paths["db"], create=False)
    assert reader.get_video(VIDEO, CONFIG)["last_snapshot_ms"] is None  # step 4 lost ...
    row, blob = reader.latest_loadable_snapshot(VIDEO, CONFIG)  # ... but the snapshot is whole
    assert row["t_ms"] == 300_000 and blob == STATE and reader.count("captions") == 10


def test_a_blob_failing_before_its_move_leaves_no_file_and_no_rows(committer, paths, monkeypatch):
    committer.start_video(video_row())

    def move_fails(self, *args, **kwargs):
        raise OSError("connection reset")

    monkeypatch.setattr(type(fsspec.filesystem("file")), "mv", move_fails)
    with pytest.raises(StoreError, match=f"cannot write snapshot blob .*{STATE_NAME}"):
        checkpoint(committer, 300, STATE, _rows_up_to(300), frames_seen=300)
    assert not fsspec.filesystem("file").find(paths["snapshots"])  # the temporary file is gone too
    assert committer.store.count("captions") == 0 and committer.store.count("snapshots") == 0


def test_a_damaged_blob_is_detected_and_resume_falls_back_to_the_one_before(committer):
    committer.start_video(video_row())
    checkpoint(committer, 300, b"state at 300", _rows_up_to(300), frames_seen=300)
    latest = checkpoint(committer, 600, b"state at 600", _rows_up_to(600), frames_seen=600)
    with open(latest["uri"], "r+b") as file:
        file.write(b"X")
    with pytest.raises(SnapshotIntegrityError, match="has sha256 .* its row says"):
        committer.store.load_snapshot(latest)
    row, blob = committer.store.latest_loadable_snapshot(VIDEO, CONFIG)
    assert row["t_ms"] == 300_000 and blob == b"state at 300"
    os.remove(latest["uri"])
    with pytest.raises(SnapshotIntegrityError, match="is missing"):
        committer.store.load_snapshot(latest)


def _blob(paths, t_ms=300_000, data=STATE) -> BlobInfo:
    digest = hashlib.sha256(data).hexdigest()
    return BlobInfo(f"{paths['snapshots']}/{VIDEO}/{CONFIG}/{t_ms:010d}-{digest[:16]}.safetensors", len(data), digest)


def test_a_checkpoint_only_vouches_for_its_own_rows_up_to_t(committer, paths):
    committer.start_video(video_row())
    blob = _blob(paths)
    with pytest.raises(StoreError, match="got captions at t_end_ms=330000, after it"):
        committer.commit_checkpoint(VIDEO, CONFIG, 300, blob, {"captions": [caption(10)]}, frames_seen=300)
    with pytest.raises(StoreError, match="got answers of another stream, 'other-video'"):
        committer.commit_checkpoint(VIDEO, CONFIG, 300, blob, {"answers": [answer("q", 1, video_id="other-video")]},
                                    frames_seen=300)
    with pytest.raises(StoreError, match="only .* go with a checkpoint"):
        committer.commit_checkpoint(VIDEO, CONFIG, 300, blob, {"videos": [video_row()]}, frames_seen=300)
    assert committer.store.count("captions") == 0 and committer.store.count("snapshots") == 0


def test_a_checkpoint_needs_its_video_started(committer, paths):
    with pytest.raises(StoreError, match="call start_video first"):
        committer.commit_checkpoint(VIDEO, CONFIG, 300, _blob(paths), {}, frames_seen=300)
    assert committer.store.count("snapshots") == 0


def test_ids_that_cannot_name_a_file_are_refused(committer):
    committer.start_video(video_row("../escape"))
    with pytest.raises(StoreError, match="video_id '../escape' cannot name a file"):
        committer.commit_checkpoint("../escape", CONFIG, 300, BlobInfo("/x/escape.safetensors", 1, "0"), {},
                                    frames_seen=300)


def test_the_committer_takes_no_blob_bytes_only_a_blob_that_exists(committer, paths):
    blob_parameter = inspect.signature(Committer.commit_checkpoint).parameters["blob"]
    assert blob_parameter.annotation in (BlobInfo, "BlobInfo")  # a uri, size and sha256: never the state
    committer.start_video(video_row())
    rows = _rows_up_to(300)
    missing = _blob(paths)
    with pytest.raises(StoreError, match=f"snapshot blob {missing.uri} does not exist"):
        committer.commit_checkpoint(VIDEO, CONFIG, 300, missing, rows, frames_seen=300)
    os.makedirs(os.path.dirname(missing.uri))
    with open(missing.uri, "wb") as file:
        file.write(STATE[:-1])
    with pytest.raises(StoreError, match=f"snapshot blob {missing.uri} has {len(STATE) - 1} bytes, the commit says"):
        committer.commit_checkpoint(VIDEO, CONFIG, 300, missing, rows, frames_seen=300)
    elsewhere = BlobInfo(f"{paths['snapshots']}/elsewhere.safetensors", len(STATE), missing.sha256)
    with pytest.raises(StoreError, match="elsewhere.safetensors is not at its place"):
        committer.commit_checkpoint(VIDEO, CONFIG, 300, elsewhere, rows, frames_seen=300)
    store = Store(paths["db"], create=False)
    assert store.count("captions") == 0 and store.count("answers") == 0 and store.count("snapshots") == 0

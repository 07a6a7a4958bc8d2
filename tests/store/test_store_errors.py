"""Storage failures fail loudly, name the URI, and leave no half-written rows."""

import os
import subprocess

import pytest

from store_rows import CONFIG, VIDEO, caption, checkpoint, video_row
from vidindex.store import Committer, Store, StoreError


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "plain-file"
    path.write_text("not a directory")
    return str(path)


def test_unwritable_db_uri_is_named(a_file, embedder):
    uri = f"{a_file}/db"
    with pytest.raises(StoreError) as error:
        Store(uri, embedder=embedder)
    assert uri in str(error.value)


def test_missing_db_is_named_when_reading(tmp_path):
    uri = str(tmp_path / "no-such-db")
    with pytest.raises(StoreError, match=f"no vidindex database at {uri}"):
        Store(uri, create=False)
    os.makedirs(uri)
    with pytest.raises(StoreError, match="table 'videos' not found"):
        Store(uri, create=False)


def test_unwritable_snapshot_root_fails_the_checkpoint_before_any_row(paths, store, a_file):
    committer = Committer(paths["db"], f"{a_file}/snapshots", store=store)
    committer.start_video(video_row())
    with pytest.raises(StoreError, match=f"cannot write snapshot blob {a_file}/snapshots/{VIDEO}/{CONFIG}/"):
        checkpoint(committer, 30, b"state", {"captions": [caption(0)]}, frames_seen=30)
    assert store.count("captions") == 0 and store.count("snapshots") == 0


def test_unwritable_parquet_uri_is_named(paths, store, a_file):
    committer = Committer(paths["db"], paths["snapshots"], f"{a_file}/parquet", store=store)
    committer.start_video(video_row())
    with pytest.raises(StoreError, match=f"cannot write parquet file .*{a_file}/parquet/videos/{CONFIG}/{VIDEO}.parquet"):
        committer.finish_video(VIDEO, CONFIG)


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 2 MiB filesystem (tmpfs), when this machine lets the tests mount one."""
    mount_point = tmp_path / "tiny-disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True)
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield str(mount_point)
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_disk_full_fails_loudly_naming_the_uri(tiny_disk, embedder):
    store = Store(f"{tiny_disk}/db", embedder=embedder)
    committer = Committer(f"{tiny_disk}/db", f"{tiny_disk}/snapshots", store=store)
    committer.start_video(video_row())
    with pytest.raises(StoreError, match=f"cannot write snapshot blob {tiny_disk}/snapshots/.*No space left"):
        checkpoint(committer, 30, os.urandom(4 << 20), {"captions": [caption(0)]}, frames_seen=30)
    assert store.count("captions") == 0

    big_rows = [{**caption(i), "text": os.urandom(50_000).hex()} for i in range(80)]  # 8 MB, ~4 MB compressed
    with pytest.raises(StoreError, match=f"cannot upsert 80 rows into 'captions' at {tiny_disk}/db"):
        committer.upsert("captions", big_rows)

"""Object-store URIs: LanceDB tables, snapshot blobs and Parquet files on S3 (a local moto server)."""

import hashlib

import pyarrow.parquet as pq
import pytest

from store_rows import CONFIG, VIDEO, caption, checkpoint, video_row
from vidindex.query import search
from vidindex.store import Committer, Store


def test_everything_on_s3(s3):
    lance_options = {"aws_endpoint": s3["endpoint"], "aws_access_key_id": s3["key"],
                     "aws_secret_access_key": s3["secret"], "aws_region": "us-east-1", "allow_http": "true"}
    fs_options = {"key": s3["key"], "secret": s3["secret"], "client_kwargs": {"endpoint_url": s3["endpoint"]},
                  "use_listings_cache": False}
    committer = Committer("s3://index/db", "s3://index/snapshots", "s3://index/lake",
                          lance_options=lance_options, fs_options=fs_options)
    committer.start_video(video_row())
    snapshot = checkpoint(committer, 60, b"state on s3", {"captions": [caption(0), caption(1)]}, frames_seen=60)
    committer.finish_video(VIDEO, CONFIG)
    digest = hashlib.sha256(b"state on s3").hexdigest()
    assert snapshot["uri"] == f"s3://index/snapshots/{VIDEO}/{CONFIG}/0000060000-{digest[:16]}.safetensors"

    reader = Store("s3://index/db", create=False, lance_options=lance_options, fs_options=fs_options)
    assert reader.latest_loadable_snapshot(VIDEO, CONFIG)[1] == b"state on s3"
    assert search(reader, "parking", mode="fts", video_id=VIDEO).hits[0].t_end in (30, 60)
    assert reader.done_video_ids(CONFIG) == {VIDEO}

    import s3fs

    fs = s3fs.S3FileSystem(**fs_options)
    tables_with_rows = ("videos", "captions", "snapshots")  # no answers: no file
    assert sorted(fs.find("index/lake")) == sorted(f"index/lake/{t}/{CONFIG}/{VIDEO}.parquet" for t in tables_with_rows)
    captions = pq.read_table(f"index/lake/captions/{CONFIG}/{VIDEO}.parquet", filesystem=fs)
    assert captions.num_rows == 2 and captions.schema.field("embedding").type.list_size == 384

def test_missing_bucket_fails_naming_the_uri(s3):
    fs_options = {"key": s3["key"], "secret": s3["secret"], "client_kwargs": {"endpoint_url": s3["endpoint"]}}
    from vidindex.store import StoreError, write_blob

    with pytest.raises(StoreError, match="cannot write snapshot blob s3://no-such-bucket/x/1.safetensors"):
        write_blob("s3://no-such-bucket/x/1.safetensors", b"state", fs_options)

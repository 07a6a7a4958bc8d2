"""Videos by URI: file://, memory://, s3:// (a real local S3 server), http://; stable ids."""

import os

import fsspec
import pytest

from vidindex.video import VideoNotFound, probe, sample_frames, video_id_for
from vidindex.video.redact import redact_uri
from vidindex.video.uri import ENV_S3_ENDPOINT, ENV_FS_OPTIONS
from vidindex.video.synthetic import read_frame_index


@pytest.fixture(scope="module")
def clip(make_video):
    return make_video("uri_clip.mp4", seconds=4, fps=30, gop=15)


def check(uri, schedule, **kwargs):
    got = list(sample_frames(uri, fps=2.0, size=64, **kwargs))
    assert [t for t, _ in got] == schedule.expected_samples(2.0)
    assert all(schedule.frame_times[read_frame_index(f)] == t for t, f in got)


def test_file_uri_and_plain_path_are_the_same_video(clip):
    path, schedule = clip
    check("file://" + path, schedule)
    assert probe(path).uri == probe("file://" + path).uri == "file://" + path
    assert video_id_for(path) == video_id_for("file://" + path) == probe(path).video_id


def test_memory_uri(clip):
    path, schedule = clip
    fs = fsspec.filesystem("memory")
    fs.pipe("/videos/clip.mp4", open(path, "rb").read())
    check("memory://videos/clip.mp4", schedule)
    assert probe("memory://videos/clip.mp4").frame_count == 120
    with pytest.raises(VideoNotFound, match="memory://"):
        probe("memory://videos/nothing.mp4")


@pytest.fixture(scope="module")
def s3_clip(s3_server, clip):
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)
    fs.mkdir("videos")
    fs.put(clip[0], "videos/talks/clip.mp4")
    return "s3://videos/talks/clip.mp4"


def test_s3_with_fs_options(s3_server, s3_clip, clip):
    check(s3_clip, clip[1], fs_options=s3_server)
    info = probe(s3_clip, fs_options=s3_server)
    assert info.uri == s3_clip and info.size_bytes == os.path.getsize(clip[0])
    with pytest.raises(VideoNotFound, match="s3://videos/talks/missing.mp4"):
        probe("s3://videos/talks/missing.mp4", fs_options=s3_server)


def test_s3_options_from_environment(monkeypatch, s3_server, s3_clip, clip):
    monkeypatch.setenv(ENV_S3_ENDPOINT, s3_server["endpoint_url"])
    monkeypatch.setenv(ENV_FS_OPTIONS, '{"key": "testing-key", "secret": "testing-secret"}')
    check(s3_clip, clip[1])


def test_credentials_never_appear_in_errors(s3_server):
    options = {**s3_server, "secret": "SUPER-SECRET-VALUE"}
    with pytest.raises(VideoNotFound) as e:
        probe("s3://videos/none.mp4", fs_options=options)
    assert "SUPER-SECRET-VALUE" not in str(e.value) and "SUPER-SECRET" not in repr(e.value)
    assert redact_uri("https://user:pw@host/v.mp4?X-Amz-Signature=abc&x=1") == \
        "https://host/v.mp4?X-Amz-Signature=***&x=1"


def test_http(http_server, clip):
    path, schedule = clip
    http_server.files["/media/clip.mp4"] = open(path, "rb").read()
    check(http_server.url + "/media/clip.mp4", schedule)
    with pytest.raises(VideoNotFound, match="/media/gone.mp4"):
        probe(http_server.url + "/media/gone.mp4")


def test_video_id_is_stable_and_tracks_changes(tmp_path, clip):
    path = tmp_path / "v.mp4"
    path.write_bytes(open(clip[0], "rb").read())
    first = video_id_for(path)
    assert video_id_for(path) == first
    hashed = video_id_for(path, content_hash=True)
    assert hashed != first and video_id_for(path, content_hash=True) == hashed
    os.utime(path, (1, 1))  # touched: same content, new mtime
    assert video_id_for(path) != first
    assert video_id_for(path, content_hash=True) == hashed
    other = tmp_path / "copy.mp4"
    other.write_bytes(path.read_bytes())
    assert video_id_for(other, content_hash=True) != hashed  # same bytes, another URI

"""Every bad input gets a specific VideoError naming the URI; none crashes the process."""

import os

import numpy as np
import pytest
from PIL import Image

from vidindex.video import (BadDimensions, CorruptVideo, EmptyVideoFile, NotAVideo,
                            NoVideoStream, UnsupportedCodec, VideoError, VideoNotFound,
                            VideoPermissionError, VideoTruncated, ZeroDurationVideo, probe,
                            sample_frames)
from vidindex.video.synthetic import (read_frame_index, write_audio_only, write_empty_video,
                                      write_video)



def expect_error(path, error, **kwargs):
    """Both probe and sampling raise `error` naming the file; returns the sampling error."""
    with pytest.raises(error) as info:
        probe(path)
    assert os.path.basename(str(path)) in str(info.value)
    frames = []
    with pytest.raises(error) as info:
        for item in sample_frames(path, **kwargs):
            frames.append(item)
    err = info.value
    assert isinstance(err, VideoError) and err.uri.endswith(os.path.basename(str(path)))
    assert os.path.basename(str(path)) in str(err)
    assert frames == []
    return err


def test_missing_file(tmp_path):
    expect_error(tmp_path / "missing.mp4", VideoNotFound)


def test_directory_instead_of_file(tmp_path):
    err = expect_error(tmp_path, VideoNotFound)
    assert "directory" in str(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any local file; see the HTTP 403 test")
def test_permission_denied(tmp_path, make_video):
    src, _ = make_video("cfr_30.mp4", seconds=6, fps=30, gop=12)
    path = tmp_path / "locked.mp4"
    path.write_bytes(open(src, "rb").read())
    path.chmod(0)
    expect_error(path, VideoPermissionError)


def test_permission_denied_http(http_server, make_video):
    expect_error(http_server.url + "/forbidden/v.mp4", VideoPermissionError)


def test_zero_bytes(tmp_path):
    path = tmp_path / "zero.mp4"
    path.write_bytes(b"")
    expect_error(path, EmptyVideoFile)


@pytest.mark.parametrize("kind", ["text", "jpeg", "random"])
def test_not_a_video(tmp_path, kind):
    path = tmp_path / f"{kind}.mp4"
    if kind == "text":
        path.write_text("just some notes, not a video\n" * 50)
    elif kind == "jpeg":
        Image.fromarray(np.full((64, 64, 3), 200, np.uint8)).save(path, format="JPEG")
    else:
        path.write_bytes(np.random.default_rng(0).bytes(50_000))
    err = expect_error(path, NotAVideo)
    assert {"text": "text", "jpeg": "JPEG", "random": "unrecognised"}[kind] in str(err)


def cut(src, dst, fraction):
    data = open(src, "rb").read()
    with open(dst, "wb") as f:
        f.write(data[:int(len(data) * fraction)])


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_truncated_yields_what_decodes_then_raises(tmp_path, make_video, ext):
    """Documented behaviour: every frame before the cut, then VideoTruncated saying where."""
    src, schedule = make_video(f"whole.{ext}", seconds=10, fps=30, gop=30)
    path = tmp_path / f"cut.{ext}"
    cut(src, path, 0.6)
    info = probe(path)  # the header is intact
    assert info.duration == pytest.approx(10, abs=0.1)
    got = []
    with pytest.raises(VideoTruncated) as e:
        for item in sample_frames(path, fps=2.0):
            got.append(item)
    assert 8 <= len(got) <= 14  # about 60% of 20 samples
    assert [t for t, _ in got] == schedule.expected_samples(2.0)[:len(got)]
    assert all(schedule.frame_times[read_frame_index(f)] == t for t, f in got)
    err = e.value
    assert err.last_timestamp == got[-1][0] and err.frames_yielded == len(got)
    assert "cut." + ext in str(err) and "stops at" in str(err)


def test_truncated_mp4_with_index_at_end_fails_at_open(tmp_path):
    src = tmp_path / "slow_start.mp4"
    write_video(src, 4, 30, 160, 120, faststart=False)
    path = tmp_path / "cut_no_index.mp4"
    cut(src, path, 0.7)
    err = expect_error(path, VideoTruncated)
    assert "moov" in str(err)


def test_corrupt_in_the_middle(tmp_path, make_video):
    """Documented behaviour: frames before the damage, then CorruptVideo with the time."""
    src, schedule = make_video("whole.mp4", seconds=10, fps=30, gop=30)
    data = bytearray(open(src, "rb").read())
    middle = len(data) // 2
    data[middle:middle + 3000] = np.random.default_rng(1).bytes(3000)
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    got = []
    with pytest.raises(CorruptVideo) as e:
        for item in sample_frames(path, fps=30):
            got.append(item)
    assert not isinstance(e.value, VideoTruncated)
    assert "damaged.mp4" in str(e.value) and e.value.frames_yielded == len(got)
    # decoding gets right up to the damage
    assert 4.0 < got[-1][0] < 6.0
    assert f"t={got[-1][0]:.3f}s" in str(e.value)
    # skipping damage instead: the rest of the video still comes out, in order
    rest = list(sample_frames(path, fps=30, on_corrupt="skip"))
    times = [t for t, _ in rest]
    assert times == sorted(times) and times[-1] > 9.9 and len(rest) > 250


def test_audio_only(tmp_path):
    path = tmp_path / "podcast.mp4"
    write_audio_only(path)
    err = expect_error(path, NoVideoStream)
    assert "audio" in str(err)


def test_audio_track_is_ignored(make_video):
    path, schedule = make_video("with_audio.mp4", seconds=3, fps=30, audio=True)
    assert probe(path).has_audio
    assert [t for t, _ in sample_frames(path)] == schedule.expected_samples(1.0)


def test_zero_duration(tmp_path):
    path = tmp_path / "no_frames.avi"
    write_empty_video(path)
    expect_error(path, ZeroDurationVideo)


def test_unsupported_codec(tmp_path, make_video):
    src, _ = make_video("cfr_30.mp4", seconds=6, fps=30, gop=12)
    data = open(src, "rb").read()
    at = data.index(b"avc1", data.index(b"stsd"))  # the sample entry's codec tag
    path = tmp_path / "unknown_codec.mp4"
    path.write_bytes(data[:at] + b"xyz1" + data[at + 4:])
    expect_error(path, UnsupportedCodec)


@pytest.mark.parametrize("size,codec,ext", [((8, 8), "h264", "mp4"),
                                            ((17000, 16), "ffv1", "mkv")])
def test_absurd_dimensions(tmp_path, size, codec, ext):
    path = tmp_path / f"odd_{size[0]}x{size[1]}.{ext}"
    write_video(path, 0.5, 10, *size, codec=codec)
    err = expect_error(path, BadDimensions)
    assert f"{size[0]}x{size[1]}" in str(err)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_video_comes_out_upright(tmp_path, rotation):
    path = tmp_path / f"phone_{rotation}.mp4"
    schedule = write_video(path, 3, 30, 320, 240, rotation=rotation)
    info = probe(path)
    assert info.rotation == rotation
    assert (info.width, info.height) == ((240, 320) if rotation in (90, 270) else (320, 240))
    got = list(sample_frames(path, size=None))
    assert got[0][1].shape == (info.height, info.width, 3)
    for t, frame in got:  # the code band is only readable when the frame is upright
        assert schedule.frame_times[read_frame_index(frame)] == t


def test_odd_sizes(tmp_path):
    path = tmp_path / "odd.mkv"
    schedule = write_video(path, 2, 24, 333, 199, codec="mpeg4")
    info = probe(path)
    assert (info.width, info.height) == (332, 198)  # yuv420p needs even sizes
    got = list(sample_frames(path, size=448))
    assert [t for t, _ in got] == schedule.expected_samples(1.0)
    assert all(f.shape == (448, 448, 3) for _, f in got)


def test_bad_arguments(make_video):
    path, _ = make_video("cfr_30.mp4", seconds=6, fps=30, gop=12)
    for kwargs in (dict(fps=0), dict(fps=-1), dict(size=0), dict(start=-1),
                   dict(start=3, end=2), dict(on_corrupt="ignore")):
        with pytest.raises(ValueError):
            sample_frames(path, **kwargs)

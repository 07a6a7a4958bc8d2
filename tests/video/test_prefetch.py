"""Background decoding: bounded read-ahead, early close stops the thread, stalls time out."""

import threading
import time

import pytest

from vidindex.video import DecodeTimeout, probe, sample_frames
from vidindex.video.synthetic import write_video


def decode_threads():
    return [t for t in threading.enumerate() if t.name == "vidindex-decode" and t.is_alive()]


def wait_for_no_decode_threads(limit=5.0):
    deadline = time.monotonic() + limit
    while decode_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    return decode_threads()


def test_prefetch_is_bounded_and_close_stops_the_thread(make_video):
    path, _ = make_video("cfr_30_long_gop.mp4", seconds=5, fps=30, gop=300)
    stream = sample_frames(path, fps=30, size=32, prefetch=3)
    first = next(stream)
    time.sleep(0.3)  # let the decoder run ahead as far as it may
    assert stream._queue.qsize() <= 3
    assert stream.stats["sampled_frames"] <= 1 + 3 + 1
    stream.close()
    assert wait_for_no_decode_threads() == []
    assert first[0] == 0.0
    with pytest.raises(StopIteration):
        next(stream)


def test_break_out_of_with_and_abandoned_streams_stop(make_video):
    path, _ = make_video("cfr_30_long_gop.mp4", seconds=5, fps=30, gop=300)
    with sample_frames(path, fps=30) as frames:
        for t, _ in frames:
            if t > 1:
                break
    assert wait_for_no_decode_threads() == []
    abandoned = sample_frames(path, fps=30)
    next(abandoned)
    del abandoned  # garbage collection stops it too
    assert wait_for_no_decode_threads() == []


def test_open_that_hangs_times_out(http_server, make_video):
    path, _ = make_video("cfr_30.mp4", seconds=6, fps=30, gop=12)
    http_server.files["/v.mp4"] = open(path, "rb").read()
    http_server.stall_from = 0  # every byte range hangs
    began = time.monotonic()
    with pytest.raises(DecodeTimeout) as e:
        list(sample_frames(http_server.url + "/v.mp4", timeout_s=1.5))
    assert time.monotonic() - began < 6
    assert "/v.mp4" in str(e.value) and "1.5s" in str(e.value)
    with pytest.raises(DecodeTimeout):
        probe(http_server.url + "/v.mp4", timeout_s=1.0)


def test_stall_mid_stream_times_out_after_some_frames(http_server, tmp_path):
    path = tmp_path / "big.mp4"  # bigger than one 4 MiB remote read block
    write_video(path, 12, 30, 640, 480, gop=30, texture=True, crf=10)
    data = path.read_bytes()
    assert len(data) > 6 * 1024 * 1024
    http_server.files["/big.mp4"] = data
    http_server.stall_from = 3 * 1024 * 1024  # the first 4 MiB block arrives, the next hangs
    got = []
    with pytest.raises(DecodeTimeout) as e:
        for item in sample_frames(http_server.url + "/big.mp4", fps=2, timeout_s=1.5):
            got.append(item)
    assert len(got) >= 2 and e.value.frames_yielded == len(got)
    assert e.value.last_timestamp == got[-1][0]

"""Sampled timestamps are the real presentation times chosen by the documented rule, and the
frames are the frames at those times (each synthetic frame shows its own index)."""

import numpy as np
import pytest

from vidindex.video import probe, sample_frames
from vidindex.video.sampling import FrameSelector
from vidindex.video.synthetic import read_frame_index



def check_samples(path, schedule, fps, **kwargs):
    got = list(sample_frames(path, fps=fps, **kwargs))
    times = [t for t, _ in got]
    assert times == schedule.expected_samples(fps, start=kwargs.get("start", 0.0))
    for t, frame in got:
        index = read_frame_index(frame)
        assert schedule.frame_times[index] == t, f"frame {index} shown at t={t}"
    return got


@pytest.mark.parametrize("src_fps", [25, 29.97, 30, 60])
def test_exact_timestamps_constant_rate(make_video, src_fps):
    path, schedule = make_video(f"cfr_{src_fps}.mp4", seconds=6, fps=src_fps, gop=12)
    got = check_samples(path, schedule, 1.0)
    assert len(got) == 6
    # the frame at or just after each whole second
    for k, (t, _) in enumerate(got):
        assert k <= t < k + 1 / src_fps + 1e-9


def test_ntsc_timestamps_are_exact_multiples_of_1001_over_30000(make_video):
    path, _ = make_video("cfr_29.97.mp4", seconds=6, fps=29.97, gop=12)
    times = [t for t, _ in sample_frames(path, fps=1.0)]
    assert times == [k * 30 * 1001 / 30000 for k in range(6)]  # frame 30k is at 1.001k s


def test_variable_frame_rate(make_video):
    path, schedule = make_video("vfr.mp4", seconds=8, fps=30, vfr=True, gop=20)
    assert probe(path).is_vfr
    got = check_samples(path, schedule, 2.0)
    assert len(got) == 16


@pytest.mark.parametrize("fps", [0.5, 2.5, 7, 100])
def test_other_sampling_rates(make_video, fps):
    path, schedule = make_video("cfr_30_long_gop.mp4", seconds=5, fps=30, gop=300)
    got = check_samples(path, schedule, fps)
    # above the source rate every frame is yielded once
    assert len(got) == (150 if fps >= 30 else int(np.ceil(5 * fps)))


def test_b_frames_and_matroska(make_video):
    path, schedule = make_video("bframes.mkv", seconds=5, fps=25, gop=25, bframes=3)
    check_samples(path, schedule, 3.0)


def test_frames_resized_square_or_native(make_video):
    path, schedule = make_video("cfr_30.mp4", seconds=6, fps=30, gop=12)
    (_, small), = list(sample_frames(path, fps=1.0, size=64, end=0.5))
    assert small.shape == (64, 64, 3) and small.dtype == np.uint8
    (_, native), = list(sample_frames(path, fps=1.0, size=None, end=0.5))
    assert native.shape == (240, 320, 3)
    # RGB order: the first scene's background is red in the lower-left corner
    assert schedule.scenes[0].background == "red"
    r, g, b = native[-5, 5].astype(int)
    assert r > 180 and g < 80 and b < 80


def test_selector_rule():
    sel = FrameSelector(1.0)
    from fractions import Fraction as F
    picks = [sel.take(F(t, 10)) for t in [0, 4, 9, 10, 11, 25, 26, 30]]
    assert picks == [True, False, False, True, False, True, False, True]


def test_probe_reports_stream(make_video):
    path, schedule = make_video("cfr_29.97.mp4", seconds=6, fps=29.97, gop=12)
    info = probe(path)
    assert info.uri.startswith("file://") and info.uri.endswith("cfr_29.97.mp4")
    assert (info.width, info.height, info.rotation, info.codec) == (320, 240, 0, "h264")
    assert info.fps == pytest.approx(30000 / 1001)
    assert info.frame_count == len(schedule.frame_times) == 179
    assert info.duration == pytest.approx(179 * 1001 / 30000, abs=1e-6)
    assert not info.is_vfr and info.size_bytes > 0 and len(info.video_id) == 24

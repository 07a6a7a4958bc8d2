"""Starting at t yields exactly (timestamps and pixels) what the uninterrupted run yields from t."""

import numpy as np
import pytest

from vidindex.video import sample_frames


def run(path, **kwargs):
    return list(sample_frames(path, size=None, **kwargs))


def assert_same(resumed, full, start, end=None):
    expected = [(t, f) for t, f in full if t >= start and (end is None or t < end)]
    assert [t for t, _ in resumed] == [t for t, _ in expected]
    for (_, a), (_, b) in zip(resumed, expected):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("name,kwargs", [
    ("resume_2997.mp4", dict(fps=29.97, gop=20, bframes=2)),
    ("resume_vfr.mp4", dict(fps=30, gop=15, vfr=True)),
    ("resume_25.mkv", dict(fps=25, gop=50)),
])
def test_resume_equals_uninterrupted(make_video, name, kwargs):
    path, schedule = make_video(name, seconds=10, **kwargs)
    for fps in (1.0, 3.0):
        full = run(path, fps=fps)
        keyframe = float(schedule.frame_times[kwargs["gop"] * 2])
        for start in (0.0, 0.5, 1.0, 3.0, 3.0005, keyframe, 7.77, 9.9):
            resumed = run(path, fps=fps, start=start)
            assert_same(resumed, full, start)


def test_end_stops_early(make_video):
    path, _ = make_video("resume_25.mkv", seconds=10, fps=25, gop=50)
    full = run(path, fps=2.0)
    part = run(path, fps=2.0, start=2.2, end=6.0)
    assert_same(part, full, 2.2, 6.0)
    assert part[-1][0] < 6.0

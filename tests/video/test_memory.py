"""Memory stays flat over a long video: nothing accumulates per frame."""

import pytest

from vidindex.video import sample_frames
from vidindex.video.synthetic import write_video

from .conftest import rss_bytes


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_rss_flat_over_a_long_video(tmp_path_factory, backend):
    path = tmp_path_factory.getbasetemp() / "long_60fps.mp4"
    if not path.exists():  # 4 minutes at 60 fps: 14,400 frames, every one decoded below
        write_video(path, 240, 60, 160, 120, gop=600, scene_seconds=20)
    samples, peak, baseline = 0, 0, None
    for t, _ in sample_frames(path, fps=10, size=64, backend=backend):
        samples += 1
        if samples == 200:  # warmed up: decoder buffers and queue allocated
            baseline = rss_bytes()
        elif baseline is not None and samples % 100 == 0:
            peak = max(peak, rss_bytes())
    assert samples == 2400 and t == pytest.approx(239.9, abs=0.02)
    growth = peak - baseline
    assert growth < 40 * 1024 * 1024, f"RSS grew {growth / 2**20:.1f} MiB over 4 minutes"

"""Memory stays flat over a long video: nothing accumulates per frame.

The decode runs in a fresh process: in the test session's own process, RSS also moves with
whatever earlier tests and imports left in the allocator (heap fragmentation, allocator arenas),
which is not what is measured here."""

import json
import subprocess
import sys
import textwrap

import pytest

from vidindex.video.synthetic import write_video

MEASURE = textwrap.dedent("""
    import json, os, sys
    import psutil
    from vidindex.video import sample_frames

    path = sys.argv[1]
    samples, peak, baseline, t = 0, 0, None, None
    for t, _ in sample_frames(path, fps=10, size=64):
        samples += 1
        if samples == 200:  # warmed up: decoder buffers and queue allocated
            baseline = psutil.Process(os.getpid()).memory_info().rss
        elif baseline is not None and samples % 100 == 0:
            peak = max(peak, psutil.Process(os.getpid()).memory_info().rss)
    print(json.dumps({"samples": samples, "last_t": float(t), "growth": peak - baseline}))
""")


def test_rss_flat_over_a_long_video(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "long_60fps.mp4"
    if not path.exists():  # 4 minutes at 60 fps: 14,400 frames, every one decoded below
        write_video(path, 240, 60, 160, 120, gop=600, scene_seconds=20)
    run = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["samples"] == 2400 and result["last_t"] == pytest.approx(239.9, abs=0.02)
    growth = result["growth"]
    assert growth < 40 * 1024 * 1024, f"RSS grew {growth / 2**20:.1f} MiB over 4 minutes"

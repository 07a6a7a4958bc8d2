"""bench/baseline.py in its smoke mode: a tiny Qwen2.5-VL-shaped transformers model on the CPU,
a few chunks of frames into a growing KV cache (the GPU run is the same code at the 3B shapes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_baseline_smoke_prints_frames_per_second_and_writes_a_record(tmp_path):
    record = tmp_path / "baseline.json"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    run = subprocess.run(
        [sys.executable, "bench/baseline.py", "--smoke", "--out", str(record), "--vidindex-fps", "144"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout

    # a line per mark (0.1, 0.2, 0.3 min of video in smoke mode) with frames/s and the ratio to vidindex
    marks = re.findall(r"^== ([\d.]+) min of video .*?([\d.]+) frames/s now.*vidindex/baseline", out, re.M)
    assert [m for m, _ in marks] == ["0.1", "0.2", "0.3"], out
    assert all(float(fps) > 0 for _, fps in marks)
    assert "tokens per frame" in out
    assert "not reached within the limit" in out  # no OOM on the CPU; said so, not claimed
    assert "side by side:" in out

    data = json.loads(record.read_text())
    assert data["smoke"] is True
    assert data["setup"]["vision_tokens_per_frame"] == 4  # 56 px: 4x4 patches of 14, merged 2x2
    assert data["positions_match_get_rope_index"] in (True, None)  # None: an unknown get_rope_index API
    summary = data["summary"]
    assert summary["stop"] == "max minutes" and summary["frames"] == 24  # 6 chunks of 4 frames = 0.4 min
    assert summary["max_video_min"] is None and summary["fps_since_start"] > 0
    assert len(data["chunks"]) == 6
    assert data["at_0.1min"]["vidindex_fps"] == 144
    assert data["side_by_side"]["fps_ratio_baseline_over_vidindex_last"] > 0
    # the cache held every token fed: per frame 4 vision tokens + vision start/end, plus the prompt
    assert summary["context_tokens"] == 16 + 24 * 6

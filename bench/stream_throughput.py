"""Streaming throughput of the 4B-shaped model on one GPU (random weights, bf16, 448x448).

    python bench/stream_throughput.py [--variant NAME] [--out PATH]

Prints and records (bench/results/stream_throughput-<date>-<gpu>[-variant].json, records.py),
with the share of the compute ceiling of the performance reference (3.29 TFLOP per frame in
image mode at 800 TFLOP/s bf16 -> 243 frames/s):
  - vision tower ms/frame: the tower's own forward vs vidindex's batched-window forward;
  - feed frames/s for 1 stream and for 4 streams at several frames per feed;
  - ask-as-of-T latency: load a snapshot, replay 300 s of frames (1 fps), answer 16 tokens;
  - peak GPU memory.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from gpu_timing import Results, cuda_time
from records import add_arguments, out_path

from vidindex.model import ModelConfig, Stream
from vidindex.model.tiny import random_model
from vidindex.model.vision import encode_frames, encode_uniform_windows, encode_with_tower, preprocess

FLOP_PER_FRAME = 3.29e12
PEAK_FLOPS = 800e12


def frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 448, 448, 3), dtype=np.uint8)


def main():
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    args = ap.parse_args()
    res = Results(out_path(args, "stream_throughput"))
    res.put("device", torch.cuda.get_device_name())
    model = random_model(ModelConfig(), "cuda")
    vc = model.config.vision
    res.put("kernels", model.kernels.name)

    for n in (32,):
        px = preprocess(torch.as_tensor(frames(n)), 448, vc, "cuda", torch.bfloat16)
        with torch.inference_mode():
            tower = cuda_time(lambda: encode_with_tower(model.visual, px, n, 448, vc))
            batched = cuda_time(lambda: encode_uniform_windows(model.visual, px, n, 448, vc))
            compiled = cuda_time(lambda: encode_frames(model.visual, px, n, 448, vc, compiled=True))
        res.put(f"vision_ms_per_frame_tower_n{n}", tower * 1e3 / n)
        res.put(f"vision_ms_per_frame_batched_n{n}", batched * 1e3 / n)
        res.put(f"vision_tflops_batched_n{n}", 1.34e12 * n / batched / 1e12)
        res.put(f"vision_ms_per_frame_compiled_n{n}", compiled * 1e3 / n)
        res.put(f"vision_tflops_compiled_n{n}", 1.34e12 * n / compiled / 1e12)

    for streams, per_feed in ((1, 32), (4, 8)):
        s = model.new_stream(batch=streams)
        batch = np.stack([frames(per_feed, 1)] * streams)  # [streams, per_feed, H, W, 3]
        t0 = [0.0]

        def step():
            ts = t0[0] + np.arange(per_feed, dtype=np.float64)
            s.feed(batch, [ts] * streams)
            t0[0] += per_feed

        step()  # compile / warm up
        torch.cuda.reset_peak_memory_stats()
        dt = cuda_time(step, reps=5)
        fps = streams * per_feed / dt
        res.put(f"feed_fps_streams{streams}_perfeed{per_feed}", fps)
        res.put(f"feed_share_of_ceiling_streams{streams}_perfeed{per_feed}", fps * FLOP_PER_FRAME / PEAK_FLOPS)
        res.put(f"peak_gb_streams{streams}_perfeed{per_feed}", torch.cuda.max_memory_allocated() / 1e9)
        del s

    # ask as of T: load a snapshot, replay 300 frames (5 min at 1 fps), answer 16 tokens
    s = model.new_stream()
    s.feed(frames(32, 2)[None], [np.arange(32, dtype=np.float64)])
    blob = s.to_bytes()
    replay = frames(300, 3)

    def ask_at():
        st = Stream.from_bytes(model, blob)
        base = st.last_timestamp[0] + 1
        for i in range(0, 300, 32):
            chunk = replay[i:i + 32]
            st.feed(chunk[None], [base + i + np.arange(len(chunk), dtype=np.float64)])
        return st.ask(["What happened?"], max_new_tokens=16)[0]

    res.put("ask_at_T_replay300_s", cuda_time(ask_at, reps=2))
    res.put("snapshot_mb", len(blob) / 1e6)


if __name__ == "__main__":
    main()

"""Streaming throughput of the 4B-shaped model on one GPU (random weights, bf16, 448x448).

    python bench/stream_throughput.py [--out results.json]

Prints, with the share of the compute ceiling from the performance reference (3.29 TFLOP per
frame in image mode, ~800 TFLOP/s bf16 on an H100 -> 243 frames/s):
  - vision tower ms/frame: the tower's own forward vs vidindex's batched-window forward;
  - feed frames/s for 1 stream and for 4 streams at several frames per feed;
  - ask-as-of-T latency: load a snapshot, replay 300 s of frames (1 fps), answer 16 tokens;
  - peak GPU memory.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from gpu_timing import cuda_time

from vidindex.model import ModelConfig, Stream
from vidindex.model.tiny import random_model
from vidindex.model.vision import encode_frames, encode_uniform_windows, encode_with_tower, preprocess

FLOP_PER_FRAME = 3.29e12
PEAK_FLOPS = 800e12




def frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 448, 448, 3), dtype=np.uint8)


def report(res, out):
    print(json.dumps(res), flush=True)
    if out:
        with open(out, "w") as f:
            json.dump(res, f, indent=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    args = ap.parse_args()
    model = random_model(ModelConfig(), "cuda")
    vc = model.config.vision
    res = {"device": torch.cuda.get_device_name(), "kernels": model.kernels.name}

    for n in (32,):
        px = preprocess(torch.as_tensor(frames(n)), 448, vc, "cuda", torch.bfloat16)
        with torch.inference_mode():
            tower = cuda_time(lambda: encode_with_tower(model.visual, px, n, 448, vc))
            batched = cuda_time(lambda: encode_uniform_windows(model.visual, px, n, 448, vc))
            compiled = cuda_time(lambda: encode_frames(model.visual, px, n, 448, vc, compiled=True))
        res[f"vision_ms_per_frame_tower_n{n}"] = tower * 1e3 / n
        res[f"vision_ms_per_frame_batched_n{n}"] = batched * 1e3 / n
        res[f"vision_tflops_batched_n{n}"] = 1.34e12 * n / batched / 1e12
        res[f"vision_ms_per_frame_compiled_n{n}"] = compiled * 1e3 / n
        res[f"vision_tflops_compiled_n{n}"] = 1.34e12 * n / compiled / 1e12
        report(res, args.out)

    for streams, per_feed in ((1, 32), (4, 8)):
        s = model.new_stream(batch=streams)
        f = frames(per_feed, 1)
        batch = f if streams == 1 else [f] * streams
        t0 = [0.0]

        def step():
            ts = t0[0] + np.arange(per_feed, dtype=np.float64)
            s.feed(batch, ts if streams == 1 else [ts] * streams)
            t0[0] += per_feed

        step()  # compile / warm up
        torch.cuda.reset_peak_memory_stats()
        dt = cuda_time(step, reps=5)
        fps = streams * per_feed / dt
        res[f"feed_fps_streams{streams}_perfeed{per_feed}"] = fps
        res[f"feed_share_of_ceiling_streams{streams}_perfeed{per_feed}"] = fps * FLOP_PER_FRAME / PEAK_FLOPS
        res[f"peak_gb_streams{streams}_perfeed{per_feed}"] = torch.cuda.max_memory_allocated() / 1e9
        report(res, args.out)
        del s

    # ask as of T: snapshot at 300 s, replay 300 frames, answer
    s = model.new_stream()
    for i in range(0, 32, 32):
        s.feed(frames(32, 2), i + np.arange(32, dtype=np.float64))
    blob = s.to_bytes()
    replay = frames(300, 3)

    def ask_at():
        st = Stream.from_bytes(model, blob)
        base = st.last_timestamp[0] + 1
        for i in range(0, 300, 32):
            chunk = replay[i:i + 32]
            st.feed(chunk, base + i + np.arange(len(chunk), dtype=np.float64))
        return st.ask("What happened?", max_new_tokens=16)

    res["ask_at_T_replay300_s"] = cuda_time(ask_at, reps=2)
    res["snapshot_mb"] = len(blob) / 1e6
    report(res, args.out)


if __name__ == "__main__":
    main()

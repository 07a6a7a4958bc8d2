"""GPU check of the model's CUDA path against the references, and a constant-memory run.

    python bench/gpu_model_check.py [--frames 1000] [--out results.json]

1. Kernels: fla gated delta rule and FlexAttention window vs the PyTorch references, 4B shapes.
2. Tiny checkpoint: CUDA fast kernels in fp32, bf16 and float8 vs the CPU fp32 reference
   (logits, state, answer).
3. 4B-shaped random model (bf16): fast kernels vs the reference kernels on the same GPU.
4. Long run: thousands of frames through the 4B-shaped model; state bytes and peak memory at
   the start and the end must be equal; prints frames/s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
import torch
from gpu_timing import cuda_time

from vidindex.model import TINY_FRAME_SIZE, ModelConfig, load_model, write_tiny_checkpoint
from vidindex.model.kernels import Kernels, gated_delta, window_attention
from vidindex.model.tiny import random_model
from vidindex.model.vision import encode_frames, preprocess


def rel_err(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()




def check_kernels(results):
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    for B, T in ((1, 1), (2, 64), (1, 256), (2, 2048)):
        H, K, V = 16, 128, 256
        q = torch.randn(B, T, H, K, device=dev, generator=g, dtype=torch.bfloat16)
        k = torch.randn(B, T, H, K, device=dev, generator=g, dtype=torch.bfloat16)
        v = torch.randn(B, T, H, V, device=dev, generator=g, dtype=torch.bfloat16)
        decay = -torch.rand(B, T, H, device=dev, generator=g) * 0.5
        beta = torch.rand(B, T, H, device=dev, generator=g).to(torch.bfloat16)
        s0 = torch.randn(B, H, K, V, device=dev, generator=g) * 0.1
        o_ref, s_ref = gated_delta.chunked_reference(q, k, v, decay, beta, s0)
        o, s = gated_delta.fla_kernel(q, k, v, decay, beta, s0)
        results[f"gdn_B{B}_T{T}"] = {"out_rel_err": rel_err(o, o_ref), "state_rel_err": rel_err(s, s_ref)}
    T = 8192
    q, k = (torch.randn(1, T, 16, 128, device=dev, dtype=torch.bfloat16) for _ in range(2))
    v = torch.randn(1, T, 16, 256, device=dev, dtype=torch.bfloat16)
    decay = -torch.rand(1, T, 16, device=dev) * 0.5
    beta = torch.rand(1, T, 16, device=dev).to(torch.bfloat16)
    s0 = torch.zeros(1, 16, 128, 256, device=dev)
    ms = cuda_time(lambda: gated_delta.fla_kernel(q, k, v, decay, beta, s0)) * 1e3
    results["gdn_T8192_ms"] = ms

    cap = 8191
    for B, T, lens in ((3, 256, (0, 4000, 8191)), (1, 2048, (8191,)), (2, 1, (17, 8191))):
        q = torch.randn(B, T, 16, 128, device=dev, dtype=torch.bfloat16)
        keys = torch.randn(B, cap + T, 2, 128, device=dev, dtype=torch.bfloat16)
        vals = torch.randn(B, cap + T, 2, 128, device=dev, dtype=torch.bfloat16)
        kv_len = torch.tensor(lens, device=dev)
        ref = window_attention.sdpa_reference(q.float(), keys.float(), vals.float(),
                                              window_attention.window_mask(kv_len, cap, T))
        got = window_attention.flex_attention(q, keys, vals, window_attention.flex_block_mask(kv_len, cap, T))
        results[f"window_B{B}_T{T}"] = {"rel_err": rel_err(got, ref)}
    q = torch.randn(1, 2048, 16, 128, device=dev, dtype=torch.bfloat16)
    keys = torch.randn(1, cap + 2048, 2, 128, device=dev, dtype=torch.bfloat16)
    kv_len = torch.tensor([cap], device=dev)
    ms = cuda_time(lambda: window_attention.flex_attention(q, keys, keys, window_attention.flex_block_mask(kv_len, cap, 2048))) * 1e3
    # useful FLOPs: each query sees 8192 keys: 4 * Hq * D * Tq * 8192
    flops = 4 * 16 * 128 * 2048 * 8192
    results["window_q2048_ms"] = ms
    bm = window_attention.flex_block_mask(kv_len, cap, 2048)
    results["window_q2048_ms_mask_reused"] = cuda_time(lambda: window_attention.flex_attention(q, keys, keys, bm)) * 1e3
    ms_reused = results["window_q2048_ms_mask_reused"]
    results["window_q2048_tflops_mask_reused"] = flops / (ms_reused * 1e-3) / 1e12


def frames(n, seed, size=448):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def check_tiny(results):
    d = write_tiny_checkpoint(tempfile.mkdtemp())
    fr, ts = frames(20, 1, 56), np.arange(20) * 0.5
    cpu = load_model(d, device="cpu", dtype="float32", frame_size=TINY_FRAME_SIZE)
    for dtype in ("float32", "bfloat16", "float8"):
        gpu = load_model(d, device="cuda", dtype=dtype, frame_size=TINY_FRAME_SIZE, kernels="fast")
        a, b = cpu.new_stream(), gpu.new_stream()
        # 3 frames (13 tokens: token-serial kernel), then 17 frames (68 tokens: chunked kernel)
        la = [a.feed(fr[:3], ts[:3]), a.feed(fr[3:], ts[3:])]
        lb = [b.feed(fr[:3], ts[:3]), b.feed(fr[3:], ts[3:])]
        sa, sb = a.state_tensors(), b.state_tensors()
        results[f"tiny_{dtype}"] = {
            "logits_rel_err": max(rel_err(y.cpu(), x) for x, y in zip(la, lb)),
            "state_rel_err": max(rel_err(sb[k].cpu().float(), sa[k].float()) for k in sa if k.startswith("layers.")),
            "same_answer": a.ask("What?", max_new_tokens=8) == b.ask("What?", max_new_tokens=8),
        }


def random_4b(kernels: str, dtype=torch.bfloat16):
    model = random_model(ModelConfig(), "cuda", dtype=dtype)  # defaults are the 4B config
    model.kernels = Kernels(kernels)
    return model


def run_frames(model, fr, ts):
    stream = model.new_stream()
    logits = [stream.feed(fr[:1], ts[:1]), stream.feed(fr[1:], ts[1:])]
    return logits, stream.state_tensors()


def check_4b(results, long_frames: int):
    """bf16 fast and bf16 reference paths, each against the fp32 reference (the same random
    weights before rounding): the fast path is right when its error is that of bf16 itself."""
    fr, ts = frames(8, 2), np.arange(8) * 1.0
    truth_model = random_4b("reference", torch.float32)
    truth_logits, truth_state = run_frames(truth_model, fr, ts)
    truth_state = {k: v.float() for k, v in truth_state.items() if k.startswith("layers.")}
    frames_u8 = torch.as_tensor(fr)
    with torch.inference_mode():
        truth_vision = truth_model.embed_frames(frames_u8).float()
    del truth_model
    torch.cuda.empty_cache()
    model = random_4b("fast")
    vc = model.config.vision
    with torch.inference_mode():
        px = preprocess(frames_u8, 448, vc, "cuda", torch.bfloat16)
        for compiled in (False, True):
            feats = encode_frames(model.visual, px, len(fr), 448, vc, compiled=compiled)
            results[f"4b_vision_bf16_{'compiled' if compiled else 'eager'}_vs_fp32"] = rel_err(feats.float(), truth_vision)
    for kernels in ("fast", "reference"):
        model.kernels = Kernels(kernels)
        logits, state = run_frames(model, fr, ts)
        results[f"4b_bf16_{kernels}_vs_fp32_reference"] = {
            "logits_rel_err": max(rel_err(a, b) for a, b in zip(logits, truth_logits)),
            "state_rel_err_max": max(rel_err(state[k].float(), v) for k, v in truth_state.items()),
            "argmax_agree": bool((logits[-1].argmax(-1) == truth_logits[-1].argmax(-1)).all()),
        }
    model.kernels = Kernels("fast")

    # Long run: constant state and memory.
    stream = model.new_stream()
    per_feed = 8
    chunk = frames(per_feed, 3)
    torch.cuda.synchronize()
    marks = {}
    t0 = None
    for i in range(0, long_frames, per_feed):
        stream.feed(chunk, i + np.arange(per_feed, dtype=np.float64))
        if i == 8 * per_feed:  # after warm-up (compiles): reset the peak, start timing
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            marks["early"] = {"frames": i + per_feed, "state_bytes": stream.state_bytes()}
            t0 = time.perf_counter()
            n0 = i + per_feed
        if i == 24 * per_feed:
            torch.cuda.synchronize()
            marks["early"]["peak_bytes"] = torch.cuda.max_memory_allocated()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    marks["end"] = {"frames": stream.frames_seen[0], "state_bytes": stream.state_bytes(),
                    "peak_bytes": torch.cuda.max_memory_allocated()}
    results["4b_long_run"] = {**marks, "frames_per_s": (stream.frames_seen[0] - n0) / elapsed,
                              "frames_per_feed": per_feed, "kv_len": int(stream.state.counters["kv_len"][0])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--out", default=None)
    ap.add_argument("--skip", default="", help="comma list of: kernels,tiny,4b")
    args = ap.parse_args()
    results = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    skip = set(args.skip.split(","))
    for name, fn in (("kernels", check_kernels), ("tiny", check_tiny), ("4b", lambda r: check_4b(r, args.frames))):
        if name in skip:
            continue
        t = time.perf_counter()
        fn(results)
        print(f"[{name}] done in {time.perf_counter() - t:.1f}s", flush=True)
        print(json.dumps(results, indent=1), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()

"""Where a fresh process's first feed spends its time: the first and second call of each fast
kernel at the 4B model's shapes, one at a time.

    python bench/compile_time.py --variant cold    # then again: --variant warm

With empty compile caches (TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR) this is the cold start of
a new machine or pod; run it again on the same machine for the warm-cache start. The record goes
to bench/results/compile_time-<date>-<gpu>[-variant].json (records.py).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from gpu_timing import Results, synced
from records import add_arguments, out_path

from vidindex.model import ModelConfig
from vidindex.model.kernels import elementwise, gated_delta, window_attention
from vidindex.model.kernels import Kernels
from vidindex.model.tiny import random_model
from vidindex.model.vision import encode_frames, preprocess


def first_and_second(fn):
    return [round(synced(fn)[1], 3) for _ in range(2)]


def main():
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    ap.add_argument("--tokens", type=int, default=8192)
    args = ap.parse_args()
    res = Results(out_path(args, "compile_time"))
    put = res.put
    put("device", torch.cuda.get_device_name())

    cfg = ModelConfig()
    model = random_model(cfg, "cuda")
    fast = Kernels("fast")
    T, dev, bf = args.tokens, "cuda", torch.bfloat16
    h, dk, dv = cfg.num_linear_heads, cfg.linear_head_dim, cfg.linear_value_dim
    x = torch.randn(1, T, cfg.hidden_size, device=dev, dtype=bf)
    w = torch.ones(cfg.hidden_size, device=dev, dtype=bf)
    with torch.inference_mode():
        put("rms_norm", first_and_second(lambda: fast.rms_norm(x, w, 1e-6)))
        a = torch.randn(1, T, cfg.intermediate_size, device=dev, dtype=bf)
        put("silu_mul", first_and_second(lambda: fast.silu_mul(a, a)))
        o = torch.randn(1, T, h, dv, device=dev, dtype=bf)
        put("gated_rms_norm", first_and_second(lambda: fast.gated_rms_norm(o, o, torch.ones(dv, device=dev), 1e-6, bf)))
        u = torch.randn(1, T, h * dk, device=dev, dtype=bf)
        cw = torch.randn(h * dk, 1, cfg.conv_size, device=dev, dtype=bf)
        cs = torch.zeros(1, h * dk, cfg.conv_size, device=dev, dtype=bf)
        put("short_conv_fla", first_and_second(lambda: elementwise.fla_short_conv(u, cw, cs)))
        q = torch.randn(1, T, h, dk, device=dev, dtype=bf)
        v = torch.randn(1, T, h, dv, device=dev, dtype=bf)
        g = -torch.rand(1, T, h, device=dev)
        beta = torch.rand(1, T, h, device=dev, dtype=bf)
        state = torch.zeros(1, h, dk, dv, device=dev)
        put("gated_delta_chunk_fla", first_and_second(lambda: gated_delta.fla_kernel(q, q, v, g, beta, state)))
        put("gated_delta_recurrent_fla_t1",
            first_and_second(lambda: gated_delta.fla_kernel(q[:, :1], q[:, :1], v[:, :1], g[:, :1], beta[:, :1], state)))
        kv_len = torch.full((1,), cfg.kv_capacity, device=dev, dtype=torch.long)
        put("flex_block_mask", first_and_second(lambda: window_attention.flex_block_mask(kv_len, cfg.kv_capacity, T)))
        mask = window_attention.flex_block_mask(kv_len, cfg.kv_capacity, T)
        qa = torch.randn(1, T, cfg.num_attention_heads, cfg.head_dim, device=dev, dtype=bf)
        ka = torch.randn(1, cfg.kv_capacity + T, cfg.num_key_value_heads, cfg.head_dim, device=dev, dtype=bf)
        put("flex_attention", first_and_second(lambda: window_attention.flex_attention(qa, ka, ka, mask)))
        n = T // model.tokens_per_frame
        frames = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (n, 448, 448, 3), dtype=np.uint8))
        px = preprocess(frames, 448, cfg.vision, dev, bf)
        put("vision_compiled", first_and_second(lambda: encode_frames(model.visual, px, n, 448, cfg.vision, compiled=True)))
        st = model.new_stream()
        put("feed_after_all_above", first_and_second(lambda: st.feed(frames.numpy()[None], [st.frames_seen[0] + np.arange(n, dtype=np.float64)])))
    put("total_s", time.perf_counter() - res.t0)


if __name__ == "__main__":
    main()

"""Where a decoder step's time goes (4B config, bf16, fast kernels, one stream, full window).

    python bench/profile_decoder.py [--tokens 8192]
"""

import argparse

import torch
from gpu_timing import cuda_time
from torch.profiler import ProfilerActivity, profile

from vidindex.model import ModelConfig
from vidindex.model.tiny import random_model

DECODER_FLOP_PER_TOKEN = 2 * 3.43e9  # 2 x decoder matmul params (embedding excluded)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=8192)
    args = ap.parse_args()
    model = random_model(ModelConfig(), "cuda")
    state = model.new_state(1)
    state.counters["kv_len"].fill_(model.config.kv_capacity)
    t = args.tokens
    embeds = torch.randn(1, t, 2048, device="cuda", dtype=torch.bfloat16)
    pos = torch.arange(t, device="cuda")[None, None].expand(3, 1, t) + 100

    def step():
        model.forward_embeds(embeds, pos, state)

    with torch.inference_mode():
        sec = cuda_time(step, reps=5)
        print(f"decoder step, {t} tokens: {sec * 1e3:.1f} ms, {t / sec:,.0f} tokens/s, "
              f"{DECODER_FLOP_PER_TOKEN * t / sec / 1e12:.0f} TFLOP/s (matmuls)", flush=True)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=80))


if __name__ == "__main__":
    main()

"""Where a decoder forward's time goes (4B config, fast kernels, one stream, full window).

    python bench/profile_decoder.py [--tokens 8192] [--precision bfloat16|float8] [--variant NAME] [--out PATH]

--tokens 1 profiles a decode step (one new token). For it, the step replayed from its CUDA
graph is timed too, beside the sum of its kernels' GPU time: what is left between the two is
the cost of running many small kernels one after another. The kernel table goes to
bench/results/profile_decoder-<date>-<gpu>-<decode-step|N-tokens>-<precision>[-variant].txt
(records.py); the summary is printed.
"""

import argparse
from collections import Counter

import torch
from gpu_timing import cuda_time
from records import add_arguments, out_path, save
from torch.profiler import ProfilerActivity, profile

from vidindex.model import ModelConfig
from vidindex.model.decode import decoder_for, eager_step
from vidindex.model.tiny import random_model

DECODER_FLOP_PER_TOKEN = 2 * 3.43e9  # 2 x decoder matmul params (embedding excluded)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=8192)
    ap.add_argument("--precision", default="bfloat16", choices=("bfloat16", "float8"))
    add_arguments(ap)
    args = ap.parse_args()
    model = random_model(ModelConfig(), "cuda", dtype=args.precision)
    state = model.new_state(1)
    state.counters["kv_len"].fill_(model.config.kv_capacity)
    state.counters["next_pos"].fill_(9000)
    t = args.tokens
    embeds = torch.randn(1, t, 2048, device="cuda", dtype=torch.bfloat16)
    pos = torch.arange(t, device="cuda")[None, None].expand(3, 1, t) + 100
    ids = torch.full((1,), 1000, device="cuda", dtype=torch.long)

    def step():
        if t == 1:
            eager_step(model, state, ids)
        else:
            model.forward_embeds(embeds, pos, state)

    with torch.inference_mode():
        sec = cuda_time(step, reps=5)
        print(f"{args.precision} decoder forward, {t} tokens, eager: {sec * 1e3:.2f} ms, {t / sec:,.0f} tokens/s, "
              f"{DECODER_FLOP_PER_TOKEN * t / sec / 1e12:.0f} TFLOP/s (matmuls)", flush=True)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.device_time for e in kernels) / 1e3
        print(f"kernels per forward: {len(kernels)}, their GPU time: {busy:.2f} ms")
        by_name = Counter()
        for e in kernels:
            by_name[e.name[:90]] += e.device_time
        for name, us in by_name.most_common(12):
            print(f"  {us / 1e3:7.3f} ms  {name}")
        if t == 1:
            graphed = decoder_for(model, state)
            sec = cuda_time(lambda: graphed(ids), reps=20)
            print(f"decode step from its CUDA graph: {sec * 1e3:.2f} ms "
                  f"({sec * 1e3 - busy:.2f} ms more than its kernels' GPU time)", flush=True)
    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=80)
    shape = "decode-step" if t == 1 else f"{t}-tokens"
    print(f"kernel table: {save(out_path(args, 'profile_decoder', f'{shape}-{args.precision}', ext='txt'), table)}")


if __name__ == "__main__":
    main()

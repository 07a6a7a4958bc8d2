"""FlexAttention over the decoder's window at the 4B model's shapes on a GPU, at a 32-frame
chunk (8,192 queries, 8,191 + 8,192 keys): the default tiles, the tiles the model uses
(window_attention.flex_options) and others, in TFLOP/s of useful work, each against the default's output.

    python bench/flex_tiles.py [--variant NAME] [--out PATH]

The record goes to bench/results/flex_tiles-<date>-<gpu>[-variant].json (records.py).
"""

import argparse

import torch
from gpu_timing import Results, cuda_time
from records import add_arguments, out_path

from vidindex.model.kernels import window_attention


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


FLEX_OPTIONS = [
    None,
    {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3},
    {"BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3},
    {"BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 2},
    {"BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3},
    {"BLOCK_M": 64, "BLOCK_N": 128, "num_warps": 4, "num_stages": 2},
    {"BLOCK_M": 128, "BLOCK_N": 32, "num_warps": 4, "num_stages": 4},
    {"USE_TMA": True},
    {"USE_TMA": True, "BLOCK_M": 64, "BLOCK_N": 64, "num_warps": 4, "num_stages": 3},
    {"USE_TMA": True, "BLOCK_M": 128, "BLOCK_N": 64, "num_warps": 8, "num_stages": 3},
    {"USE_TMA": True, "BLOCK_M": 128, "BLOCK_N": 128, "num_warps": 8, "num_stages": 2},
]


def sweep_flex(res):
    from torch.nn.attention.flex_attention import flex_attention

    torch._dynamo.config.cache_size_limit = 64
    cap, T = 8191, 8192
    q = torch.randn(1, 16, T, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 2, cap + T, 128, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(1, 2, cap + T, 128, device="cuda", dtype=torch.bfloat16)
    mask = window_attention.flex_block_mask(torch.tensor([cap], device="cuda"), cap, T)
    flops = 4 * 16 * 128 * T * 8192  # each query sees 8,192 keys
    compiled = torch.compile(flex_attention)
    reference = None
    runs = [("default" if o is None else ",".join(f"{k}={v}" for k, v in o.items()), o) for o in FLEX_OPTIONS]
    for name, options in runs + [("model", window_attention.flex_options(q.device))]:
        try:
            with torch.inference_mode():
                run = lambda: compiled(q, k, v, block_mask=mask, enable_gqa=True, kernel_options=options)  # noqa: E731
                out = run()
                reference = out if reference is None else reference
                ms = cuda_time(run) * 1e3
            res.put(f"flex_{name}", {"ms": ms, "tflops": flops / ms / 1e9, "rel_to_default": rel(out, reference)})
        except Exception as e:  # an option this build does not take
            res.put(f"flex_{name}", {"error": f"{type(e).__name__}: {str(e)[:200]}"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap)
    args = ap.parse_args()
    res = Results(out_path(args, "flex_tiles"))
    res.put("device", torch.cuda.get_device_name())
    sweep_flex(res)


if __name__ == "__main__":
    main()

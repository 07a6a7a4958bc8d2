"""Float8 linear layers on a GPU: the float8 matmul against the exact product of the quantized
operands, and against the bf16 layer, at the 4B model's shapes; and their speed.

    python bench/float8_check.py [--out results.json]
"""

import argparse

import torch
from gpu_timing import Results, cuda_time
from torch import nn

from vidindex.model.float8 import Float8Linear, quantize_rows

# (tokens, in, out): decoder MLP up/down, GDN value projection, vision MLP (3420 is padded)
SHAPES = [(8192, 2560, 9728), (8192, 9728, 2560), (8192, 2560, 4096), (32768, 1280, 3420), (32768, 3420, 1280)]


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    res = Results(ap.parse_args().out)
    res.put("device", torch.cuda.get_device_name())
    torch.manual_seed(0)
    for m, k, n in SHAPES:
        layer = nn.Linear(k, n, bias=False, device="cuda", dtype=torch.bfloat16)
        f8 = Float8Linear(layer)
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        with torch.inference_mode():
            got = f8(x)
            x8, scale = quantize_rows(x, -k % 16)
            exact = (x8.float() * scale)[:, :k] @ f8.dequantized_weight().T
            bf16_s = cuda_time(lambda: layer(x), reps=20)
            f8_s = cuda_time(lambda: f8(x), reps=20)
            mm_s = cuda_time(lambda: torch._scaled_mm(x8, f8.weight.t(), scale_a=scale, scale_b=f8.weight_scale,
                                                      out_dtype=torch.bfloat16), reps=20)
        flop = 2 * m * k * n
        res.put(f"{m}x{k}x{n}", {
            "rel_vs_exact_product": rel(got, exact), "rel_vs_bf16": rel(got, layer(x)),
            "bf16_tflops": flop / bf16_s / 1e12, "float8_with_quantize_tflops": flop / f8_s / 1e12,
            "float8_matmul_only_tflops": flop / mm_s / 1e12,
        })


if __name__ == "__main__":
    main()

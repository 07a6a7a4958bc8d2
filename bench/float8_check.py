"""Float8 linear layers on a GPU: the float8 matmul against the exact product of the quantized
operands, and against the bf16 layer, at the 4B model's shapes; and their speed. The Triton
quantize pass (plain and gated) against the reference quantize_rows, element for element, with
its bandwidth and that of the reference compiled by torch.compile; and the one-pass residual
add, RMS norm and quantization against add_norm_rows.

    python bench/float8_check.py [--out results.json]
"""

import argparse

import torch
from gpu_timing import Results, cuda_time
from torch import nn

from vidindex.model.float8 import Float8Linear, add_norm_rows, quantize_rows, silu_mul_rows
from vidindex.model.kernels import compiled_fn
from vidindex.model.kernels.quantize import quantize_rows_cuda

# (tokens, in, out): decoder MLP up/down, GDN value projection, vision MLP (3420 is padded)
SHAPES = [(8192, 2560, 9728), (8192, 9728, 2560), (8192, 2560, 4096), (32768, 1280, 3420), (32768, 3420, 1280)]


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


# (rows, width, pad, gated, bias): decoder inputs (hidden, GDN output, MLP product), vision MLP product
QUANTIZE_SHAPES = [(16384, 2560, 0, False, False), (16384, 4096, 0, False, False), (16384, 9728, 0, True, False),
                   (32768, 3420, 4, True, True), (1, 9728, 0, True, False)]


def check_quantize(res):
    for m, k, pad, gated, bias in QUANTIZE_SHAPES:
        # the model's inputs are matmul outputs, rows padded to a multiple of 16 (3420 -> 3424)
        a = (torch.randn(m, k + pad, device="cuda", dtype=torch.bfloat16) * 3)[:, :k]
        b = torch.randn(m, k + pad, device="cuda", dtype=torch.bfloat16)[:, :k] if gated else None
        ba, bb = (torch.randn(k, device="cuda", dtype=torch.bfloat16) for _ in range(2)) if bias else (None, None)
        if gated:
            ref = lambda: silu_mul_rows(a, b, ba, bb, pad)  # noqa: E731
        else:
            ref = lambda: quantize_rows(a, pad)  # noqa: E731
        fast = lambda: torch.ops.vidindex.quantize_rows(a, b, ba, bb, pad)  # noqa: E731
        with torch.inference_mode():
            (r8, rs), (f8, fs) = ref(), fast()
            moved = a.numel() * 2 * (2 if gated else 1) + m * (k + pad) + 4 * m
            fast_s = cuda_time(fast, reps=20)
            compiled_s = cuda_time(lambda: compiled_fn(silu_mul_rows if gated else quantize_rows)(
                *((a, b, ba, bb, pad) if gated else (a, pad))), reps=20)
        warps = {w: moved / cuda_time(lambda: quantize_rows_cuda(a, b, ba, bb, pad, num_warps=w), reps=10) / 1e9
                 for w in (4, 8, 16, 32)}
        res.put(f"quantize_{m}x{k}{'_gated' if gated else ''}{'_bias' if bias else ''}", {
            "gb_s_by_num_warps": warps,
            "scales_equal": bool(torch.equal(rs, fs)),
            "float8_mismatches": int((r8.float() != f8.float()).sum()),
            "max_abs_diff_in_scales": float((r8.float() * rs - f8.float() * fs).abs().max()),
            "triton_gb_s": moved / fast_s / 1e9, "compiled_reference_gb_s": moved / compiled_s / 1e9,
        })


def check_add_norm(res):
    """The one-pass residual add + RMS norm + quantization against the reference, vision and decoder widths."""
    for m, k, pad in ((32768, 1280, 0), (8192, 2048, 0)):
        x, delta = (torch.randn(m, k, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        bias = torch.randn(k, device="cuda", dtype=torch.bfloat16)
        weight = (torch.rand(k, device="cuda") + 0.5).to(torch.bfloat16)
        with torch.inference_mode():
            rt, r8, rs = add_norm_rows(x, delta, bias, weight, 1e-6, pad)
            fast = lambda: torch.ops.vidindex.add_norm_quantize(x, delta, bias, weight, 1e-6, pad)  # noqa: E731
            ft, f8, fs = fast()
            seconds = cuda_time(fast, reps=20)
        res.put(f"add_norm_quantize_{m}x{k}", {
            "sums_equal": bool(torch.equal(rt, ft)), "float8_mismatches": int((r8.float() != f8.float()).sum()),
            "max_abs_diff_dequantized": float((r8.float() * rs - f8.float() * fs).abs().max()),
            "gb_s": x.numel() * 7 / seconds / 1e9,  # reads x, delta; writes the sum and float8
        })


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    res = Results(ap.parse_args().out)
    res.put("device", torch.cuda.get_device_name())
    torch.manual_seed(0)
    check_quantize(res)
    check_add_norm(res)
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

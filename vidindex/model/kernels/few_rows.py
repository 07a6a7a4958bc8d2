"""x @ W^T for an input of a few rows and a float8 weight, as a Triton kernel (CUDA; imported
only there).

A decode step, or a short prompt, multiplies 1 to 16 rows by every weight: the time is the time
to read the weights, and for the many small ones the time to start a kernel. cuBLAS's float8
matmul runs its 128-row tile on so few rows: with the input's quantization, the 4B decoder's
float8 matmuls took 4.1 ms per step on an H100, more than bf16's 3.4 ms for twice the bytes.
Here each program reads BLOCK_N weight rows once, widens them to bf16 in registers and
multiplies them by the input, which stays in bf16 (nothing to gain from quantizing it),
accumulating in fp32; the weight's per-channel scale is applied at the end: 3.1 ms per step
(bench/few_rows.py). Reference: float8.few_rows_matmul.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK_M = 16  # the smallest tile the tensor cores take: inputs of up to 16 rows, zero-padded
# (BLOCK_N, BLOCK_K, warps, stages): of 96 tiles, the fastest over a whole 4B decode step's
# shapes on an H100 (bench/few_rows.py).
CONFIG = (32, 512, 4, 3)


@triton.jit
def _few_rows_kernel(x_ptr, w_ptr, scale_ptr, out_ptr, M, N, K, stride_x, stride_w, stride_out,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.arange(0, BLOCK_M)
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for start in range(0, K, BLOCK_K):
        k = start + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + rows[:, None] * stride_x + k[None, :], mask=(rows[:, None] < M) & (k[None, :] < K),
                    other=0.0)
        w = tl.load(w_ptr + cols[:, None].to(tl.int64) * stride_w + k[None, :],
                    mask=(cols[:, None] < N) & (k[None, :] < K), other=0.0)
        acc = tl.dot(x, tl.trans(w.to(tl.bfloat16)), acc)
    scale = tl.load(scale_ptr + cols, mask=cols < N, other=0.0)
    tl.store(out_ptr + rows[:, None] * stride_out + cols[None, :], (acc * scale[None, :]).to(out_ptr.dtype.element_ty),
             mask=(rows[:, None] < M) & (cols[None, :] < N))


def few_rows_matmul_cuda(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, out_features: int,
                         config: tuple[int, int, int, int] = CONFIG) -> torch.Tensor:
    """x [M <= 16, K] bf16; weight float8 [N', K'] (N' >= out_features, K' >= K, zero-padded);
    scale fp32 with N' values -> [M, out_features] in x's dtype."""
    M, K = x.shape
    if M > BLOCK_M:
        raise ValueError(f"few_rows_matmul_cuda: {M} rows, at most {BLOCK_M}")
    out = torch.empty(M, out_features, device=x.device, dtype=x.dtype)
    x = x.to(torch.bfloat16).contiguous()  # the tensor cores' other operand is the widened weight
    block_n, block_k, warps, stages = config
    _few_rows_kernel[(triton.cdiv(out_features, block_n),)](
        x, weight, scale, out, M, out_features, K, x.stride(0), weight.stride(0), out.stride(0),
        BLOCK_M=BLOCK_M, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps, num_stages=stages)
    return out

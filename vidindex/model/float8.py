"""Float8 matmuls for the linear layers: Hopper GPUs multiply float8 at twice the bf16 rate.

    quantize_float8(model)   # after loading; an index config with dtype "float8" does this

Each nn.Linear becomes a Float8Linear: its weight is stored once as float8 (e4m3) with one
scale per output channel, and each call quantizes its input per row (token) the same way, so
the product is (x8 * sx) @ (w8 * sw)^T with both scales applied inside the matmul. Norms,
attention, the delta rule, the stream state and the tied lm_head stay in the model's dtype, and
so do the per-head gate projections of the delta rule (16 outputs: nothing to gain, and the
decay they set compounds over a whole video).

The float8 matmul needs both sides of the weight in multiples of 16; other sizes are padded
with zeros, which add nothing to the product.

Inputs of at most FEW_ROWS rows (decode steps, short prompts) are not quantized: such a matmul
is bound by reading the weight, not by arithmetic, so the float8 weight is widened and
multiplied by the input as it is (few_rows_matmul; one Triton kernel on a GPU).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .kernels.elementwise import add_rms_norm

FLOAT8 = torch.float8_e4m3fn
FLOAT8_MAX = torch.finfo(FLOAT8).max
ALIGN = 16  # elements per matmul side for float8 (and 16-byte rows for bf16: vision.pad_mlp_width)
KEEP = ("a_proj", "b_proj")  # layers left in the model's dtype, by name
FEW_ROWS = 16


def quantize_rows(x: torch.Tensor, pad: int = 0):
    """x [M, K] -> (float8 [M, K + pad], fp32 scales [M, 1]) with x ~= q * scale row by row."""
    xf = x.float()
    if pad:
        xf = F.pad(xf, (0, pad))
    amax = xf.abs().amax(-1, keepdim=True).clamp(min=1e-12)
    # Times the reciprocal, not divided by the scale: one division per row instead of one per
    # value. Spelled out op by op, so that the Triton kernel can repeat the same roundings.
    inverse = amax.reciprocal() * FLOAT8_MAX
    return (xf * inverse).clamp(-FLOAT8_MAX, FLOAT8_MAX).to(FLOAT8), amax * (1.0 / FLOAT8_MAX)


def silu_mul_rows(a: torch.Tensor, b: torch.Tensor, bias_a=None, bias_b=None, pad: int = 0):
    """quantize_rows(silu(a + bias_a) * (b + bias_b)), the product taken in fp32."""
    a, b = a.float(), b.float()
    if bias_a is not None:
        a, b = a + bias_a.float(), b + bias_b.float()
    return quantize_rows(F.silu(a) * b, pad)


def add_norm_rows(x, delta, bias, weight, eps: float, pad: int = 0):
    """(s = x + (delta + bias), then quantize_rows(rms_norm(s) * weight)): x, delta [M, K]."""
    total, normed = add_rms_norm(x, delta + bias, weight, eps)
    return (total, *quantize_rows(normed, pad))


# On a GPU each runs as one Triton pass (kernels/quantize.py), an op opaque to torch.compile.
@torch.library.custom_op("vidindex::quantize_rows", mutates_args=(), device_types="cuda",
                         schema="(Tensor a, Tensor? b, Tensor? bias_a, Tensor? bias_b, int pad) -> (Tensor, Tensor)")
def _quantize_rows_cuda(a, b, bias_a, bias_b, pad):
    from .kernels.quantize import quantize_rows_cuda

    return quantize_rows_cuda(a, b, bias_a, bias_b, pad)


@_quantize_rows_cuda.register_fake
def _(a, b, bias_a, bias_b, pad):
    return a.new_empty(a.shape[0], a.shape[1] + pad, dtype=FLOAT8), a.new_empty(a.shape[0], 1, dtype=torch.float32)


@torch.library.custom_op("vidindex::add_norm_quantize", mutates_args=(), device_types="cuda")
def _add_norm_quantize_cuda(x: torch.Tensor, delta: torch.Tensor, bias: torch.Tensor, weight: torch.Tensor,
                            eps: float, pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from .kernels.quantize import add_norm_quantize_cuda

    return add_norm_quantize_cuda(x, delta, bias, weight, eps, pad)


@_add_norm_quantize_cuda.register_fake
def _(x, delta, bias, weight, eps, pad):
    return (torch.empty_like(x), x.new_empty(x.shape[0], x.shape[1] + pad, dtype=FLOAT8),
            x.new_empty(x.shape[0], 1, dtype=torch.float32))


def few_rows_matmul(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, out_features: int) -> torch.Tensor:
    """x [M, K] @ (weight * scale)^T in fp32, in x's dtype: weight float8 [N', K'] (zero-padded
    to N' >= out_features, K' >= K), scale [1, N']."""
    k = x.shape[-1]
    return ((x.float() @ weight[:out_features, :k].float().t()) * scale[:, :out_features]).to(x.dtype)


@torch.library.custom_op("vidindex::few_rows_matmul", mutates_args=(), device_types="cuda")
def _few_rows_matmul_cuda(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, out_features: int) -> torch.Tensor:
    from .kernels.few_rows import few_rows_matmul_cuda

    return few_rows_matmul_cuda(x, weight, scale, out_features)


@_few_rows_matmul_cuda.register_fake
def _(x, weight, scale, out_features):
    return x.new_empty(x.shape[0], out_features)


def has_few_rows(x: torch.Tensor) -> bool:
    return x.numel() <= FEW_ROWS * x.shape[-1]


def _quantize(x: torch.Tensor, pad: int):
    # Inside a compiled region the reference fuses with the pass that produces x (a norm).
    if x.is_cuda and not torch.compiler.is_compiling():
        return torch.ops.vidindex.quantize_rows(x, None, None, None, pad)
    return quantize_rows(x, pad)


def _padding(n: int) -> int:
    return -n % ALIGN


class QuantizedInput(NamedTuple):
    """An input quantized once for several float8 layers that take it (q, k, v and the gate
    read the same normed hidden states): one quantize pass instead of one per layer."""

    rows: torch.Tensor  # float8 [M, K + pad]
    scale: torch.Tensor  # fp32 [M, 1]
    lead: torch.Size  # x's shape but the last dim
    dtype: torch.dtype  # x's dtype, the matmul's output dtype


def shared_input(x: torch.Tensor, layer: nn.Module):
    """x as `layer` and the layers like it that take the same x want it: quantized once for
    float8 layers (unless it has few rows), else x itself."""
    if not isinstance(layer, Float8Linear) or has_few_rows(x):
        return x
    rows, scale = _quantize(x.reshape(-1, layer.in_features), _padding(layer.in_features))
    return QuantizedInput(rows, scale, x.shape[:-1], x.dtype)


class Float8Linear(nn.Module):
    """y = x W^T + b with W in float8; x is quantized per row at each call."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        out_features, in_features = linear.weight.shape
        self.in_features, self.out_features = in_features, out_features
        weight = F.pad(linear.weight.detach(), (0, _padding(in_features), 0, _padding(out_features)))
        w8, scale = quantize_rows(weight)
        self.register_buffer("weight", w8)  # [N, K] padded
        self.register_buffer("weight_scale", scale.reshape(1, -1))  # [1, N]
        self.bias = linear.bias

    def matmul(self, x: torch.Tensor | QuantizedInput) -> torch.Tensor:
        """x @ W^T without the bias, in x's dtype. x: a tensor, or shared_input's for this layer."""
        if not isinstance(x, QuantizedInput) and has_few_rows(x):
            x2 = x.reshape(-1, self.in_features)
            few = torch.ops.vidindex.few_rows_matmul if x.is_cuda else few_rows_matmul
            return few(x2, self.weight, self.weight_scale, self.out_features).reshape(*x.shape[:-1], self.out_features)
        q = x if isinstance(x, QuantizedInput) else shared_input(x, self)
        y = torch._scaled_mm(q.rows, self.weight.t(), scale_a=q.scale, scale_b=self.weight_scale, out_dtype=q.dtype)
        if y.shape[-1] != self.out_features:
            y = y[:, : self.out_features]
        return y.reshape(*q.lead, self.out_features)

    def forward(self, x: torch.Tensor | QuantizedInput) -> torch.Tensor:
        y = self.matmul(x)
        return y if self.bias is None else y + self.bias

    def dequantized_weight(self) -> torch.Tensor:
        """The weight the matmuls use, [out, in] in fp32 (for checks)."""
        w = self.weight.float() * self.weight_scale.t()
        return w[: self.out_features, : self.in_features]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def silu_mul_input(a: torch.Tensor, b: torch.Tensor, layer: nn.Module, bias_a=None, bias_b=None,
                   silu_mul=lambda a, b: F.silu(a) * b):
    """silu(a + bias_a) * (b + bias_b) as `layer` (an MLP's down projection) takes it: for a
    float8 layer quantized in the same pass (unless it has few rows), else by `silu_mul` in a's
    dtype."""
    if not isinstance(layer, Float8Linear) or has_few_rows(a):
        if bias_a is not None:
            a, b = a + bias_a, b + bias_b
        return silu_mul(a, b)
    pad = _padding(layer.in_features)
    a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    if a.is_cuda:
        rows, scale = torch.ops.vidindex.quantize_rows(a2, b2, bias_a, bias_b, pad)
    else:
        rows, scale = silu_mul_rows(a2, b2, bias_a, bias_b, pad)
    return QuantizedInput(rows, scale, a.shape[:-1], a.dtype)


def add_norm_input(x: torch.Tensor, delta: torch.Tensor, bias: torch.Tensor, weight: torch.Tensor, eps: float,
                   layer: nn.Module):
    """(s = x + (delta + bias), rms_norm(s) * weight as `layer` takes it): the residual stream and
    the next layer's input. For a float8 layer on a GPU the sum, the norm and the quantization
    are one pass over memory."""
    if not isinstance(layer, Float8Linear):
        return add_rms_norm(x, delta + bias, weight, eps)
    args = (x.reshape(-1, x.shape[-1]), delta.reshape(-1, x.shape[-1]), bias, weight, eps, _padding(layer.in_features))
    total, rows, scale = torch.ops.vidindex.add_norm_quantize(*args) if x.is_cuda else add_norm_rows(*args)
    return total.view(x.shape), QuantizedInput(rows, scale, x.shape[:-1], x.dtype)


def quantize_float8(model: nn.Module) -> nn.Module:
    """Replace the model's linear layers (except KEEP) by Float8Linear, in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and name not in KEEP:
                setattr(parent, name, Float8Linear(child))
    return model


def project(x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """x @ layer.weight^T without its bias, for a plain or a float8 linear layer: callers add
    the bias inside their next fused pass instead of as a separate pass over the output."""
    if isinstance(layer, Float8Linear):
        return layer.matmul(x)
    return F.linear(x, layer.weight)

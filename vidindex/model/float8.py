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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import compiled_fn

FLOAT8 = torch.float8_e4m3fn
FLOAT8_MAX = torch.finfo(FLOAT8).max
ALIGN = 16
KEEP = ("a_proj", "b_proj")  # layers left in the model's dtype, by name


def quantize_rows(x: torch.Tensor, pad: int = 0):
    """x [M, K] -> (float8 [M, K + pad], fp32 scales [M, 1]) with x ~= q * scale row by row."""
    xf = x.float()
    if pad:
        xf = F.pad(xf, (0, pad))
    scale = xf.abs().amax(-1, keepdim=True).clamp(min=1e-12) / FLOAT8_MAX
    return (xf / scale).clamp(-FLOAT8_MAX, FLOAT8_MAX).to(FLOAT8), scale


def _quantize(x: torch.Tensor, pad: int):
    """quantize_rows as one fused pass on a GPU (eager it takes five)."""
    if not x.is_cuda or torch.compiler.is_compiling():  # inside a compiled region it fuses anyway
        return quantize_rows(x, pad)
    return compiled_fn(quantize_rows)(x, pad)


def _padding(n: int) -> int:
    return -n % ALIGN


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

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x @ W^T without the bias, in x's dtype."""
        lead = x.shape[:-1]
        x8, scale = _quantize(x.reshape(-1, self.in_features), _padding(self.in_features))
        y = torch._scaled_mm(x8, self.weight.t(), scale_a=scale, scale_b=self.weight_scale, out_dtype=x.dtype)
        if y.shape[-1] != self.out_features:
            y = y[:, : self.out_features]
        return y.reshape(*lead, self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.matmul(x)
        return y if self.bias is None else y + self.bias

    def dequantized_weight(self) -> torch.Tensor:
        """The weight the matmuls use, [out, in] in fp32 (for checks)."""
        w = self.weight.float() * self.weight_scale.t()
        return w[: self.out_features, : self.in_features]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


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

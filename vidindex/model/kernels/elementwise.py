"""Norms, gates and the short causal convolution: the memory-bound pieces around the matmuls.

Each function here is the reference definition. The fast path runs the same functions through
torch.compile (fusing each into one pass over memory) and the short convolution through fla's
fused causal_conv1d.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm(x, weight, eps: float):
    """Qwen2-style RMSNorm: normalise in fp32, cast back, then scale."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def add_rms_norm(x, h, weight, eps: float):
    """(x + h, rms_norm(x + h)): a residual add and the norm that reads its result."""
    total = x + h
    return total, rms_norm(total, weight, eps)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def rotary(q, k, cos, sin):
    """Rotary embedding of q and k [B, T, H, D] by cos, sin [B, T, D], in their dtype."""
    c, s = cos[:, :, None], sin[:, :, None]
    return q * c + rotate_half(q) * s, k * c + rotate_half(k) * s


def delta_gates(a, b, a_log, dt_bias):
    """Gated DeltaNet's per-head gates from its a and b projections: the log decay
    g = -exp(A_log) * softplus(a + dt_bias) in fp32, and the write strength beta = sigmoid(b)."""
    return -a_log.float().exp() * F.softplus(a.float() + dt_bias.float()), torch.sigmoid(b)


def gated_rms_norm(o, gate, weight, eps: float, out_dtype):
    """rmsnorm(o) * weight * silu(gate) over the last dim, in fp32 (Gated DeltaNet output)."""
    of = o.float()
    of = of * torch.rsqrt(of.pow(2).mean(-1, keepdim=True) + eps)
    return (of * weight.float() * F.silu(gate.float())).to(out_dtype)


def silu_mul(a, b):
    return F.silu(a) * b


def short_conv(u, weight, conv_state):
    """Causal depthwise conv + SiLU. u [B, T, C]; weight [C, 1, W]; conv_state [B, C, W] holds the
    last W raw inputs (newest last) and is updated in place. Returns [B, T, C]."""
    w = weight.shape[-1]
    history = torch.cat((conv_state.to(u.dtype), u.transpose(1, 2)), dim=-1)  # [B, C, W + T]
    y = F.conv1d(history[..., 1:], weight, groups=u.shape[-1])
    conv_state.copy_(history[..., -w:])
    return F.silu(y).transpose(1, 2)


def fla_short_conv(u, weight, conv_state):
    from fla.modules.causal_conv1d import causal_conv1d

    y, final = causal_conv1d(u, weight.view(weight.shape[0], -1), initial_state=conv_state,
                             output_final_state=True, activation="silu")
    conv_state.copy_(final)
    return y

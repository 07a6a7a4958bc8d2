"""Decoder building blocks: norms, MLP, M-RoPE, sliding-window attention, Gated DeltaNet.

Parameter names follow the official checkpoint. Each mixer reads and updates its slice of the
stream state in place (fixed-shape buffers allocated once), so a step never allocates state.
While autograd records (training, see training.py) the slice's entries are replaced instead.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .float8 import shared_input, silu_mul_input
from .kernels import Kernels


def store(layer_state: dict, name: str, value: torch.Tensor) -> None:
    """Write a mixer's new state: into the stream's buffer in place (fixed buffers, which CUDA
    graphs and batched state slots rely on), or, when autograd records `value` (a training
    forward), by replacing the entry, so that no tensor saved for the backward pass changes."""
    if value.requires_grad:
        layer_state[name] = value
    else:
        layer_state[name].copy_(value)


def writable(layer_state: dict, name: str, recording: bool) -> torch.Tensor:
    """The state buffer a kernel updates in place: the stream's own, or when autograd records
    (a training forward) a copy put in its place (see store)."""
    if recording:
        layer_state[name] = layer_state[name].clone()
    return layer_state[name]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x, kernels: Kernels):
        return kernels.rms_norm(x, self.weight, self.eps)


class MLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x, kernels: Kernels):
        x = shared_input(x, self.gate_proj)
        hidden = silu_mul_input(self.gate_proj(x), self.up_proj(x), self.down_proj, silu_mul=kernels.silu_mul)
        return self.down_proj(hidden)


def mrope_cos_sin(positions: torch.Tensor, cfg: ModelConfig, dtype: torch.dtype):
    """M-RoPE tables for 3-axis positions [3, B, T] -> cos, sin [B, T, head_dim].

    Frequency index f takes its angle from the temporal axis for the first mrope_section[0]
    indices, then height, then width; the second half of head_dim mirrors the first.
    """
    half = cfg.head_dim // 2
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, half, device=positions.device, dtype=torch.float64) / half))
    angles = positions.double()[..., None] * inv_freq  # [3, B, T, half]
    # Which axis each frequency takes its angle from, built on the device (no host copy, so a
    # step stays capturable as a CUDA graph).
    f = torch.arange(half, device=positions.device)
    first, second = cfg.mrope_section[0], cfg.mrope_section[0] + cfg.mrope_section[1]
    axis = (f >= first).long() + (f >= second).long()
    picked = angles.gather(0, axis.view(1, 1, 1, half).expand(1, *angles.shape[1:3], half))[0]
    emb = torch.cat((picked, picked), dim=-1).float()
    return emb.cos().to(dtype), emb.sin().to(dtype)


class SlidingWindowAttention(nn.Module):
    """Softmax attention over the last `sliding_window` tokens, GQA, M-RoPE, q/k/v bias.

    State (per stream): post-RoPE keys and values of the last window-1 tokens, right-aligned.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, hq, hkv = cfg.head_dim, cfg.num_attention_heads, cfg.num_key_value_heads
        self.q_proj = nn.Linear(cfg.hidden_size, hq * d, bias=True)
        self.k_proj = nn.Linear(cfg.hidden_size, hkv * d, bias=True)
        self.v_proj = nn.Linear(cfg.hidden_size, hkv * d, bias=True)
        self.o_proj = nn.Linear(hq * d, cfg.hidden_size, bias=False)

    def forward(self, x, cos, sin, layer_state: dict, plan, kernels: Kernels):
        """x [B, T, hidden]; cos/sin [B, T, head_dim]; layer_state holds keys/values [B, C, Hkv, D]."""
        B, T, _ = x.shape
        d = self.cfg.head_dim
        shared = shared_input(x, self.q_proj)
        q = self.q_proj(shared).view(B, T, -1, d)
        k = self.k_proj(shared).view(B, T, -1, d)
        v = self.v_proj(shared).view(B, T, -1, d)
        q, k = kernels.rotary(q, k, cos, sin)
        keys = torch.cat((layer_state["keys"], k), 1)
        values = torch.cat((layer_state["values"], v), 1)
        capacity = layer_state["keys"].shape[1]
        out = kernels.window_attention(q, keys, values, plan)
        # Keep the newest `capacity` tokens (the shift buffer stays chronological).
        store(layer_state, "keys", keys[:, -capacity:])
        store(layer_state, "values", values[:, -capacity:])
        return self.o_proj(out.reshape(B, T, -1))


class ShortConv(nn.Module):
    """Causal depthwise conv + SiLU; state = the last `conv_size` raw inputs [B, C, W], newest last."""

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels, 1, size))

    def forward(self, u, layer_state: dict, name: str, kernels: Kernels):
        """u [B, T, C] -> [B, T, C]; layer_state[name] [B, C, W] updated (see writable)."""
        return kernels.short_conv(u, self.weight, writable(layer_state, name, u.requires_grad))


class GatedDeltaNet(nn.Module):
    """Linear-attention mixer with a fixed-size recurrent state [B, H, K, V] per stream."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        h, dk, dv = cfg.num_linear_heads, cfg.linear_head_dim, cfg.linear_value_dim
        hk = cfg.num_linear_key_value_heads
        if hk != h:
            raise ValueError("config: Gated DeltaNet with num_linear_key_value_heads != num_linear_heads is not supported")
        hidden = cfg.hidden_size
        self.q_proj = nn.Linear(hidden, h * dk, bias=False)
        self.k_proj = nn.Linear(hidden, hk * dk, bias=False)
        self.v_proj = nn.Linear(hidden, h * dv, bias=False)
        self.a_proj = nn.Linear(hidden, h, bias=False)
        self.b_proj = nn.Linear(hidden, h, bias=False)
        self.A_log = nn.Parameter(torch.zeros(h))
        self.dt_bias = nn.Parameter(torch.zeros(h))
        self.q_conv1d = ShortConv(h * dk, cfg.conv_size)
        self.k_conv1d = ShortConv(hk * dk, cfg.conv_size)
        self.v_conv1d = ShortConv(h * dv, cfg.conv_size)
        self.g_proj = nn.Linear(hidden, h * dv, bias=False)
        self.o_norm = nn.Module()
        self.o_norm.weight = nn.Parameter(torch.ones(dv))
        self.o_proj = nn.Linear(h * dv, hidden, bias=False)

    def forward(self, x, layer_state: dict, kernels: Kernels):
        B, T, _ = x.shape
        h, dk, dv = self.cfg.num_linear_heads, self.cfg.linear_head_dim, self.cfg.linear_value_dim
        shared = shared_input(x, self.q_proj)  # q, k, v and the gate read x (quantized once in float8)
        q = self.q_conv1d(self.q_proj(shared), layer_state, "conv_q", kernels).view(B, T, h, dk)
        k = self.k_conv1d(self.k_proj(shared), layer_state, "conv_k", kernels).view(B, T, h, dk)
        v = self.v_conv1d(self.v_proj(shared), layer_state, "conv_v", kernels).view(B, T, h, dv)
        g, beta = kernels.delta_gates(self.a_proj(x), self.b_proj(x), self.A_log, self.dt_bias)
        o, new_state = kernels.gated_delta_rule(q, k, v, g, beta, layer_state["recurrent"])
        store(layer_state, "recurrent", new_state)
        # Gated RMSNorm per head over the value dims, in fp32.
        gate = self.g_proj(shared).view(B, T, h, dv)
        o = kernels.gated_rms_norm(o, gate, self.o_norm.weight, self.cfg.norm_eps, x.dtype)
        return self.o_proj(o.reshape(B, T, h * dv))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, index: int):
        super().__init__()
        self.is_attention = cfg.is_attention_layer(index)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = SlidingWindowAttention(cfg) if self.is_attention else GatedDeltaNet(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x, delta, cos, sin, layer_state, plan, kernels, last_only: bool = False):
        """The layer on x + delta, where delta is the previous layer's MLP output (None for the
        first layer), added in the pass of this layer's first norm. Returns (x + delta plus the
        mixer's output, this layer's MLP output), the latter for the next layer to add.

        last_only: the last position only. The mixer still reads every token (its state needs
        them), but the MLP runs on the last one: the last layer's other outputs feed nothing."""
        if delta is None:
            h = self.input_layernorm(x, kernels)
        else:
            x, h = kernels.add_rms_norm(x, delta, self.input_layernorm.weight, self.input_layernorm.eps)
        if self.is_attention:
            h = self.self_attn(h, cos, sin, layer_state, plan, kernels)
        else:
            h = self.self_attn(h, layer_state, kernels)
        if last_only:
            x, h = x[:, -1:], h[:, -1:]
        norm = self.post_attention_layernorm
        x, h = kernels.add_rms_norm(x, h, norm.weight, norm.eps)
        return x, self.mlp(h, kernels)

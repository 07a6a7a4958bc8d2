"""Kernel adapter: one place that picks the implementation of each token mixer.

"reference": plain PyTorch (CPU and CUDA) — the definition every fast path is tested against.
"fast": fla's Triton kernels for the gated delta rule and the short convolution, FlexAttention
for the window, and compiled (fused) norms and gates (CUDA).
"auto" (default): fast on CUDA when fla imports, reference otherwise. The environment variable
VIDINDEX_KERNELS overrides the default.
"train": the reference with the delta rule chunked at every length (training.py: a token-by-token
loop is slow to differentiate); made directly, never picked for inference.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import torch

from . import elementwise, gated_delta, window_attention

# Triton keeps the autotuning winners of fla's kernels on disk (TRITON_CACHE_DIR) only when asked;
# without this every new process (each indexing actor, each serve replica) benchmarks them again.
os.environ.setdefault("TRITON_CACHE_AUTOTUNING", "1")

_compiled: dict = {}


def compiled_fn(fn):
    """fn through torch.compile, compiled once per function, shape-generic from the start: token
    counts vary with frames per feed, questions and decode steps, and per-shape recompiles would
    exhaust dynamo's recompile limit and fall back to eager."""
    if fn not in _compiled:
        _compiled[fn] = torch.compile(fn, dynamic=True)
    return _compiled[fn]


@lru_cache(maxsize=None)
def fla_available() -> bool:
    try:
        import fla.ops.gated_delta_rule  # noqa: F401
    except Exception:
        return False
    return True


@dataclass(frozen=True)
class Kernels:
    name: str

    def gated_delta_rule(self, q, k, v, g, beta, state):
        if self.name == "fast":
            return gated_delta.fla_kernel(q, k, v, g, beta, state)
        if q.shape[1] <= 64 and self.name != "train":
            return gated_delta.recurrent_reference(q, k, v, g, beta, state)
        return gated_delta.chunked_reference(q, k, v, g, beta, state)

    def _fused(self, fn):
        """fn compiled into fused passes on the fast path, else as written."""
        return compiled_fn(fn) if self.name == "fast" else fn

    def rms_norm(self, x, weight, eps: float):
        return self._fused(elementwise.rms_norm)(x, weight, eps)

    def add_rms_norm(self, x, h, weight, eps: float):
        return self._fused(elementwise.add_rms_norm)(x, h, weight, eps)

    def rotary(self, q, k, cos, sin):
        return self._fused(elementwise.rotary)(q, k, cos, sin)

    def delta_gates(self, a, b, a_log, dt_bias):
        return self._fused(elementwise.delta_gates)(a, b, a_log, dt_bias)

    def gated_rms_norm(self, o, gate, weight, eps: float, out_dtype):
        return self._fused(elementwise.gated_rms_norm)(o, gate, weight, eps, out_dtype)

    def silu_mul(self, a, b):
        return self._fused(elementwise.silu_mul)(a, b)

    def short_conv(self, u, weight, conv_state):
        if self.name == "fast":
            return elementwise.fla_short_conv(u, weight, conv_state)
        return elementwise.short_conv(u, weight, conv_state)

    def window_plan(self, kv_len, capacity: int, t_new: int, head_dim: int, dtype) -> "WindowPlan":
        """What every window layer of one step needs to mask attention; built once per step."""
        if self.name == "fast" and window_attention.flex_supported(t_new, head_dim, dtype):
            return WindowPlan("flex", window_attention.flex_block_mask(kv_len, capacity, t_new))
        return WindowPlan("sdpa", window_attention.window_mask(kv_len, capacity, t_new))

    def window_attention(self, q, keys, values, plan: "WindowPlan"):
        if plan.kind == "flex":
            return window_attention.flex_attention(q, keys, values, plan.mask)
        return window_attention.sdpa_reference(q, keys, values, plan.mask)


@dataclass(frozen=True)
class WindowPlan:
    kind: str
    mask: object


def select_kernels(device: torch.device | str, choice: str | None = None) -> Kernels:
    choice = choice or os.environ.get("VIDINDEX_KERNELS", "auto")
    if choice not in ("auto", "reference", "fast"):
        raise ValueError(f"kernels: unknown choice {choice!r} (auto, reference, fast)")
    on_cuda = torch.device(device).type == "cuda"
    if choice == "auto":
        choice = "fast" if on_cuda and fla_available() else "reference"
    if choice == "fast":
        if not on_cuda:
            raise ValueError("kernels: 'fast' needs a CUDA device")
        if not fla_available():
            raise ValueError("kernels: 'fast' needs flash-linear-attention (pip install 'vidindex[gpu]')")
    return Kernels(choice)

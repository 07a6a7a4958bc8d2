"""Stream state: every tensor a stream carries between steps, fixed-shape, allocated once.

For B streams:
  layers.{i}.keys / .values   [B, window-1, Hkv, D]  window layers: post-RoPE keys, values
  layers.{i}.conv_q/_k/_v     [B, C, conv_size]      Gated DeltaNet: last raw conv inputs
  layers.{i}.recurrent        [B, H, K, V] fp32      Gated DeltaNet recurrent state
  kv_len        [B] int64   valid tokens in the window buffers (<= window-1)
  tokens_seen   [B] int64   tokens fed so far
  next_pos      [B] int64   next free M-RoPE position (max position used + 1)
  vision_base   [B] int64   M-RoPE base of the open vision span (-1: none open)
  frames_seen   [B] int64
  last_timestamp[B] float64 presentation time of the last frame fed (-inf: none)

Nothing here depends on how long a video is.
"""

from __future__ import annotations

from typing import Iterable

import torch

from .config import ModelConfig

COUNTERS = ("kv_len", "tokens_seen", "next_pos", "vision_base", "frames_seen", "last_timestamp")


class StreamState:
    def __init__(self, layers: list[dict[str, torch.Tensor]], counters: dict[str, torch.Tensor]):
        self.layers = layers
        self.counters = counters

    @classmethod
    def allocate(cls, cfg: ModelConfig, batch: int, device, dtype) -> "StreamState":
        layers = []
        for i in range(cfg.num_hidden_layers):
            if cfg.is_attention_layer(i):
                shape = (batch, cfg.kv_capacity, cfg.num_key_value_heads, cfg.head_dim)
                layers.append({
                    "keys": torch.zeros(shape, device=device, dtype=dtype),
                    "values": torch.zeros(shape, device=device, dtype=dtype),
                })
            else:
                h, dk, dv = cfg.num_linear_heads, cfg.linear_head_dim, cfg.linear_value_dim
                w = cfg.conv_size
                layers.append({
                    "conv_q": torch.zeros(batch, h * dk, w, device=device, dtype=dtype),
                    "conv_k": torch.zeros(batch, cfg.num_linear_key_value_heads * dk, w, device=device, dtype=dtype),
                    "conv_v": torch.zeros(batch, h * dv, w, device=device, dtype=dtype),
                    "recurrent": torch.zeros(batch, h, dk, dv, device=device, dtype=torch.float32),
                })
        counters = {name: torch.zeros(batch, device=device, dtype=torch.int64) for name in COUNTERS}
        counters["vision_base"].fill_(-1)
        counters["last_timestamp"] = torch.full((batch,), float("-inf"), device=device, dtype=torch.float64)
        return cls(layers, counters)

    @property
    def batch_size(self) -> int:
        return self.counters["kv_len"].shape[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat name -> tensor view of the whole state (no copies)."""
        out = {f"layers.{i}.{k}": t for i, layer in enumerate(self.layers) for k, t in layer.items()}
        out.update(self.counters)
        return out

    @classmethod
    def from_tensors(cls, flat: dict[str, torch.Tensor], num_layers: int) -> "StreamState":
        layers: list[dict[str, torch.Tensor]] = [{} for _ in range(num_layers)]
        counters = {}
        for name, t in flat.items():
            if name.startswith("layers."):
                _, i, key = name.split(".", 2)
                layers[int(i)][key] = t
            else:
                counters[name] = t
        return cls(layers, counters)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())

    def map(self, fn) -> "StreamState":
        return StreamState(
            [{k: fn(t) for k, t in layer.items()} for layer in self.layers],
            {k: fn(t) for k, t in self.counters.items()},
        )

    def clone(self) -> "StreamState":
        return self.map(torch.clone)

    def select(self, index: torch.Tensor | list[int]) -> "StreamState":
        """A copy holding the streams at `index`, in that order."""
        if isinstance(index, list) and index == list(range(self.batch_size)):
            return self.clone()  # no index to copy to the device (a copy that waits for the GPU)
        index = torch.as_tensor(index, device=self.counters["kv_len"].device)
        return self.map(lambda t: t.index_select(0, index))

    def copy_(self, other: "StreamState") -> None:
        """Overwrite this state with `other`'s (same batch size), in place."""
        mine, theirs = self.tensors(), other.tensors()
        torch._foreach_copy_(list(mine.values()), [theirs[name] for name in mine])

    def assign(self, index: torch.Tensor | list[int], other: "StreamState") -> None:
        """Write `other`'s streams back into the slots at `index` (in place)."""
        index = torch.as_tensor(index, device=self.counters["kv_len"].device)
        mine, theirs = self.tensors(), other.tensors()
        for name, t in mine.items():
            t.index_copy_(0, index, theirs[name])

    @classmethod
    def cat(cls, states: Iterable["StreamState"]) -> "StreamState":
        states = list(states)
        flats = [s.tensors() for s in states]
        joined = {name: torch.cat([f[name] for f in flats]) for name in flats[0]}
        return cls.from_tensors(joined, len(states[0].layers))

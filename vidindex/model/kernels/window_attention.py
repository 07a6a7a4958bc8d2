"""Sliding-window attention over a fixed-size key/value buffer.

Keys of past tokens sit in a right-aligned buffer of `capacity` = window - 1 slots (oldest
first, newest last); per stream, only its last `kv_len` slots are valid. New tokens are
appended after the buffer, so the keys seen by the T new queries are cat(buffer, new) with
length capacity + T, and query i (at slot capacity + i) may attend key slot j when

    j <= capacity + i            (causal)
    j >= i                       (within the window: itself plus `capacity` tokens before it)
    j >= capacity - kv_len       (the slot holds a real token of this stream)

Shapes: q [B, T, Hq, D]; keys, values [B, capacity + T, Hkv, D]; kv_len [B] int64.
Returns [B, T, Hq, D].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def window_mask(kv_len: torch.Tensor, capacity: int, t_new: int) -> torch.Tensor:
    """Boolean mask [B, 1, T, capacity + T]: True where attention is allowed."""
    i = torch.arange(t_new, device=kv_len.device)[:, None]
    j = torch.arange(capacity + t_new, device=kv_len.device)[None, :]
    band = (j <= capacity + i) & (j >= i)
    valid = j[None] >= (capacity - kv_len)[:, None, None]
    return (band[None] & valid)[:, None]


def sdpa_reference(q, keys, values, kv_len, capacity):
    mask = window_mask(kv_len, capacity, q.shape[1])
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2),
        attn_mask=mask, enable_gqa=True,
    )
    return out.transpose(1, 2)


_compiled_flex = None


def flex_attention(q, keys, values, kv_len, capacity):
    """FlexAttention (CUDA): the same mask as a block-sparse mask_mod, so only blocks that hold
    valid, in-window keys are computed."""
    global _compiled_flex
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention as flex

    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex, dynamic=False)
    B, T = q.shape[:2]
    start = capacity - kv_len

    def mask_mod(b, h, qi, kj):
        return (kj <= capacity + qi) & (kj >= qi) & (kj >= start[b])

    block_mask = create_block_mask(mask_mod, B, None, T, capacity + T, device=q.device)
    out = _compiled_flex(
        q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2),
        block_mask=block_mask, enable_gqa=True,
    )
    return out.transpose(1, 2)

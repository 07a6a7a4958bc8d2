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


def sdpa_reference(q, keys, values, mask):
    """mask: window_mask(...) for these shapes."""
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2),
        attn_mask=mask, enable_gqa=True,
    )
    return out.transpose(1, 2)


FLEX_MIN_QUERIES = 128


def flex_supported(t_new: int, head_dim: int, dtype: torch.dtype) -> bool:
    """Where FlexAttention's Triton kernels serve well here: frame prefill (>= 128 queries) with
    the model's 128-dim bf16 heads. Short queries (questions, decode steps) are memory-bound and
    its decode kernel failed to compile for some lengths, so they, and toy sizes, take SDPA."""
    return t_new >= FLEX_MIN_QUERIES and head_dim >= 64 and dtype in (torch.bfloat16, torch.float16)


_compiled_flex = None


def flex_block_mask(kv_len, capacity, t_new):
    """The same mask as a block-sparse BlockMask, built once per step for all window layers."""
    from torch.nn.attention.flex_attention import create_block_mask

    start = capacity - kv_len

    def mask_mod(b, h, qi, kj):
        return (kj <= capacity + qi) & (kj >= qi) & (kj >= start[b])

    return create_block_mask(mask_mod, kv_len.shape[0], None, t_new, capacity + t_new,
                             device=kv_len.device, _compile=True)


def flex_attention(q, keys, values, block_mask):
    """FlexAttention (CUDA): only blocks holding valid, in-window keys are computed."""
    global _compiled_flex
    from torch.nn.attention.flex_attention import flex_attention as flex

    if _compiled_flex is None:
        _compiled_flex = torch.compile(flex, dynamic=False)
    out = _compiled_flex(
        q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2),
        block_mask=block_mask, enable_gqa=True,
    )
    return out.transpose(1, 2)

"""Frames in: resize, normalise and patchify uint8 RGB frames the way Qwen2.5-VL does, and run
them through the Qwen2.5-VL vision tower (transformers' implementation: its parameter names
and shapes are the official checkpoint's).

A frame is one image: duplicated to fill the temporal patch, grid (1, S/14, S/14), giving
(S/28)^2 tokens after the 2x2 merge (256 for S = 448).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import VisionConfig
from .errors import FrameError
from .float8 import ALIGN, add_norm_input, project, silu_mul_input
from .kernels.elementwise import rotate_half

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def frames_to_tensor(frames) -> torch.Tensor:
    """Validate one stream's frames and return uint8 [N, H, W, 3]. Accepts a numpy array, a
    tensor or a list of frames."""
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise FrameError("frames: empty list")
        frames = np.stack([np.asarray(f) for f in frames]) if not isinstance(frames[0], torch.Tensor) else torch.stack(frames)
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        frames = frames.copy()  # decoders hand out read-only buffers; torch wants to own writable memory
    t = torch.as_tensor(frames)
    if t.dtype != torch.uint8:
        raise FrameError(f"frames: expected uint8 RGB, got dtype {t.dtype}")
    if t.ndim != 4 or t.shape[-1] != 3:
        raise FrameError(f"frames: expected shape [N, H, W, 3] (RGB), got {list(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] < 2 or t.shape[2] < 2:
        raise FrameError(f"frames: empty or degenerate shape {list(t.shape)}")
    return t


def host_to_device(t: torch.Tensor, device) -> torch.Tensor:
    """Start copying a host tensor to the device. To a GPU from page-locked memory, so the copy
    runs without holding up the host (a pageable copy waits for all queued GPU work first)."""
    device = torch.device(device)
    if t.device == device or device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


@lru_cache(maxsize=None)
def _clip_constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP mean and std [1, 3, 1, 1] on the device, made once (each copy to a GPU waits for it)."""
    with torch.inference_mode(False):  # plain tensors, usable in any mode
        return tuple(torch.tensor(v, device=device).view(1, 3, 1, 1) for v in (CLIP_MEAN, CLIP_STD))


def preprocess(frames: torch.Tensor, size: int, vc: VisionConfig, device, dtype) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> pixel_values [N * (size/14)^2, 3 * 2 * 14 * 14].

    Rows are patches grouped by 2x2 merge unit in raster order; columns are (channel, time, y, x).
    """
    n = frames.shape[0]
    x = host_to_device(frames, device).permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255)  # keep the uint8 quantisation a decoded, resized frame has
    x = x / 255.0
    mean, std = _clip_constants(x.device)
    x = (x - mean) / std
    p, m, tp = vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size
    g = size // p
    x = x[:, None].expand(n, tp, 3, size, size)  # a still frame fills the temporal patch
    x = x.reshape(n, tp, 3, g // m, m, p, g // m, m, p)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)  # n, gh, gw, mh, mw, c, t, y, x
    return x.reshape(n * g * g, 3 * tp * p * p).to(dtype)


def build_vision_tower(vc: VisionConfig) -> nn.Module:
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    hf_cfg = Qwen2_5_VLVisionConfig(**{k: v for k, v in vc.to_dict().items() if k != "in_chans"})
    hf_cfg._attn_implementation = "sdpa"
    return Qwen2_5_VisionTransformerPretrainedModel._from_config(hf_cfg)


def reset_rotary_buffers(tower: nn.Module, device) -> None:
    """Recompute the vision rotary table (a non-persistent buffer, so never in a checkpoint)
    after the tower was materialised from the meta device."""
    rot = tower.rotary_pos_emb
    with torch.device("cpu"):
        fresh = type(rot)(tower.config) if hasattr(rot, "config") else type(rot)(rot.inv_freq.shape[0] * 4)
    tower.rotary_pos_emb = fresh.to(device)


def pad_mlp_width(tower: nn.Module) -> None:
    """Pad each vision MLP's hidden width to a multiple of ALIGN with zero channels (3420 -> 3424
    in the 4B tower), in place. On a GPU, matmuls over rows of 3420 bf16 values ran at a third
    of the aligned speed; compiled, they were padded on every call instead, copying the
    activations (~10 ms per 64 frames). Zero channels add nothing: silu(0 + 0) * (0 + 0) = 0,
    times zero columns of the down projection."""
    for block in tower.blocks:
        mlp = block.mlp
        extra = -mlp.down_proj.in_features % ALIGN
        if not extra:
            continue
        for layer in (mlp.gate_proj, mlp.up_proj):
            layer.weight = nn.Parameter(F.pad(layer.weight, (0, 0, 0, extra)), requires_grad=False)
            layer.bias = nn.Parameter(F.pad(layer.bias, (0, extra)), requires_grad=False)
            layer.out_features += extra
        mlp.down_proj.weight = nn.Parameter(F.pad(mlp.down_proj.weight, (0, extra)), requires_grad=False)
        mlp.down_proj.in_features += extra


_compiled_block = None
# Frames per call of the compiled vision forward. Its kernels are compiled for these sizes only
# (static shapes: the shape-generic kernels ran ~25% slower); a feed of any other count runs as
# calls of these, the last padded with blank frames. Frames never attend across each other, so
# padding leaves the real frames' tokens unchanged.
COMPILED_FRAME_COUNTS = (32, 8)


def encode_frames(tower: nn.Module, pixel_values: torch.Tensor, n_frames: int, size: int, vc: VisionConfig,
                  compiled: bool = False):
    """pixel_values -> frame tokens [n_frames, tokens_per_frame, out_hidden] (raster order).

    `compiled` (CUDA): run each block through torch.compile; eager, the tower's 3420-wide MLP
    matmuls and fp32 norm/rotary passes run at a fraction of what fused kernels reach."""
    if not windows_are_uniform(size, vc):
        return encode_with_tower(tower, pixel_values, n_frames, size, vc)
    if not compiled:
        return encode_uniform_windows(tower, pixel_values, n_frames, size, vc)
    per_frame = pixel_values.shape[0] // n_frames
    big, small = COMPILED_FRAME_COUNTS
    out, done = [], 0
    while done < n_frames:
        left = n_frames - done
        count = big if left >= big else small
        part = pixel_values[done * per_frame:(done + min(count, left)) * per_frame]
        if left < count:
            part = F.pad(part, (0, 0, 0, (count - left) * per_frame))
        out.append(encode_uniform_windows(tower, part, count, size, vc, compiled=True)[:left])
        done += count
    return out[0] if len(out) == 1 else torch.cat(out)


def encode_with_tower(tower: nn.Module, pixel_values: torch.Tensor, n_frames: int, size: int, vc: VisionConfig):
    """The tower's own forward (variable-length segments), same output layout as encode_frames."""
    g = size // vc.patch_size
    grid = torch.tensor([[1, g, g]] * n_frames, device=pixel_values.device)
    out = tower(pixel_values, grid_thw=grid)
    feats = out if isinstance(out, torch.Tensor) else out.pooler_output  # older releases return the tensor
    return feats.reshape(n_frames, -1, feats.shape[-1])


def _window_units(size: int, vc: VisionConfig) -> tuple[int, int]:
    """(merge units per frame side, merge units per window side)."""
    units = size // vc.patch_size // vc.spatial_merge_size
    per_window = vc.window_size // vc.patch_size // vc.spatial_merge_size
    return units, min(per_window, units)


def windows_are_uniform(size: int, vc: VisionConfig) -> bool:
    """True when every attention window of a frame has the same size (e.g. 448 px: 16 windows
    of 8x8 patches), so windows batch as one dense attention call."""
    units, per_window = _window_units(size, vc)
    return units % per_window == 0


def encode_uniform_windows(tower: nn.Module, pixel_values: torch.Tensor, n: int, size: int, vc: VisionConfig,
                           compiled: bool = False):
    """The vision tower's forward with the same weights and math, batched: windows (and, in the
    full-attention blocks, whole frames) become the batch of one dense SDPA call instead of a
    loop over variable-length segments.

    Patches are kept window-major (frame, window row, window col, unit row, unit col, 2x2 patch);
    every block attends within a window or within a frame, which only needs views of that
    order, and the 2x2 patches of a merge unit stay adjacent for the merger.

    `compiled`: one block function is compiled and serves all blocks (blocks are identical up to
    their weights, which are inputs to the compiled code), so a cold start compiles a block, not
    the whole tower; once per frame count (see COMPILED_FRAME_COUNTS).
    """
    global _compiled_block
    block_fn = _block
    if compiled:
        if _compiled_block is None:
            _compiled_block = torch.compile(_block, dynamic=False)
        block_fn = _compiled_block
    units, we = _window_units(size, vc)
    nw = units // we
    m2 = vc.spatial_merge_size ** 2
    C = vc.hidden_size
    hd = C // vc.num_heads
    # The patch embedding is a Conv3d whose kernel covers the whole patch: one matmul.
    proj = tower.patch_embed.proj.weight
    x = F.linear(pixel_values.to(proj.dtype), proj.reshape(C, -1))  # [n * P, C]: unit raster, 2x2 inside
    x = x.view(n, nw, we, nw, we, m2, C).permute(0, 1, 3, 2, 4, 5, 6).reshape(n, -1, C)
    cos, sin = _rotary_window_major(size, vc, x.device)  # [P, hd]
    windows, per_window = n * nw * nw, we * we * m2
    # (attention groups, tokens per group, cos, sin): whole frames, or windows
    frame_groups = (n, -1, cos.view(1, -1, hd), sin.view(1, -1, hd))
    window_groups = (windows, per_window, *(t.view(nw * nw, per_window, hd).repeat(n, 1, 1) for t in (cos, sin)))
    full = set(vc.fullatt_block_indexes)
    # Each block hands on its MLP's output unadded; the next block adds it (and its bias) in the
    # pass of its first norm, which reads x anyway.
    delta = torch.zeros_like(x)
    with torch.inference_mode(False):  # a plain tensor, like the biases after it: one compiled variant
        bias = torch.zeros(C, device=x.device, dtype=x.dtype)
    for j, block in enumerate(tower.blocks):
        groups, length, c, s = frame_groups if j in full else window_groups
        x, delta = block_fn(block, x, delta, bias, c, s, groups, length, vc.num_heads, vc.hidden_act == "silu")
        bias = block.mlp.down_proj.bias
        bias = bias.detach() if compiled else bias  # compiled: a plain tensor; else it may train
    x = x + (delta + bias)
    y = tower.merger(x.reshape(-1, C))  # [n * units^2, out]
    y = y.view(n, nw, nw, we, we, -1).permute(0, 1, 3, 2, 4, 5)  # back to unit raster order
    return y.reshape(n, units * units, -1)


def _block(block: nn.Module, x, delta, delta_bias, cos, sin, groups: int, length: int, heads: int, silu: bool):
    """One vision block on x + (delta + delta_bias) [n, P, C] (the previous block's output added
    here), attention within `groups` groups of `length` tokens. Returns (x, this block's MLP
    output without its bias, for the next block to add).

    The matmuls run without their biases; each bias is added in the fused pass that follows
    (rotary, residual and norm, gate), instead of being broadcast into the matmul's output first.
    For float8 projections, each residual add, norm and quantization is one pass."""
    n, _, C = x.shape
    hd = C // heads
    attn, mlp = block.attn, block.mlp
    x, h = add_norm_input(x, delta, delta_bias, block.norm1.weight, block.norm1.variance_epsilon, attn.qkv)
    qkv = (project(h, attn.qkv) + attn.qkv.bias).view(groups, length, 3, heads, hd)
    q, k, v = qkv.unbind(2)
    q, k = (_rotate(t, cos, sin) for t in (q, k))
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    out = project(out.transpose(1, 2).reshape(n, -1, C), attn.proj)
    x, h = add_norm_input(x, out, attn.proj.bias, block.norm2.weight, block.norm2.variance_epsilon, mlp.gate_proj)
    gate, up = project(h, mlp.gate_proj), project(h, mlp.up_proj)
    if silu:  # Qwen2.5-VL's activation: fused with a float8 down projection's quantization
        hidden = silu_mul_input(gate, up, mlp.down_proj, mlp.gate_proj.bias, mlp.up_proj.bias)
    else:
        hidden = mlp.act_fn(gate + mlp.gate_proj.bias) * (up + mlp.up_proj.bias)
    return x, project(hidden, mlp.down_proj)


def _rotate(t, cos, sin):
    """Rotary embedding in fp32, as the tower does. t [S, L, H, hd]; cos/sin [S or 1, L, hd]."""
    tf = t.float()
    return (tf * cos[:, :, None] + rotate_half(tf) * sin[:, :, None]).to(t.dtype)


def _rotary_window_major(size: int, vc: VisionConfig, device):
    """cos/sin [P, head_dim] of each patch of a frame, in window-major order."""
    units, we = _window_units(size, vc)
    nw, m = units // we, vc.spatial_merge_size
    hd = vc.hidden_size // vc.num_heads
    quarter = torch.arange(0, hd // 2, 2, device=device, dtype=torch.float32) / (hd // 2)
    inv_freq = 1.0 / (10000.0 ** quarter)
    # patch (row, col) for (window row, window col, unit row, unit col, patch row, patch col)
    wr, wc, ur, uc, pr, pc = torch.meshgrid(*(torch.arange(k, device=device) for k in (nw, nw, we, we, m, m)),
                                            indexing="ij")
    rows = ((wr * we + ur) * m + pr).flatten().float()
    cols = ((wc * we + uc) * m + pc).flatten().float()
    half = torch.cat((rows[:, None] * inv_freq, cols[:, None] * inv_freq), dim=-1)
    emb = torch.cat((half, half), dim=-1)
    return emb.cos(), emb.sin()

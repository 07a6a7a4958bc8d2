"""Frames in: resize, normalise and patchify uint8 RGB frames the way Qwen2.5-VL does, and run
them through the Qwen2.5-VL vision tower (transformers' implementation: its parameter names
and shapes are the official checkpoint's).

A frame is one image: duplicated to fill the temporal patch, grid (1, S/14, S/14), giving
(S/28)^2 tokens after the 2x2 merge (256 for S = 448).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import VisionConfig
from .errors import FrameError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def frames_to_tensor(frames) -> torch.Tensor:
    """Validate frames and return uint8 [N, H, W, 3]. Accepts a numpy array, a tensor or a list."""
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise FrameError("frames: empty list")
        frames = np.stack([np.asarray(f) for f in frames]) if not isinstance(frames[0], torch.Tensor) else torch.stack(frames)
    t = torch.as_tensor(frames)
    if t.dtype != torch.uint8:
        raise FrameError(f"frames: expected uint8 RGB, got dtype {t.dtype}")
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[-1] != 3:
        raise FrameError(f"frames: expected shape [N, H, W, 3] (RGB), got {list(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] < 2 or t.shape[2] < 2:
        raise FrameError(f"frames: empty or degenerate shape {list(t.shape)}")
    return t


def preprocess(frames: torch.Tensor, size: int, vc: VisionConfig, device, dtype) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> pixel_values [N * (size/14)^2, 3 * 2 * 14 * 14].

    Rows are patches grouped by 2x2 merge unit in raster order; columns are (channel, time, y, x).
    """
    n = frames.shape[0]
    x = frames.to(device).permute(0, 3, 1, 2).float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        x = x.round().clamp(0, 255)  # keep the uint8 quantisation a decoded, resized frame has
    x = x / 255.0
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
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


def encode_frames(tower: nn.Module, pixel_values: torch.Tensor, n_frames: int, size: int, vc: VisionConfig):
    """pixel_values -> frame tokens [n_frames, tokens_per_frame, out_hidden] (raster order)."""
    g = size // vc.patch_size
    grid = torch.tensor([[1, g, g]] * n_frames, device=pixel_values.device)
    out = tower(pixel_values, grid_thw=grid)
    feats = out if isinstance(out, torch.Tensor) else out.pooler_output
    return feats.reshape(n_frames, -1, feats.shape[-1])

"""Turn an NV12 frame that NVDEC left on the GPU into what the model eats, in torch, the same
frame vidindex.video.frames.to_model_rgb makes on the CPU.

Colour: the fixed-point YUV -> RGB that PyAV's to_ndarray("rgb24") runs there for 8-bit 4:2:0
(libswscale's unscaled yuv2rgb: each chroma sample shared by a 2x2 block, the colour matrix of
the frame's colour space tag, BT.601 when untagged, limited range unless tagged full, every
product truncated as its x86 SIMD code does), so the RGB is the CPU path's bit for bit on x86.
Resize: Pillow's bicubic (what the CPU path uses) is two one-dimensional passes, each rounded
to 8 bits; torch's antialiased bicubic is Pillow's kernel (a = -0.5, support scaled by the
reduction), run here in the same two passes, in the same order, in float. Expected difference from the CPU
path: a few values off by one, never more (on video frames 0.8-2.2e-4 of them, on noise up to
1.6e-3: tests/video/test_gpu_frames.py on the CPU; tests/gpu/test_nvdec_cuda.py on NVDEC). Frames
of odd height are the exception: swscale takes another path for them (chroma interpolated
between rows), so colour edges there can differ by a few levels.

Every function takes tensors on any device, so the CPU tests check the arithmetic the GPU runs.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

# libswscale's {crv, cbu, cgu, cgv} (ff_yuv2rgb_coeffs in libswscale/yuv2rgb.c) by AVColorSpace
# value; any other tag (unspecified, BT.470BG, SMPTE 170M, ...) gets BT.601's, as in swscale.
_SWSCALE_COEFFICIENTS = {
    1: (117489, 138438, 13975, 34925),  # BT.709
    4: (104448, 132798, 24759, 53109),  # FCC
    7: (117579, 136230, 16907, 35559),  # SMPTE 240M
    9: (110013, 140363, 12277, 42626),  # BT.2020 non-constant luminance
    10: (110013, 140363, 12277, 42626),  # BT.2020 constant luminance (PyAV's rgb24 refuses it)
}
_BT601 = (104597, 132201, 25675, 53279)
FULL_RANGE = 2  # AVCOL_RANGE_JPEG; unspecified (0) and MPEG (1) mean limited range


def _round_to_int16(value: int) -> int:
    return max(-0x7FFF, min(0x7FFF, (value + (1 << 15)) >> 16))


def _c_div(a: int, b: int) -> int:
    """C's integer division (towards zero), which swscale's table set-up uses."""
    return -(-a // b) if a < 0 else a // b


@lru_cache(maxsize=None)
def yuv_to_rgb_constants(colorspace: int, full_range: bool) -> tuple[int, int, int, int, int, int]:
    """(y_mul, y_offset, v_to_r, u_to_b, v_to_g, u_to_g): swscale's 16-bit multipliers for
    values scaled by 8 (ff_yuv2rgb_c_init_tables at neutral brightness, contrast, saturation)."""
    crv, cbu, cgu, cgv = _SWSCALE_COEFFICIENTS.get(colorspace, _BT601)
    cgu, cgv = -cgu, -cgv
    cy, oy = 1 << 16, 0
    if full_range:
        crv, cbu, cgu, cgv = (_c_div(c * 224, 255) for c in (crv, cbu, cgu, cgv))
    else:
        cy, oy = cy * 255 // 219, 16 << 16
    y_mul, v_to_r, u_to_b, v_to_g, u_to_g = (_round_to_int16(c * (1 << 13))
                                             for c in (cy, crv, cbu, cgv, cgu))
    return y_mul, _round_to_int16(oy * 8), v_to_r, u_to_b, v_to_g, u_to_g


def nv12_to_rgb(y: torch.Tensor, uv: torch.Tensor, colorspace: int = 2,
                color_range: int = 0) -> torch.Tensor:
    """y: uint8 [H, W] luma; uv: uint8 [H/2, W/2, 2] interleaved Cb, Cr (halves rounded
    either way).
    colorspace, color_range: the frame's AVColorSpace and AVColorRange tags.
    Returns uint8 [H, W, 3] RGB."""
    y_mul, y_offset, v_to_r, u_to_b, v_to_g, u_to_g = yuv_to_rgb_constants(
        int(colorspace), int(color_range) == FULL_RANGE)
    # pmulhw: (a * b) >> 16 on 16-bit lanes; the shift floors, as the SIMD code does
    luma = ((y.to(torch.int32) * 8 - y_offset) * y_mul) >> 16
    chroma = uv.to(torch.int32) * 8 - 1024
    u, v = chroma[..., 0], chroma[..., 1]
    # chroma terms at chroma resolution, then shared by each 2x2 block of pixels
    terms = torch.stack([(v * v_to_r) >> 16, ((u * u_to_g) >> 16) + ((v * v_to_g) >> 16),
                         (u * u_to_b) >> 16], dim=-1)
    h, w = y.shape
    rows = (torch.arange(h, device=y.device) // 2).clamp_(max=terms.shape[0] - 1)
    cols = (torch.arange(w, device=y.device) // 2).clamp_(max=terms.shape[1] - 1)
    rgb = luma[..., None] + terms[rows][:, cols]
    return rgb.clamp_(0, 255).to(torch.uint8)


def resize_like_pillow(rgb: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [H, W, 3] -> uint8 [size, size, 3], as PIL.Image.resize((size, size), BICUBIC)."""
    h, w = rgb.shape[:2]
    x = rgb.permute(2, 0, 1)[None].float()
    # Pillow resizes along rows first unless the image loses more than twice as many rows as
    # columns (rule found by matching Pillow 13 on random shapes; the CPU test pins it).
    # The order matters: each pass is rounded to 8 bits.
    columns_first = h > size and h - size > 2 * (w - size)
    for shape in ([(size, w), (size, size)] if columns_first else [(h, size), (size, size)]):
        if tuple(x.shape[-2:]) != shape:
            x = F.interpolate(x, size=shape, mode="bicubic", antialias=True, align_corners=False)
            x = x.add_(0.5).floor_().clamp_(0, 255)  # Pillow rounds halves up
    return x[0].permute(1, 2, 0).to(torch.uint8)


def nv12_to_model_rgb(y: torch.Tensor, uv: torch.Tensor, size: int | None, rotation: int = 0,
                      colorspace: int = 2, color_range: int = 0) -> torch.Tensor:
    """to_model_rgb for NV12 planes: uint8 [size, size, 3] RGB, upright, on y's device
    (size=None: the upright native size). rotation: counter-clockwise degrees, as there."""
    rgb = nv12_to_rgb(y, uv, colorspace, color_range)
    if rotation % 360:
        rgb = torch.rot90(rgb, k=(rotation % 360) // 90, dims=(0, 1))
    if size is not None and rgb.shape[:2] != (size, size):
        rgb = resize_like_pillow(rgb, size)
    return rgb.contiguous()

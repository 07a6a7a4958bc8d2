"""The NVDEC path's NV12 -> model RGB arithmetic (vidindex.video.gpu_frames), run here on CPU
tensors, against what the CPU path makes of the same decoded frames (frames.to_model_rgb:
PyAV's rgb24 conversion, Pillow's bicubic). NVDEC's NV12 is the software decoder's YUV 4:2:0
exactly (H.264 and HEVC decoding is bit-exact), so these are the differences the GPU gives,
up to CUDA's float rounding (tests/gpu/test_nvdec_cuda.py checks that part)."""

import platform

import av
import numpy as np
import pytest
import torch
from PIL import Image

from vidindex.video.frames import to_model_rgb
from vidindex.video.gpu_frames import nv12_to_model_rgb, nv12_to_rgb, resize_like_pillow
from vidindex.video.nvdec import nvdec_unavailable, sample_frames_nvdec

# The colour code mirrors swscale's x86 SIMD arithmetic; other CPUs' swscale rounds its own way.
COLOUR_TOLERANCE = 0 if platform.machine().lower() in ("x86_64", "amd64") else 1
# Resizing in float instead of Pillow's fixed point puts a few values off by one, never more:
# measured 0.8-2.2e-4 of them on video frames, up to 1.6e-3 on noise (scaling by ~1 is worst).
FRAME_MEAN_TOLERANCE = 1e-3
NOISE_MEAN_TOLERANCE = 2.5e-3

BT709, FCC, BT470BG, SMPTE170M, SMPTE240M, BT2020_NCL = 1, 4, 5, 6, 7, 9
UNSPECIFIED = 2


def yuv420p_frame(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> av.VideoFrame:
    frame = av.VideoFrame(y.shape[1], y.shape[0], "yuv420p")
    for plane, data in zip(frame.planes, (y, u, v)):
        rows = np.zeros((plane.height, plane.line_size), np.uint8)
        rows[:, :data.shape[1]] = data
        plane.update(rows)
    return frame


def nv12_planes(frame: av.VideoFrame) -> tuple[torch.Tensor, torch.Tensor]:
    """The frame as NVDEC hands it over: NV12 planes taken through DLPack."""
    nv12 = frame.reformat(format="nv12")
    return (torch.from_dlpack(nv12.planes[0].__dlpack__()),
            torch.from_dlpack(nv12.planes[1].__dlpack__()))


@pytest.mark.parametrize("height, width", [(1080, 1920), (240, 322)])
@pytest.mark.parametrize("colorspace", [UNSPECIFIED, BT709, BT470BG, SMPTE170M, FCC, SMPTE240M, BT2020_NCL])
def test_colour_is_pyav_rgb24_for_every_matrix_and_range(height, width, colorspace):
    rng = np.random.default_rng(colorspace)
    y = rng.integers(0, 256, (height, width), dtype=np.uint8)  # out-of-range codes too
    u, v = rng.integers(0, 256, (2, height // 2, width // 2), dtype=np.uint8)
    frame = yuv420p_frame(y, u, v)
    for color_range in (0, 1, 2):  # unspecified, limited (MPEG), full (JPEG)
        frame.colorspace, frame.color_range = colorspace, color_range
        expected = frame.to_ndarray(format="rgb24").astype(int)
        got = nv12_to_rgb(torch.from_numpy(y), torch.from_numpy(np.stack([u, v], axis=-1)),
                          colorspace, color_range).numpy().astype(int)
        assert np.abs(got - expected).max() <= COLOUR_TOLERANCE, (colorspace, color_range)


@pytest.fixture(scope="module")
def decoded(make_video):
    """name -> a decoded yuv420p frame: 1080p H.264 with a moving noise texture (like real
    footage for the resize) and 320x240 (upscaled to 448)."""
    frames = {}
    for name, kwargs in {"1080p": dict(width=1920, height=1080, texture=True),
                         "240p": dict(width=320, height=240)}.items():
        path, _ = make_video(f"gpu_frames_{name}.mp4", seconds=1, fps=10, **kwargs)
        with av.open(path) as container:
            frames[name] = list(container.decode(video=0))[7]
    return frames


@pytest.mark.parametrize("name, size, rotation", [
    ("1080p", 448, 0), ("1080p", 448, 90), ("1080p", 448, 180), ("1080p", 56, 270),
    ("1080p", None, 90), ("240p", 448, 0), ("240p", 448, 270),
])
def test_model_frames_match_the_cpu_path(decoded, name, size, rotation):
    frame = decoded[name]
    expected = to_model_rgb(frame, size, rotation).astype(int)
    y, uv = nv12_planes(frame)
    got = nv12_to_model_rgb(y, uv, size, rotation, frame.colorspace, frame.color_range)
    assert got.dtype == torch.uint8 and got.is_contiguous()
    diff = np.abs(got.numpy().astype(int) - expected)
    assert got.shape == expected.shape
    assert diff.max() <= 1 and diff.mean() <= FRAME_MEAN_TOLERANCE, (diff.max(), diff.mean())


@pytest.mark.parametrize("height, width", [
    (1080, 1920), (1920, 1080), (1352, 900), (1353, 900), (449, 447), (447, 449), (240, 320),
    (2000, 448), (448, 2000), (60, 90),
])
def test_resize_follows_pillow_on_noise(height, width):
    """Noise is the hardest input for rounding; the shapes straddle Pillow's pass-order switch
    (columns first from 1353 rows at 900 columns) and cover up- and downscaling."""
    image = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(image).resize((448, 448), Image.BICUBIC)).astype(int)
    diff = np.abs(resize_like_pillow(torch.from_numpy(image), 448).numpy().astype(int) - expected)
    assert diff.max() <= 1 and diff.mean() <= NOISE_MEAN_TOLERANCE, (diff.max(), diff.mean())


def test_nvdec_needs_a_cuda_device():
    assert "not on a CUDA GPU" in nvdec_unavailable("cpu")
    with pytest.raises(ValueError, match="CUDA device, not cpu"):
        sample_frames_nvdec("any.mp4", device="cpu")

"""NVDEC (vidindex.video.nvdec) against the CPU reader on synthetic 1080p H.264 and HEVC: the same
timestamps, frames within gpu_frames' tolerance (a few values off by one, measured on the CPU by
tests/video/test_gpu_frames.py); the same frames and error for a cut-off and a damaged file; a
codec NVDEC lacks decoded on the CPU; and a short engine run with decode: nvdec."""

import logging

import numpy as np
import pytest
import torch

from vidindex.config import IndexConfig
from vidindex.index.engine import Engine
from vidindex.model import TINY_FRAME_SIZE, load_model
from vidindex.video import CorruptVideo, VideoTruncated, sample_frames
from vidindex.video.nvdec import nvdec_unavailable, sample_frames_nvdec
from vidindex.video.synthetic import write_video

# Per video, over all its sampled frames: the CPU-measured share of values off by one is
# 0.8-2.2e-4 (FRAME_MEAN_TOLERANCE there is 1e-3); CUDA's float bicubic may round differently
# at a few more boundaries, not by more than one level in each of the two passes.
MEAN_ABS_DIFF_TOLERANCE = 1e-3
MAX_ABS_DIFF = 2


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    why = nvdec_unavailable("cuda")
    if why:
        pytest.skip(why)
    folder = tmp_path_factory.mktemp("nvdec")
    made = {}
    for codec in ("h264", "hevc"):  # keyframes every 16 frames, off the 1 s grid; B-frames
        path = folder / f"1080p_{codec}.mp4"
        write_video(path, 6, fps=30, width=1920, height=1080, codec=codec, gop=16, bframes=2,
                    texture=True, scene_seconds=2)
        made[codec] = str(path)
    data = open(made["h264"], "rb").read()
    made["cut"] = str(folder / "cut.mp4")
    open(made["cut"], "wb").write(data[:int(len(data) * 0.6)])
    made["garbage"] = str(folder / "garbage.mp4")  # 3 KB of noise in the middle of the data
    noise = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    open(made["garbage"], "wb").write(data[:len(data) // 2] + noise + data[len(data) // 2 + 3000:])
    made["ffv1"] = str(folder / "ffv1.mkv")  # no NVDEC decoder for FFV1
    write_video(made["ffv1"], 2, fps=30, width=640, height=360, codec="ffv1")
    return made


def read_all(stream):
    """([timestamps], [frames as numpy], the error it ended with or None)."""
    times, frames, error = [], [], None
    try:
        with stream:
            for t, frame in stream:
                times.append(t)
                frames.append(frame.cpu().numpy() if isinstance(frame, torch.Tensor) else frame)
    except Exception as e:  # compared between the readers
        error = e
    return times, frames, error


@pytest.mark.parametrize("codec", ["h264", "hevc"])
@pytest.mark.parametrize("start, end", [(0.0, None), (2.5, 5.0)])
def test_nvdec_frames_match_the_cpu_reader(videos, codec, start, end):
    on_gpu = sample_frames_nvdec(videos[codec], fps=5, size=448, start=start, end=end, device="cuda")
    gpu_times, gpu_frames, gpu_error = read_all(on_gpu)
    cpu_times, cpu_frames, cpu_error = read_all(sample_frames(videos[codec], fps=5, size=448, start=start, end=end))
    assert gpu_error is None and cpu_error is None
    assert on_gpu.stats["decoder"] == "nvdec" and on_gpu.stats["pixel_format"] == "nv12"
    assert gpu_times == cpu_times and len(gpu_times) >= 10
    diff = np.abs(np.stack(gpu_frames).astype(int) - np.stack(cpu_frames).astype(int))
    assert diff.max() <= MAX_ABS_DIFF and diff.mean() <= MEAN_ABS_DIFF_TOLERANCE, (diff.max(), diff.mean())


def test_frames_are_uint8_tensors_on_the_device(videos):
    with sample_frames_nvdec(videos["h264"], fps=1, size=448, device="cuda:0") as frames:
        t, frame = next(frames)
    assert t == 0.0 and frame.device == torch.device("cuda", 0)
    assert frame.dtype == torch.uint8 and frame.shape == (448, 448, 3) and frame.is_contiguous()
    with sample_frames(videos["h264"], fps=1, size=448) as frames:
        _, expected = next(frames)
    assert np.abs(frame.cpu().numpy().astype(int) - expected).max() <= MAX_ABS_DIFF


@pytest.mark.parametrize("name, error", [("cut", VideoTruncated), ("garbage", CorruptVideo)])
def test_damaged_file_gives_the_same_frames_then_the_same_error(videos, name, error):
    """The reader's checks are shared, but NVDEC could hide damage the software decoder reports."""
    gpu_times, gpu_frames, gpu_error = read_all(sample_frames_nvdec(videos[name], fps=5, size=448, device="cuda"))
    cpu_times, cpu_frames, cpu_error = read_all(sample_frames(videos[name], fps=5, size=448))
    assert type(cpu_error) is error and type(gpu_error) is error, (gpu_error, cpu_error)
    assert gpu_error.last_timestamp == cpu_error.last_timestamp and gpu_times == cpu_times
    diff = np.abs(np.stack(gpu_frames).astype(int) - np.stack(cpu_frames).astype(int))
    assert diff.mean() <= MEAN_ABS_DIFF_TOLERANCE


def test_a_codec_nvdec_lacks_is_decoded_on_the_cpu_onto_the_gpu(videos, caplog):
    with caplog.at_level(logging.WARNING, logger="vidindex.video.nvdec"):
        stream = sample_frames_nvdec(videos["ffv1"], fps=5, size=448, device="cuda")
        gpu_times, gpu_frames, gpu_error = read_all(stream)
    cpu_times, cpu_frames, _ = read_all(sample_frames(videos["ffv1"], fps=5, size=448))
    assert gpu_error is None and stream.stats["decoder"] == "cpu"
    assert "NVDEC cannot decode it" in caplog.text and "decoding it on the CPU" in caplog.text
    assert gpu_times == cpu_times and np.array_equal(np.stack(gpu_frames), np.stack(cpu_frames))


def test_engine_indexes_with_decode_nvdec(tiny_dir, videos, tmp_path, caplog):
    """Two 1080p videos as one batch of two streams (their GPU frames stacked in one feed), then
    the same with decode: cpu: the same videos done with the same frames, captions, snapshots."""
    model = load_model(tiny_dir, device="cuda", dtype="float32", frame_size=TINY_FRAME_SIZE)

    def index(decode: str):
        config = IndexConfig(model=str(tiny_dir), dtype="float32", device="cuda", frame_size=TINY_FRAME_SIZE,
                             caption_interval=2, snapshot_interval=3, max_new_tokens=4, streams_per_gpu=2,
                             db_uri=str(tmp_path / decode), decode=decode)
        return Engine(config, model=model).index([videos["h264"], videos["hevc"]])

    with caplog.at_level(logging.INFO, logger="vidindex"):
        on_nvdec = index("nvdec")
    assert f"decoding on the NVDEC of {model.device}" in caplog.text
    assert "on the CPU" not in caplog.text
    on_cpu = index("cpu")
    summary = [(r.status, r.frames, r.captions, r.snapshots) for r in on_nvdec]
    assert summary == [(r.status, r.frames, r.captions, r.snapshots) for r in on_cpu]
    assert [s for s, *_ in summary] == ["done", "done"] and summary[0][1] == 6

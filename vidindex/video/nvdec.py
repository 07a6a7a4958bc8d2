"""sample_frames on NVDEC: the GPU's video decoder, frames kept on the GPU.

    with sample_frames_nvdec(uri, fps=1.0, size=448, device="cuda:0") as frames:
        for t, frame in frames:      # frame: uint8 [448, 448, 3] RGB tensor on cuda:0
            ...

The same frames, at the same timestamps, with the same errors as sample_frames: the container
is opened and checked by the same code (probe_open, with PyAV's CUDA hwaccel), the same reader
chooses the frames (PyAVReader, vidindex.video.sampling's rule), and NV12 becomes RGB in torch
the way the CPU path converts and resizes (vidindex.video.gpu_frames; pixel tolerance there).
Why: sampling 1080p at 1 frame/s costs 8.8-13.5 CPU ms per frame this way against 97-246 on
the CPU (bench/results/video_decode-2026-12-02-h200.log), so a GPU needs 1.3-2.0 cores to be fed
instead of 18-36.

A video NVDEC cannot open (a codec or profile it lacks, or no NVDEC in this driver) is decoded
on the CPU instead, with a warning; its frames still arrive on the GPU. Frames NVDEC gives in
another layout than 8-bit 4:2:0 (10-bit p010) are converted by FFmpeg on the host, as on the
CPU path, and copied over.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from vidindex.video.backend_pyav import PyAVReader
from vidindex.video.errors import VideoError
from vidindex.video.frames import to_model_rgb
from vidindex.video.gpu_frames import nv12_to_model_rgb
from vidindex.video.prefetch import FrameStream, StoppableFile
from vidindex.video.probe import DEFAULT_TIMEOUT_S, open_checked, probe_open
from vidindex.video.stream import Sampling, cpu_producer, sampled

log = logging.getLogger(__name__)


def nvdec_unavailable(device) -> str | None:
    """Why frames cannot be decoded on NVDEC onto `device` in this process, or None if they can
    (whether this driver's NVDEC takes a given video shows only when it is opened)."""
    from av.codec.hwaccel import hwdevices_available

    device = torch.device(device)
    if device.type != "cuda":
        return f"the model runs on {device}, not on a CUDA GPU"
    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU"
    kinds = hwdevices_available()
    if "cuda" not in kinds:
        return f"this PyAV's FFmpeg has no CUDA hwaccel (it has: {', '.join(kinds) or 'none'})"
    return None


def sample_frames_nvdec(uri, fps: float = 1.0, size: int | None = 448, start: float = 0.0,
                        end: float | None = None, fs_options: dict | None = None,
                        prefetch: int = 8, timeout_s: float | None = DEFAULT_TIMEOUT_S,
                        on_corrupt: str = "raise", threads: int = 0, *,
                        device="cuda") -> FrameStream:
    """sample_frames (same arguments, same frames, same errors) decoding on the NVDEC of the
    CUDA `device`; frames are uint8 [size, size, 3] tensors there, ready on its default stream.
    stats["decoder"] says which decoder ran: "nvdec", or "cpu" after a fallback."""
    sampling = Sampling.checked(fps, size, start, end, on_corrupt)
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"NVDEC decodes onto a CUDA device, not {device}")
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())

    def produce(stop, stats):
        _make_context_current(device)
        try:
            opened = _open_on_nvdec(uri, fs_options, threads, sampling.on_corrupt, stop, device)
        except _NvdecCannotOpen as e:
            log.warning("%s: NVDEC cannot decode it (%s); decoding it on the CPU", e.uri, e.reason)
            cpu = cpu_producer(uri, sampling, fs_options, threads)(stop, stats)
            yield from ((t, _host_to_device(frame, device)) for t, frame in cpu)
            return
        reader, fileobj, rotation = opened
        stats["decoder"] = "nvdec"
        try:
            yield from sampled(reader, fileobj, sampling, stats,
                               lambda image: _to_model_rgb(image, sampling.size, rotation, device))
        finally:
            fileobj.close()

    return FrameStream(produce, uri, prefetch=prefetch, timeout_s=timeout_s)


class _NvdecCannotOpen(Exception):
    def __init__(self, uri: str, reason: str):
        super().__init__(reason)
        self.uri, self.reason = uri, reason


def _make_context_current(device: torch.device) -> None:
    """FFmpeg decodes into the CUDA context current on the decode thread (see _hwaccel); a new
    thread has none until it makes a CUDA call, so make one there."""
    torch.cuda.set_device(device)
    torch.zeros(1, device=device)


def _hwaccel(device: torch.device):
    """PyAV's CUDA hwaccel, frames left on the GPU, in torch's context (FFmpeg's default, the
    primary context with its own flags, fails once torch has made it active), and no silent
    software decoding: a stream NVDEC cannot take fails at open and is decoded on the CPU."""
    from av.codec.hwaccel import HWAccel

    return HWAccel("cuda", device=str(device.index), allow_software_fallback=False,
                   is_hw_owned=True, options={"primary_ctx": "0", "current_ctx": "1"})


def _open_on_nvdec(uri, fs_options, threads: int, on_corrupt: str, stop, device: torch.device):
    """(reader, fileobj, rotation) for the video opened on NVDEC. Storage errors are raised
    as on the CPU; anything else that stops the open raises _NvdecCannotOpen, and the CPU path
    then gives a damaged or unusable file the same error it always gives."""
    loc, stat, raw = open_checked(uri, fs_options)
    fileobj = StoppableFile(raw, stop)
    try:
        info, container, stream = probe_open(loc, fileobj, stat.size, threads=threads,
                                             hwaccel=_hwaccel(device))
    except (VideoError, RuntimeError) as e:  # RuntimeError: PyAV found no stream NVDEC takes
        fileobj.close()
        if stop.is_set():  # the consumer left: nothing to fall back for
            raise
        why = e.problem if isinstance(e, VideoError) else str(e)
        raise _NvdecCannotOpen(loc.uri, f"{type(e).__name__}: {why}") from e
    except BaseException:
        fileobj.close()
        raise
    if not stream.codec_context.is_hwaccel:  # another stream took the hwaccel, not this one
        container.close()
        fileobj.close()
        raise _NvdecCannotOpen(loc.uri, f"no NVDEC decoder for {stream.codec_context.name}")
    return PyAVReader(container, loc.uri, on_corrupt=on_corrupt), fileobj, info.rotation


def _to_model_rgb(image, size: int | None, rotation: int, device: torch.device) -> torch.Tensor:
    """A decoded frame -> uint8 [size, size, 3] on the device: NV12 in torch, where it is;
    any other layout through FFmpeg and Pillow on the host, as the CPU path does."""
    sw_format = getattr(image, "sw_format", None)
    if image.format.name == "cuda" and sw_format is not None and sw_format.name == "nv12":
        # stream=None: PyAV exports CUDA planes only so; FFmpeg wrote them on the legacy default
        # stream, which this thread's torch work follows
        y = torch.from_dlpack(image.planes[0].__dlpack__())
        uv = torch.from_dlpack(image.planes[1].__dlpack__())
        return nv12_to_model_rgb(y, uv, size, rotation, image.colorspace, image.color_range)
    return _host_to_device(to_model_rgb(image, size, rotation), device)


def _host_to_device(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    """Queue the copy from page-locked memory, so the decode thread does not wait for the GPU."""
    staged = torch.empty(frame.shape, dtype=torch.uint8, pin_memory=True)
    staged.numpy()[...] = frame
    return staged.to(device, non_blocking=True)

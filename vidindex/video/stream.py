"""sample_frames: a video URI in, (timestamp, RGB frame) pairs out, decoded in the background.
Its argument checks and sampling loop are shared with the NVDEC reader (vidindex.video.nvdec)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

from vidindex.video.backend_pyav import PyAVReader
from vidindex.video.frames import to_model_rgb
from vidindex.video.prefetch import FrameStream, StoppableFile
from vidindex.video.probe import DEFAULT_TIMEOUT_S, open_checked, probe_open
from vidindex.video.sampling import as_fraction


def sample_frames(uri, fps: float = 1.0, size: int | None = 448, start: float = 0.0,
                  end: float | None = None,
                  fs_options: dict | None = None, prefetch: int = 8,
                  timeout_s: float | None = DEFAULT_TIMEOUT_S, on_corrupt: str = "raise",
                  threads: int = 0) -> FrameStream:
    """Sample the video at `fps` frames per second of video time.

    Yields (timestamp_seconds, frame) in order: timestamp is the chosen frame's presentation
    time (seconds from the start of the video stream), frame is [size, size, 3] uint8 RGB,
    upright, bicubic-resized (size=None: upright native size). The sampling rule is in
    vidindex.video.sampling; starting at `start` yields exactly what a run from 0 yields from
    `start` on. Frames with timestamp >= `end` are not decoded.

    Errors are VideoError subclasses. Unusable files fail on the first next(). A file that is cut
    off yields every frame it holds, then raises VideoTruncated; damage inside the file raises
    CorruptVideo at the first undecodable packet (on_corrupt="skip" logs it and goes on). Both
    carry last_timestamp / frames_yielded. No frame for timeout_s seconds raises DecodeTimeout.
    Call close() (or use `with`) to stop early; the decode thread then exits.
    """
    sampling = Sampling.checked(fps, size, start, end, on_corrupt)
    return FrameStream(cpu_producer(uri, sampling, fs_options, threads), uri, prefetch=prefetch,
                       timeout_s=timeout_s)


@dataclass(frozen=True)
class Sampling:
    """What to take from a video: the checked arguments of sample_frames."""

    fps: Fraction
    size: int | None
    start: Fraction
    end: float | None
    on_corrupt: str

    @classmethod
    def checked(cls, fps, size, start, end, on_corrupt) -> Sampling:
        fps_q = as_fraction(fps)
        if fps_q <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if size is not None and (int(size) != size or size <= 0):
            raise ValueError(f"size must be a positive integer or None, got {size}")
        if start < 0 or (end is not None and end <= start):
            raise ValueError(f"need 0 <= start < end, got start={start}, end={end}")
        if on_corrupt not in ("raise", "skip"):
            raise ValueError("on_corrupt must be 'raise' or 'skip'")
        return cls(fps_q, size, as_fraction(start), end, on_corrupt)


def cpu_producer(uri, sampling: Sampling, fs_options: dict | None, threads: int):
    """FrameStream's produce(stop, stats) for FFmpeg software decoding, numpy frames out."""
    def produce(stop, stats):
        loc, stat, raw = open_checked(uri, fs_options)
        fileobj = StoppableFile(raw, stop)
        try:
            info, container, _ = probe_open(loc, fileobj, stat.size, threads=threads)
            stats["decoder"] = "cpu"
            reader = PyAVReader(container, loc.uri, on_corrupt=sampling.on_corrupt)
            yield from sampled(reader, fileobj, sampling, stats,
                               lambda image: to_model_rgb(image, sampling.size, info.rotation))
        finally:
            fileobj.close()

    return produce


def sampled(reader: PyAVReader, fileobj: StoppableFile, sampling: Sampling, stats: dict,
            convert: Callable):
    """(timestamp, convert(frame)) for the frames the sampling rule keeps before `end`, with
    the counts in stats; closes the reader. Shared by every decoder, so all choose alike."""
    try:
        for t, image in reader.frames(sampling.fps, sampling.start):
            if sampling.end is not None and t >= sampling.end:
                break
            if "pixel_format" not in stats:  # what the decoder hands over (nv12 on NVDEC)
                stats["pixel_format"] = (getattr(image, "sw_format", None) or image.format).name
            frame = convert(image)
            stats["sampled_frames"] += 1
            stats["decoded_frames"] = reader.decoded
            stats["bytes_read"] = fileobj.bytes_read
            yield float(t), frame
        stats["decoded_frames"] = reader.decoded
        stats["bytes_read"] = fileobj.bytes_read
        stats["skipped_damage_at"] = list(reader.corrupt_spans)
    finally:
        reader.close()

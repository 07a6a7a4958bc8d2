"""sample_frames: a video URI in, (timestamp, RGB frame) pairs out, decoded in the background."""

from __future__ import annotations

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
    fps_q = as_fraction(fps)
    if fps_q <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if size is not None and (int(size) != size or size <= 0):
        raise ValueError(f"size must be a positive integer or None, got {size}")
    if start < 0 or (end is not None and end <= start):
        raise ValueError(f"need 0 <= start < end, got start={start}, end={end}")
    if on_corrupt not in ("raise", "skip"):
        raise ValueError("on_corrupt must be 'raise' or 'skip'")
    start_q = as_fraction(start)

    def produce(stop, stats):
        loc, stat, raw = open_checked(uri, fs_options)
        fileobj = StoppableFile(raw, stop)
        reader = None
        try:
            info, container, _ = probe_open(loc, fileobj, stat.size, threads=threads)
            reader = PyAVReader(container, loc.uri, on_corrupt=on_corrupt)
            rotation = info.rotation
            for t, image in reader.frames(fps_q, start_q):
                if end is not None and t >= end:
                    break
                frame = to_model_rgb(image, size, rotation)
                stats["sampled_frames"] += 1
                stats["decoded_frames"] = reader.decoded
                stats["bytes_read"] = fileobj.bytes_read
                yield float(t), frame
            stats["decoded_frames"] = reader.decoded
            stats["bytes_read"] = fileobj.bytes_read
            stats["skipped_damage_at"] = list(reader.corrupt_spans)
        finally:
            if reader is not None:
                reader.close()
            fileobj.close()

    return FrameStream(produce, uri, prefetch=prefetch, timeout_s=timeout_s)


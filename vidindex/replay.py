"""Replay: feed a stream the frames of a video between two times, decoded by several readers.

Kept apart from the store so that it runs wherever a model and a video are (benchmarks, GPU
hosts without the index's dependencies).
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np

from vidindex.video import sample_frames

# Readers decoding parts of a long replay at once, one per core (GPU hosts have many): decoding,
# not the model, bounds a long replay of a large video. Each reader decodes single-threaded.
DECODE_WORKERS = max(1, min(16, os.cpu_count() or 1))
# The first part is short so the model starts within a fraction of a second; each later part,
# decoded meanwhile by its own reader, may be longer by the time the model reaches it.
SEGMENT_SECONDS = 4.0
SEGMENT_GROWTH = 1.3


def segment_bounds(start_ms: int, until_ms: int, workers: int, first_ms: int) -> list[int]:
    """Start times (ms) of the parts of (start_ms, until_ms] read by separate readers."""
    bounds, length = [start_ms], max(1, first_ms)
    while len(bounds) < workers and bounds[-1] + length < until_ms:
        bounds.append(bounds[-1] + round(length))
        length *= SEGMENT_GROWTH
    return bounds


def replay(stream, uri: str, *, fps: float, size: int, start_s: float, until_s: float, batch: int,
           workers: int = DECODE_WORKERS, segment_seconds: float = SEGMENT_SECONDS) -> int:
    """Feed the frames sampled in (stream's last frame, until_s], in batches; returns how many.

    The range is cut into up to `workers` parts, the first `segment_seconds` long and each next
    one SEGMENT_GROWTH times longer, decoded at once by their own readers (each seeks to its
    start): sample_frames from any start yields exactly the frames a run from 0 yields from
    there, so the parts joined in order are the frames of the whole range. Boundaries are
    whole milliseconds, exact as fractions, so no frame falls between two parts.
    Raises VideoError for an unreadable video.
    """
    last_fed = stream.last_timestamp[0]
    start_ms, until_ms = round(start_s * 1000), round(until_s * 1000)
    starts = segment_bounds(start_ms, until_ms, workers, round(segment_seconds * 1000))
    # the last reader stops by itself just after until_s (none is cut off mid-read)
    bounds = [Fraction(ms, 1000) for ms in starts] + [Fraction(until_ms + 1, 1000)]
    readers = [
        # every part decodes all its frames ahead while the earlier ones are fed
        sample_frames(uri, fps=fps, size=size, start=bounds[i], end=bounds[i + 1], threads=1,
                      prefetch=max(2 * batch, math.ceil(((starts[i + 1] if i + 1 < len(starts) else until_ms)
                                                         - starts[i]) / 1000 * fps) + 2))
        for i in range(len(starts))
    ]
    frames, times, fed = [], [], 0
    try:
        for reader in readers:
            for ts, frame in reader:
                if ts <= last_fed:
                    continue
                if ts * 1000 > until_ms:
                    break
                frames.append(frame)
                times.append(ts)
                if len(frames) == batch:
                    fed += _feed(stream, frames, times)
                    frames, times = [], []
    finally:
        for reader in readers:
            reader.close()
    if frames:
        fed += _feed(stream, frames, times)
    return fed


def _feed(stream, frames, times) -> int:
    stream.feed(np.stack(frames), times)
    return len(frames)

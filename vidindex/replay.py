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

# Readers decoding parts of a long replay at once: one per core (GPU hosts have many), since
# decoding 5 minutes of 1080p at 1 fps takes a core ~13 s, far above the model's share.
DECODE_WORKERS = max(1, min(16, os.cpu_count() or 1))
SEGMENT_SECONDS = 30.0  # shortest part of a replay worth a reader of its own


def replay(stream, uri: str, *, fps: float, size: int, start_s: float, until_s: float, batch: int,
           workers: int = DECODE_WORKERS, segment_seconds: float = SEGMENT_SECONDS) -> int:
    """Feed the frames sampled in (stream's last frame, until_s], in batches; returns how many.

    A long range is cut into segments decoded at once by their own readers (each seeks to its
    start): sample_frames from any start yields exactly the frames a run from 0 yields from
    there, so the segments joined in order are the frames of the whole range. Boundaries are
    whole milliseconds, exact as fractions, so no frame falls between two segments.
    Raises VideoError for an unreadable video.
    """
    last_fed = stream.last_timestamp[0]
    start_ms, until_ms = round(start_s * 1000), round(until_s * 1000)
    count = max(1, min(workers, (until_ms - start_ms) // max(1, round(segment_seconds * 1000))))
    bounds = [Fraction(start_ms + (until_ms - start_ms) * i // count, 1000) for i in range(count)] + [None]
    per_segment = math.ceil((until_s - start_s) / count * fps) + 2
    readers = [
        # later segments decode all their frames ahead while the earlier ones are fed
        sample_frames(uri, fps=fps, size=size, start=bounds[i], end=bounds[i + 1],
                      prefetch=max(2 * batch, per_segment if i else 0))
        for i in range(count)
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

"""Decoding with decord (the maintained decord2 wheel; module name `decord`): second backend.

decord indexes every frame when it opens a file and decodes by frame index, seeking on its own
when the next wanted frame lies beyond the next keyframe. Its timestamps are rounded floats, so
they are snapped to the stream's time base (from the PyAV probe) to give exactly the timestamps
of the PyAV backend. decord applies the display rotation itself.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Iterator

import numpy as np

from vidindex.video.errors import CorruptVideo, VideoTruncated
from vidindex.video.sampling import FrameSelector

BATCH = 4  # frames per get_batch call: small, so memory stays flat


class DecordReader:
    name = "decord"
    applies_rotation = True

    def __init__(self, source, uri: str, time_base: Fraction, start_pts: int,
                 expected_end: float | None, threads: int = 0):
        import decord

        self._decord = decord
        self.uri = uri
        self.decoded = 0  # decord does not report how many frames it decoded internally
        self.expected_end = expected_end
        try:
            self.vr = decord.VideoReader(source, ctx=decord.cpu(0), num_threads=threads)
        except decord.DECORDError as e:
            raise CorruptVideo(uri, f"decord cannot open it: {str(e).splitlines()[0]}") from e
        starts = self.vr.get_frame_timestamp(np.arange(len(self.vr)))[:, 0]
        # decord reports seconds from the stream start, rounded: snap to the time base
        self.times = [Fraction(int(round(s / time_base))) * time_base for s in starts]
        self.start_pts = start_pts

    def frames(self, fps, start: Fraction = Fraction(0)) -> Iterator[tuple[Fraction, np.ndarray]]:
        selector = FrameSelector(fps, start=start)
        chosen = [i for i, t in enumerate(self.times) if selector.take(t)]
        for k in range(0, len(chosen), BATCH):
            batch = chosen[k:k + BATCH]
            try:
                images = self.vr.get_batch(batch).asnumpy()
            except self._decord.DECORDError as e:
                at = float(self.times[batch[0]])
                raise CorruptVideo(self.uri, f"decord failed at t={at:.3f}s: "
                                             f"{str(e).splitlines()[0]}") from e
            self.decoded += len(batch)
            for i, img in zip(batch, images):
                yield self.times[i], img
        if self.times and self.expected_end is not None:
            seen = float(self.times[-1])
            if seen < self.expected_end - 1.0:
                raise VideoTruncated(self.uri, f"video data stops at t={seen:.3f}s of "
                                               f"{self.expected_end:.3f}s")

    def close(self) -> None:
        del self.vr

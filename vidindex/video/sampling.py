"""Which decoded frames to keep when sampling at a target rate.

Rule: the sampling ticks are k / fps seconds (k = 0, 1, 2, ...) from the start of the video, and
each tick takes the first frame whose presentation time is at or after it; a frame taken by
several ticks (target rate above the source rate, or a gap in a variable-rate video) is yielded
once. Equivalently: a frame at time t whose predecessor is at time p is kept iff some tick lies
in (p, t], i.e. floor(t * fps) > floor(p * fps); the first frame is always kept.

The decision needs only a frame's time and its predecessor's, in exact rational arithmetic, so
decoding from any keyframe before `start` reproduces exactly the frames (and timestamps) that an
uninterrupted run yields from `start` on, which is what resuming from a snapshot relies on.
"""

from __future__ import annotations

import math
from fractions import Fraction


def as_fraction(x: float | Fraction | int) -> Fraction:
    """A float from config (1.0, 0.5, 29.97) as the small fraction it means."""
    if isinstance(x, (Fraction, int)):
        return Fraction(x)
    return Fraction(x).limit_denominator(1_000_000)


class FrameSelector:
    """Feed every frame time in presentation order; `take` says whether to yield it."""

    def __init__(self, fps: float | Fraction, start: float | Fraction = 0):
        self.fps = as_fraction(fps)
        if self.fps <= 0:
            raise ValueError(f"sampling fps must be positive, got {fps}")
        self.start = as_fraction(start)
        self._prev_tick: int | None = None  # floor(prev_time * fps)

    def take(self, t: Fraction) -> bool:
        tick = math.floor(t * self.fps)
        keep = self._prev_tick is None or tick > self._prev_tick
        self._prev_tick = tick
        return keep and t >= self.start

    def reset(self) -> None:
        """Forget the predecessor (after a seek)."""
        self._prev_tick = None

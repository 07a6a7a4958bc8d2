"""When a video's stream is branched: captions, questions and snapshots, in integer ms.

Every event time is a "boundary" b: an event at b fires once every sampled frame with
timestamp <= b has been fed and before any later frame. Times come from the index config
alone, so a resumed run recomputes exactly the boundaries an uninterrupted run would hit.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidindex.config import IndexConfig, Question
from vidindex.timefmt import to_ms


@dataclass(frozen=True)
class Actions:
    caption: bool
    questions: tuple[Question, ...]
    snapshot: bool


class Schedule:
    def __init__(self, config: IndexConfig):
        self.caption_ms = to_ms(config.caption_interval)
        self.snapshot_ms = to_ms(config.snapshot_interval)
        self.questions = config.questions
        self._every = [(q, to_ms(q.every)) for q in config.questions if q.every]
        self._at = [(q, tuple(to_ms(t) for t in q.at)) for q in config.questions if q.at]

    def next_boundary(self, after_ms: int) -> int:
        """The first event time strictly after `after_ms`."""
        candidates = [_next_multiple(after_ms, self.caption_ms), _next_multiple(after_ms, self.snapshot_ms)]
        candidates += [_next_multiple(after_ms, every) for _, every in self._every]
        candidates += [t for _, times in self._at for t in times if t > after_ms]
        return min(candidates)

    def next_caption(self, after_ms: int) -> int:
        """The first caption boundary strictly after `after_ms`."""
        return _next_multiple(after_ms, self.caption_ms)

    def actions_at(self, b: int) -> Actions:
        questions = [q for q, every in self._every if b % every == 0]
        questions += [q for q, times in self._at if b in times and q not in questions]
        return Actions(b % self.caption_ms == 0, tuple(questions), b % self.snapshot_ms == 0)

    def last_caption_end(self, t_ms: int) -> int:
        """End of the last caption window at or before t (0 when none yet)."""
        return (t_ms // self.caption_ms) * self.caption_ms

    def end_questions(self) -> tuple[Question, ...]:
        return tuple(q for q in self.questions if q.at_end)


def _next_multiple(after_ms: int, step: int) -> int:
    return (after_ms // step + 1) * step

"""The engine's writes, in order, on one thread of their own.

A snapshot's blob write and commit take a few tenths of a second; run inline they would stall
the GPU once per snapshot of every stream. Here they overlap the next forwards. Jobs run in the
order they were put (a video's start, its checkpoints, its end), so what reaches the tables is
what the inline order would write. At most `depth` jobs wait (each checkpoint holds a state's
bytes): a slow store slows the engine instead of filling memory.

A job that raises ends the writing: it stands for an error that is no video's fault (the store is
gone) or, in tests, the process dying. Later jobs still run (results must reach their callers)
but see `error` set and skip their writes. The engine raises the error on its next check().
"""

from __future__ import annotations

import queue
import threading
from typing import Callable


class Writes:
    def __init__(self, depth: int):
        self.error: BaseException | None = None
        self._jobs: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._work, daemon=True, name="vidindex-writes")
        self._thread.start()

    def put(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Wait for every job put so far."""
        self._jobs.put(None)
        self._thread.join()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except BaseException as error:  # see the module's docstring
                if self.error is None:
                    self.error = error

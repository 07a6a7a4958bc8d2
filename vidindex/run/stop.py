"""Stopping an index run on a signal: SIGINT (Ctrl-C) or SIGTERM (`kill`, `ray job stop`, Kubernetes).

    with stop_on_signals():       # the CLI, around run_index
        run_index(...)            # raises Stopped(signum, counts) once the run has stopped

A signal raises Stopped in the main thread. It is a KeyboardInterrupt, so no `except Exception`
on the way catches it, and run_index treats a plain Ctrl-C (a library caller's) the same way: it
ends the run's indexing actors, lets the commit in flight land, ends its committer and tracker,
counts what its videos are now and raises Stopped again with those counts. Commits are atomic (a
snapshots row is the commit point), so a video in flight stays partial at its last committed
snapshot and the next run resumes it. A second signal while the run stops ends the process at
once: Ray ends the actors of a driver that is gone, and a local Ray it started dies with it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(KeyboardInterrupt):
    """A run stopped by a signal. `counts`: what the videos of the run are now (done, failed,
    partial, not_started), filled in by run_index; None when it stopped before it had a plan."""

    def __init__(self, signum: int = signal.SIGINT, counts: dict | None = None):
        self.signum = signal.Signals(signum)
        self.counts = counts
        super().__init__(self.signum.name)

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by this signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


@contextmanager
def stop_on_signals(signals=SIGNALS) -> Iterator[None]:
    """For the length of the block, the first of these signals raises Stopped in the main thread
    and a second one exits at once with the same code. Outside the main thread (where Python
    cannot install handlers) the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = []

    def handler(signum, frame):
        if stopping:
            print(f"{signal.Signals(signum).name} again: exiting now; Ray ends the run's actors",
                  file=sys.stderr, flush=True)
            os._exit(128 + signum)
        stopping.append(signum)
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)  # None: a handler set outside Python

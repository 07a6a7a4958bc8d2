"""Helpers of tests/reliability/test_graceful_stop.py: `vidindex index` as a child process, what its
tables hold while it runs, and the processes and actors a run leaves behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.run.conftest import FAST
from vidindex.store import Store

REPO = Path(__file__).resolve().parents[2]
# Each video alone in its actor's stream: a resumed run is then bit-exact with an uninterrupted one.
# Fewer commits than FAST's (a caption every 10 s, a snapshot every 20 s): the long video's length
# goes into indexing time, not into commits.
FLAGS = [*FAST, "--caption-every", "30", "--snapshot-every", "60", "--streams-per-gpu", "1", "--no-progress"]
RUN_ACTORS = ("MapWorker(MapBatches(IndexWorker))", "Committer", "ProgressTracker")  # the actors a run starts
STOPPED_LINE = re.compile(r"^vidindex index: stopped by (SIG\w+): (\d+) videos? done, (?:(\d+) failed, )?"
                          r"(\d+) partial(?:, (\d+) not started)?( \(a re-run resumes them\))?$", re.M)


def index_command(db, model: str, sources: list[str], *extra: str, job: bool = False) -> list[str]:
    """`vidindex index` (or the Ray job entrypoint jobs/index_job.py, which takes the same flags)."""
    head = [sys.executable, str(REPO / "jobs" / "index_job.py")] if job else [sys.executable, "-m", "vidindex.cli",
                                                                              "index"]
    return [*head, *sources, "--db", str(db), "--model", model, *FLAGS, *extra]


@dataclass
class Child:
    """A command running in its own session (process group), as a shell runs a foreground job."""

    proc: subprocess.Popen
    out: Path
    err: Path

    @classmethod
    def start(cls, command: list[str], logs: Path, env: dict | None = None) -> "Child":
        """`env`: variables set on top of this process's; None unsets one (e.g. RAY_ADDRESS)."""
        logs.mkdir(parents=True, exist_ok=True)
        out, err = logs / "stdout", logs / "stderr"
        with open(out, "w") as stdout, open(err, "w") as stderr:  # files: a pipe nobody reads could fill up
            proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=REPO, start_new_session=True,
                                    env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None})
        return cls(proc, out, err)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def stderr(self) -> str:
        return self.err.read_text()

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def video_states(db) -> dict[str, tuple[str, int | None]]:
    """File stem -> (status, last_snapshot_ms) from the videos table; {} before it exists."""
    try:
        rows = Store(str(db), create=False).videos()
    except Exception:  # noqa: BLE001 - the run has not created its tables yet
        return {}
    return {Path(row["uri"]).stem: (row["status"], row["last_snapshot_ms"]) for row in rows}


def wait_until_mid_run(child: Child, db, long_name: str, timeout: float = 90.0) -> dict:
    """Wait until a video is done while `long_name` is partial with a committed snapshot."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = video_states(db)
        status, snapshot_ms = states.get(long_name, (None, None))
        if status == "partial" and snapshot_ms and any(s == "done" for s, _ in states.values()):
            return states
        if child.proc.poll() is not None:
            raise AssertionError(f"the run ended before the stop (exit {child.proc.returncode}): {states}\n"
                                 f"{child.stderr()[-3000:]}")
        time.sleep(0.5)
    raise AssertionError(f"no video done with {long_name} partial after {timeout} s: {video_states(db)}")


def still_running(processes: list[psutil.Process]) -> list[str]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{process.pid} {process.name()}")
        except psutil.NoSuchProcess:
            pass
    return alive


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Processes whose command line holds `text` (e.g. a Ray temp dir: its raylet, GCS, workers)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            if text in " ".join(process.info["cmdline"] or []):
                found.append(process)
        except psutil.Error:
            pass
    return found


def run_actor_processes() -> list[psutil.Process]:
    """Worker processes of the Ray this process started that hold an actor of a vidindex run (Ray
    titles them ray::<class>); other processes' Ray (a test suite running beside) is not looked at."""
    prefixes = tuple(f"ray::{name}" for name in RUN_ACTORS)
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if " ".join(process.cmdline()).startswith(prefixes):
                found.append(process)
        except psutil.Error:
            pass
    return found


def live_run_actors() -> list[tuple[str, str]]:
    """(class, state) of every actor of a vidindex run that is not dead, in the Ray this process joined."""
    from ray._private import state

    return [(a["ActorClassName"], a["State"]) for a in state.actors().values()
            if a["ActorClassName"] in RUN_ACTORS and a["State"] != "DEAD"]


def wait_for(condition, timeout: float, interval: float = 0.2):
    """condition() until it is falsy (returned) or the time is up (its last value is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if not value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def rows_past_last_snapshot(store: Store, video_id: str, config_id: str) -> list[tuple]:
    """Caption and answer rows of a video later than its latest snapshot (a commit not whole)."""
    last = max((s["t_ms"] for s in store.snapshots(video_id, config_id)), default=-1)
    captions = store.rows("captions", video_id=video_id, config_id=config_id).to_pylist()
    answers = store.rows("answers", video_id=video_id, config_id=config_id).to_pylist()
    return ([("caption", r["t_end_ms"]) for r in captions if r["t_end_ms"] > last]
            + [("answer", r["t_ms"]) for r in answers if r["t_ms"] > last])

"""Graceful stop: SIGINT (Ctrl-C) or SIGTERM (`kill`, `ray job stop`) ends `vidindex index` within
seconds with a line saying what is done and partial and the shell's exit code (130 / 143); the
committed work stays, videos in flight stay partial at their last committed snapshot, the run
leaves no Ray process or actor behind (a cluster it joined keeps running), and a re-run resumes
and ends with exactly the tables of an uninterrupted run.

The runs are real `vidindex index` (or jobs/index_job.py) child processes with the tiny model and
synthetic videos on 2 indexing actors: one long video (several seconds of indexing) that is still
in flight when the signal comes, and three short ones of which the other actor has finished at
least one by then. Each video runs alone in its actor (--streams-per-gpu 1), so the resumed run's
tables, snapshot checksums included, equal the uninterrupted run's.
"""

from __future__ import annotations

import _thread
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.reliability.conftest import assert_every_snapshot_loads, assert_no_duplicate_keys
from tests.reliability.stop_runs import (FLAGS, STOPPED_LINE, Child, index_command, live_run_actors,
                                         processes_mentioning, rows_past_last_snapshot, run_actor_processes,
                                         still_running, wait_for, wait_until_mid_run)
from tests.run.tables import COMPARED, table_rows, videos_by_name
from vidindex.cli.index import config_from_args, format_stopped
from vidindex.cli.main import build_parser
from vidindex.index.engine import Engine
from vidindex.run.pipeline import run_index
from vidindex.run.stop import Stopped, stop_on_signals
from vidindex.store import Store
from vidindex.video.synthetic import write_video

LONG = "long"  # 15 min (900 frames, 5-10 s of indexing): in flight while the short ones finish
SHORT = ("short0", "short1", "short2")  # 10 s each
EXIT_WITHIN_S = 15  # from the signal to the process's exit (a stopped run takes 2-5 s here)


@pytest.fixture(scope="module")
def stop_videos(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("stop_videos")
    paths = {LONG: str(folder / f"{LONG}.mp4")} | {name: str(folder / f"{name}.mp4") for name in SHORT}
    write_video(paths[LONG], 900, fps=2, width=96, height=72, seed=40)
    for seed, name in enumerate(SHORT, start=41):
        write_video(paths[name], 10, fps=2, width=96, height=72, seed=seed)
    return paths


@pytest.fixture(scope="module")
def cluster():
    """A local Ray of 2 CPUs in this process: the cluster a job joins (it must outlive a stopped
    run), and the one of the re-runs."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
                       log_to_driver=False)
    yield context.address_info["address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_checkpoint, stop_videos) -> str:
    """The database of an uninterrupted run of the same videos with the same flags: their engine in
    this process with one torch thread, as an indexing actor of one CPU runs it (Ray gives it
    OMP_NUM_THREADS=1), so every row and snapshot checksum is the actors' (and no Ray start)."""
    import torch

    db = str(tmp_path_factory.mktemp("stop_reference") / "db")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = Engine(index_config(db, tiny_checkpoint, stop_videos)).index(list(stop_videos.values()))
    finally:
        torch.set_num_threads(threads)
    assert [r.status for r in results] == ["done"] * 4, results
    return db


def index_config(db: str, model, videos: dict[str, str]):
    """The config of the child runs' flags."""
    return config_from_args(build_parser().parse_args(["index", *videos.values(), "--db", db, "--model", str(model),
                                                       *FLAGS]))


@pytest.fixture
def ray_tmp():
    """A Ray temp dir of the child's own (short: Ray's socket paths must stay under 108 bytes), so
    its local Ray is found by path, and no other Ray's address file is picked up."""
    path = tempfile.mkdtemp(prefix="vs", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def assert_stopped_cleanly(child: Child, signum: int, db: str, sent: float) -> dict:
    """Exit code and line of a stopped run, and its tables: done and partial videos only, each
    partial one at its last committed snapshot. Returns the counts of the line."""
    code = child.wait(timeout=EXIT_WITHIN_S)
    took = time.monotonic() - sent
    stderr = child.stderr()
    assert code == 128 + signum, stderr[-3000:]
    print(f"{signal.Signals(signum).name}: exited {took:.1f} s after the signal")
    match = STOPPED_LINE.search(stderr)
    assert match, stderr[-3000:]
    assert match.group(1) == signal.Signals(signum).name
    counts = {"done": int(match.group(2)), "failed": int(match.group(3) or 0), "partial": int(match.group(4)),
              "not_started": int(match.group(5) or 0)}
    assert counts["done"] >= 1 and counts["partial"] >= 1 and counts["failed"] == 0, stderr[-3000:]
    assert sum(counts.values()) == 4 and match.group(6)

    store = Store(db, create=False)
    videos = videos_by_name(db)
    assert {v["status"] for v in videos.values()} <= {"done", "partial"}
    assert sum(v["status"] == "done" for v in videos.values()) == counts["done"]
    assert sum(v["status"] == "partial" for v in videos.values()) == counts["partial"]
    assert videos[LONG]["status"] == "partial" and videos[LONG]["last_snapshot_ms"] > 0
    for video in videos.values():
        if video["status"] == "partial":
            snapshots = store.snapshots(video["video_id"], video["config_id"])
            assert video["last_snapshot_ms"] == max((s["t_ms"] for s in snapshots), default=None)
            assert rows_past_last_snapshot(store, video["video_id"], video["config_id"]) == []
    assert_no_duplicate_keys(store)
    assert_every_snapshot_loads(store)
    return counts


def assert_rerun_resumes_to_the_reference(db: str, model, videos: dict, reference: str) -> None:
    """The next run (here in this process, on its cluster) skips the done videos, resumes the
    partial ones from their last snapshot, and leaves exactly the reference's tables."""
    before = videos_by_name(db)
    report = run_index(index_config(db, model, videos), list(videos.values()))
    ran = {Path(video["uri"]).stem: video for video in report.videos}
    assert {Path(video["uri"]).stem for video in report.already_done} == {
        name for name, video in before.items() if video["status"] == "done"}
    assert set(ran) == set(videos) - {Path(video["uri"]).stem for video in report.already_done}
    assert {video["status"] for video in ran.values()} == {"done"}
    for name, video in ran.items():
        resumed_at = (before.get(name) or {}).get("last_snapshot_ms")
        assert video["resumed_at_s"] == ([resumed_at / 1000] if resumed_at else []), name
    for table in COMPARED:
        assert table_rows(db, table) == table_rows(reference, table), f"{table} differs from the uninterrupted run"
    assert_no_duplicate_keys(Store(db, create=False))


def test_ctrl_c_stops_a_run_and_its_local_ray(cluster, reference, tiny_checkpoint, stop_videos, tmp_path, ray_tmp):
    """Ctrl-C in a terminal: SIGINT to the whole foreground process group (the command and the
    local Ray it started). Exit 130, the line, no process of that Ray left; the re-run resumes."""
    db = str(tmp_path / "db")
    child = Child.start(index_command(db, str(tiny_checkpoint), list(stop_videos.values())), tmp_path / "run",
                        env={"RAY_TMPDIR": ray_tmp})
    try:
        wait_until_mid_run(child, db, LONG)
        started = child.descendants()  # gcs_server, raylet, the actors' workers...
        assert any(p.name() == "raylet" for p in started)
        sent = time.monotonic()
        os.killpg(child.proc.pid, signal.SIGINT)  # its own session: the group id is its pid
        assert_stopped_cleanly(child, signal.SIGINT, db, sent)
    finally:
        child.kill()
    assert wait_for(lambda: still_running(started), timeout=5) == []
    assert wait_for(lambda: still_running(processes_mentioning(ray_tmp)), timeout=5) == []
    assert_rerun_resumes_to_the_reference(db, tiny_checkpoint, stop_videos, reference)


def test_sigterm_stops_a_job_and_keeps_the_cluster(cluster, reference, tiny_checkpoint, stop_videos, tmp_path):
    """`ray job stop`: SIGTERM to the job's entrypoint (jobs/index_job.py, RAY_ADDRESS set to the
    cluster) and to its children. Exit 143, the line; the run's actors end, the cluster stays."""
    import ray

    db = str(tmp_path / "db")
    child = Child.start(index_command(db, str(tiny_checkpoint), list(stop_videos.values()), job=True),
                        tmp_path / "run", env={"RAY_ADDRESS": cluster})
    try:
        wait_until_mid_run(child, db, LONG)
        assert live_run_actors()
        sent = time.monotonic()
        for process in [psutil.Process(child.proc.pid), *child.descendants()]:  # as Ray's JobSupervisor does
            process.send_signal(signal.SIGTERM)
        assert_stopped_cleanly(child, signal.SIGTERM, db, sent)
    finally:
        child.kill()
    assert wait_for(live_run_actors, timeout=5) == []
    assert wait_for(lambda: still_running(run_actor_processes()), timeout=5) == []
    assert ray.get(ray.remote(lambda: "still up").remote()) == "still up"
    assert_rerun_resumes_to_the_reference(db, tiny_checkpoint, stop_videos, reference)


def test_ctrl_c_in_a_library_call_ends_the_run_actors(cluster, tiny_checkpoint, stop_videos, tmp_path):
    """run_index called in a Python session that keeps its Ray: a KeyboardInterrupt ends the run's
    actors before Stopped is raised, and the session's cluster goes on."""
    db = str(tmp_path / "db")
    interrupted = []

    def interrupt_after_a_checkpoint(events):
        if not interrupted and any(e["kind"] == "checkpoint" for e in events):
            interrupted.append(time.monotonic())
            _thread.interrupt_main()  # as Ctrl-C does: KeyboardInterrupt in the main thread

    stopped = None
    try:
        run_index(index_config(db, tiny_checkpoint, {LONG: stop_videos[LONG]}), [stop_videos[LONG]],
                  on_events=interrupt_after_a_checkpoint)
    except Stopped as error:
        stopped = error
    except KeyboardInterrupt as error:  # never let it reach pytest (it would end the session)
        pytest.fail(f"a bare KeyboardInterrupt left run_index: {error!r}")
    assert stopped is not None and interrupted, "the run ended before its first checkpoint reached the driver"
    assert time.monotonic() - interrupted[0] < EXIT_WITHIN_S
    assert stopped.signum == signal.SIGINT and stopped.exit_code == 130
    assert stopped.counts == {"done": 0, "failed": 0, "partial": 1, "not_started": 0}
    assert live_run_actors() == []  # ended before run_index returned, not by a driver's exit
    assert videos_by_name(db)[LONG]["status"] == "partial"


def test_a_second_signal_exits_at_once():
    """The first SIGTERM raises Stopped; one more while the run stops exits with 143 on the spot."""
    code = ("import os, signal, time\n"
            "from vidindex.run.stop import Stopped, stop_on_signals\n"
            "with stop_on_signals():\n"
            "    try:\n"
            "        os.kill(os.getpid(), signal.SIGTERM); time.sleep(10)\n"
            "    except Stopped as stop:\n"
            "        print('stopping', stop.exit_code, flush=True)\n"
            "        os.kill(os.getpid(), signal.SIGTERM); time.sleep(10)\n"
            "print('not reached')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 143 and done.stdout == "stopping 143\n"
    assert "SIGTERM again: exiting now" in done.stderr


def test_handlers_are_restored_after_the_run():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with stop_on_signals():
        assert signal.getsignal(signal.SIGINT) not in before
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_the_stopped_line():
    assert format_stopped(Stopped(signal.SIGTERM, {"done": 3, "failed": 0, "partial": 2, "not_started": 0})) == (
        "vidindex index: stopped by SIGTERM: 3 videos done, 2 partial (a re-run resumes them)")
    assert format_stopped(Stopped(signal.SIGINT, {"done": 1, "failed": 1, "partial": 0, "not_started": 4})) == (
        "vidindex index: stopped by SIGINT: 1 video done, 1 failed, 0 partial, 4 not started (a re-run resumes them)")
    assert format_stopped(Stopped(signal.SIGINT, {"done": 2, "failed": 0, "partial": 0, "not_started": 0})) == (
        "vidindex index: stopped by SIGINT: 2 videos done, 0 partial")
    assert format_stopped(Stopped(signal.SIGTERM)) == (
        "vidindex index: stopped by SIGTERM before any video started: nothing was indexed")
    assert STOPPED_LINE.search(format_stopped(Stopped(signal.SIGTERM, {"done": 1, "failed": 0, "partial": 2,
                                                                      "not_started": 1})))

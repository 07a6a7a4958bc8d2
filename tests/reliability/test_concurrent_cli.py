"""Two `vidindex index` commands at once on the same existing database, with overlapping videos:
each a child process that starts a local Ray of its own (its own committer actor, tracker and
indexing actor), as two people running the CLI on one machine do. Both exit 0, every video
ends done, no key is there twice, every snapshots row's blob verifies, and the tables equal one
uninterrupted run's over the union of the videos. test_concurrent_runs.py plays the same at the
engine and committer level, where the interleavings are controlled.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time

import pytest

from tests.reliability.conftest import (Reference, assert_every_snapshot_loads, assert_no_duplicate_keys,
                                        assert_same_tables)
from tests.reliability.stop_runs import (FLAGS, Child, index_command, processes_mentioning, still_running,
                                         wait_for)
from tests.reliability.test_concurrent_runs import RUN_TIMEOUT_S
from vidindex.cli.index import config_from_args
from vidindex.cli.main import build_parser
from vidindex.index.engine import Engine
from vidindex.store import Store
from vidindex.video.synthetic import write_video

# Seconds of each video (FLAGS: a caption every 30 s, a snapshot every 60 s). v3, the longest of
# both runs, is the first each run starts (longest first), so both are likely to index it at once.
LENGTHS = {"v1": 70, "v2": 130, "v3": 190, "v4": 70}
RUNS = {"A": ("v1", "v2", "v3"), "B": ("v2", "v3", "v4")}
RUN_FLAGS = ["--actors", "1", "--json"]  # one indexing actor each: both runs fit on a 2-core machine


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the engine catches it."""


@pytest.fixture(scope="module")
def cli_videos(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("cli_videos")
    paths = {name: str(folder / f"{name}.mp4") for name in LENGTHS}
    for seed, (name, seconds) in enumerate(LENGTHS.items(), start=50):
        write_video(paths[name], seconds, fps=2, width=96, height=72, seed=seed)
    return paths


def flags_config(db, model, uris: list[str]):
    """The config the child runs' flags give."""
    return config_from_args(build_parser().parse_args(["index", *uris, "--db", str(db), "--model", str(model),
                                                       *FLAGS]))


@pytest.fixture
def one_torch_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cli_reference(tmp_path_factory, tiny_checkpoint, cli_videos) -> Reference:
    """One uninterrupted run of the union of both runs' videos, with their flags, in this process
    with one torch thread: each video alone in its stream, so rows and snapshot checksums are the
    actors' (as test_graceful_stop's reference)."""
    import torch

    db = tmp_path_factory.mktemp("cli_reference") / "db"
    config = flags_config(db, tiny_checkpoint, list(cli_videos.values()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = Engine(config).index(list(cli_videos.values()))
    finally:
        torch.set_num_threads(threads)
    assert [r.status for r in results] == ["done"] * len(cli_videos), results
    return Reference(str(db), config.config_id, {n: r.video_id for n, r in zip(cli_videos, results)}, cli_videos)


@pytest.fixture
def existing_db(tmp_path, tiny_checkpoint, cli_videos, cli_reference, one_torch_thread) -> str:
    """The database an earlier run left: v2, which both runs index, partial at its snapshot at 60 s."""
    config = flags_config(tmp_path / "db", tiny_checkpoint, [cli_videos["v2"]])

    def crash_after_the_first_snapshot(kind, payload):
        if kind == "checkpoint":
            raise Crash()

    with pytest.raises(Crash):
        Engine(config, on_event=crash_after_the_first_snapshot).index([cli_videos["v2"]])
    row = Store(config.db_uri, create=False).get_video(cli_reference.video_ids["v2"], config.config_id)
    assert (row["status"], row["last_snapshot_ms"]) == ("partial", 60_000)
    return config.db_uri


@pytest.fixture
def ray_tmps():
    """A Ray temp dir per run (short: Ray's socket paths must stay under 108 bytes): each CLI starts
    its own local Ray there, and finds no other Ray's address file."""
    paths = {name: tempfile.mkdtemp(prefix="vc", dir="/tmp") for name in RUNS}
    yield paths
    for path in paths.values():
        shutil.rmtree(path, ignore_errors=True)


def resume_points(video: str) -> list[list[float]]:
    """The resumed_at_s a run may report for a video: v2 resumes from 60 s (the earlier run's
    snapshot) or later; any video may resume from a snapshot the other run committed."""
    snapshots = [[float(t)] for t in range(60, LENGTHS[video], 60)]
    return snapshots if video == "v2" else [[], *snapshots]


def test_two_cli_runs_of_overlapping_videos_on_an_existing_database(existing_db, tiny_checkpoint, cli_videos,
                                                                    cli_reference, ray_tmps, tmp_path):
    """Run A indexes v1, v2, v3 and run B v2, v3, v4 at the same time, each with its own local Ray.
    v2 resumes from its snapshot at 60 s in whichever run starts it while it is partial; a run
    that finds an overlapping video done by the other (when it plans, or when its actor takes
    it) lists it as already indexed; both exit 0."""
    children = {name: Child.start(index_command(existing_db, str(tiny_checkpoint),
                                                [cli_videos[v] for v in videos], *RUN_FLAGS),
                                  tmp_path / name, env={"RAY_TMPDIR": ray_tmps[name], "RAY_ADDRESS": None})
                for name, videos in RUNS.items()}
    started = time.monotonic()
    try:
        codes = {name: child.wait(timeout=RUN_TIMEOUT_S) for name, child in children.items()}
    finally:
        for child in children.values():
            child.kill()
    print(f"both runs ended in {time.monotonic() - started:.1f} s")
    for name, child in children.items():
        print(f"--- run {name} stderr:\n{child.stderr()[-3000:]}")
        assert codes[name] == 0, f"run {name} exited {codes[name]}:\n{child.stderr()[-3000:]}"

    names = {uri: name for name, uri in cli_videos.items()}
    for name, child in children.items():
        report = json.loads(child.out.read_text())
        ran = {names[v["uri"]]: v for v in report["videos"]}
        already = {names[v["uri"]] for v in report["already_done"]}
        assert sorted([*ran, *already]) == sorted(RUNS[name]), name
        assert report["actors"] == 1 and report["config_id"] == cli_reference.config_id
        for video, row in ran.items():  # from a snapshot, maybe one the other run committed meanwhile
            assert (row["status"], row["error"]) == ("done", None) and row["resumed_at_s"] in resume_points(video), (
                name, video, row)
        assert set(RUNS[name]) - set.intersection(*map(set, RUNS.values())) <= set(ran), (name, sorted(already))
        print(f"run {name}: indexed", {video: row["resumed_at_s"] for video, row in ran.items()},
              "already done:", sorted(already), f"wall {report['wall_s']:.1f} s")

    store = Store(existing_db, create=False)
    assert {row["status"] for row in store.videos()} == {"done"} and len(store.videos()) == len(cli_videos)
    assert_same_tables(store, cli_reference, *cli_videos)
    assert_no_duplicate_keys(store)
    assert_every_snapshot_loads(store)
    for path in ray_tmps.values():  # each run shut down the Ray it started
        assert wait_for(lambda: still_running(processes_mentioning(path)), timeout=10) == []

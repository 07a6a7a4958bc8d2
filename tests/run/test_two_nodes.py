"""Two Ray nodes on this machine, one fake GPU each: a run places one indexing actor per node and
indexes every video once; when the worker node dies mid-video, the videos it held are run again on
the head node, the interrupted one from its last committed snapshot, leaving exactly the rows of a
run without a death.

The module starts its own cluster and shuts down the package's one-node cluster (ray_cluster) if it
runs: it is the last module of tests/run."""

from __future__ import annotations

import logging
import warnings

import pytest
import ray
from ray.cluster_utils import Cluster

from tests.run.conftest import index_args
from tests.run.tables import COMPARED, table_rows
from vidindex.cli.index import config_from_args
from vidindex.cli.main import build_parser
from vidindex.run.pipeline import run_index
from vidindex.run.ray import INDEXING_CPUS_PER_GPU, Resources, plan_indexing
from vidindex.video.synthetic import write_video

VIDEOS = 4  # two per actor: one streaming, one warming (streams_per_gpu + 1 calls)
VIDEO_S = 900  # several seconds of indexing each: the worker node dies well before its video ends
SNAPSHOT_S = 60
# The fake GPU is only what places an actor: the tiny model runs on the CPU.
FLAGS = ["--caption-every", "30", "--snapshot-every", str(SNAPSHOT_S), "--question", "Is anything moving?",
         "--streams-per-gpu", "1", "--device", "cpu"]
KEYS = {"captions": ("video_id", "config_id", "t_end_ms"),
        "answers": ("video_id", "config_id", "question_id", "t_ms"),
        "snapshots": ("video_id", "config_id", "t_ms")}


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("two_nodes_videos")
    paths = [str(folder / f"long{i}.mp4") for i in range(VIDEOS)]
    for seed, path in enumerate(paths, start=10):
        write_video(path, VIDEO_S, fps=2, width=96, height=72, seed=seed)
    return paths


@pytest.fixture(scope="module")
def two_nodes():
    """A head node and a worker node, each with one GPU and a GPU actor's share of CPUs (fake ones)."""
    if ray.is_initialized():
        ray.shutdown()
    node = {"num_cpus": INDEXING_CPUS_PER_GPU, "num_gpus": 1}
    with warnings.catch_warnings():
        # Ray starts its processes with fork+exec; lancedb's fork warning does not apply (as in connect).
        warnings.filterwarnings("ignore", message=".*fork support is experimental.*")
        cluster = Cluster(initialize_head=True, head_node_args=node)
        cluster.add_node(**node)
        # The CPUs are not real cores: one torch thread per actor, else two actors run 2 x 5 on 2 cores.
        ray.init(address=cluster.address, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
                 logging_level=logging.ERROR, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def index_config(db, tiny_model_dir, videos):
    return config_from_args(build_parser().parse_args(index_args(db, tiny_model_dir, *videos, extra=FLAGS)))


@pytest.fixture(scope="module")
def run_on_both_nodes(two_nodes, tmp_path_factory, tiny_model_dir, long_videos):
    """The run without a death, whose rows the run with one must match."""
    db = str(tmp_path_factory.mktemp("both_nodes") / "db")
    events = []
    report = run_index(index_config(db, tiny_model_dir, long_videos), long_videos, on_events=events.extend)
    return report, events, db


def assert_each_video_done_once(db: str) -> None:
    assert [status for _, status in table_rows(db, "videos", ("video_id", "status"))] == ["done"] * VIDEOS
    for table, key in KEYS.items():
        keys = table_rows(db, table, key)
        assert keys and len(keys) == len(set(keys)), f"{table} has duplicate keys"


def test_one_actor_per_node_indexes_every_video_once(two_nodes, run_on_both_nodes):
    report, events, db = run_on_both_nodes
    head, (worker,) = two_nodes.head_node.node_id, [node.node_id for node in two_nodes.worker_nodes]
    assert plan_indexing(ray.cluster_resources(), VIDEOS) == Resources(2, 1.0, INDEXING_CPUS_PER_GPU)

    assert report.actors == 2 and report.gpus_per_actor == 1.0
    actors = {(event["pid"], event["node_id"]) for event in events}
    assert sorted(node for _, node in actors) == sorted([head, worker])  # two actors, one per node
    assert {video["node_id"] for video in report.videos} == {head, worker}
    assert [(video["status"], video["restarts"]) for video in report.videos] == [("done", 0)] * VIDEOS
    starts = [event["video_id"] for event in events if event["kind"] == "start"]
    assert sorted(starts) == sorted(video["video_id"] for video in report.videos)  # each started once
    assert_each_video_done_once(db)


def test_a_dead_worker_node_leaves_its_videos_to_the_head_node(two_nodes, run_on_both_nodes, tmp_path,
                                                               tiny_model_dir, long_videos):
    head, (worker_node,) = two_nodes.head_node.node_id, two_nodes.worker_nodes
    killed = []

    def kill_worker_node_after_its_first_checkpoint(events):
        for event in events:
            if event["kind"] == "checkpoint" and event["node_id"] == worker_node.node_id and not killed:
                two_nodes.remove_node(worker_node)  # its raylet, its actor, its object store
                killed.append(event)

    db = str(tmp_path / "db")
    report = run_index(index_config(db, tiny_model_dir, long_videos), long_videos,
                       on_events=kill_worker_node_after_its_first_checkpoint)
    assert killed, "the worker node ran no video as far as a checkpoint"
    assert [video["status"] for video in report.videos] == ["done"] * VIDEOS
    assert {video["node_id"] for video in report.videos} == {head}  # the worker node finished none

    (interrupted,) = [video for video in report.videos if video["video_id"] == killed[0]["video_id"]]
    assert interrupted["restarts"] == 1
    (resumed_at,) = interrupted["resumed_at_s"]
    assert killed[0]["t_s"] <= resumed_at < VIDEO_S and resumed_at % SNAPSHOT_S == 0  # a snapshot, not zero
    assert interrupted["frames"] == (VIDEO_S - resumed_at) - 1  # only the rest was decoded again

    assert_each_video_done_once(db)
    clean_db = run_on_both_nodes[2]
    for table in COMPARED:
        assert table_rows(db, table) == table_rows(clean_db, table), f"{table} differs from the run without a death"

"""The progress tracker (events from several actors, restarts) and the indexing actors' resource plan."""

from __future__ import annotations

import pytest

from vidindex.run.ray import ClusterError, plan_indexing
from vidindex.run.progress import ProgressTracker


def planned():
    return [{"uri": "a.mp4", "video_id": "a", "duration_s": 100.0, "resume_from_s": 0.0},
            {"uri": "b.mp4", "video_id": "b", "duration_s": 50.0, "resume_from_s": 20.0},
            {"uri": "c.mp4", "video_id": "c", "duration_s": 30.0, "resume_from_s": 0.0}]


def test_progress_counts_the_furthest_time_and_survives_a_restart():
    tracker = ProgressTracker(planned())
    tracker.report([
        {"kind": "start", "pid": 1, "uri": "a.mp4", "video_id": "a", "resumed_from_s": 0.0, "duration_s": 100.0},
        {"kind": "frames", "pid": 1, "uri": "a.mp4", "video_id": "a", "frames": 40, "t_s": 40.0, "video_seconds": 40.0},
        {"kind": "checkpoint", "pid": 1, "uri": "a.mp4", "video_id": "a", "t_s": 40.0},
        {"kind": "rows", "pid": 1, "video_id": "a", "captions": 4, "answers": 2},
        {"kind": "frames", "pid": 1, "uri": "a.mp4", "video_id": "a", "frames": 10, "t_s": 50.0, "video_seconds": 10.0},
    ])
    # The actor dies; its replacement resumes "a" from the snapshot at 40 s.
    tracker.report([
        {"kind": "start", "pid": 2, "uri": "a.mp4", "video_id": "a", "resumed_from_s": 40.0, "duration_s": 100.0},
        {"kind": "frames", "pid": 2, "uri": "a.mp4", "video_id": "a", "frames": 5, "t_s": 45.0, "video_seconds": 5.0},
        {"kind": "finish", "pid": 3, "uri": "c.mp4", "video_id": "c", "status": "failed", "error": "VideoTruncated: x"},
    ])
    events, summary = tracker.drain()
    assert len(events) == 8 and tracker.drain()[0] == []
    assert summary["covered_s"] == 50 + 20  # never backwards after the restart; b starts at its resume point
    assert summary["total_s"] == 100 + 50 + 0  # the failed video's rest will not be indexed
    assert (summary["done"], summary["failed"], summary["running"]) == (0, 1, 1)
    assert (summary["frames"], summary["captions"], summary["answers"], summary["snapshots"]) == (55, 4, 2, 1)
    a = next(v for v in tracker.video_table() if v["video_id"] == "a")
    assert a["starts"] == 2 and a["restarted_from_s"] == [40.0] and a["pid"] == 2
    tracker.report([{"kind": "finish", "pid": 2, "uri": "a.mp4", "video_id": "a", "status": "done"}])
    assert tracker.summary()["covered_s"] == 100 + 20


def test_gpu_cluster_gets_one_actor_per_gpu():
    plan = plan_indexing({"GPU": 8, "CPU": 64}, videos=100)
    assert (plan.actors, plan.gpus_per_actor, plan.cpus_per_actor) == (8, 1.0, 5.0)  # decode sized for ~145 frames/s
    small = plan_indexing({"GPU": 2, "CPU": 2}, videos=3)
    assert (small.actors, small.cpus_per_actor) == (2, 1.0)


def test_cpu_cluster_gets_one_actor_per_core_and_never_more_than_videos():
    assert plan_indexing({"CPU": 2}, videos=10).actors == 2
    one = plan_indexing({"CPU": 16}, videos=1)
    assert (one.actors, one.gpus_per_actor) == (1, 0.0)


def test_impossible_resources_are_refused_with_the_numbers():
    with pytest.raises(ClusterError, match="3 indexing actors do not fit: the cluster has room for 2"):
        plan_indexing({"GPU": 2, "CPU": 16}, videos=10, actors=3)
    with pytest.raises(ClusterError, match="needs 1 GPU but the cluster has 0"):
        plan_indexing({"CPU": 16}, videos=10, gpus_per_actor=1)


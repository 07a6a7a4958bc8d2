"""Crashes: an indexing actor killed in the middle of a video is restarted by Ray and resumes from
the last committed snapshot, leaving exactly the rows of an uninterrupted run; a run stopped
mid-video leaves a partial video that status shows and the next run resumes."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.run.conftest import index_args
from tests.run.tables import COMPARED, table_rows
from vidindex.cli.index import config_from_args
from vidindex.cli.main import build_parser, main
from vidindex.index.engine import Engine
from vidindex.run.pipeline import run_index

LONG_FLAGS = ["--fps", "2", "--caption-every", "30", "--snapshot-every", "60", "--question", "Is anything moving?",
              "--streams-per-gpu", "1"]


def long_config(db, tiny_model_dir, long_video):
    args = build_parser().parse_args(index_args(db, tiny_model_dir, long_video, extra=LONG_FLAGS))
    return config_from_args(args)


def test_killed_actor_resumes_from_its_snapshot_with_identical_rows(ray_cluster, tmp_path, tiny_model_dir, long_video):
    reference = run_index(long_config(tmp_path / "reference", tiny_model_dir, long_video), [long_video])
    assert [v["status"] for v in reference.videos] == ["done"]

    killed = []

    def kill_after_first_checkpoint(events):
        for event in events:
            if event["kind"] == "checkpoint" and not killed:
                killed.append(event)
                os.kill(event["pid"], signal.SIGKILL)

    config = long_config(tmp_path / "killed", tiny_model_dir, long_video)
    report = run_index(config, [long_video], on_events=kill_after_first_checkpoint)
    assert killed, "the video finished before its first checkpoint reached the driver"
    (video,) = report.videos
    assert video["status"] == "done" and video["restarts"] == 1
    assert video["pid"] != killed[0]["pid"]  # finished by the restarted actor
    (resumed_at,) = video["resumed_at_s"]
    assert killed[0]["t_s"] <= resumed_at < 900 and resumed_at % 60 == 0  # a snapshot time, not zero
    assert video["frames"] == (900 - resumed_at) * 2 - 1  # only the rest was decoded again

    for table in COMPARED:
        got, want = table_rows(str(tmp_path / "killed"), table), table_rows(str(tmp_path / "reference"), table)
        assert got == want, f"{table} differs from the uninterrupted run"
    assert len(table_rows(str(tmp_path / "killed"), "captions")) == 30


class Stop(BaseException):
    """Ends the engine like a crash would (not an Exception, so no per-video handler catches it)."""


def test_partial_video_shows_in_status_and_resumes(ray_cluster, tmp_path, tiny_model_dir, videos, capsys):
    db = tmp_path / "db"
    args = index_args(db, tiny_model_dir, videos["good1"], videos["good2"])
    config = config_from_args(build_parser().parse_args(args))

    def stop_at_first_checkpoint(kind, payload):
        if kind == "checkpoint":
            raise Stop

    with pytest.raises(Stop):
        Engine(config, on_event=stop_at_first_checkpoint).index([videos["good1"]])

    assert main(["status", "--db", str(db), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == {"done": 0, "failed": 0, "partial": 1}
    assert status["videos"][0]["last_snapshot_ms"] == 20_000
    assert main(["status", "--db", str(db)]) == 0
    assert "partial videos resume from their last snapshot" in capsys.readouterr().out

    assert main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    by_uri = {v["uri"]: v for v in report["videos"]}
    assert by_uri[videos["good1"]]["resumed_at_s"] == [20.0]  # the plan found the partial video
    assert by_uri[videos["good1"]]["frames"] == 40 - 1 and by_uri[videos["good2"]]["resumed_at_s"] == []
    captions = table_rows(str(db), "captions", ("video_id", "t_end_ms"))
    assert sorted(t for _, t in captions) == sorted(list(range(10_000, 60_001, 10_000)) + [10_000, 20_000, 30_000,
                                                                                         40_000, 45_000])
    assert main(["status", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"] == {"done": 2, "failed": 0, "partial": 0}


def test_a_video_another_run_finished_after_the_plan_counts_as_already_indexed(ray_cluster, tmp_path, tiny_model_dir,
                                                                              videos, monkeypatch, capsys):
    """A second `vidindex index` on the same database finished the video between this run's plan
    and its actor taking it up: the engine skips it, and the run reports it as already indexed
    and exits 0 (it used to say "every video failed" and exit 3)."""
    from vidindex.run import discover, pipeline

    uri = videos["good2"]
    args = index_args(tmp_path / "db", tiny_model_dir, uri)
    assert [v["status"] for v in run_index(config_from_args(build_parser().parse_args(args)), [uri]).videos] == ["done"]

    stale = discover.Plan(todo=[discover._probe(uri, None)], already_done=[])  # as planned before that run ended
    monkeypatch.setattr(pipeline, "plan_videos", lambda *args, **kwargs: stale)
    assert main(args + ["--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["videos"] == []
    assert [v["video_id"] for v in report["already_done"]] == [stale.todo[0].video_id]

"""`vidindex index` and `vidindex status` end to end: real local Ray (2 indexing actors), real
LanceDB, real synthetic videos with bad ones among them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.run.conftest import index_args
from tests.run.tables import table_rows, videos_by_name
from vidindex.cli.main import main

QUESTION = "What colour is the background?"


@pytest.fixture(scope="module")
def first_run(ray_cluster, tiny_model_dir, videos, tmp_path_factory, capsys_module):
    """One run over a manifest (good1, broken) plus direct paths (good2, notvideo), with --json."""
    work = tmp_path_factory.mktemp("cli")
    manifest = work / "list.txt"
    rel = os.path.relpath(videos["good1"], work)
    manifest.write_text(f"# videos to index\n{rel}\n\n{videos['broken']}\n")
    db, parquet = work / "db", work / "parquet"
    args = index_args(db, tiny_model_dir, str(manifest), videos["good2"], videos["notvideo"],
                      extra=["--parquet", str(parquet), "--question", QUESTION, "--streams-per-gpu", "2", "--json"])
    code = main(args)
    out = capsys_module.readouterr().out
    return {"code": code, "report": json.loads(out), "db": str(db), "parquet": str(parquet), "args": args}


@pytest.fixture(scope="module")
def capsys_module():
    """capsys for a module-scoped fixture: captures stdout/stderr of main() into a buffer."""
    import contextlib
    import io

    class Capture:
        def __init__(self):
            self.out, self.err = io.StringIO(), io.StringIO()

        def readouterr(self):
            result = type("Captured", (), {"out": self.out.getvalue(), "err": self.err.getvalue()})
            self.out.seek(0), self.out.truncate(), self.err.seek(0), self.err.truncate()
            return result

    capture = Capture()
    with contextlib.redirect_stdout(capture.out), contextlib.redirect_stderr(capture.err):
        yield capture


def test_run_indexes_good_videos_and_lists_bad_ones(first_run):
    report = first_run["report"]
    assert first_run["code"] == 0  # finished, although two videos failed
    by_name = {Path(v["uri"]).stem: v for v in report["videos"]}
    assert set(by_name) == {"good1", "good2", "broken", "notvideo"}
    assert by_name["good1"]["status"] == by_name["good2"]["status"] == "done"
    assert by_name["broken"]["status"] == "failed" and by_name["broken"]["error"].startswith("VideoTruncated")
    assert by_name["notvideo"]["status"] == "failed" and by_name["notvideo"]["error"].startswith("NotAVideo")
    assert report["counts"] == {"done": 2, "failed": 2, "already_done": 0}
    assert report["actors"] == 2 and report["gpus_per_actor"] == 1.0
    assert len({v["pid"] for v in report["videos"]}) == 2  # both actors took a batch
    assert report["totals"]["covered_s"] >= 105  # 60 s + 45 s of good video, plus part of the broken one


def test_tables_hold_every_row_once(first_run):
    db = first_run["db"]
    videos = videos_by_name(db)
    assert {name: row["status"] for name, row in videos.items()} == {
        "good1": "done", "good2": "done", "broken": "failed", "notvideo": "failed"}
    for name, seconds in (("good1", 60), ("good2", 45)):
        vid = videos[name]["video_id"]
        captions = [r for r in table_rows(db, "captions") if r[0] == vid]
        ends = [r[2] for r in captions]
        assert ends == [t * 1000 for t in range(10, seconds + 1, 10)] + ([seconds * 1000] if seconds % 10 else [])
        assert all(r[4] for r in captions)
        answers = [r for r in table_rows(db, "answers") if r[0] == vid]
        assert [r[3] for r in answers] == ends and {r[4] for r in answers} == {QUESTION}
        snapshots = [r[2] for r in table_rows(db, "snapshots") if r[0] == vid]
        assert snapshots == [t * 1000 for t in range(20, seconds + 1, 20)] + ([seconds * 1000] if seconds % 20 else [])
    keys = table_rows(db, "captions", ("video_id", "config_id", "t_end_ms"))
    assert len(keys) == len(set(keys))


def test_parquet_copy_matches_tables(first_run):
    videos = videos_by_name(first_run["db"])
    vid, cfg = videos["good1"]["video_id"], videos["good1"]["config_id"]
    table = pq.read_table(Path(first_run["parquet"]) / "captions" / cfg / f"{vid}.parquet")
    assert sorted(table.column("t_end_ms").to_pylist()) == list(range(10_000, 60_001, 10_000))


def test_status_reports_done_and_failed(first_run, capsys):
    assert main(["status", "--db", first_run["db"], "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == {"done": 2, "failed": 2, "partial": 0}
    failed = {Path(v["uri"]).stem: v["error"] for v in status["videos"] if v["status"] == "failed"}
    assert failed["broken"].startswith("VideoTruncated") and failed["notvideo"].startswith("NotAVideo")
    assert main(["status", "--db", first_run["db"]]) == 0
    text = capsys.readouterr().out
    assert "2 done, 2 failed, 0 partial" in text and "VideoTruncated" in text


def test_rerun_from_another_driver_skips_done_videos(first_run, ray_cluster):
    """The console script as a second driver on the same cluster (--ray-address): done videos
    are skipped, failed ones tried again, no row is duplicated."""
    before = {table: table_rows(first_run["db"], table) for table in ("captions", "answers", "snapshots")}
    args = [a for a in first_run["args"] if a != "--json"] + ["--ray-address", ray_cluster.address_info["address"]]
    done = subprocess.run([sys.executable, "-m", "vidindex.cli", *args], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "0 done, 2 failed, 2 already indexed" in done.stdout
    assert "failed: " in done.stdout and "VideoTruncated" in done.stdout
    for table, rows in before.items():
        assert table_rows(first_run["db"], table) == rows


def test_query_commands_read_what_the_run_wrote(first_run, capsys):
    db = first_run["db"]
    word = table_rows(db, "captions")[0][4].split()[0]
    assert main(["search", word, "--db", db, "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits and any(word in hit["text"].split() for hit in hits)
    good1 = videos_by_name(db)["good1"]["video_id"]
    assert main(["ask", good1, "--at", "00:00:30", "What is happening?", "--db", db, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["snapshot_t"] == 20.0 and answer["as_of"] == 30.0

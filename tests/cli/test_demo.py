"""`vidindex demo` end to end (shorter sample videos than the default, same steps)."""

from __future__ import annotations

import io
import json
import re

from tests.run.tables import videos_by_name
from vidindex.cli.main import main
from vidindex.cli.demo import run_demo


def test_demo_indexes_samples_then_checks_searches_and_asks(ray_cluster, tmp_path, capsys):
    out = io.StringIO()
    assert run_demo(tmp_path / "demo", seconds=40, out=out) == 0
    text = out.getvalue()
    assert "self-test model" in text and "RANDOM" not in text and "--model hustvl/InfiniteVL-LongSFT" in text
    assert "selftest-model" in text  # the model it indexed with, shipped in the package
    assert "2 done, 1 failed, 0 already indexed" in text and "VideoTruncated" in text  # the broken sample
    assert "2 done, 1 failed, 0 partial" in text  # the status table
    # The trained model's captions name the scenes the samples show (measured: all of them).
    right, captions = map(int, re.search(r"(\d+) of (\d+) captions", text).groups())
    assert captions >= 8 and right >= 0.8 * captions
    first_hit = text.split("search '", 1)[1].splitlines()[1]
    assert first_hit.endswith(" on screen") and "not on screen" not in first_hit
    assert "answer as of 20 s" in text and text.count("(right)") >= 1  # ask as of 20 s: now and the first shape
    assert "vidindex status --db " in text
    assert text.rstrip().splitlines()[-1].strip() == f"vidindex serve --db {tmp_path / 'demo' / 'db'}"  # the last word
    rows = videos_by_name(str(tmp_path / "demo" / "db"))
    assert {name: row["status"] for name, row in rows.items()} == {"shapes1": "done", "shapes2": "done",
                                                                   "broken": "failed"}
    assert list((tmp_path / "demo" / "parquet" / "captions").glob("*/*.parquet"))
    assert main(["status", "--db", str(tmp_path / "demo" / "db")]) == 0
    capsys.readouterr()
    # The re-run command the demo prints indexes with the same config: nothing done twice.
    demo = tmp_path / "demo"
    assert f"vidindex index {demo / 'videos'} --config {demo / 'index.yaml'}" in text
    assert main(["index", str(demo / "videos"), "--config", str(demo / "index.yaml"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"done": 0, "failed": 1, "already_done": 2}  # the broken one is tried again

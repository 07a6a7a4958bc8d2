"""Ray job entrypoints: the one-off index job and the nightly incremental job with its run lock."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.run.conftest import FAST

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def load_job(name: str):
    spec = importlib.util.spec_from_file_location(name, JOBS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nightly = load_job("nightly_job")


@pytest.mark.parametrize("where", ["local", "memory"])
def test_run_lock_is_exclusive_until_released(tmp_path, where):
    uri = str(tmp_path / "locks" / "nightly.lock") if where == "local" else f"memory://locks-{time.time_ns()}/n.lock"
    first, second = nightly.RunLock(uri), nightly.RunLock(uri)
    assert first.acquire()
    assert not second.acquire()
    assert second.holder()["run"] == first.token["run"]
    second.release()  # not its lock: nothing happens
    assert first.holder() is not None
    first.release()
    assert first.holder() is None and second.acquire()


def test_stale_lock_is_taken_over(tmp_path):
    uri = str(tmp_path / "nightly.lock")
    Path(uri).write_text(json.dumps({"run": "crashed", "time": time.time() - 3 * 3600}))
    assert not nightly.RunLock(uri, ttl_hours=4).acquire()
    lock = nightly.RunLock(uri, ttl_hours=2)
    assert lock.acquire() and lock.holder()["run"] == lock.token["run"]


def test_nightly_run_skips_while_another_holds_the_lock(tmp_path, tiny_model_dir, videos, capsys):
    db = tmp_path / "db"
    holder = nightly.RunLock(str(db / "_vidindex" / "nightly.lock"))
    assert holder.acquire()
    assert nightly.main([videos["good1"], "--db", str(db), "--model", tiny_model_dir, *FAST]) == 0
    assert f"another nightly run holds {db}/_vidindex/nightly.lock" in capsys.readouterr().err
    assert not (db / "videos.lance").exists()  # nothing was indexed
    holder.release()


def test_nightly_runs_index_only_new_videos(ray_cluster, tmp_path, tiny_model_dir, videos, capsys):
    db = tmp_path / "db"
    assert nightly.main([videos["good2"], "--db", str(db), "--model", tiny_model_dir, *FAST]) == 0
    assert "1 done, 0 failed, 0 already indexed" in capsys.readouterr().out
    last = json.loads((db / "_vidindex" / "last_run.json").read_text())
    assert last["exit_code"] == 0 and not (db / "_vidindex" / "nightly.lock").exists()
    assert nightly.main([videos["good2"], "--db", str(db), "--model", tiny_model_dir, *FAST]) == 0
    assert "0 done, 0 failed, 1 already indexed" in capsys.readouterr().out


def test_index_job_passes_its_arguments_to_vidindex_index(tmp_path):
    done = subprocess.run([sys.executable, str(JOBS / "index_job.py"), str(tmp_path / "*.mp4"), "--db",
                           str(tmp_path / "db")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and "no files match" in done.stderr  # 3: nothing indexed (no video yet)

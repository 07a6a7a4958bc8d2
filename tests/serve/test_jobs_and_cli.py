"""Ask-archive jobs without Ray (the job keeper with a stand-in for the model replicas), and
`vidindex serve` as a user runs it: refusals at once, then a real run in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.serve.conftest import free_port
from vidindex.cli.main import main
from vidindex.query.archive import answer_batch
from vidindex.serve.jobs import JobBook


def test_an_equal_job_while_one_is_queued_or_running_is_that_job(service):
    release = threading.Event()
    batches_seen = []

    def answer_batches(batches, question):
        release.wait(60)
        for batch in batches:
            batches_seen.append(len(batch))
            yield answer_batch(batch, question, "cpu")

    book = JobBook(service.db, answer_batches)
    first, new = book.submit("Is it snowing?")
    second, again = book.submit("Is it snowing?")
    other, _ = book.submit("Is it snowing?", force=True)
    assert new and not again and second["id"] == first["id"] and other["id"] != first["id"]
    release.set()
    deadline = time.monotonic() + 120
    while any(book.get(j["id"])["state"] not in ("done", "failed") for j in (first, other)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    done = book.get(first["id"])
    assert done["state"] == "done" and (done["done"], done["total"]) == (3, 3)
    assert book.get(other["id"])["result"]["written"] == 3  # force asks again, over the same keys
    assert book.get("nope") is None and [j["id"] for j in book.list()] == [other["id"], first["id"]]


@pytest.mark.parametrize("argv,named", [
    (["--host", "0.0.0.0"], "give a token"),
    (["--host", "0.0.0.0", "--token", "short"], "too short"),
    (["--port", "70000"], "not a TCP port"),
])
def test_serve_refuses_at_once(service, capsys, monkeypatch, argv, named):
    monkeypatch.delenv("VIDINDEX_TOKEN", raising=False)
    assert main(["serve", "--db", service.db, *argv]) == 2
    assert named in capsys.readouterr().err


def test_serve_needs_an_index(tmp_path, capsys):
    assert main(["serve", "--db", str(tmp_path / "nothing")]) == 2
    assert "no vidindex database" in capsys.readouterr().err


def test_vidindex_serve_runs_until_interrupted(service, tiny_dir, tmp_path):
    """The command a user types: its own local Ray, a JSON object once ready, a clean stop on Ctrl-C;
    the model read from a copy of the checkpoint (--model)."""
    copy = shutil.copytree(tiny_dir, tmp_path / "checkpoint-copy")
    port = free_port()
    env = {**os.environ, "VIDINDEX_TOKEN": "a-token-from-the-environment"}
    env.pop("RAY_ADDRESS", None)
    process = subprocess.Popen([sys.executable, "-m", "vidindex.cli", "serve", "--db", service.db, "--port", str(port),
                                "--model", str(copy), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, cwd=tmp_path)
    try:
        lines = []
        for line in process.stdout:  # the JSON object, indented, ends with "}" alone
            lines.append(line)
            if line.rstrip() == "}":
                break
        ready = json.loads("".join(lines))
        assert ready["url"] == f"http://127.0.0.1:{port}/" and ready["token"] is True
        assert ready["device"] == "cpu" and ready["models"][0]["dtype"] == "float32"
        assert ready["models"][0]["checkpoint"] == str(copy) and ready["models"][0]["model"] == str(tiny_dir)
        import httpx

        with httpx.Client(base_url=ready["url"], timeout=60) as client:
            assert client.get("api/videos").status_code == 401
            auth = {"Authorization": "Bearer a-token-from-the-environment"}
            videos = client.get("api/videos", headers=auth)
            assert videos.status_code == 200 and len(videos.json()) == 4
            asked = client.post(f"api/videos/{service.video_ids['cam1.mp4']}/ask", headers=auth,
                                json={"question": "What is happening?", "at": 3})
            assert asked.status_code == 200 and asked.json()["as_of"] == 3.0
    finally:
        process.send_signal(signal.SIGINT)
        try:
            _, err = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, err[-2000:]
    assert "a-token-from-the-environment" not in err


def test_the_api_schema_of_a_job_has_every_field_the_keeper_reports():
    """The keeper's job (serve/jobs.py) and its API schema (serve/api.py, with field docs for /docs)
    are two definitions: a field added to one alone would be dropped from responses silently."""
    from dataclasses import fields

    from vidindex.serve import api, jobs

    assert set(api.Job.model_fields) == {f.name for f in fields(jobs.Job)} | {"new"}

"""A secret in the environment (AWS_SECRET_ACCESS_KEY), in the storage options and in URIs
(s3://KEY:SECRET@bucket/...) never shows in logs, errors, the tables, the Parquet copy, the
snapshot blobs or the command line's output, through a run over S3 that works and runs that fail
because of those URIs."""

from __future__ import annotations

import json
import logging
import struct
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from tests.reliability.conftest import engine_for, make_config
from vidindex.cli.main import main
from vidindex.store import Store

SECRET = f"rel-S3CRET-{uuid.uuid4().hex}"
QUESTION = "What colour is the shape?"


@dataclass
class LeakRun:
    bucket: str
    key: str
    db: str  # the database URI as a user gave it, credentials in it
    good_id: str
    logs: str
    errors: list[str]  # results' errors and the errors of the runs that failed
    results: list
    events: list[tuple[str, dict]]
    lance_options: dict
    fs_options: dict


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))  # tracebacks included
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture(scope="module")
def leaky(s3):
    """The environment a deployment gives: credentials (the secret among them) and the endpoint."""
    s3.start()
    with pytest.MonkeyPatch.context() as env:
        for name, value in {"AWS_ACCESS_KEY_ID": s3.KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1",
                            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3.endpoint,
                            "AWS_ENDPOINT": s3.endpoint, "AWS_ALLOW_HTTP": "true"}.items():
            env.setenv(name, value)
        yield s3


@pytest.fixture(scope="module")
def leak_run(leaky, tiny_checkpoint, tiny_model, videos) -> LeakRun:
    s3 = leaky
    bucket = s3.new_bucket()
    s3.client().put_object(Bucket=bucket, Key="cam.mp4", Body=Path(videos["b"]).read_bytes())
    fs_options = {**s3.fs_options(attempts=2), "secret": SECRET}  # the secret in explicit options too
    lance_options = {**s3.lance_options(retries=1, retry_timeout_s=2), "aws_secret_access_key": SECRET}
    db = f"s3://{s3.KEY}:{SECRET}@{bucket}/db"  # LanceDB reads the bucket and ignores what is before '@'
    logs, root = _Collect(), logging.getLogger()
    saved_level = root.level
    root.addHandler(logs)
    root.setLevel(logging.INFO)
    logging.getLogger("vidindex").setLevel(logging.DEBUG)
    events = []
    try:
        # 1. An S3 video indexed over S3, next to the same object named with the credentials in
        #    its URI (s3fs reads "KEY:SECRET@bucket" as a bucket name and fails) and a missing one.
        config = make_config(tiny_checkpoint, db, snapshot_uri=f"s3://{bucket}/snapshots",
                             parquet_uri=f"s3://{bucket}/lake")
        sources = [f"s3://{bucket}/cam.mp4", f"s3://{s3.KEY}:{SECRET}@{bucket}/cam.mp4", f"s3://{bucket}/missing.mp4"]
        results = engine_for(config, tiny_model, lance_options=lance_options, fs_options=fs_options,
                             on_event=lambda kind, payload: events.append((kind, payload))).index(sources)
        assert [r.status for r in results] == ["done", "failed", "failed"]
        # 2. Snapshots sent to a URI with the credentials in it: the video fails at its first one.
        bad_root = make_config(tiny_checkpoint, db, snapshot_uri=f"s3://{s3.KEY}:{SECRET}@{bucket}/snaps")
        [failed] = engine_for(bad_root, tiny_model, lance_options=lance_options, fs_options=fs_options,
                              on_event=lambda kind, payload: events.append((kind, payload))).index([videos["a"]])
        assert failed.status == "failed" and "cannot write snapshot blob" in failed.error
        results.append(failed)
    finally:
        root.removeHandler(logs)
        root.setLevel(saved_level)
        logging.getLogger("vidindex").setLevel(logging.NOTSET)
    return LeakRun(bucket=bucket, key=s3.KEY, db=db, good_id=results[0].video_id, logs="\n".join(logs.lines),
                   errors=[r.error for r in results if r.error], results=results, events=events,
                   lance_options=lance_options, fs_options=fs_options)


def safetensors_header(data: bytes) -> dict:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length])


def test_no_secret_in_logs_errors_tables_or_blobs(leaky, leak_run):
    run = leak_run
    assert "cannot write snapshot blob s3://" in run.logs  # the failures were logged...
    assert any("***@" + run.bucket in error for error in run.errors)  # ...and their errors say what was masked
    for where, text in [("logs", run.logs), ("errors", "\n".join(run.errors)),
                        ("events", repr([(k, {n: v for n, v in p.items() if n != "uri"}) for k, p in run.events]))]:
        assert SECRET not in text, where

    store = Store(run.db, create=False, lance_options=run.lance_options)
    assert store.uri == f"s3://{run.bucket}/db"
    rows = {table: store.rows(table).to_pylist() for table in ("videos", "captions", "answers", "snapshots")}
    assert len(rows["videos"]) == 4 and rows["snapshots"]
    assert {row["uri"] for row in rows["videos"]} >= {f"s3://{run.bucket}/cam.mp4"}
    assert SECRET not in repr(rows)

    objects = leaky.objects(run.bucket)  # every byte stored: tables (LanceDB files), Parquet copy, blobs
    blobs = {key: data for key, data in objects.items() if key.endswith(".safetensors")}
    assert blobs and any(key.startswith("lake/") for key in objects)
    for key, data in blobs.items():
        header = safetensors_header(data)
        assert SECRET not in json.dumps(header), key
    for key, data in objects.items():
        assert SECRET.encode() not in data, key


def test_no_secret_in_command_line_output(leaky, leak_run, capsys):
    run = leak_run
    missing = f"s3://{run.key}:{SECRET}@no-such-bucket-{uuid.uuid4().hex[:8]}/db"
    commands = [
        (["status", "--db", run.db], 0),
        (["search", "shape", "--db", run.db, "--json"], 0),
        # at a snapshot: reads its blob from S3, decodes nothing (the replay's decoder processes
        # may have started before this module set the environment)
        (["ask", run.good_id, "--at", "10", QUESTION, "--db", run.db], 0),
        (["ask", run.good_id, "--at", "5", QUESTION, "--db", missing], 2),
        (["search", "shape", "--db", missing], 2),
    ]
    capsys.readouterr()
    for argv, code in commands:
        assert main(argv) == code, argv
        out = capsys.readouterr()
        assert SECRET not in out.out + out.err, argv
        if code == 0:
            assert out.out.strip(), argv
        else:
            assert "s3://no-such-bucket-" in out.err, out.err  # the database, named without its credentials


def test_results_and_events_name_videos_without_credentials(leak_run):
    uris = [r.uri for r in leak_run.results] + [p.get("uri", "") for _, p in leak_run.events]
    assert SECRET not in repr(uris)
    assert SECRET not in repr([asdict(r) for r in leak_run.results])

"""Upkeep (vidindex.store.upkeep, `vidindex maintain`): every commit adds a table version; maintain
compacts and prunes them without losing a row or a referenced blob, deletes old orphan blobs,
keeps young ones (an indexer may be about to commit them), and a second maintain changes nothing.
Real LanceDB on disk, real committer calls."""

from __future__ import annotations

import hashlib
import json
import os
import time
from datetime import timedelta

import pytest

from tests.store.store_rows import CONFIG, VIDEO, answer, caption, checkpoint, video_row
from vidindex.cli.main import main
from vidindex.query.search import search
from vidindex.store import Committer, Store, StoreError, get_embedder, snapshot_blob_uri
from vidindex.store.upkeep import maintain

COMMITS = 20
# Versions older than this go. The commits are aged past it with a sleep; the versions
# maintain itself writes (compaction) stay younger than it during the test.
KEEP = timedelta(seconds=3)
TWO_HOURS_AGO = time.time() - 7200
PLANTED = "a red balloon drifts over the harbor"


@pytest.fixture(scope="module")
def embedder():
    return get_embedder()


@pytest.fixture
def paths(tmp_path):
    return {"db": str(tmp_path / "db"), "snapshots": str(tmp_path / "snapshots")}


@pytest.fixture
def committer(paths, embedder):
    return Committer(paths["db"], paths["snapshots"], store=Store(paths["db"], embedder=embedder))


def _age(path: str, when: float = TWO_HOURS_AGO) -> str:
    os.utime(path, (when, when))
    return path


def _blob(root: str, video_id: str, t_ms: int, data: bytes) -> str:
    """A blob file at the place write_snapshot_blob gives these bytes (never committed)."""
    return _file(snapshot_blob_uri(root, video_id, CONFIG, t_ms, hashlib.sha256(data).hexdigest()), data)


def _file(path: str, data: bytes) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as file:
        file.write(data)
    return path


@pytest.fixture
def archive(committer, paths):
    """COMMITS checkpoints of one video (a caption, an answer, a snapshot each), then orphans:
    an old blob and temp file, an old blob named as before blob names held their hash, a young
    blob and temp file, an old blob of a stream this database does not know; one referenced blob
    is made old too. Everything is older than KEEP."""
    committer.start_video(video_row(duration_s=COMMITS * 30.0))
    blobs = []
    for k in range(COMMITS):
        text = PLANTED if k == 7 else None
        snapshot = checkpoint(committer, 30 * (k + 1), os.urandom(64) + bytes([k]),
                              {"captions": [caption(k, text)], "answers": [answer("people", 30_000 * (k + 1))]},
                              frames_seen=k + 1)
        blobs.append(snapshot["uri"])
    root = paths["snapshots"]
    folder = os.path.dirname(blobs[0])
    files = {
        "old_orphan": _age(_blob(root, VIDEO, 9_990_000, b"o" * 500)),
        "old_temp": _age(_file(f"{folder}/.0009995000-{'c' * 16}.safetensors.tmp-{'a' * 32}", b"t" * 300)),
        "old_unhashed_orphan": _age(_file(f"{folder}/0009980000.safetensors", b"p" * 200)),
        "young_orphan": _blob(root, VIDEO, 9_999_000, b"y" * 100),
        "young_temp": _file(f"{folder}/.0009999500-{'d' * 16}.safetensors.tmp-{'b' * 32}", b"y" * 100),
        "unknown_stream": _age(_blob(root, "other-video", 30_000, b"u" * 100)),
        "old_referenced": _age(blobs[0]),
    }
    time.sleep(KEEP.total_seconds() + 0.3)
    return {"blobs": blobs, "files": files}


def test_maintain_prunes_versions_and_old_orphans_and_keeps_every_row(archive, committer, paths, embedder):
    figures = maintain(paths["db"], paths["snapshots"], keep_versions_for=KEEP)

    assert figures["errors"] == []
    tables = figures["tables"]
    assert tables["captions"]["versions_before"] > COMMITS  # a version per commit (plus the table's creation)
    for name, t in tables.items():
        assert t["versions_after"] <= 3 < t["versions_before"], (name, t)  # the latest, and compaction's own
        assert t["bytes_after"] < t["bytes_before"], (name, t)
    assert {name: t["rows"] for name, t in tables.items()} == {
        "videos": 1, "captions": COMMITS, "answers": COMMITS, "snapshots": COMMITS}

    files = archive["files"]
    for deleted in ("old_orphan", "old_temp", "old_unhashed_orphan"):
        assert not os.path.exists(files[deleted]), deleted
    for kept in ("young_orphan", "young_temp", "unknown_stream", "old_referenced"):
        assert os.path.exists(files[kept]), kept
    assert figures["blobs"] == {"listed": COMMITS + 6, "referenced": COMMITS, "deleted": 3, "bytes_freed": 1000,
                                "young_kept": 2, "unknown_stream": 1, "other_files": 0}

    reader = Store(paths["db"], create=False, embedder=embedder)  # another process's view
    assert reader.count("captions") == COMMITS and reader.count("answers") == COMMITS
    assert {caption["t_end_ms"] for caption in reader.rows("captions").to_pylist()} == {
        30_000 * (k + 1) for k in range(COMMITS)}
    for row in reader.snapshots(VIDEO, CONFIG):  # every committed snapshot still loads and verifies
        assert reader.load_snapshot(row)
    assert reader.latest_snapshot(VIDEO, CONFIG)["uri"] == archive["blobs"][-1]
    for mode in ("fts", "vector"):
        hits = search(reader, "red balloon harbor", mode=mode, limit=3).hits
        assert hits and hits[0].text == PLANTED and hits[0].t_end == 240.0, mode
    stats = {i.name: reader.table("captions").index_stats(i.name) for i in reader.table("captions").list_indices()}
    assert all(s.num_unindexed_rows == 0 for s in stats.values())  # new rows folded into the index

    versions = {name: committer.store.table(name).version for name in tables}
    again = maintain(paths["db"], paths["snapshots"], keep_versions_for=KEEP)
    assert again["errors"] == [] and again["indexes"] == {}
    for name, t in again["tables"].items():
        assert (t["versions_after"], t["bytes_after"]) == (t["versions_before"], t["bytes_before"]), name
        assert t["versions_before"] == tables[name]["versions_after"]
        assert committer.store.table(name).version == versions[name]  # nothing new committed
    assert again["blobs"]["deleted"] == 0 and again["blobs"]["bytes_freed"] == 0


def test_young_versions_are_kept_for_concurrent_readers(committer, paths):
    """With the default age (an hour), nothing a running reader or writer may still use goes."""
    committer.start_video(video_row())
    for k in range(5):
        checkpoint(committer, 30 * (k + 1), b"state", {"captions": [caption(k)]}, frames_seen=k + 1)
    reader = Store(paths["db"], create=False).table("captions")
    reader.checkout(4)  # a reader pinned to an old version (a query in flight)
    figures = committer.maintain()
    assert figures["errors"] == []
    for name, t in figures["tables"].items():
        assert t["versions_after"] >= t["versions_before"], name  # compaction may add one; none removed
    assert reader.count_rows() == 2 and len(reader.search().limit(None).to_list()) == 2  # its files are there


def test_maintain_refuses_a_zero_age(committer, paths):
    with pytest.raises(StoreError, match="keep_versions_for must be a positive duration"):
        maintain(paths["db"], paths["snapshots"], keep_versions_for=timedelta(0))
    with pytest.raises(StoreError, match="orphan_age must be a positive duration"):
        maintain(paths["db"], paths["snapshots"], orphan_age=timedelta(0))


def test_cli_prints_what_it_did_and_exits_0(archive, paths, capsys):
    args = ["maintain", "--db", paths["db"], "--snapshots", paths["snapshots"], "--keep-versions", "3s"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "captions" in out and "versions before" in out
    assert "3 orphans deleted (1000 B freed); 2 younger than 1h kept" in out
    assert main(args + ["--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["blobs"]["deleted"] == 0 and figures["tables"]["captions"]["rows"] == COMMITS


def test_cli_on_a_missing_database_fails_clearly(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    assert main(["maintain", "--db", missing]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"vidindex maintain: error: no vidindex database at {missing}: the directory does not exist"
    assert not os.path.exists(missing)  # maintain never creates a database


def test_cli_refuses_a_bad_age(paths, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["maintain", "--db", paths["db"], "--orphan-age", "0"])
    assert exit_info.value.code == 2
    assert "invalid age '0'" in capsys.readouterr().err


def test_the_committer_compacts_the_tables_during_a_long_run(paths, embedder):
    """Small files stay few while commits go on (upserts slow down with their number), rows all kept."""
    def fragments(committer, table):
        return committer.store.table(table).stats()["fragment_stats"]["num_fragments"]

    runs = {}
    for name, every in (("compacting", 5), ("never", 10_000)):
        committer = Committer(paths["db"] + name, paths["snapshots"] + name, compact_every=every,
                              store=Store(paths["db"] + name, embedder=embedder))
        committer.start_video(video_row(duration_s=12 * 30.0))
        for k in range(12):
            checkpoint(committer, 30 * (k + 1), bytes([k]) * 64,
                       {"captions": [caption(k)], "answers": [answer("people", 30_000 * (k + 1))]}, frames_seen=k + 1)
        runs[name] = committer
    assert fragments(runs["never"], "captions") >= 12
    assert fragments(runs["compacting"], "captions") <= 5  # about one per commit since the last compaction
    for table in ("captions", "answers", "snapshots"):
        assert runs["compacting"].store.count(table) == runs["never"].store.count(table) == 12

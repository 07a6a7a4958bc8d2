"""A committed snapshot blob deleted or damaged afterwards. Its sha256 (or size) no longer matches
its snapshots row: resuming a video and asking it as of T both say so, naming the blob, and start
from the snapshot before it; the resumed run rewrites the blob and the answer is the same."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.query.test_ask import assert_states
from tests.reliability.conftest import (assert_every_snapshot_loads, assert_no_duplicate_keys, assert_same_tables,
                                        make_config)
from vidindex.cli.main import main
from vidindex.index.engine import Engine
from vidindex.query import ask_at, stream_as_of
from vidindex.store import Store

QUESTION = "What colour is the shape?"


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the engine catches it."""


def damage(blob: Path, how: str) -> None:
    if how == "deleted":
        blob.unlink()
    else:  # one byte of the tensors flipped: the file still loads, only its sha256 tells
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))


PROBLEM = {"deleted": "is missing", "corrupted": "has sha256"}


@pytest.mark.parametrize("how", ["deleted", "corrupted"])
def test_resume_passes_over_a_lost_or_damaged_blob(how, tmp_path, tiny_checkpoint, tiny_model, videos, reference,
                                                    caplog):
    config = make_config(tiny_checkpoint, tmp_path / "db")

    def crash_after_the_snapshot_at_20s(kind, payload):
        if kind == "checkpoint" and payload["t_s"] == 20.0:
            raise Crash()

    with pytest.raises(Crash):  # every write stops at the crash
        Engine(config, model=tiny_model, on_event=crash_after_the_snapshot_at_20s).index([videos["a"]])
    store = Store(config.db_uri, create=False)
    video_id = reference.video_ids["a"]
    latest = store.latest_snapshot(video_id, config.config_id)
    assert (store.get_video(video_id, config.config_id)["status"], latest["t_ms"]) == ("partial", 20000)
    blob = latest["uri"]
    damage(Path(blob), how)

    [result] = Engine(config, model=tiny_model).index([videos["a"]])

    assert (result.status, result.resumed_from_s, result.frames) == ("done", 10.0, 14)  # frames at 11..24 s
    assert f"video {video_id}: snapshot blob {blob} {PROBLEM[how]}" in caplog.text
    assert "falling back to the snapshot before it" in caplog.text
    # The rows after 10 s were computed again under the same keys and the blob at 20 s rewritten:
    # bit for bit the tables of a run that never stopped.
    assert_same_tables(store, reference, "a")
    assert_no_duplicate_keys(store)
    assert_every_snapshot_loads(store)


def test_ask_falls_back_past_lost_or_damaged_blobs(tmp_path, tiny_checkpoint, tiny_model, videos, caplog, capsys):
    config = make_config(tiny_checkpoint, tmp_path / "db")
    [indexed] = Engine(config, model=tiny_model).index([videos["a"]])
    db, video_id = config.db_uri, indexed.video_id
    snapshots = Store(db, create=False).snapshots(video_id, config.config_id)
    blobs = {row["t_ms"] // 1000: Path(row["uri"]) for row in snapshots}
    assert sorted(blobs) == [10, 20, 25]
    intact = {at: (stream_as_of(db, video_id, at)[0], ask_at(db, video_id, at, QUESTION).answer) for at in (22, "end")}

    def check(at, snapshot_t, replayed, passed_over):
        stream, as_of = stream_as_of(db, video_id, at)
        assert (as_of.snapshot_t, as_of.frames_replayed) == (snapshot_t, replayed)
        assert_states(stream, intact[at][0], exact=False)  # the same state, reached from further back
        answer = ask_at(db, video_id, at, QUESTION)
        assert answer.answer == intact[at][1]
        for t, problem in passed_over:
            assert f"snapshot of video {video_id!r} at 00:00:{t} is unusable: snapshot blob {blobs[t]} {problem}" \
                in answer.as_of.note
        start = "the start of the video" if snapshot_t is None else f"the snapshot at 00:00:{int(snapshot_t):02d}"
        assert answer.as_of.note.endswith(f"answered from {start} instead, replaying {replayed} frames")
        return answer

    damage(blobs[20], "corrupted")
    check(22, 10.0, 12, [(20, "has sha256")])  # frames at 11..22 s
    assert f"at 00:00:20 is unusable: snapshot blob {blobs[20]} has sha256" in caplog.text
    assert "falling back to the snapshot at 00:00:10" in caplog.text

    damage(blobs[25], "deleted")  # the end state too: "end" passes over both
    check("end", 10.0, 14, [(25, "is missing"), (20, "has sha256")])

    damage(blobs[10], "deleted")  # none left: the whole video is replayed
    check(22, None, 23, [(20, "has sha256"), (10, "is missing")])

    # The command line shows the note with the answer.
    capsys.readouterr()
    assert main(["ask", video_id, "--at", "22", QUESTION, "--db", db]) == 0
    out = capsys.readouterr().out
    assert f"A: {intact[22][1]}" in out and "note" in out and str(blobs[20]) in out

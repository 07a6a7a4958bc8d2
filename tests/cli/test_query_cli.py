"""The search / ask / ask-archive subcommands, run in-process from parsed arguments."""

import argparse
import json
import shlex

import pytest

from vidindex.cli.query import add_ask_archive_parser, add_ask_parser, add_search_parser

from .conftest import PLANTED


@pytest.fixture(scope="module")
def parser():
    parser = argparse.ArgumentParser(prog="vidindex")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for add in (add_search_parser, add_ask_parser, add_ask_archive_parser):
        add(subparsers)
    return parser


def run(parser, capsys, *argv):
    args = parser.parse_args([str(a) for a in argv])
    code = args.run(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_search_table(parser, capsys, archive):
    code, out, err = run(parser, capsys, "search", "balloon harbor", "--db", archive.db, "--limit", 3)
    assert code == 0 and not err
    lines = out.splitlines()
    assert lines[0] == f"3 hits for 'balloon harbor' (hybrid) in {archive.db}"
    assert lines[1].split() == ["#", "score", "video", "from", "to", "kind", "text"]
    assert set(lines[2]) == {"-", " "}  # the header's rule
    assert lines[3].split()[:6] == ["1", "0.0328", "cam0.mp4", "00:00:04", "00:00:06", "caption"]
    assert PLANTED["balloon"][2] in lines[3]
    assert lines[4].strip() == f"$ vidindex ask {archive.video_ids['cam0.mp4']} --at 00:00:06 'What is happening?' --db {archive.db}"


def test_search_json_and_filters(parser, capsys, archive):
    code, out, _ = run(parser, capsys, "search", "delivery truck", "--db", archive.db, "--mode", "fts",
                       "--video", archive.video_ids["cam1.mp4"], "--from", "00:00:07", "--to", "8", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["mode"] == "fts" and result["query"] == "delivery truck"
    hit = result["hits"][0]
    assert {k: hit[k] for k in ("source", "video_id", "uri", "t_start", "t_end", "text")} == {
        "source": "caption", "video_id": archive.video_ids["cam1.mp4"], "uri": archive.uris["cam1.mp4"],
        "t_start": 6.0, "t_end": 8.0, "text": PLANTED["truck"][2]}
    assert hit["score"] > 0 and hit["ask_command"].startswith("vidindex ask ")


def test_ask_line_of_a_hit_runs(parser, capsys, archive):
    _, out, _ = run(parser, capsys, "search", "sandcastle beach", "--db", archive.db, "--json",
                    "--ask-question", "Who is on the beach?")
    line = json.loads(out)["hits"][0]["ask_command"]
    argv = shlex.split(line)
    assert argv[:2] == ["vidindex", "ask"] and "Who is on the beach?" in argv
    code, out, err = run(parser, capsys, *argv[1:], "--json")
    assert code == 0 and not err
    answer = json.loads(out)
    assert answer["video_id"] == archive.video_ids["cam2.mp4"]
    assert answer["as_of"] == 4.0 and answer["question"] == "Who is on the beach?"


def test_ask_table(parser, capsys, archive):
    video_id = archive.video_ids["cam0.mp4"]
    code, out, err = run(parser, capsys, "ask", video_id, "What is happening?", "--at", "00:00:06.2",
                         "--db", archive.db)
    assert code == 0 and not err
    lines = out.splitlines()
    assert lines[0] == "Q: What is happening?" and lines[1].startswith("A: ")
    fields = {line.split()[0]: line for line in lines[3:]}
    assert fields["video"].split()[1:] == [video_id, archive.uris["cam0.mp4"]]
    assert fields["as"].split()[2] == "00:00:06.200"
    assert fields["snapshot"].split()[1] == "00:00:04"
    assert fields["replayed"].startswith("replayed  4 frames, last frame at 00:00:06")
    assert "ask" in fields["timings"] and "total" in fields["timings"]
    assert fields["device"].split()[1] == "cpu"


def test_ask_json(parser, capsys, archive):
    video_id = archive.video_ids["cam0.mp4"]
    code, out, _ = run(parser, capsys, "ask", video_id, "What is happening?", "--at", "end", "--db", archive.db,
                       "--json", "--max-new-tokens", "3")
    assert code == 0
    result = json.loads(out)
    assert (result["as_of"], result["snapshot_t"], result["frames_replayed"]) == (10.0, 10.0, 0)
    assert 0 < len(result["answer"].split()) <= 3


def test_ask_archive(parser, capsys, archive):
    question = "Is there a square?"
    code, out, err = run(parser, capsys, "ask-archive", question, "--db", archive.db, "--no-ray")
    assert code == 0 and not err
    lines = out.splitlines()
    assert lines[0].startswith(f"Q: {question}  (question_id adhoc-") and lines[0].endswith("as of the end)")
    assert lines[1].split() == ["video", "video_id", "as", "of", "asked", "answer"]
    assert [line.split()[:4] for line in lines[3:6]] == [
        [f"cam{i}.mp4", archive.video_ids[f"cam{i}.mp4"], "00:00:10", "now"] for i in range(3)]
    assert lines[6].startswith("3 answers: 3 new, 0 stored earlier; 3 rows written; ran on local")
    assert lines[7] == "skipped:"
    assert lines[8].startswith(f"  broken.mp4 ({archive.failed_id}): failed before its first snapshot: NotAVideo")

    code, out, _ = run(parser, capsys, "ask-archive", question, "--db", archive.db)
    assert code == 0 and [line.split()[3] for line in out.splitlines()[3:6]] == ["earlier"] * 3
    code, out, _ = run(parser, capsys, "ask-archive", question, "--db", archive.db, "--json")
    result = json.loads(out)
    assert code == 0 and result["written"] == 0 and result["ran_on"] == "none"
    assert [a["cached"] for a in result["answers"]] == [True] * 3


@pytest.mark.parametrize("argv, message", [
    (["ask", "nope", "q?", "--at", "3"], "vidindex ask: error: unknown video 'nope'"),
    (["ask", "{cam0}", "q?", "--at", "-3"], "vidindex ask: error: --at: invalid time '-3'"),
    (["ask", "{cam0}", "q?", "--at", "12:99"], "vidindex ask: error: --at: invalid time '12:99'"),
    (["ask", "{failed}", "q?", "--at", "1"], "vidindex ask: error: video '{failed}' failed before its first snapshot"),
    (["search", "x", "--where", "nope = 1"], "vidindex search: error: bad --where filter 'nope = 1' on table captions"),
    (["search", "x", "--from", "later"], "vidindex search: error: --from: invalid time 'later'"),
    (["ask-archive", "q?", "--where", "oops oops"], "vidindex ask-archive: error: bad --where filter 'oops oops' on table videos"),
])
def test_bad_input_is_one_clear_line(parser, capsys, archive, argv, message):
    names = {"cam0": archive.video_ids["cam0.mp4"], "failed": archive.failed_id}
    argv = [a.format(**names) for a in argv]
    code, out, err = run(parser, capsys, *argv, "--db", archive.db)
    assert code == 2 and not out  # usage errors
    assert err.startswith(message.format(**names)) and err.count("\n") == 1


def test_unknown_database(parser, capsys, tmp_path):
    code, out, err = run(parser, capsys, "search", "x", "--db", tmp_path / "missing")
    assert code == 2 and err.startswith(f"vidindex search: error: cannot open vidindex database {tmp_path / 'missing'}")


def test_archive_with_a_broken_snapshot_exits_non_zero(parser, capsys, single_video_db):
    from pathlib import Path

    from vidindex.store import Store

    db, video_id = single_video_db
    store = Store(db, create=False)
    Path(store.latest_snapshot(video_id, store.videos()[0]["config_id"])["uri"]).unlink()
    code, out, err = run(parser, capsys, "ask-archive", "q?", "--db", db, "--no-ray")
    assert code == 1
    assert "errors:" in out and "is missing" in out
    # ask passes over the lost blob to the snapshot before it, and says so in its note
    code, out, err = run(parser, capsys, "ask", video_id, "q?", "--at", "end", "--db", db)
    assert code == 0 and "note" in out and "is missing" in out

"""Hostile values in filters, search queries, questions and video ids: they stay the values they
are (a filter stays inside its parentheses, an id or a question is a quoted literal or plain
text), change nothing, and a rejected one gets an error saying what is wrong with it.
(tests/store/test_sql.py: quoting; tests/query/test_bad_input.py: malformed filters and times;
tests/serve/test_security.py: hostile ids over HTTP.)"""

from __future__ import annotations

import re
import shutil

import pytest

from vidindex.cli.main import main
from vidindex.query import QueryError, ask_archive, ask_at, search
from vidindex.store import Store, StoreError, snapshot_blob_uri
from vidindex.store.sql import eq

TABLES = ("videos", "captions", "answers", "snapshots")

ESCAPING_FILTERS = [  # each reads fine to LanceDB alone; beside another filter it would undo it
    ("1=1) OR (1=1", "a ')' closes a parenthesis the filter did not open"),
    ("t_end_ms > 0) OR (t_end_ms > 0", "a ')' closes a parenthesis the filter did not open"),
    ("(1=1)) OR ((1=1", "a ')' closes a parenthesis the filter did not open"),
    ("1=1; DROP TABLE captions", "';' is not allowed: give one predicate"),
    ("1=1 --", "SQL comments ('--', '/*') are not allowed"),
    ("1=1 /* ) OR (1=1 */", "SQL comments ('--', '/*') are not allowed"),
    ("text = 'x' OR '", "a ' quote is not closed"),
    ("(t_end_ms > 0", "a '(' is not closed"),
]
HOSTILE_IDS = ["x' OR '1'='1", "'; DROP TABLE videos; --", "../../etc/passwd", "a\x00b", "%", "*", "\\", "", " "]
HOSTILE_TEXT = ["' OR 1=1 --", "'; DROP TABLE captions; --", 'text:shape OR "', "(", "%", "_", "\\", "a\x00b",
                "video_id:x", "\U0001f388 balloon", "x" * 5000]


@pytest.fixture
def db(tmp_path, reference) -> str:
    """A copy of the reference index (videos a and b), free to write answers into."""
    shutil.copytree(reference.db, tmp_path / "db")
    return str(tmp_path / "db")


def versions(db: str) -> dict[str, int]:
    store = Store(db, create=False)
    return {table: store.table(table).version for table in TABLES}


@pytest.mark.parametrize("where, problem", ESCAPING_FILTERS)
def test_a_filter_cannot_escape_its_parentheses(db, reference, where, problem):
    a = reference.video_ids["a"]
    before = versions(db)
    with pytest.raises(QueryError) as error:
        search(db, "shape", video_id=a, where=where)
    assert str(error.value).startswith(f"bad --where filter {where!r} on table captions: {problem} (columns: ")
    with pytest.raises(QueryError, match="bad --where filter"):
        ask_archive(db, "What happened?", where=where, use_ray=False)
    # The store refuses to combine it too, whoever calls it.
    with pytest.raises(StoreError, match="cannot be combined with others"):
        Store(db, create=False).rows("captions", video_id=a, where=where)
    assert versions(db) == before


def test_quotes_parentheses_and_dashes_inside_literals_are_fine(db, reference):
    a = reference.video_ids["a"]
    where = "(t_end_ms > 0) AND text != 'it''s (not) -- here; /* really */' AND video_id != ')'"
    hits = search(db, "shape", video_id=a, where=where, limit=50).hits
    assert hits and {h.video_id for h in hits} == {a}
    assert len(hits) == Store(db, create=False).count("captions", eq("video_id", a))


@pytest.mark.parametrize("video", HOSTILE_IDS)
def test_hostile_video_ids_name_no_video(db, video):
    before = versions(db)
    for call in (lambda: search(db, "shape", video_id=video), lambda: ask_at(db, video, 5, "What happened?")):
        with pytest.raises(QueryError, match="unknown video " + re.escape(repr(video))):
            call()
    assert Store(db, create=False).rows("videos", video_id=video).num_rows == 0
    with pytest.raises(StoreError, match="cannot name a file"):  # never a path: ../, /, NUL, empty
        snapshot_blob_uri("/snapshots", video, "cfg", 0, "0" * 64)
    assert versions(db) == before


@pytest.mark.parametrize("query", HOSTILE_TEXT)
def test_hostile_search_queries_are_only_text(db, reference, query):
    a = reference.video_ids["a"]
    before = versions(db)
    for mode in ("fts", "vector", "hybrid"):
        hits = search(db, query, mode=mode, video_id=a, include_answers=True).hits
        assert {h.video_id for h in hits} <= {a}, (mode, hits)  # the video filter holds
    assert versions(db) == before


def test_a_hostile_question_is_stored_as_text(db, reference):
    question = "'; DROP TABLE answers; -- what's (really) in \"view\"? %_\\"
    counts = {t: Store(db, create=False).count(t) for t in TABLES}
    first = ask_archive(db, question, use_ray=False)
    again = ask_archive(db, question, use_ray=False)
    assert (first.written, len(first.answers), first.errors) == (2, 2, [])
    assert again.written == 0 and all(answer.cached for answer in again.answers)  # found by its id, not re-added
    store = Store(db, create=False)
    stored = store.rows("answers", where=eq("question", question)).to_pylist()
    assert sorted(row["video_id"] for row in stored) == sorted(reference.video_ids.values())
    assert {t: store.count(t) for t in TABLES} == {**counts, "answers": counts["answers"] + 2}
    assert ask_at(db, reference.video_ids["a"], 5, question).question == question


def test_the_command_line_says_what_is_wrong(db, reference, capsys):
    a = reference.video_ids["a"]
    code = main(["search", "shape", "--db", db, "--video", a, "--where", "1=1) OR (1=1"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("vidindex search: error: bad --where filter '1=1) OR (1=1' on table "
                                        "captions: a ')' closes a parenthesis the filter did not open")
    assert "Traceback" not in err
    assert main(["ask", "x' OR '1'='1", "--at", "5", "Who?", "--db", db]) == 2
    assert "unknown video \"x' OR '1'='1\"" in capsys.readouterr().err

"""The output layer every command prints through: tables, times, cell text, JSON."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np

from vidindex.cli.output import format_table, print_json, seconds_text, short


def test_table_with_and_without_a_header():
    text = format_table(["status", "n"], [["done", 5], ["failed", 12]], right={1})
    assert text.splitlines() == ["status   n", "------  --", "done     5", "failed  12"]
    assert format_table(None, [["video", "a.mp4"], ["as of", None]]).splitlines() == ["video  a.mp4", "as of"]


def test_times_are_one_clock_format():
    assert [seconds_text(s) for s in (5, 65, 3725, 3724.6, None)] == ["00:00:05", "00:01:05", "01:02:05", "01:02:05",
                                                                       ""]


def test_cells_stay_on_one_line():
    assert short("line one\nline\x1b[31m two", 60) == "line one line [31m two"
    assert short("an error that is long", 10) == "an erro..."
    assert short("/very/long/path/video.mp4", 12, keep="end") == "...video.mp4"


def test_json_of_dates_and_numpy_values(capsys):
    print_json({"at": datetime(2026, 1, 2, 3, 4, 5), "n": np.int64(3), "v": np.arange(2)})
    assert json.loads(capsys.readouterr().out) == {"at": "2026-01-02T03:04:05", "n": 3, "v": [0, 1]}

"""What every `vidindex` command prints: exit codes, error lines, JSON, aligned tables, times
(one clock format, vidindex.timefmt's HH:MM:SS) and cell text."""

from __future__ import annotations

import json
import re
import sys
from datetime import date, datetime
from pathlib import PurePosixPath

from vidindex.timefmt import format_time

# 0: the command finished (an index run may list failed videos); 1: a runtime failure (cluster,
# storage, model, a damaged snapshot); 2: a usage error (bad flag, config value, source, time,
# filter); 3: an index run indexed none of the videos it was given, or its sources named none.
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_NOTHING_INDEXED = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C (128 + SIGINT); SIGTERM's is 143 (vidindex.run.stop)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def error(command: str, message: str, code: int = EXIT_USAGE) -> int:
    """One line on stderr, "vidindex <command>: error: ...", and the exit code to return."""
    print(f"vidindex {command}: error: {one_line(message)}", file=sys.stderr)
    return code


def print_json(data) -> None:
    print(json.dumps(data, indent=2, default=_json_default))


def _json_default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    return str(value)


def format_table(headers: list[str] | None, rows: list[list], right: set[int] | None = None) -> str:
    """A plain aligned text table, the header underlined; columns in `right` are right-aligned
    (numbers). Without headers: aligned rows only (a list of fields)."""
    right = right or set()
    cells = ([[str(h) for h in headers]] if headers else []) + [["" if c is None else str(c) for c in row]
                                                                  for row in rows]
    if not cells:
        return ""
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]

    def line(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    lines = [line(row) for row in cells]
    if headers:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def seconds_text(seconds: float | None) -> str:
    """A time or length in a table: HH:MM:SS to the whole second; blank when unknown."""
    return "" if seconds is None else format_time(round(seconds))


def short(text, width: int = 60, keep: str = "start") -> str:
    """One line of at most `width` characters, keeping the start (errors, captions) or the end
    (paths); control characters become spaces so a cell cannot break the table."""
    text = one_line(text)
    if len(text) <= width:
        return text
    return text[: width - 3] + "..." if keep == "start" else "..." + text[-(width - 3):]


def clean(text) -> str:
    """Text without control characters (model output and file names are not trusted to be printable)."""
    return _CONTROL.sub(" ", "" if text is None else str(text))


def one_line(text) -> str:
    """Printable text on one line (an error message, a reason in a list)."""
    return " ".join(clean(text).split())


def file_name(uri) -> str:
    """The last part of a path or URI, for a narrow video column."""
    return PurePosixPath(str(uri)).name or str(uri)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"

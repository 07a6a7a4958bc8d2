"""`vidindex maintain`: compact the tables of an index, fold new rows into its indexes, remove old
table versions and orphaned snapshot blobs (vidindex.store.upkeep), and print what it did.

Exit codes (vidindex.cli.output): 0 done; 1 a step failed (each is listed; the others ran);
2 a usage error (a bad duration, no vidindex database at --db).
"""

from __future__ import annotations

import argparse
import re
from datetime import timedelta

from vidindex.cli.output import EXIT_FAILURE, EXIT_OK, error, format_table, one_line, plural, print_json

_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd])+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_maintain_parser(commands) -> argparse.ArgumentParser:
    from vidindex.store.upkeep import KEEP_VERSIONS_FOR, ORPHAN_AGE

    p = commands.add_parser(
        "maintain", help="compact an index and delete what it no longer needs",
        description="Compact the tables' files, fold new rows into the indexes, remove table versions older "
                    "than --keep-versions and delete snapshot blobs that no snapshots row names, older than "
                    "--orphan-age. `vidindex index` does the same at the end of each run. Safe beside running "
                    "work: younger versions and blobs may be in use, and are kept.")
    p.add_argument("--db", required=True, metavar="URI", help="the index database (local folder or s3://...)")
    p.add_argument("--snapshots", metavar="URI", help="the snapshot root (default: <db>/snapshots)")
    p.add_argument("--keep-versions", type=duration, default=KEEP_VERSIONS_FOR, metavar="AGE",
                   help=f"keep table versions younger than this (e.g. 30m, 1h, 2d; default {_text(KEEP_VERSIONS_FOR)})")
    p.add_argument("--orphan-age", type=duration, default=ORPHAN_AGE, metavar="AGE",
                   help=f"delete unreferenced blobs older than this (default {_text(ORPHAN_AGE)})")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run_maintain)
    return p


def duration(text: str) -> timedelta:
    """A positive age: "90s", "30m", "1h", "2d", "1h30m", seconds ("90") or HH:MM:SS."""
    from vidindex.timefmt import parse_time

    value = text.strip().lower().replace(" ", "")
    if _DURATION.fullmatch(value):
        seconds = sum(float(number) * _UNIT_S[unit] for number, unit in _DURATION_PART.findall(value))
    else:
        try:
            seconds = parse_time(value)
        except ValueError:
            seconds = 0.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"invalid age {text!r}: expected a positive duration such as 90s, 30m, 1h, "
                                         "2d or HH:MM:SS")
    return timedelta(seconds=seconds)


def run_maintain(args) -> int:
    from vidindex.config import default_snapshot_root
    from vidindex.store import Store, StoreError
    from vidindex.store.upkeep import maintain

    try:
        store = Store(args.db, create=False)
    except StoreError as problem:  # no database there, or not a vidindex one: the --db given is wrong
        return error("maintain", str(problem))
    try:
        figures = maintain(args.db, args.snapshots or default_snapshot_root(args.db), store=store,
                           keep_versions_for=args.keep_versions, orphan_age=args.orphan_age)
    except StoreError as problem:
        return error("maintain", str(problem), EXIT_FAILURE)
    if args.json:
        print_json(figures)
    else:
        print(format_upkeep(figures))
    if figures["errors"]:
        return error("maintain", f"{plural(len(figures['errors']), 'step')} failed (listed above); run it again "
                                 "when no other writer is busy", EXIT_FAILURE)
    return EXIT_OK


def format_upkeep(figures: dict) -> str:
    rows = [[name, t["rows"], t["versions_before"], t["versions_after"], _size(t["bytes_before"]),
             _size(t["bytes_after"])] for name, t in figures["tables"].items()]
    lines = [format_table(["table", "rows", "versions before", "after", "size before", "after"], rows,
                          right={1, 2, 3, 4, 5})]
    for what in figures["indexes"].values():
        lines.append(f"index: {what}")
    b = figures["blobs"]
    keep = _text(timedelta(seconds=figures["keep_versions_for_s"]))
    age = _text(timedelta(seconds=figures["orphan_age_s"]))
    lines.append(f"snapshot blobs in {figures['snapshots']}: {b['referenced']} in use, kept; "
                 f"{plural(b['deleted'], 'orphan')} deleted ({_size(b['bytes_freed'])} freed); "
                 f"{b['young_kept']} younger than {age} kept"
                 + (f"; {b['unknown_stream']} of streams unknown to this database left" if b["unknown_stream"] else ""))
    lines.append(f"table versions older than {keep} removed, in {figures['wall_s']:.1f} s")
    for problem in figures["errors"]:
        lines.append(f"failed: {one_line(problem)}")
    return "\n".join(lines)


def _text(age: timedelta) -> str:
    seconds = age.total_seconds()
    for unit in ("d", "h", "m"):
        if seconds >= _UNIT_S[unit] and seconds % _UNIT_S[unit] == 0:
            return f"{int(seconds // _UNIT_S[unit])}{unit}"
    return f"{seconds:g}s"


def _size(count: int | None) -> str:
    if count is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return ""

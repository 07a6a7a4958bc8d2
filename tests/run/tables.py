"""Reading the tables of a database back, for comparing runs."""

from __future__ import annotations

from vidindex.store import Store

# Per table: the key, then the columns whose values must match between two runs.
COMPARED = {
    "videos": ("video_id", "config_id", "uri", "status", "duration_s", "frames_sampled", "last_snapshot_ms", "error"),
    "captions": ("video_id", "config_id", "t_end_ms", "t_start_ms", "text"),
    "answers": ("video_id", "config_id", "question_id", "t_ms", "question", "answer"),
    "snapshots": ("video_id", "config_id", "t_ms", "bytes", "sha256", "frames_seen"),
}


def table_rows(db: str, table: str, columns=None) -> list[tuple]:
    columns = columns or COMPARED[table]
    rows = Store(db, create=False).rows(table).select(list(columns)).to_pylist()
    return sorted(tuple(row[c] for c in columns) for row in rows)


def videos_by_name(db: str) -> dict[str, dict]:
    """videos rows keyed by file stem (good1, broken, ...)."""
    rows = Store(db, create=False).videos()
    return {row["uri"].rsplit("/", 1)[-1].rsplit(".", 1)[0]: row for row in rows}

"""What the service shows of an index: its videos, one video's rows, and the checks every video
id, config id and time from a request goes through before it reaches the index.

A request names videos only by video_id, which must look like one (letters, digits, - and _):
the only files the service reads are the `uri`s of videos rows found by that id, so a request
cannot name a path. Lookups go through vidindex.store.sql's quoting.
"""

from __future__ import annotations

import json
import re

from vidindex.query.common import parse_seconds
from vidindex.query.errors import QueryError
from vidindex.store import Store
from vidindex.store.sql import and_clauses, eq
from vidindex.timefmt import from_ms

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
VIDEO_COLUMNS = ["video_id", "config_id", "uri", "status", "error", "duration_s", "fps", "width", "height",
                 "frames_sampled", "model", "last_snapshot_ms", "started_at", "finished_at"]
CONFIG_FIELDS = ["model", "dtype", "frame_size", "sample_fps", "caption_interval", "snapshot_interval",
                 "max_new_tokens"]


class NotFound(QueryError):
    """The request names a video (or job) this index does not hold."""


def check_id(value: str, what: str = "video id") -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise QueryError(f"invalid {what} {value!r}: expected letters, digits, '-' and '_' (as `vidindex status` lists them)")
    return value


def check_time(value, name: str) -> float:
    """Seconds >= 0 from seconds or HH:MM:SS; the error names the parameter."""
    seconds = parse_seconds(value, name)
    if seconds > 1e7:  # 115 days: no indexed video is that long
        raise QueryError(f"{name}: {value!r} is past the end of any video")
    return seconds


def video_rows(store: Store, video_id: str, config_id: str | None = None) -> list[dict]:
    """The videos rows of `video_id` (one per config, or the one of `config_id`); NotFound if none."""
    check_id(video_id)
    if config_id is not None:
        check_id(config_id, "config id")
    rows = store.rows("videos", where=and_clauses(eq("video_id", video_id), eq("config_id", config_id))).to_pylist()
    if not rows:
        config = f" under config {config_id}" if config_id else ""
        raise NotFound(f"unknown video {video_id!r}{config} in this index")
    return sorted(rows, key=lambda row: row["config_id"])


def list_videos(store: Store) -> list[dict]:
    rows = store.rows("videos").select(VIDEO_COLUMNS).to_pylist()
    counts = _caption_counts(store)
    return [_video(row, counts.get((row["video_id"], row["config_id"]), 0))
            for row in sorted(rows, key=lambda r: (r["uri"], r["video_id"], r["config_id"]))]


def video_detail(store: Store, video_id: str, config_id: str | None = None) -> dict:
    """The video (its first config's row unless `config_id` is given) with its captions, answers
    and snapshots, oldest first, and the configs it is indexed under."""
    rows = video_rows(store, video_id, config_id)
    row = rows[0]
    key = dict(video_id=video_id, config_id=row["config_id"])
    captions = store.rows("captions", **key).select(["t_start_ms", "t_end_ms", "text"]).to_pylist()
    answers = store.rows("answers", **key).select(["question_id", "t_ms", "question", "answer"]).to_pylist()
    snapshots = store.snapshots(video_id, row["config_id"])
    return {
        **_video(row, len(captions)),
        "configs": [r["config_id"] for r in rows],
        "config": _config_summary(row.get("config")),
        "captions": [{"t_start": from_ms(c["t_start_ms"]), "t_end": from_ms(c["t_end_ms"]), "text": c["text"]}
                     for c in sorted(captions, key=lambda c: c["t_end_ms"])],
        "answers": [{"question_id": a["question_id"], "t": from_ms(a["t_ms"]), "question": a["question"],
                     "answer": a["answer"]} for a in sorted(answers, key=lambda a: (a["t_ms"], a["question_id"]))],
        "snapshots": [{"t": from_ms(s["t_ms"]), "bytes": s["bytes"], "frames_seen": s["frames_seen"]}
                      for s in snapshots],
    }


def _video(row: dict, captions: int) -> dict:
    out = {k: row.get(k) for k in VIDEO_COLUMNS}
    for k in ("started_at", "finished_at"):
        out[k] = None if out[k] is None else out[k].isoformat()
    out["name"] = row["uri"].rstrip("/").rsplit("/", 1)[-1]
    out["caption_count"] = captions
    out["last_snapshot"] = None if row.get("last_snapshot_ms") is None else from_ms(row["last_snapshot_ms"])
    del out["last_snapshot_ms"]
    return out


def _caption_counts(store: Store) -> dict[tuple[str, str], int]:
    table = store.rows("captions").select(["video_id", "config_id"])
    counts: dict[tuple[str, str], int] = {}
    for video_id, config_id in zip(table.column("video_id").to_pylist(), table.column("config_id").to_pylist()):
        counts[(video_id, config_id)] = counts.get((video_id, config_id), 0) + 1
    return counts


def _config_summary(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError:
        return None
    return {k: config.get(k) for k in CONFIG_FIELDS}

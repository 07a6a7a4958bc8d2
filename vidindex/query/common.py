"""Pieces every query needs: opening the database read-only, reading times, checking filters,
finding a video and rebuilding its index config."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from vidindex.config import ConfigError, IndexConfig
from vidindex.query.errors import QueryError
from vidindex.store import Store, StoreError
from vidindex.store.sql import and_clauses, check_predicate, eq
from vidindex.timefmt import format_time, parse_time
from vidindex.video.redact import redact_uri

DEFAULT_ASK_QUESTION = "What is happening?"


def open_store(db: str | Store) -> Store:
    """The database at `db`, never created by a query: a wrong path is an error, not an empty index."""
    if isinstance(db, Store):
        return db
    try:
        return Store(db, create=False)
    except StoreError as error:
        raise QueryError(f"cannot open vidindex database {redact_uri(str(db))}: {error}") from None


def parse_seconds(value: Any, option: str) -> float:
    """Seconds from seconds or HH:MM:SS; the error names the option ("--at", "--from")."""
    try:
        return parse_time(value)
    except ValueError as error:
        raise QueryError(f"{option}: {error}") from None


def check_where(store: Store, table: str, where: str | None, option: str = "--where") -> None:
    """Run the SQL predicate once (counting rows) so a bad one fails here, named, not mid-query."""
    if where is None:
        return
    if not where.strip():
        raise QueryError(f"{option}: empty SQL filter")
    columns = ", ".join(store.arrow_schema(table).names)
    try:
        check_predicate(where)
    except ValueError as problem:
        raise QueryError(f"bad {option} filter {where!r} on table {table}: {problem} (columns: {columns})") from None
    try:
        store.table(table).count_rows(where)
    except Exception as error:  # noqa: BLE001 - LanceDB raises several kinds for a bad predicate
        raise QueryError(
            f"bad {option} filter {where!r} on table {table}: {_first_line(error)} (columns: {columns})"
        ) from None


@dataclass(frozen=True)
class VideoTarget:
    """One indexed stream: a video under one index config, with the config rebuilt."""

    row: dict
    config: IndexConfig

    @property
    def video_id(self) -> str:
        return self.row["video_id"]

    @property
    def config_id(self) -> str:
        return self.row["config_id"]

    @property
    def uri(self) -> str:
        return self.row["uri"]


def find_video_rows(store: Store, video: str, config_id: str | None = None) -> list[dict]:
    """videos rows of `video` (a video_id, or the URI it was indexed from), optionally of one config."""
    rows = store.rows("videos", where=and_clauses(eq("video_id", video), eq("config_id", config_id))).to_pylist()
    if not rows:
        rows = store.rows("videos", where=and_clauses(eq("uri", video), eq("config_id", config_id))).to_pylist()
    if not rows:
        known = store.count("videos")
        config = f" under config {config_id}" if config_id else ""
        raise QueryError(
            f"unknown video {video!r}{config} in {store.uri} ({known} video rows indexed; "
            "give a video_id or the URI it was indexed from)"
        )
    return rows


def resolve_video(store: Store, video: str, config_id: str | None = None) -> VideoTarget:
    """The one indexed stream `video` names; several configs need `config_id` to choose."""
    rows = find_video_rows(store, video, config_id)
    if len(rows) > 1:
        ids = ", ".join(sorted(row["config_id"] for row in rows))
        raise QueryError(f"video {video!r} is indexed under several configs ({ids}): choose one with --config")
    return VideoTarget(rows[0], config_of(rows[0]))


def config_of(row: dict) -> IndexConfig:
    """The IndexConfig a videos row was indexed with (its `config` column)."""
    where = f"video {row['video_id']!r} (config {row['config_id']})"
    text = row.get("config")
    if not text:
        raise QueryError(f"{where} has no stored index config in its videos row: re-index it with this vidindex")
    try:
        return IndexConfig.from_dict(json.loads(text), source=f"stored config of {where}")
    except (json.JSONDecodeError, ConfigError) as error:
        raise QueryError(f"{where}: stored index config is unreadable: {error}") from None


def ask_command(video_id: str, t_seconds: float, question: str, db: str, config_id: str | None = None) -> str:
    """A ready-to-run `vidindex ask` line for a moment."""
    parts = ["vidindex", "ask", video_id, "--at", format_time(t_seconds), question, "--db", db]
    if config_id:
        parts += ["--config", config_id]
    return " ".join(shlex.quote(part) for part in parts)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]

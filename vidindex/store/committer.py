"""Committer: the one writer of an index. Every write of a run goes through one Committer, which
serializes them with a lock (LanceDB merge_insert races under concurrent writers). It is a plain
class taking plain data (lists of dicts or Arrow tables) so that it can run as a Ray actor.

Checkpoint commit order, so that a crash between any two steps leaves nothing a reader trusts:
  1. the snapshot blob, written by the indexing engine (not here: state bytes never pass through
     the one committer) under a temporary name and moved into place, a name of its sha256
     (vidindex.store.blobs.snapshot_blob_uri);
  2. the committer checks that the blob exists at its place with its size, then upserts the
     caption and answer rows up to t;
  3. the snapshots row (uri, bytes, sha256) -- the commit point: a snapshots row exists only
     once its blob and rows exist, and readers verify the sha256 when loading;
  4. the videos row's last_snapshot_ms (informational; resume reads the snapshots table).
A crash before 3 leaves an orphan blob (the retry writes the same name when its bytes are the
same; `maintain` deletes orphans) and rows that the resumed run upserts again under the same keys.

Two runs at once (two committers on one database): every write is a keyed upsert that LanceDB
commits atomically, retrying on a conflict (its key columns carry the primary-key metadata,
vidindex.store.schemas), so no key is written twice; the videos row is changed column by column
(Store.update_video), never rewritten whole from an earlier read that could put back another
run's older values. Each snapshots row names a blob of its own bytes (step 1), so the rows a
run leaves are right whichever run wrote them last.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any

from vidindex.store.blobs import BlobInfo, check_blob, snapshot_blob_uri
from vidindex.store.errors import StoreError
from vidindex.store.lance_store import Rows, Store
from vidindex.store.parquet import ParquetExporter
from vidindex.store.schemas import TABLE_NAMES
from vidindex.store.upkeep import KEEP_VERSIONS_FOR, maintain
from vidindex.timefmt import to_ms
from vidindex.video.redact import redact_uri, scrub_secrets

log = logging.getLogger(__name__)

# Commits between two compactions of the tables during a run. Each commit adds small files to
# every table it writes, and upserts slow down with their number (bench/upkeep.py: 0.1 s per
# commit after 250 commits, 1.3 s after 2,000 without compaction; 25 s to compact 2,000).
COMPACT_EVERY = 250

CHECKPOINT_ROW_TABLES = ("captions", "answers")
_ROW_TIME = {"captions": "t_end_ms", "answers": "t_ms"}


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Committer:
    """All row writes of one index (db + optional Parquet copy); snapshot blobs are written by the
    engine and only checked here.

    `lance_options` go to LanceDB (object_store keys, e.g. aws_endpoint); `fs_options` go to
    fsspec for snapshot blobs and Parquet files (e.g. s3fs's endpoint_url). Credentials belong
    in the environment, not in either.
    """

    def __init__(
        self,
        db_uri: str,
        snapshot_root: str,
        parquet_uri: str | None = None,
        *,
        embedding_model: str | None = None,
        lance_options: dict[str, str] | None = None,
        fs_options: dict | None = None,
        store: Store | None = None,
        compact_every: int = COMPACT_EVERY,
    ):
        self.store = store or Store(
            db_uri,
            create=True,
            embedding_model=embedding_model,
            lance_options=lance_options,
            fs_options=fs_options,
        )
        self.snapshot_root = snapshot_root
        self.fs_options = fs_options
        self.exporter = ParquetExporter(self.store, parquet_uri, fs_options) if parquet_uri else None
        self._lock = threading.RLock()
        self.compact_every, self._commits = compact_every, 0

    @classmethod
    def from_config(cls, config, fs_options: dict | None = None) -> Committer:
        """A committer for an IndexConfig's db_uri, snapshot root and parquet_uri."""
        if not config.db_uri:
            raise StoreError("the index config has no db_uri: say where the tables go")
        return cls(config.db_uri, config.snapshot_root, config.parquet_uri, embedding_model=config.embedding_model,
                   fs_options=fs_options)

    # ---- plain writes

    def upsert(self, table: str, rows: Rows) -> int:
        with self._lock:
            return self.store.upsert(table, rows)

    def start_video(self, row: dict[str, Any]) -> dict:
        """Record that indexing of a video starts (status partial, started_at now unless given).

        `row` is a videos row: video_id, config_id and uri at least. Columns it leaves out keep
        their stored values, so a resumed video keeps its last_snapshot_ms and frames_sampled.
        """
        with self._lock:
            existing = self.store.get_video(row.get("video_id"), row.get("config_id")) if _has_key(row) else None
            started = {"status": "partial", "error": None, "finished_at": None, "started_at": utc_now(), **row}
            if existing is None:
                self.store.upsert("videos", [started])
            else:  # only these columns: another run's newer values in the others stay
                key = {"video_id": started.pop("video_id"), "config_id": started.pop("config_id")}
                self.store.update_video(key["video_id"], key["config_id"], started)
                started.update(key)
            return {**(existing or {}), **started}

    def finish_video(self, video_id: str, config_id: str, status: str = "done", error: str | None = None,
                     **columns: Any) -> dict:
        """End a video as done or failed (with its error); other videos columns may be set too.

        video_seconds_per_second is filled from duration_s and started_at when not given. With a
        Parquet URI, the video's rows are exported (replacing its previous export).
        """
        if status not in ("done", "failed"):
            raise StoreError(f"finish_video: status must be done or failed, got {status!r}")
        if status == "failed" and not error:
            raise StoreError(f"finish_video: video {video_id!r} failed without an error text")
        with self._lock:
            row = self.store.get_video(video_id, config_id)
            if row is None:
                raise StoreError(f"finish_video: no videos row for {video_id!r}/{config_id!r}; call start_video first")
            changed = {**columns, "status": status, "error": error, "finished_at": utc_now()}
            if "video_seconds_per_second" not in columns and row.get("duration_s") and row.get("started_at"):
                elapsed = (changed["finished_at"] - row["started_at"]).total_seconds()
                changed["video_seconds_per_second"] = row["duration_s"] / elapsed if elapsed > 0 else None
            self.store.update_video(video_id, config_id, changed)  # only these columns (see the module doc)
            row.update(changed)
            if self.exporter is not None:
                self.exporter.export_video(video_id, config_id)
            return row

    # ---- checkpoints

    def commit_checkpoint(
        self,
        video_id: str,
        config_id: str,
        t: float | str,
        blob: BlobInfo,
        rows_by_table: dict[str, Rows] | None = None,
        *,
        frames_seen: int,
        video_columns: dict[str, Any] | None = None,
    ) -> dict:
        """Commit the stream state at time `t` (seconds) with all caption/answer rows up to t.

        `blob` names the safetensors blob the caller wrote (write_snapshot_blob) at
        snapshot_blob_uri(snapshot_root, video_id, config_id, t_ms, sha256), with its size and
        sha256; it must exist there with that size. `video_columns` (e.g. frames_sampled) are set on
        the videos row with last_snapshot_ms. Returns the snapshots row. Raises StoreError
        (naming the URI) if any step fails, before any row is written when the blob is wrong;
        a failed commit can be retried with the same arguments.
        """
        t_ms = to_ms(t)
        rows_by_table = dict(rows_by_table or {})
        with self._lock:
            # Check everything before writing anything.
            if self.store.get_video(video_id, config_id) is None:
                raise StoreError(
                    f"commit_checkpoint: no videos row for {video_id!r}/{config_id!r}; call start_video first"
                )
            prepared = {}
            for table, rows in rows_by_table.items():
                if table not in CHECKPOINT_ROW_TABLES:
                    raise StoreError(f"commit_checkpoint: rows for {table!r}; only {CHECKPOINT_ROW_TABLES} go with a checkpoint")
                prepared[table] = self.store.prepare_rows(table, rows)
                _check_rows_belong(table, prepared[table], video_id, config_id, t_ms)
            expected_uri = snapshot_blob_uri(self.snapshot_root, video_id, config_id, t_ms, blob.sha256)
            if blob.uri != expected_uri:
                raise StoreError(f"commit_checkpoint: snapshot blob {redact_uri(blob.uri)} is not at its place, "
                                 f"{redact_uri(expected_uri)}")
            check_blob(blob, self.fs_options)

            for table, data in prepared.items():  # 2
                self.store.upsert(table, data)
            snapshot = {  # 3: the commit point
                "video_id": video_id, "config_id": config_id, "t_ms": t_ms, "uri": blob.uri,
                "bytes": blob.bytes, "sha256": blob.sha256, "frames_seen": int(frames_seen), "created_at": utc_now(),
            }
            self.store.upsert("snapshots", [snapshot])
            self.store.update_video(video_id, config_id, {**(video_columns or {}), "last_snapshot_ms": t_ms})  # 4
            self._commits += 1
            if self._commits % self.compact_every == 0:
                self.compact()
            return snapshot

    # ---- upkeep

    def compact(self) -> None:
        """Merge the tables' small files (and drop versions older than KEEP_VERSIONS_FOR, which no
        running reader still uses). A failure only costs speed: it is logged, the run goes on."""
        with self._lock:
            for name in TABLE_NAMES:
                try:
                    self.store.optimize(name, cleanup_older_than=KEEP_VERSIONS_FOR)
                except Exception as error:
                    log.warning("could not compact table %s: %s", name, scrub_secrets(str(error)))

    def refresh_indexes(self, **kwargs: Any) -> dict[str, str]:
        with self._lock:
            return self.store.ensure_indexes(**kwargs)

    def maintain(self, **kwargs: Any) -> dict:
        """Compact the tables, fold new rows into indexes, remove old versions and orphaned
        snapshot blobs (vidindex.store.upkeep.maintain; kwargs: keep_versions_for, orphan_age)."""
        with self._lock:
            return maintain(self.store.uri, self.snapshot_root, fs_options=self.fs_options, store=self.store, **kwargs)

    def export_parquet(self, video_id: str | None = None, config_id: str | None = None) -> dict[str, int]:
        """Export one video's rows (both ids given) or every video's rows to the Parquet URI."""
        if self.exporter is None:
            raise StoreError("no parquet_uri was given: nothing to export to")
        with self._lock:
            if video_id is not None and config_id is not None:
                return self.exporter.export_video(video_id, config_id)
            return self.exporter.export_all()


def _has_key(row: dict) -> bool:
    return bool(row.get("video_id")) and bool(row.get("config_id"))


def _check_rows_belong(table: str, data, video_id: str, config_id: str, t_ms: int) -> None:
    """A snapshot at t vouches for its own stream's rows up to t, and nothing else."""
    time_column = _ROW_TIME[table]
    for row in data.select(["video_id", "config_id", time_column]).to_pylist():
        if (row["video_id"], row["config_id"]) != (video_id, config_id):
            raise StoreError(
                f"commit_checkpoint for {video_id!r}/{config_id!r} got {table} of another stream, "
                f"{row['video_id']!r}/{row['config_id']!r}"
            )
        if row[time_column] > t_ms:
            raise StoreError(f"commit_checkpoint at t_ms={t_ms} got {table} at {time_column}={row[time_column]}, after it")

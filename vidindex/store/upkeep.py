"""Upkeep of an index: every LanceDB commit adds a version of its table (a manifest plus the small
files of the rows it wrote), so a long archive gathers thousands of versions and fragments that
slow every read and hold disk. `maintain` gives them back:

    figures = maintain("/data/db", "/data/db/snapshots")

  1. folds new captions into the indexes (creates them when missing: Store.ensure_indexes);
  2. per table, `optimize`: compacts small files into large ones, folds new rows into the
     table's indexes, and removes versions older than `keep_versions_for`;
  3. deletes orphaned snapshot blobs: files under the snapshot root that no snapshots row names,
     older than `orphan_age`, of a stream (video_id, config_id) this database has a videos row
     for (left by a crash before the commit, or by a run whose snapshots row another run indexing
     the same video replaced). Every blob a row names is kept.

Safe beside running work, by age: a reader or writer works on the table version it opened (a
query reads that version's files; a merge_insert reads version N and commits N+1), so versions
younger than an hour are kept and none loses its files mid-operation (an hour is far longer than
any query or commit). LanceDB's delete_unverified is never used: files of an unfinished commit
stay until Lance itself deems them old. A blob is written (temp name, then moved) a moment before
the committer commits its row, so blobs and temp files younger than `orphan_age` are kept too.
The listing of blobs comes before the read of the snapshots rows: a blob committed between the
two is young, so it is kept either way. A snapshot root belongs to one database.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Any

import fsspec

from vidindex.store.errors import StoreError
from vidindex.store.lance_store import Store
from vidindex.store.schemas import TABLE_NAMES
from vidindex.video.redact import redact_uri, scrub_secrets

KEEP_VERSIONS_FOR = timedelta(hours=1)
ORPHAN_AGE = timedelta(hours=1)
# What write_snapshot_blob leaves under a snapshot root: <t_ms>-<sha256 prefix>.safetensors (a
# database written before blob names held their hash: <t_ms>.safetensors) and, while writing,
# .<that name>.tmp-<uuid>. Anything else there is not ours to delete.
_BLOB_NAME = re.compile(r"\.?[0-9]+(-[0-9a-f]{16})?\.safetensors(\.tmp-[0-9a-f]{32})?")
_MAX_ERRORS = 20


def maintain(
    db_uri: str,
    snapshot_root: str,
    *,
    keep_versions_for: timedelta = KEEP_VERSIONS_FOR,
    orphan_age: timedelta = ORPHAN_AGE,
    fs_options: dict | None = None,
    lance_options: dict[str, str] | None = None,
    store: Store | None = None,
) -> dict[str, Any]:
    """Compact, index and prune the tables at `db_uri`, and delete orphaned blobs under
    `snapshot_root`. Returns what it did:

        {"db", "snapshots", "keep_versions_for_s", "orphan_age_s", "wall_s",
         "tables": {name: {"rows", "versions_before", "versions_after", "bytes_before", "bytes_after"}},
         "indexes": {what ensure_indexes did}, "blobs": {"listed", "referenced", "deleted",
         "bytes_freed", "young_kept", "unknown_stream", "other_files"}, "errors": [one line each]}

    Raises StoreError when the database cannot be opened or an argument is wrong; a step that
    fails (e.g. a commit conflict with another writer) is listed in "errors" and the rest still runs.
    `store`: an open Store of `db_uri` (the committer's) instead of opening one.
    """
    for name, age in (("keep_versions_for", keep_versions_for), ("orphan_age", orphan_age)):
        if not isinstance(age, timedelta) or age <= timedelta(0):
            raise StoreError(f"{name} must be a positive duration, got {age!r}: younger versions and blobs "
                             "may still be in use by a running reader or writer")
    started = time.perf_counter()
    store = store or Store(db_uri, create=False, lance_options=lance_options, fs_options=fs_options)
    fs_options = fs_options if fs_options is not None else store.fs_options
    errors: list[str] = []
    tables = {name: {"rows": None, **_table_figures(store, name, fs_options, "before")} for name in TABLE_NAMES}

    indexes: dict[str, str] = {}
    try:
        indexes = store.ensure_indexes()
    except Exception as error:
        errors.append(f"indexing captions: {_describe(error, store.uri)}")
    for name in TABLE_NAMES:
        try:
            store.optimize(name, cleanup_older_than=keep_versions_for)
        except Exception as error:  # e.g. other writers kept preempting it: the next upkeep does it
            errors.append(f"optimizing table {name!r}: {_describe(error, store.uri)}")
        tables[name].update(_table_figures(store, name, fs_options, "after"))
        try:
            tables[name]["rows"] = store.table(name).count_rows()
        except Exception as error:
            errors.append(f"counting rows of {name!r}: {_describe(error, store.uri)}")

    blobs = delete_orphan_blobs(store, snapshot_root, orphan_age, fs_options, errors)
    return {
        "db": redact_uri(store.uri), "snapshots": redact_uri(snapshot_root),
        "keep_versions_for_s": keep_versions_for.total_seconds(), "orphan_age_s": orphan_age.total_seconds(),
        "tables": tables, "indexes": indexes, "blobs": blobs, "errors": errors, "wall_s": time.perf_counter() - started,
    }


def delete_orphan_blobs(store: Store, snapshot_root: str, orphan_age: timedelta, fs_options: dict | None,
                        errors: list[str]) -> dict[str, int]:
    """Delete blobs (and temp files) under `snapshot_root` that no snapshots row names, older than
    `orphan_age`, of streams with a videos row in `store`. Problems go to `errors`."""
    counts = {"listed": 0, "referenced": 0, "deleted": 0, "bytes_freed": 0, "young_kept": 0, "unknown_stream": 0,
              "other_files": 0}
    try:
        fs, root = fsspec.core.url_to_fs(snapshot_root, **(fs_options or {}))
        fs.invalidate_cache(root)  # an indexer in another process wrote there: never trust a cached listing
        listing = fs.find(root, detail=True)
    except FileNotFoundError:
        return counts  # no snapshot yet
    except Exception as error:
        errors.append(f"listing snapshot blobs under {redact_uri(snapshot_root)}: {_describe(error, snapshot_root)}")
        return counts
    try:  # after the listing (see the module docstring); without the rows, nothing is deleted
        referenced = {type(fs)._strip_protocol(uri) for uri in _column(store, "snapshots", ["uri"])["uri"]}
        streams = set(zip(*_column(store, "videos", ["video_id", "config_id"]).values()))
    except Exception as error:
        errors.append(f"reading the snapshots and videos rows (no blob deleted): {_describe(error, store.uri)}")
        return counts
    root = root.rstrip("/")
    now = time.time()
    for path, info in sorted(listing.items()):
        if info.get("type", "file") != "file":
            continue
        parts = path[len(root) + 1:].split("/") if path.startswith(root + "/") else []
        if len(parts) != 3 or not _BLOB_NAME.fullmatch(parts[2]):
            counts["other_files"] += 1
            continue
        counts["listed"] += 1
        if path in referenced:
            counts["referenced"] += 1
            continue
        if (parts[0], parts[1]) not in streams:  # another database's blob, or a wrong --snapshots
            counts["unknown_stream"] += 1
            continue
        modified = _modified(fs, path, info)
        if modified is None or now - modified < orphan_age.total_seconds():
            counts["young_kept"] += 1
            continue
        try:
            fs.rm_file(path)  # never folders: write_snapshot_blob may be creating a file in one right now
        except FileNotFoundError:
            continue
        except Exception as error:
            if len(errors) < _MAX_ERRORS:
                errors.append(f"deleting orphan blob {path}: {_describe(error, snapshot_root)}")
            continue
        counts["deleted"] += 1
        counts["bytes_freed"] += int(info.get("size") or 0)
    return counts


def _table_figures(store: Store, name: str, fs_options: dict | None, when: str) -> dict[str, int | None]:
    """Versions and bytes on storage (all versions' files, manifests and indexes) of one table."""
    table = store.table(name)
    figures: dict[str, int | None] = {f"versions_{when}": None, f"bytes_{when}": None}
    try:
        table.checkout_latest()
        figures[f"versions_{when}"] = len(table.list_versions())
    except Exception:  # a figure, not a step: the step itself reports its error
        pass
    try:
        fs, path = fsspec.core.url_to_fs(table.uri, **(fs_options or {}))
        fs.invalidate_cache(path)
        figures[f"bytes_{when}"] = int(fs.du(path, total=True))
    except Exception:
        pass
    return figures


def _column(store: Store, table: str, columns: list[str]) -> dict[str, list]:
    return store.table(table).search().select(columns).limit(None).to_arrow().to_pydict()


def _modified(fs, path: str, info: dict) -> float | None:
    """Seconds since the epoch when the file was last written, from its listing (local: mtime;
    s3: LastModified; gcs: updated; memory: created), else asked; None when unknown (kept)."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is not None:
            break
    else:
        try:
            value = fs.modified(path)
        except Exception:
            return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value.timestamp()  # naive values (fsspec's memory fs) are local time, as timestamp() assumes
    return None


def _describe(error: Exception, *uris: str) -> str:
    text = scrub_secrets(" ".join(str(error).split()), *uris)
    return text if isinstance(error, StoreError) else f"{type(error).__name__}: {text}"

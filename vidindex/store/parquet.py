"""Parquet copy of the index for the data lake (DuckDB, Polars, Spark).

Layout: one file per table, config and video,

    <parquet uri>/<table>/<config_id>/<video_id>.parquet

holding exactly that video's rows of that table under that config, with the table's Arrow
schema (schemas/<table>.json). Exporting a video replaces its files, so re-runs and resumes
never duplicate rows; a table with no rows for the video has no file. Files are written under
a dot-prefixed temporary name and moved into place, so readers globbing *.parquet never see a
half-written file. Read a whole table with e.g.

    duckdb:  SELECT * FROM read_parquet('<uri>/captions/*/*.parquet')
    polars:  pl.read_parquet('<uri>/captions/*/*.parquet')
"""

from __future__ import annotations

import posixpath
import uuid

import fsspec
import pyarrow.parquet as pq

from vidindex.store.blobs import check_path_component, make_parent_dirs, masked_error
from vidindex.store.schemas import TABLE_NAMES


def parquet_glob(uri: str, table: str) -> str:
    """The glob matching every file of `table` under `uri`."""
    return f"{uri.rstrip('/')}/{table}/*/*.parquet"


class ParquetExporter:
    def __init__(self, store, uri: str, fs_options: dict | None = None):
        self.store = store
        self.uri = uri.rstrip("/")
        try:
            self._fs, self._root = fsspec.core.url_to_fs(self.uri, **(fs_options or {}))
        except Exception as error:
            raise masked_error("cannot use parquet URI", uri, error)

    def file_path(self, table: str, video_id: str, config_id: str) -> str:
        check_path_component("video_id", video_id)
        check_path_component("config_id", config_id)
        return posixpath.join(self._root, table, config_id, f"{video_id}.parquet")

    def export_video(self, video_id: str, config_id: str) -> dict[str, int]:
        """Write (replace) the video's files of every table; returns rows written per table."""
        written = {}
        for table in TABLE_NAMES:
            data = self.store.rows(table, video_id=video_id, config_id=config_id)
            path = self.file_path(table, video_id, config_id)
            if data.num_rows:
                self._write_atomically(data, path)
            else:
                self._remove(path)
            written[table] = data.num_rows
        return written

    def export_all(self) -> dict[str, int]:
        """Export every (video, config) found in any table; returns rows written per table."""
        keys = set()
        for table in TABLE_NAMES:
            ids = self.store.rows(table).select(["video_id", "config_id"]).to_pylist()
            keys.update((row["video_id"], row["config_id"]) for row in ids)
        totals = dict.fromkeys(TABLE_NAMES, 0)
        for video_id, config_id in sorted(keys):
            for table, count in self.export_video(video_id, config_id).items():
                totals[table] += count
        return totals

    def _write_atomically(self, data, path: str) -> None:
        directory, name = posixpath.split(path)
        temp_path = posixpath.join(directory, f".{name}.tmp-{uuid.uuid4().hex}")
        try:
            make_parent_dirs(self._fs, directory)
            pq.write_table(data, temp_path, filesystem=self._fs, compression="zstd")
            self._fs.mv(temp_path, path)
        except Exception as error:
            try:
                if self._fs.exists(temp_path):
                    self._fs.rm(temp_path)
            except Exception:  # noqa: BLE001 - best effort; report the write error
                pass
            raise masked_error("cannot write parquet file", self._uri_of(path), error)

    def _remove(self, path: str) -> None:
        try:
            if self._fs.exists(path):
                self._fs.rm(path)
        except Exception as error:
            raise masked_error("cannot remove stale parquet file", self._uri_of(path), error)

    def _uri_of(self, path: str) -> str:
        return self._fs.unstrip_protocol(path)

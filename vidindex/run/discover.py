"""Discovery: turn the sources of an index run into the list of videos to index.

A source is one of
  - a video path or URI (`talk.mp4`, `s3://bucket/talk.mp4`, `https://host/talk.mp4`);
  - a directory or URI prefix (every video file below it, recursively);
  - a glob (`videos/*.mp4`, `s3://bucket/2024/**/*.mkv`);
  - a manifest: a text file with one URI per line (`.txt`, `.lst`, `.list`; blank lines and
    `#` comments are skipped), or a CSV / Parquet file with a `uri` column. Relative entries
    are relative to the manifest's own folder.

A source that names no video (an empty folder, a glob without matches, an empty manifest) is
skipped and listed, so one empty folder does not stop the run; only when every source is empty
is that an error.

`plan_videos` then gives each video its id and its state in the index: new, partial (with the
time of its latest committed snapshot, where it resumes) or done (dropped from the run).
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import fsspec

from vidindex.index.engine import describe_error, fallback_video_id
from vidindex.video import VideoError, probe

VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
    ".flv", ".wmv", ".3gp", ".ogv",
)
TEXT_MANIFEST_EXTENSIONS = (".txt", ".lst", ".list")
TABLE_MANIFEST_EXTENSIONS = (".csv", ".parquet", ".pq")
MANIFEST_EXTENSIONS = TEXT_MANIFEST_EXTENSIONS + TABLE_MANIFEST_EXTENSIONS
GLOB_CHARS = "*?["
PROBE_THREADS = 16  # probing is I/O bound (object-store round trips)


class SourceError(ValueError):
    """A source cannot be read (bad manifest, unknown filesystem, no access); the message names it."""


class EmptySource(SourceError):
    """A source names no video; raised by discover only when every source is empty."""


# ---- sources -> URIs


@dataclass
class Discovered:
    uris: list[str]  # every video URI the sources name, in order, without repeats
    empty_sources: list[str]  # sources that named no video, skipped


def discover(sources: list[str], fs_options: dict | None = None) -> Discovered:
    """The videos the sources name, and the sources that name none."""
    if not sources:
        raise SourceError("no sources given: name video files, folders, globs or manifests")
    found: list[str] = []
    empty: dict[str, str] = {}  # source -> why it names no video
    for source in sources:
        try:
            uris = _expand(str(source), fs_options or {})
        except EmptySource as error:
            empty[str(source)] = str(error)
            continue
        except SourceError:
            raise
        except ImportError as error:  # e.g. s3fs or gcsfs not installed
            raise SourceError(f"cannot read {source!r}: no filesystem for it ({error}); "
                              "install vidindex[s3] or vidindex[gcs]") from None
        except Exception as error:  # unknown protocol, no permission, bucket missing, ...
            raise SourceError(f"cannot read {source!r}: {type(error).__name__}: {error}") from None
        found.extend(uris)
    if not found:
        raise EmptySource("no videos in any source: " + "; ".join(empty.values()))
    return Discovered(uris=list(dict.fromkeys(found)), empty_sources=list(empty))


def is_manifest(source: str) -> bool:
    return _path_part(source).lower().endswith(MANIFEST_EXTENSIONS)


def _expand(source: str, options: dict) -> list[str]:
    if _is_url(source) and source.split("://", 1)[0] in ("http", "https"):
        return read_manifest(source, options) if is_manifest(source) else [source]  # no listing over HTTP
    if is_manifest(source):
        return read_manifest(source, options)
    fs, path = fsspec.core.url_to_fs(source, **options)
    if any(ch in path for ch in GLOB_CHARS):
        matches = sorted(p for p in fs.glob(path) if not fs.isdir(p))
        if not matches:
            raise EmptySource(f"no files match {source!r}")
        return [_unstrip(source, fs, p) for p in matches]
    if fs.isdir(path):
        files = sorted(p for p in fs.find(path) if p.lower().endswith(VIDEO_EXTENSIONS))
        if not files:
            raise EmptySource(f"no video files ({', '.join(VIDEO_EXTENSIONS[:5])}, ...) under {source!r}")
        return [_unstrip(source, fs, p) for p in files]
    # A single video, or a path that does not exist: the engine records the latter as failed
    # (VideoNotFound) so the run's report names it, like any other bad video.
    return [source]


def read_manifest(source: str, fs_options: dict | None = None) -> list[str]:
    """The URIs a manifest lists, relative entries resolved against the manifest's folder."""
    options = fs_options or {}
    lower = _path_part(source).lower()
    try:
        with fsspec.open(source, "rb", **options) as f:
            data = f.read()
    except FileNotFoundError:
        raise SourceError(f"manifest {source!r} does not exist") from None
    except OSError as error:
        raise SourceError(f"cannot read manifest {source!r}: {error}") from None
    if lower.endswith(TEXT_MANIFEST_EXTENSIONS):
        entries = [line.strip() for line in data.decode("utf-8-sig").splitlines()]
        entries = [e for e in entries if e and not e.startswith("#")]
    else:
        entries = _uri_column(source, data, lower.endswith(".csv"))
    if not entries:
        raise EmptySource(f"manifest {source!r} lists no videos")
    return [_resolve(entry, source) for entry in entries]


def _uri_column(source: str, data: bytes, is_csv: bool) -> list[str]:
    if is_csv:
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
        columns = list(rows[0]) if rows else []
        values = [row.get("uri") for row in rows]
    else:
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as error:
            raise SourceError(f"manifest {source!r} is not a readable Parquet file: {error}") from None
        columns = table.column_names
        values = table.column("uri").to_pylist() if "uri" in columns else []
    if "uri" not in columns:
        raise SourceError(f"manifest {source!r} has no 'uri' column (columns: {', '.join(columns) or 'none'})")
    return [str(v).strip() for v in values if v is not None and str(v).strip()]


def _resolve(entry: str, manifest: str) -> str:
    if _is_url(entry) or os.path.isabs(entry):
        return entry
    if _is_url(manifest):
        scheme, rest = manifest.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), entry))}"
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(manifest)), entry))


def _is_url(value: str) -> bool:
    return "://" in value


def _path_part(source: str) -> str:
    return source.split("?", 1)[0] if _is_url(source) else source


def _unstrip(source: str, fs, path: str) -> str:
    """A listed path back as a URI of the source's kind (fsspec lists paths without protocol)."""
    if not _is_url(source) or source.startswith("file://"):
        return path
    return f"{source.split('://', 1)[0]}://{path.lstrip('/')}"


# ---- URIs -> planned videos


@dataclass
class PlannedVideo:
    """One row of the Ray dataset: only a URI and what is known about it, never video bytes."""

    uri: str
    video_id: str
    duration_s: float  # 0 when the video cannot be probed (the engine then records why)
    state: str  # new | partial (resumes at resume_from_s) | retry (failed before: tried again)
    resume_from_s: float = 0.0
    error: str | None = None  # why probing failed (the engine reports it again, as the failure)

    def to_row(self) -> dict:
        row = asdict(self)
        row["error"] = row["error"] or ""
        return row


@dataclass
class Plan:
    todo: list[PlannedVideo]
    already_done: list[dict]  # {uri, video_id} of videos this config already indexed

    @property
    def total_seconds(self) -> float:
        return sum(v.duration_s for v in self.todo)

    @property
    def resumed_seconds(self) -> float:
        return sum(v.resume_from_s for v in self.todo)


def plan_videos(uris: list[str], store, config_id: str, fs_options: dict | None = None) -> Plan:
    """Probe every URI (in parallel), drop videos done with `config_id`, find resume points.

    `store` is a vidindex.store.Store (reads only).
    """
    with ThreadPoolExecutor(max_workers=min(PROBE_THREADS, max(1, len(uris)))) as pool:
        probed = list(pool.map(lambda uri: _probe(uri, fs_options), uris))
    rows = {row["video_id"]: row for row in store.videos(config_id=config_id)}
    todo, done, seen = [], [], set()
    for video in probed:
        if video.video_id in seen:  # one file named twice (e.g. a.mp4 and ./a.mp4): one stream, one writer
            continue
        seen.add(video.video_id)
        row = rows.get(video.video_id)
        if row is None:
            todo.append(video)
        elif row["status"] == "done":
            done.append({"uri": video.uri, "video_id": video.video_id})
        elif row["status"] == "failed":
            video.state = "retry"  # the cause may have been fixed since
            todo.append(video)
        else:
            snapshot = store.latest_snapshot(video.video_id, config_id)
            video.state = "partial"
            video.resume_from_s = snapshot["t_ms"] / 1000 if snapshot else 0.0
            todo.append(video)
    return Plan(todo=todo, already_done=done)


def _probe(uri: str, fs_options: dict | None) -> PlannedVideo:
    try:
        info = probe(uri, fs_options=fs_options)
        return PlannedVideo(uri=uri, video_id=info.video_id, duration_s=float(info.duration), state="new")
    except VideoError as error:
        # The same id the engine gives a video it cannot probe, so plan and table rows agree.
        return PlannedVideo(uri=uri, video_id=fallback_video_id(uri), duration_s=0.0, state="new",
                            error=describe_error(error))

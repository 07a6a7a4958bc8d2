"""Open videos by URI through fsspec: local paths, file://, s3://, gs://, http(s)://, memory://.

Storage options (credentials, endpoints) come from the caller (the index config) merged over
the environment; they are passed to fsspec and never logged or put into error messages.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import fsspec

from vidindex.video.errors import (VideoError, VideoNotFound, VideoPermissionError,
                                   VideoReadError)
from vidindex.video.redact import scrub_secrets

# JSON object of fsspec options applied to every URI, e.g. '{"anon": true}'.
ENV_FS_OPTIONS = "VIDINDEX_FS_OPTIONS"
# S3-compatible endpoint (MinIO, Ceph, a local test server) for s3:// URIs.
ENV_S3_ENDPOINT = "VIDINDEX_S3_ENDPOINT_URL"

# Remote reads go through fsspec's block cache; demuxers read small, scattered pieces,
# so a few MiB per request keeps the number of round trips low without holding much.
REMOTE_BLOCK_SIZE = 4 * 1024 * 1024


@dataclass(frozen=True)
class Location:
    """Where a video lives: the filesystem, the path inside it and the canonical URI."""

    fs: Any
    path: str
    uri: str  # canonical: file:///abs for local files, protocol://path otherwise

    @property
    def is_local(self) -> bool:
        return _protocols(self.fs) & {"file", "local"} != set()


def _protocols(fs) -> set[str]:
    p = fs.protocol
    return set(p) if isinstance(p, (tuple, list)) else {p}


def fs_options_for(uri: str, fs_options: dict | None = None) -> dict:
    """Environment defaults for the URI's protocol, overridden by explicit options."""
    options: dict = {}
    env = os.environ.get(ENV_FS_OPTIONS)
    if env:
        try:
            options.update(json.loads(env))
        except ValueError as e:  # the value may hold secrets: do not echo it
            raise ValueError(f"{ENV_FS_OPTIONS} is not a JSON object") from e
    if urlsplit(uri).scheme in ("s3", "s3a") and os.environ.get(ENV_S3_ENDPOINT):
        options.setdefault("endpoint_url", os.environ[ENV_S3_ENDPOINT])
    options.update(fs_options or {})
    return options


def locate(uri: str | os.PathLike, fs_options: dict | None = None) -> Location:
    uri = os.fspath(uri)
    options = fs_options_for(uri, fs_options)
    try:
        fs, path = fsspec.core.url_to_fs(uri, **options)
    except ImportError as e:  # e.g. s3fs/gcsfs not installed
        raise VideoReadError(uri, f"no filesystem for this URI ({e})") from e
    if _protocols(fs) & {"file", "local"}:
        canonical = "file://" + os.path.abspath(path)
    elif _protocols(fs) & {"http", "https"}:
        canonical = path  # fsspec keeps the full URL as the path
    else:
        proto = urlsplit(uri).scheme or sorted(_protocols(fs))[0]
        canonical = f"{proto}://{fs._strip_protocol(path).lstrip('/')}"
    return Location(fs=fs, path=path, uri=canonical)


def open_input(loc: Location):
    """A binary, seekable file object for the demuxer."""
    try:
        if loc.is_local:
            return open(loc.path, "rb", buffering=1024 * 1024)
        return loc.fs.open(loc.path, "rb", block_size=REMOTE_BLOCK_SIZE, cache_type="readahead")
    except VideoError:
        raise
    except BaseException as e:
        raise storage_error(loc.uri, e) from e


def storage_error(uri: str, e: BaseException) -> VideoError:
    """Map what filesystems raise to our typed errors."""
    if isinstance(e, VideoError):
        return e
    status = _http_status(e)  # fsspec's http filesystem reports 403 as FileNotFoundError
    if status in (401, 403):
        return VideoPermissionError(uri, f"HTTP {status}: access denied")
    if isinstance(e, IsADirectoryError):
        return VideoNotFound(uri, "is a directory, not a file")
    if isinstance(e, FileNotFoundError):
        return VideoNotFound(uri, "no such file or object")
    if status == 404:
        return VideoNotFound(uri, "HTTP 404: no such object")
    if isinstance(e, PermissionError):
        return VideoPermissionError(uri, "permission denied")
    if isinstance(e, OSError) and getattr(e, "errno", None) == 13:
        return VideoPermissionError(uri, "permission denied")
    return VideoReadError(uri, f"storage error: {type(e).__name__}: {scrub_secrets(str(e), uri)}")


def _http_status(e: BaseException | None) -> int | None:
    for _ in range(5):  # walk the cause chain
        if e is None:
            return None
        if isinstance(getattr(e, "status", None), int):
            return e.status
        e = e.__cause__ or e.__context__
    return None

"""Snapshot blobs in any fsspec filesystem (local, s3://, gs://, memory://).

The indexing engine writes them (write_blob); the committer only checks that a blob exists
with its size before its snapshots row points at it (check_blob). A blob is written under a temporary name and then moved into place, so a crash mid-write never
leaves a partial file at the final name (a local rename is atomic; on object stores the final
object appears whole when the copy or upload completes). The content is opaque bytes here: the
model layer produces safetensors.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import uuid
from dataclasses import dataclass
from typing import Union

import fsspec

from vidindex.store.errors import SnapshotIntegrityError, StoreError

BlobSource = Union[bytes, bytearray, memoryview]

_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class BlobInfo:
    uri: str
    bytes: int
    sha256: str


def snapshot_blob_uri(root: str, video_id: str, config_id: str, t_ms: int) -> str:
    """<root>/<video_id>/<config_id>/<t_ms, 10 digits>.safetensors; zero padding sorts names by time."""
    for name, value in (("video_id", video_id), ("config_id", config_id)):
        check_path_component(name, value)
    return f"{root.rstrip('/')}/{video_id}/{config_id}/{int(t_ms):010d}.safetensors"


def check_path_component(name: str, value: str) -> None:
    if not isinstance(value, str) or not _SAFE_COMPONENT.fullmatch(value):
        raise StoreError(f"{name} {value!r} cannot name a file: use letters, digits, '.', '_' or '-'")


def write_blob(uri: str, source: BlobSource, fs_options: dict | None = None) -> BlobInfo:
    """Write `source` to `uri` atomically; returns its size and sha256. Fails loudly naming `uri`."""
    fs, path = fsspec.core.url_to_fs(uri, **(fs_options or {}))
    directory, name = posixpath.split(path)
    temp_path = posixpath.join(directory, f".{name}.tmp-{uuid.uuid4().hex}")  # dot: globs and Spark skip it
    data = memoryview(source).cast("B")
    try:
        make_parent_dirs(fs, directory)
        with fs.open(temp_path, "wb") as file:
            file.write(data)
        fs.mv(temp_path, path)
    except Exception as error:
        _remove_quietly(fs, temp_path)
        raise StoreError(f"cannot write snapshot blob {uri}: {error}") from error
    return BlobInfo(uri=uri, bytes=data.nbytes, sha256=hashlib.sha256(data).hexdigest())


def check_blob(blob: BlobInfo, fs_options: dict | None = None) -> None:
    """StoreError naming the blob unless it exists at its uri with its size."""
    try:
        fs, path = fsspec.core.url_to_fs(blob.uri, **(fs_options or {}))
        fs.invalidate_cache(path)  # another process wrote it: never trust a cached listing
        size = fs.size(path)
    except FileNotFoundError:
        raise StoreError(f"snapshot blob {blob.uri} does not exist") from None
    except Exception as error:
        raise StoreError(f"cannot check snapshot blob {blob.uri}: {error}") from error
    if size != blob.bytes:
        raise StoreError(f"snapshot blob {blob.uri} has {size} bytes, the commit says {blob.bytes}")


def read_blob(uri: str, expected_bytes: int, expected_sha256: str, fs_options: dict | None = None,
              verify: bool = True) -> bytes:
    """The blob's bytes, after checking them against its snapshots row. verify=False checks
    the size only, for a caller that checks the sha256 itself (Stream.from_bytes does it while
    the tensors load)."""
    try:
        with fsspec.open(uri, "rb", **(fs_options or {})) as file:
            data = file.read()
    except FileNotFoundError:
        raise SnapshotIntegrityError(f"snapshot blob {uri} is missing") from None
    except Exception as error:
        raise StoreError(f"cannot read snapshot blob {uri}: {error}") from error
    if len(data) != expected_bytes:
        raise SnapshotIntegrityError(f"snapshot blob {uri} has {len(data)} bytes, its row says {expected_bytes}")
    if not verify:
        return data
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise SnapshotIntegrityError(f"snapshot blob {uri} has sha256 {digest}, its row says {expected_sha256}")
    return data


def make_parent_dirs(fs, directory: str) -> None:
    """Create folders where they exist (local disks); on object stores makedirs would create a
    missing bucket, and a wrong bucket name should fail instead."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if {"file", "local"} & set(protocols):
        fs.makedirs(directory, exist_ok=True)


def _remove_quietly(fs, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm(path)
    except Exception:  # noqa: BLE001 - best effort; the original error is what matters
        pass

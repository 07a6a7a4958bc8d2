"""Snapshot blobs in any fsspec filesystem (local, s3://, gs://, memory://).

The indexing engine writes them (write_snapshot_blob); the committer only checks that a blob exists
with its size before its snapshots row points at it (check_blob). A blob is written under a temporary name and then moved into place, so a crash mid-write never
leaves a partial file at the final name (a local rename is atomic; on object stores the final
object appears whole when the copy or upload completes). The content is opaque bytes here: the
model layer produces safetensors.

A snapshot blob's name holds the first hex digits of its sha256 beside its time, so a name
always holds the same bytes. Two runs indexing one video at once (or a retried commit) may
compute different bytes for the same snapshot key (a stream batched with other videos is not
bit-exact with the same stream alone): under one fixed name per key, the last move and the
last snapshots row could come from different runs, leaving a row whose sha256 is of the other
run's bytes. With the hash in the name each row names its own bytes; the blob whose row lost
the upsert is an orphan that `vidindex maintain` deletes. (A lease per video would also stop
the race, but needs expiry and a holder's heartbeat so that a crashed run's videos resume; a
name is stateless.)

Retries: s3fs (botocore) and gcsfs retry a failed request with backoff inside each call, and
LanceDB's object store does for the tables; after that they raise their own error types. Local
disks, network mounts and other fsspec filesystems do not retry, so a write or read that fails
with a transient error (ConnectionError, TimeoutError) is tried again here a few times; anything
else (no space, no permission, a missing blob) fails at once.

Messages name the blob by its URI without credentials, and credentials in a library's error text
are masked: they end up in logs, the videos table and the CLI's output.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
import time
import uuid
from dataclasses import dataclass
from typing import Union

import fsspec

from vidindex.store.errors import SnapshotIntegrityError, StoreError
from vidindex.video.redact import redact_uri, scrub_secrets

log = logging.getLogger(__name__)

BlobSource = Union[bytes, bytearray, memoryview]
TRANSIENT_ERRORS = (ConnectionError, TimeoutError)
RETRY_DELAYS_S = (0.2, 1.0)  # waits before the 2nd and 3rd attempt: rides out a blip, not an outage

_SAFE_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
NAME_DIGEST_CHARS = 16  # 64 bits: two different states of one snapshot key never share a name


@dataclass(frozen=True)
class BlobInfo:
    uri: str
    bytes: int
    sha256: str


def snapshot_blob_uri(root: str, video_id: str, config_id: str, t_ms: int, sha256: str) -> str:
    """<root>/<video_id>/<config_id>/<t_ms, 10 digits>-<sha256, first 16 hex digits>.safetensors:
    zero padding sorts names by time; the digest makes the name one of these bytes only."""
    for name, value in (("video_id", video_id), ("config_id", config_id)):
        check_path_component(name, value)
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise StoreError(f"snapshot blob name: {sha256!r} is not a hex sha256")
    return f"{root.rstrip('/')}/{video_id}/{config_id}/{int(t_ms):010d}-{sha256[:NAME_DIGEST_CHARS]}.safetensors"


def check_path_component(name: str, value: str) -> None:
    if not isinstance(value, str) or not _SAFE_COMPONENT.fullmatch(value):
        raise StoreError(f"{name} {value!r} cannot name a file: use letters, digits, '.', '_' or '-'")


def write_snapshot_blob(root: str, video_id: str, config_id: str, t_ms: int, source: BlobSource,
                        fs_options: dict | None = None) -> BlobInfo:
    """Write a snapshot's state at its place under `root` (snapshot_blob_uri, named by its
    sha256), atomically; returns where, its size and sha256. Fails loudly naming the blob."""
    data = memoryview(source).cast("B")
    digest = hashlib.sha256(data).hexdigest()
    return _write(snapshot_blob_uri(root, video_id, config_id, t_ms, digest), data, digest, fs_options)


def write_blob(uri: str, source: BlobSource, fs_options: dict | None = None) -> BlobInfo:
    """Write `source` to `uri` atomically; returns its size and sha256. Fails loudly naming `uri`."""
    data = memoryview(source).cast("B")
    return _write(uri, data, hashlib.sha256(data).hexdigest(), fs_options)


def _write(uri: str, data: memoryview, digest: str, fs_options: dict | None) -> BlobInfo:
    try:
        fs, path = fsspec.core.url_to_fs(uri, **(fs_options or {}))
        _retrying("write of snapshot blob", uri, lambda: _write_once(fs, path, data))
    except Exception as error:
        raise masked_error("cannot write snapshot blob", uri, error)
    return BlobInfo(uri=uri, bytes=data.nbytes, sha256=digest)


def _write_once(fs, path: str, data: memoryview) -> None:
    directory, name = posixpath.split(path)
    temp_path = posixpath.join(directory, f".{name}.tmp-{uuid.uuid4().hex}")  # dot: globs and Spark skip it
    try:
        make_parent_dirs(fs, directory)
        with fs.open(temp_path, "wb") as file:
            file.write(data)
        fs.mv(temp_path, path)
    except BaseException:
        _remove_quietly(fs, temp_path)
        raise


def check_blob(blob: BlobInfo, fs_options: dict | None = None) -> None:
    """StoreError naming the blob unless it exists at its uri with its size."""
    try:
        fs, path = fsspec.core.url_to_fs(blob.uri, **(fs_options or {}))
        fs.invalidate_cache(path)  # another process wrote it: never trust a cached listing
        size = fs.size(path)
    except FileNotFoundError:
        raise StoreError(f"snapshot blob {redact_uri(blob.uri)} does not exist") from None
    except Exception as error:
        raise masked_error("cannot check snapshot blob", blob.uri, error)
    if size != blob.bytes:
        raise StoreError(f"snapshot blob {redact_uri(blob.uri)} has {size} bytes, the commit says {blob.bytes}")


def read_blob(uri: str, expected_bytes: int, expected_sha256: str, fs_options: dict | None = None,
              verify: bool = True) -> bytes:
    """The blob's bytes, after checking them against its snapshots row. verify=False checks
    the size only, for a caller that checks the sha256 itself (Stream.from_bytes does it while
    the tensors load)."""
    def read() -> bytes:
        with fsspec.open(uri, "rb", **(fs_options or {})) as file:
            return file.read()

    shown = redact_uri(uri)
    try:
        data = _retrying("read of snapshot blob", uri, read)
    except FileNotFoundError:
        raise SnapshotIntegrityError(f"snapshot blob {shown} is missing") from None
    except Exception as error:
        raise masked_error("cannot read snapshot blob", uri, error)
    if len(data) != expected_bytes:
        raise SnapshotIntegrityError(f"snapshot blob {shown} has {len(data)} bytes, its row says {expected_bytes}")
    if not verify:
        return data
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise SnapshotIntegrityError(f"snapshot blob {shown} has sha256 {digest}, its row says {expected_sha256}")
    return data


def _retrying(action: str, uri: str, attempt):
    """attempt(), tried again after RETRY_DELAYS_S while it fails with a transient error."""
    for delay in (*RETRY_DELAYS_S, None):
        try:
            return attempt()
        except TRANSIENT_ERRORS as error:
            if delay is None:
                raise
            log.warning("%s %s failed (%s: %s); trying again in %.1f s", action, redact_uri(uri),
                        type(error).__name__, scrub_secrets(str(error), uri), delay)
            time.sleep(delay)


def masked_error(what: str, uri: str, error: BaseException) -> StoreError:
    """StoreError("<what> <uri>: <problem>") with the credentials of `uri` masked in both; the
    original error stays attached as the cause unless its text holds them."""
    text = str(error) or type(error).__name__
    shown = scrub_secrets(text, uri)
    failure = StoreError(f"{what} {redact_uri(uri)}: {shown}")
    failure.__cause__ = error if shown == text else None
    failure.__suppress_context__ = True
    return failure


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

"""Pictures and bytes of indexed videos: a JPEG of any moment (decoded on demand, cached), and
the video file itself in byte ranges, so that a browser's player can seek.

Both read only a videos row's `uri`, through the same fsspec layer as indexing
(vidindex.video.uri): local files and object-store URIs alike.
"""

from __future__ import annotations

import io
import mimetypes
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator

from vidindex.video import VideoError, sample_frames
from vidindex.video.probe import stat_object
from vidindex.video.uri import locate, open_input, storage_error

THUMBNAIL_WIDTHS = (64, 1280)  # smallest and largest width a request may ask for
THUMBNAIL_QUALITY = 80
THUMBNAIL_CACHE_BYTES = 64 * 1024 * 1024
THUMBNAIL_STEP_MS = 100  # thumbnails of times this close are the same picture
# High enough that every frame of any real video is its own sampling tick, so the first frame
# sampled from `start` is the first frame at or after it.
EVERY_FRAME_FPS = 10_000
DECODE_TIMEOUT_S = 30.0
CHUNK_BYTES = 1024 * 1024
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".ogv": "video/ogg", ".avi": "video/x-msvideo", ".ts": "video/mp2t"}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class NoFrame(LookupError):
    """The video has no frame at or after the time asked (past its end)."""


class RangeNotSatisfiable(ValueError):
    def __init__(self, size: int):
        super().__init__(f"the requested range is outside the video's {size} bytes")
        self.size = size


class Thumbnails:
    """JPEGs of moments of videos, least recently used dropped past `max_bytes`."""

    def __init__(self, max_bytes: int = THUMBNAIL_CACHE_BYTES):
        self.max_bytes = max_bytes
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, video_id: str, uri: str, t: float, width: int, duration_s: float | None = None) -> bytes:
        """The frame at or just after t (seconds; clamped into the video) as a JPEG `width` wide."""
        t_ms = round(t * 1000 / THUMBNAIL_STEP_MS) * THUMBNAIL_STEP_MS
        if duration_s:
            t_ms = max(0, min(t_ms, int(duration_s * 1000) - THUMBNAIL_STEP_MS))
        key = (video_id, uri, t_ms, width)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        jpeg = frame_jpeg(uri, t_ms / 1000, width)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = jpeg
                self._bytes += len(jpeg)
            while self._bytes > self.max_bytes and len(self._cache) > 1:
                _, dropped = self._cache.popitem(last=False)
                self._bytes -= len(dropped)
        return jpeg


def frame_jpeg(uri: str, t: float, width: int) -> bytes:
    """Decode the first frame at or after t and encode it as a JPEG `width` pixels wide.
    A time past the last frame gives the last frame of the second before it."""
    from PIL import Image

    frame = _first_frame(uri, t)
    if frame is None and t > 0:
        frame = _first_frame(uri, max(0.0, t - 1.0), last=True)
    if frame is None:
        raise NoFrame(f"no frame at or after {t:g} s in {uri}")
    image = Image.fromarray(frame)
    height = max(1, round(image.height * width / image.width))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=THUMBNAIL_QUALITY)
    return out.getvalue()


def _first_frame(uri: str, t: float, last: bool = False):
    found = None
    with sample_frames(uri, fps=EVERY_FRAME_FPS, size=None, start=t, timeout_s=DECODE_TIMEOUT_S, prefetch=2) as frames:
        for _, frame in frames:
            found = frame
            if not last:
                break
    return found


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive
    size: int  # of the whole file
    partial: bool

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def headers(self, content_type: str) -> dict[str, str]:
        headers = {"Accept-Ranges": "bytes", "Content-Length": str(self.length), "Content-Type": content_type,
                   "Cache-Control": "private, max-age=3600"}
        if self.partial:
            headers["Content-Range"] = f"bytes {self.start}-{self.end}/{self.size}"
        return headers


def parse_range(header: str | None, size: int) -> ByteRange:
    """The byte range of a Range header ("bytes=a-b", "bytes=a-", "bytes=-n"); the whole file
    without one, or for forms this server does not serve (several ranges, other units)."""
    whole = ByteRange(0, max(0, size - 1), size, partial=False)
    if not header:
        return whole
    match = _RANGE.fullmatch(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return whole
    first, last = match.groups()
    if not first:  # the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(0, size - n), size - 1, size, partial=True)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiable(size)
    return ByteRange(start, end, size, partial=True)


def content_type(uri: str) -> str:
    path = uri.split("?", 1)[0].lower()
    for extension, kind in VIDEO_TYPES.items():
        if path.endswith(extension):
            return kind
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def video_size(uri: str, fs_options: dict | None = None) -> int:
    return stat_object(locate(uri, fs_options)).size


def read_range(uri: str, byte_range: ByteRange, fs_options: dict | None = None) -> Iterator[bytes]:
    """The bytes of `byte_range`, in chunks (opened before the first chunk is asked for, so
    that a missing file fails before a response starts)."""
    location = locate(uri, fs_options)
    handle = open_input(location)

    def chunks():
        try:
            handle.seek(byte_range.start)
            left = byte_range.length
            while left > 0:
                data = handle.read(min(CHUNK_BYTES, left))
                if not data:
                    break
                left -= len(data)
                yield data
        except VideoError:
            raise
        except OSError as error:
            raise storage_error(location.uri, error) from error
        finally:
            handle.close()

    return chunks()

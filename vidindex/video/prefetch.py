"""Background decoding with a bounded queue, timeouts, and clean shutdown.

Decode runs in a daemon thread that stays at most `prefetch` frames ahead of the consumer, so
decoding overlaps the GPU and memory stays bounded whatever the video length. A consumer that
waits longer than `timeout_s` for the next frame gets DecodeTimeout (a stalled read or a stuck
decoder). Closing the stream early (break, close(), garbage collection) stops the thread: reads
made after the stop raise, which unwinds FFmpeg promptly even in the middle of a demux.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

import av
import numpy as np

from vidindex.video.errors import CorruptVideo, DecodeTimeout, VideoError
from vidindex.video.redact import redact_uri
from vidindex.video.uri import storage_error


class Stopped(OSError):
    """Raised inside the decode thread when the consumer has gone away."""


class StoppableFile:
    """File object wrapper whose reads fail once `stop` is set; counts bytes read."""

    def __init__(self, raw, stop: threading.Event):
        self.raw, self.stop, self.bytes_read = raw, stop, 0
        self.name = getattr(raw, "name", None) or ""

    def read(self, n: int = -1) -> bytes:
        if self.stop.is_set():
            raise Stopped("video stream closed")
        data = self.raw.read(n)
        self.bytes_read += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if self.stop.is_set():
            raise Stopped("video stream closed")
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def as_video_error(uri: str, e: BaseException) -> BaseException:
    """Typed error for what decoding raised; programming errors pass through unchanged."""
    if isinstance(e, VideoError):
        return e
    if isinstance(e, av.error.FFmpegError):
        return CorruptVideo(uri, f"decode failed: {e}")
    if isinstance(e, OSError):
        return storage_error(uri, e)
    return e


def run_with_timeout(fn: Callable, timeout_s: float | None, uri, what: str):
    """fn() in a daemon thread; DecodeTimeout if it has not returned after timeout_s."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True, name=f"vidindex-{what}")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise DecodeTimeout(str(uri), f"{what} made no progress in {timeout_s:g}s")
    if "error" in box:
        raise as_video_error(redact_uri(str(uri)), box["error"])
    return box["value"]


_END = object()


def _put(q: queue.Queue, stop: threading.Event, item) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _decode_loop(produce, q: queue.Queue, stop: threading.Event, stats: dict) -> None:
    try:
        frames = produce(stop, stats)
        try:
            for item in frames:
                if not _put(q, stop, item):
                    return
        finally:
            close = getattr(frames, "close", None)
            if close:
                close()
        _put(q, stop, _END)
    except BaseException as e:  # handed to the consumer, who raises it with progress info
        if not stop.is_set():
            _put(q, stop, e)


class FrameStream:
    """Iterator of (timestamp_seconds, frame) fed by a decode thread.

    produce(stop) must return an iterator of (float, np.ndarray) and should check `stop`
    (StoppableFile does it on every read). `stats` has decoded / sampled frame counts.
    """

    def __init__(self, produce: Callable[[threading.Event], Iterator], uri: str, prefetch: int,
                 timeout_s: float | None):
        self.uri = redact_uri(str(uri))
        self.timeout_s = timeout_s
        self.stats = {"decoded_frames": 0, "sampled_frames": 0, "bytes_read": 0}
        self.last_timestamp: float | None = None
        self._count = 0
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._done = False
        # the thread gets no reference to self, so an abandoned stream is collected and stops it
        self._thread = threading.Thread(target=_decode_loop, daemon=True, name="vidindex-decode",
                                        args=(produce, self._queue, self._stop, self.stats))
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self) -> tuple[float, np.ndarray]:
        if self._done:
            raise StopIteration
        try:
            item = self._queue.get(timeout=self.timeout_s)
        except queue.Empty:
            self.close()
            raise DecodeTimeout(self.uri, f"no frame for {self.timeout_s:g}s",
                                last_timestamp=self.last_timestamp,
                                frames_yielded=self._count) from None
        if item is _END:
            self._done = True
            self._thread.join(timeout=5)
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            err = as_video_error(self.uri, item)
            if isinstance(err, VideoError):  # say how far we got
                raise type(err)(err.uri, err.problem, last_timestamp=self.last_timestamp,
                                frames_yielded=self._count) from item
            raise err
        self._count += 1
        self.last_timestamp = item[0]
        return item

    def close(self) -> None:
        """Stop the decode thread and release the file."""
        self._done = True
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self._stop.set()
        except Exception:
            pass

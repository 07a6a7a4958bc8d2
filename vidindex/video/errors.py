"""Typed errors for everything that can go wrong between a video's URI and its frames.

Every error carries the URI (with any credentials stripped) and says what went wrong, so a
per-video error record is useful on its own. Errors raised mid-stream also say how far decoding
got (`last_timestamp`, `frames_yielded`), which the engine records as "partial at t".
"""

from __future__ import annotations

from vidindex.video.redact import redact_uri


class VideoError(Exception):
    """Base class: something about this video (not about vidindex) stops it being indexed."""

    def __init__(self, uri: str, problem: str, *, last_timestamp: float | None = None,
                 frames_yielded: int | None = None):
        self.uri = redact_uri(str(uri))
        self.problem = problem
        self.last_timestamp = last_timestamp
        self.frames_yielded = frames_yielded
        where = ""
        if last_timestamp is not None:
            where = f" (after {frames_yielded} sampled frames, last at t={last_timestamp:.3f}s)"
        elif frames_yielded:
            where = f" (after {frames_yielded} sampled frames)"
        super().__init__(f"{self.uri}: {problem}{where}")

    def __reduce__(self):  # keep errors picklable across Ray workers
        return (_rebuild, (type(self), self.uri, self.problem, self.last_timestamp,
                           self.frames_yielded))


def _rebuild(cls, uri, problem, last_timestamp, frames_yielded):
    return cls(uri, problem, last_timestamp=last_timestamp, frames_yielded=frames_yielded)


class VideoNotFound(VideoError):
    """No object at the URI."""


class VideoPermissionError(VideoError):
    """The object exists but we may not read it."""


class EmptyVideoFile(VideoError):
    """The object has zero bytes."""


class NotAVideo(VideoError):
    """The bytes are not a container format we can demux (text, an image, random data)."""


class NoVideoStream(VideoError):
    """A media container without a video stream (e.g. audio only)."""


class UnsupportedCodec(VideoError):
    """The video stream's codec has no decoder here."""


class BadDimensions(VideoError):
    """Width/height are missing, tiny or absurdly large."""


class ZeroDurationVideo(VideoError):
    """A video stream that holds no decodable frame."""


class CorruptVideo(VideoError):
    """The container or bitstream is damaged (not just cut short)."""


class VideoTruncated(CorruptVideo):
    """The file ends before the video does (interrupted upload or copy)."""


class DecodeTimeout(VideoError):
    """Opening or decoding made no progress within the timeout (stalled storage, stuck decoder)."""


class VideoReadError(VideoError):
    """Storage failed while reading (network error, throttling)."""

"""Open a video by URI, check it is something we can decode, and describe it (VideoInfo).

All the "is this a usable video?" checks live here and raise typed errors, so sample_frames
fails at open with the same errors probe gives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import statistics
from dataclasses import dataclass
from fractions import Fraction

import av

from vidindex.video.errors import (BadDimensions, CorruptVideo, EmptyVideoFile, NoVideoStream,
                                   NotAVideo, UnsupportedCodec, VideoError, VideoTruncated,
                                   ZeroDurationVideo)
from vidindex.video.prefetch import run_with_timeout
from vidindex.video.uri import Location, locate, open_input, storage_error

MIN_SIDE = 16  # smaller frames carry nothing the model can use
MAX_SIDE = 16384  # larger than any codec level we decode; likely a damaged header
DEFAULT_TIMEOUT_S = 120.0

# Demuxers FFmpeg offers for images and text; a video indexer must not accept those as videos.
NOT_VIDEO_FORMATS = {"tty", "image2", "image2pipe", "txt", "bin", "xbin", "adp", "lavfi"}


@dataclass(frozen=True)
class VideoInfo:
    uri: str  # canonical URI
    video_id: str
    duration: float  # seconds
    fps: float  # average frame rate
    frame_count: int  # from the container index where present, else duration * fps
    width: int  # displayed (after rotation)
    height: int
    rotation: int  # counter-clockwise degrees applied to decoded frames to make them upright
    codec: str
    size_bytes: int
    is_vfr: bool
    container: str
    has_audio: bool


@dataclass(frozen=True)
class ObjectStat:
    size: int
    version: str  # etag or modification time: changes when the object is rewritten


def stat_object(loc: Location) -> ObjectStat:
    try:
        info = loc.fs.info(loc.path)
    except BaseException as e:
        raise storage_error(loc.uri, e) from e
    if info.get("type") == "directory":
        raise storage_error(loc.uri, IsADirectoryError(loc.path))
    version = ""
    for key in ("ETag", "etag", "mtime", "LastModified", "last_modified", "updated", "created"):
        if info.get(key) is not None:
            version = str(info[key]).strip('"')
            break
    return ObjectStat(size=int(info.get("size") or 0), version=version)


def _id_from(uri: str, stat: ObjectStat, content: str = "") -> str:
    key = "\n".join([uri, str(stat.size), content or stat.version])
    return hashlib.sha256(key.encode()).hexdigest()[:24]


def video_id_for(uri, fs_options: dict | None = None, content_hash: bool = False) -> str:
    """Stable id: canonical URI + size + etag/mtime (or + a SHA-256 of the bytes, which
    survives re-uploads of the same content at the same URI but reads the whole file)."""
    loc = locate(uri, fs_options)
    stat = stat_object(loc)
    content = ""
    if content_hash:
        h = hashlib.sha256()
        try:
            with open_input(loc) as f:
                while chunk := f.read(8 * 1024 * 1024):
                    h.update(chunk)
        except VideoError:
            raise
        except BaseException as e:
            raise storage_error(loc.uri, e) from e
        content = "sha256:" + h.hexdigest()
    return _id_from(loc.uri, stat, content)


def _sniff(head: bytes) -> str | None:
    """Name of the container the first bytes look like, or None."""
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if len(head) > 376 and head[0] == head[188] == head[376] == 0x47:
        return "mpegts"
    return None


def _describe(head: bytes) -> str:
    if head[:3] == b"\xff\xd8\xff":
        return "a JPEG image"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "a PNG image"
    if head[:5] in (b"%PDF-",):
        return "a PDF"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unrecognised data"


# Badly encoded tags must not make a video unreadable; PyAV 19 dropped this option.
_OPEN_OPTIONS = {"metadata_errors": "ignore"} if int(av.__version__.split(".")[0]) < 19 else {}


def open_container(loc: Location, fileobj, size: int, hwaccel=None):
    """av.open with FFmpeg's failures mapped to typed errors; hwaccel: an av HWAccel (NVDEC)."""
    uri = loc.uri
    options = dict(_OPEN_OPTIONS)
    if hwaccel is not None:
        options["hwaccel"] = hwaccel
    try:
        head = fileobj.read(512)
        fileobj.seek(0)
    except BaseException as e:
        raise storage_error(uri, e) from e
    try:
        container = av.open(fileobj, mode="r", **options)
    except (av.error.InvalidDataError, av.error.EOFError) as e:
        kind = _sniff(head)
        if kind == "mp4":
            raise VideoTruncated(uri, "MP4 file without a readable index (moov box): cut off or "
                                      "still being written") from e
        if kind:
            raise CorruptVideo(uri, f"damaged {kind} container: {e.strerror or e}") from e
        raise NotAVideo(uri, f"not a video container ({_describe(head)})") from e
    except av.error.FFmpegError as e:
        raise CorruptVideo(uri, f"cannot open: {e}") from e
    fmt = container.format.name
    if fmt in NOT_VIDEO_FORMATS or fmt.endswith("_pipe"):
        container.close()
        raise NotAVideo(uri, f"not a video: FFmpeg reads it as {fmt} ({_describe(head)})")
    return container


def check_video_stream(container, uri: str):
    """The first video stream, after checking codec and dimensions."""
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        raise NoVideoStream(uri, f"no video stream (has: {', '.join(kinds)})")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None:
        raise UnsupportedCodec(uri, "no decoder for the video codec (unknown codec tag)")
    w, h = ctx.width, ctx.height
    if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
        raise BadDimensions(uri, f"frame size {w}x{h} outside {MIN_SIDE}..{MAX_SIDE} pixels")
    return stream


def first_frame(container, stream, uri: str):
    """Decode the first frame: proves the codec works and gives the rotation."""
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as e:
        raise CorruptVideo(uri, f"first frame does not decode: {e}") from e
    raise ZeroDurationVideo(uri, "video stream has no decodable frames")


def _packet_times(container, stream, limit: int = 600) -> list[int]:
    pts = [e.timestamp for e in stream.index_entries[:limit]] if stream.index_entries else []
    if len(pts) < 3:
        container.seek(0, stream=stream)
        pts = []
        for pkt in container.demux(stream):
            if pkt.pts is not None and pkt.size:
                pts.append(pkt.pts)
            if len(pts) >= limit:
                break
    return sorted(pts)


def _is_vfr(pts: list[int]) -> bool:
    deltas = [b - a for a, b in zip(pts, pts[1:]) if b > a]
    if len(deltas) < 3:
        return False
    med = statistics.median(deltas)
    return any(abs(d - med) > 0.02 * med for d in deltas)


def probe_open(loc: Location, fileobj, size: int, threads: int = 1, hwaccel=None
               ) -> tuple[VideoInfo, object, object]:
    """Open and validate; returns (info, container, stream) with the container at the start.
    threads: decoder threads for the stream that is left open (0: one per core).
    hwaccel: decode on that device (see vidindex.video.nvdec); the checks are the same."""
    container = open_container(loc, fileobj, size, hwaccel)
    try:
        stream = check_video_stream(container, loc.uri)
        if threads != 1:  # must be set before the first decode opens the codec
            stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        frame = first_frame(container, stream, loc.uri)
        rotation = int(frame.rotation or 0) % 360
        tb = Fraction(stream.time_base)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if stream.duration:
            duration = float(stream.duration * tb)
        elif container.duration:
            duration = container.duration / 1e6
        else:
            duration = 0.0
        pts = _packet_times(container, stream)
        frame_count = stream.frames or (len(stream.index_entries) if stream.index_entries
                                        else int(round(duration * fps)))
        w, h = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            w, h = h, w
        info = VideoInfo(uri=loc.uri, video_id="", duration=duration, fps=fps,
                         frame_count=int(frame_count), width=w, height=h, rotation=rotation,
                         codec=stream.codec_context.name, size_bytes=size,
                         is_vfr=_is_vfr(pts), container=container.format.name,
                         has_audio=bool(container.streams.audio))
        container.seek(0, stream=stream)
        stream.codec_context.flush_buffers()
        return info, container, stream
    except BaseException:
        container.close()
        raise


def open_checked(uri, fs_options: dict | None = None):
    """(loc, stat, fileobj) for a URI that exists and is not empty."""
    loc = locate(uri, fs_options)
    stat = stat_object(loc)
    if stat.size == 0:
        raise EmptyVideoFile(loc.uri, "file is empty (0 bytes)")
    return loc, stat, open_input(loc)


def probe(uri, fs_options: dict | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
          ) -> VideoInfo:
    """Describe the video at `uri`; raises a VideoError subclass for anything unusable."""
    def work():
        loc, stat, fileobj = open_checked(uri, fs_options)
        with fileobj:
            info, container, _ = probe_open(loc, fileobj, stat.size)
            container.close()
        return dataclasses.replace(info, video_id=_id_from(loc.uri, stat))

    return run_with_timeout(work, timeout_s, uri, "probe")

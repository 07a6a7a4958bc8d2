"""Decoding with PyAV (FFmpeg libraries bundled in the wheel).

Frame selection runs on packet timestamps, before decoding. A group of pictures (keyframe to
keyframe) that holds no wanted frame is never decoded, and a wanted group is decoded only up to
its last wanted frame, so sampling 1 frame/s from a short-GOP file decodes a fraction of it.
Skipping is only done where it is safe: closed GOPs whose packets all carry timestamps; otherwise
every packet is decoded and frames are selected by their decoded timestamps.
"""

from __future__ import annotations

import itertools
import logging
from fractions import Fraction
from typing import Iterator

import av

from vidindex.video.errors import CorruptVideo, VideoTruncated
from vidindex.video.sampling import FrameSelector

log = logging.getLogger(__name__)

MAX_GOP_PACKETS = 1200  # beyond this a GOP is decoded as it comes (no skipping): bounded memory


class PyAVReader:
    name = "pyav"

    def __init__(self, container: av.container.InputContainer, uri: str,
                 on_corrupt: str = "raise"):
        """container: opened by probe_open, which also set the decoder threads."""
        self.container = container
        self.uri = uri
        self.on_corrupt = on_corrupt
        self.stream = container.streams.video[0]
        self.tb = Fraction(self.stream.time_base)
        self.start_pts = self.stream.start_time or 0
        self.decoded = 0  # frames out of the decoder (for the decoded/sampled ratio)
        self.corrupt_spans: list[float] = []  # times of skipped damage (on_corrupt="skip")

    def seconds(self, pts: int) -> Fraction:
        return (pts - self.start_pts) * self.tb

    def expected_end(self) -> float | None:
        s = self.stream
        if s.duration:
            return float(s.duration * self.tb)
        if self.container.duration:
            return self.container.duration / 1e6
        return None

    def close(self) -> None:
        self.container.close()

    # -- decoding ----------------------------------------------------------------------------

    def frames(self, fps, start: Fraction = Fraction(0)) -> Iterator[tuple[Fraction, av.VideoFrame]]:
        """Yield (time, frame) for the frames the sampling rule keeps, in order."""
        margin = Fraction(2)
        while True:
            selector = FrameSelector(fps, start=start)
            seek_to = start - margin if start > 0 else None
            if seek_to is not None and seek_to <= 0:
                seek_to = None
            if seek_to is not None:
                self.container.seek(int(seek_to / self.tb) + self.start_pts, stream=self.stream,
                                    backward=True, any_frame=False)
                self.stream.codec_context.flush_buffers()
            run = _DecodeRun(self, selector, start, check_overshoot=seek_to is not None)
            try:
                yield from run.frames()
                return
            except _SeekOvershot:
                margin *= 4  # the demuxer landed after `start`: seek further back and retry


class _SeekOvershot(Exception):
    pass


class _DecodeRun:
    """One pass over the packets from the current demuxer position to the end."""

    def __init__(self, reader: PyAVReader, selector: FrameSelector, start: Fraction,
                 check_overshoot: bool):
        self.r = reader
        self.selector = selector
        self.start = start
        self.check_overshoot = check_overshoot
        self.wanted: set[int] = set()  # pts chosen from packets, waiting for their frame
        self.skipping = True  # false once we meet packets without timestamps or open GOPs
        self.last_emitted: int | None = None
        self.last_pts_seen: int | None = None

    # packets of one GOP in decode order; a GOP is "open" when frames precede its keyframe
    def _select(self, gop: list) -> list:
        """Run the sampling rule over the GOP's frames in presentation order; returns the
        packets (decode order) that must be sent to the decoder."""
        ordered = sorted((p for p in gop if not p.is_discard), key=lambda p: p.pts)
        if self.check_overshoot and ordered:
            self.check_overshoot = False
            if self.r.seconds(ordered[0].pts) >= self.start and ordered[0].pts > self.r.start_pts:
                raise _SeekOvershot()
        last_needed = -1
        index = {id(p): i for i, p in enumerate(gop)}
        for p in ordered:
            if self.selector.take(self.r.seconds(p.pts)):
                self.wanted.add(p.pts)
                last_needed = max(last_needed, index[id(p)])
            self.last_pts_seen = p.pts if p.duration is None else p.pts + p.duration
        return gop[:last_needed + 1]

    def frames(self):
        demux = self.r.container.demux(self.r.stream)
        try:
            yield from self._frames(demux)
        except _Damage as e:
            # a bad packet followed by the end of the file is a cut-off file, not inner damage
            more = 0
            try:
                more = sum(1 for p in itertools.islice(demux, 64) if p.size)
            except (av.error.FFmpegError, OSError):
                pass
            at = f"t={e.t:.3f}s" if e.t is not None else "an unknown time"
            if more == 0:
                raise VideoTruncated(self.r.uri, f"file ends inside the video at {at} ({e.detail})")
            raise CorruptVideo(self.r.uri, f"undecodable data at {at} ({e.detail})")
        except _Cut as e:
            end = f" of {e.end:.3f}s" if e.end else ""
            why = f": {e.error}" if e.error is not None else ""
            raise VideoTruncated(self.r.uri, f"video data stops at t={e.seen:.3f}s{end}{why}")

    def _frames(self, demux):
        gop: list = []
        pending: list | None = None  # previous GOP, held until we know if the next is open
        try:
            for pkt in demux:
                if pkt.size == 0:
                    continue  # flush marker at end of stream
                if pkt.pts is None:
                    self.skipping = False
                if not self.skipping:
                    if pending is not None or gop:
                        for p in (pending or []) + gop:
                            yield from self._decode_full(p)
                        pending, gop = None, []
                    yield from self._decode_full(pkt)
                    continue
                if pkt.is_keyframe and gop:
                    if pending is not None:
                        yield from self._decode_gop(pending, next_open=self._is_open(gop))
                    pending, gop = gop, []
                gop.append(pkt)
                if len(gop) > MAX_GOP_PACKETS:  # no keyframes for a long time: stop buffering
                    if pending is not None:
                        yield from self._decode_gop(pending, next_open=True)
                        pending = None
                    yield from self._decode_gop(gop, next_open=True)
                    gop = []
        except (av.error.InvalidDataError, av.error.EOFError, OSError) as e:
            demux_error = e
        else:
            demux_error = None
        if self.skipping:
            if pending is not None:
                yield from self._decode_gop(pending, next_open=False)
            if gop:
                yield from self._decode_gop(gop, next_open=False)
        yield from self._decode_packet(None)  # drain
        self._check_complete(demux_error)

    @staticmethod
    def _is_open(gop: list) -> bool:
        key = gop[0].pts
        return any(p.pts is not None and p.pts < key for p in gop[1:])

    def _decode_gop(self, gop: list, next_open: bool):
        needed = self._select(gop)
        if next_open:
            needed = gop  # the next GOP's leading frames reference the end of this one
        for pkt in needed:
            yield from self._decode_packet(pkt)

    def _decode_full(self, pkt):
        for frame in self._decode_raw(pkt):
            t = self.r.seconds(frame.pts if frame.pts is not None else 0)
            self.last_pts_seen = frame.pts
            if self.check_overshoot:
                self.check_overshoot = False
                if t >= self.start and frame.pts > self.r.start_pts:
                    raise _SeekOvershot()
            if self.selector.take(t):
                yield from self._emit(frame)

    def _decode_packet(self, pkt):
        for frame in self._decode_raw(pkt):
            if frame.pts in self.wanted:
                self.wanted.discard(frame.pts)
                yield from self._emit(frame)

    def _emit(self, frame):
        if self.last_emitted is not None and frame.pts <= self.last_emitted:
            return  # never go back in time
        self.last_emitted = frame.pts
        yield self.r.seconds(frame.pts), frame

    def _decode_raw(self, pkt):
        try:
            frames = self.r.stream.decode(pkt)
        except av.error.InvalidDataError as e:
            self._damage(pkt, e)
            return
        except av.error.FFmpegError as e:
            if pkt is None:
                return
            self._damage(pkt, e)
            return
        self.r.decoded += len(frames)
        yield from frames

    def _damage(self, pkt, e):
        t = float(self.r.seconds(pkt.pts)) if pkt is not None and pkt.pts is not None else None
        if self.r.on_corrupt == "skip":
            self.r.corrupt_spans.append(t)
            log.warning("%s: skipping undecodable data at t=%s", self.r.uri, t)
            return
        # A bad packet followed by the end of the file is a cut-off file, not damage inside.
        raise _Damage(t, str(e))

    def _check_complete(self, demux_error):
        end = self.r.expected_end()
        seen = float(self.r.seconds(self.last_pts_seen)) if self.last_pts_seen is not None else 0.0
        fps = float(self.r.stream.average_rate or 30)
        if demux_error is not None or (end is not None and seen < end - max(1.0, 3 / fps)):
            raise _Cut(seen, end, demux_error)


class _Damage(Exception):
    def __init__(self, t, detail):
        self.t, self.detail = t, detail


class _Cut(Exception):
    def __init__(self, seen, end, error):
        self.seen, self.end, self.error = seen, end, error



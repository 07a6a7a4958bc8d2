"""Synthetic videos with known content, for tests, the demo and benchmarks.

Every frame shows its own frame index as a row of black/white blocks across the top (readable
after compression and resizing, see `read_frame_index`), its timestamp in large digits, and the
current scene: a background colour with a coloured shape that change at known times. Frames are
built directly as YUV 4:2:0 planes (no colour conversion) and encoded with PyAV's bundled codecs,
so an hour of 320x240 takes about a minute and a few seconds of video take milliseconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np

CODE_BITS = 20  # frame indices up to ~1M: an hour at 240 fps

# name -> (R, G, B)
PALETTE = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40),
    "magenta": (200, 50, 190), "cyan": (40, 200, 210), "orange": (240, 140, 30),
    "grey": (128, 128, 128), "purple": (110, 50, 160), "teal": (20, 120, 120),
}
SHAPES = ("square", "circle", "bar")


@dataclass(frozen=True)
class Scene:
    start: float  # seconds, inclusive
    end: float  # seconds, exclusive
    background: str  # PALETTE name
    shape: str  # one of SHAPES
    shape_color: str  # PALETTE name


@dataclass(frozen=True)
class SceneSchedule:
    """What was written: every frame's presentation time and the scenes."""

    fps: float
    width: int  # as displayed (after rotation)
    height: int
    rotation: int
    frame_times: np.ndarray = field(repr=False)  # float64 seconds, one per frame, increasing
    frame_pts: np.ndarray = field(repr=False)  # int64 in units of time_base
    time_base: Fraction = Fraction(1, 1)
    scenes: tuple[Scene, ...] = ()

    @property
    def duration(self) -> float:
        """End of the last frame."""
        return float(self.frame_times[-1]) + 1.0 / self.fps if len(self.frame_times) else 0.0

    def scene_at(self, t: float) -> Scene:
        for s in self.scenes:
            if s.start <= t < s.end:
                return s
        return self.scenes[-1]

    def frame_index_at(self, t: float) -> int:
        """Index of the frame on screen at time t."""
        return int(np.searchsorted(self.frame_times, t + 1e-9, side="right")) - 1

    def expected_samples(self, fps: float, start: float = 0.0) -> list[float]:
        """Timestamps vidindex.video.sample_frames must yield (its documented selection rule)."""
        from vidindex.video.sampling import FrameSelector

        sel = FrameSelector(fps, start=start)
        return [float(t) for t in (Fraction(int(p)) * self.time_base for p in self.frame_pts)
                if sel.take(t)]


def _yuv(rgb) -> tuple[int, int, int]:
    r, g, b = rgb  # BT.601 limited range, what yuv420p H.264 decoders assume by default
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    u = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    v = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    return int(round(y)), int(round(u)), int(round(v))


_GLYPHS = {  # 3x5 digits, rows top to bottom
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001001001001", "8": "111101111101111",
    "9": "111101111001111", ".": "000000000000010", "s": "000011010001110",
}


def _make_scenes(seconds: float, scene_seconds: float, rng) -> tuple[Scene, ...]:
    names = list(PALETTE)
    scenes, t, i = [], 0.0, 0
    while t < seconds:
        length = float(scene_seconds * rng.uniform(0.5, 1.5))
        end = min(seconds, round(t + length, 3))
        bg = names[i % len(names)]
        fg = names[(i * 3 + 5) % len(names)]
        if fg == bg:
            fg = names[(i + 1) % len(names)]
        scenes.append(Scene(round(t, 3), end, bg, SHAPES[i % len(SHAPES)], fg))
        t, i = end, i + 1
    return tuple(scenes)


def random_scenes(seconds: float, scene_seconds: float, rng) -> tuple[Scene, ...]:
    """Scenes as write_video cuts them, with a random look each (background, shape, shape
    colour; never the same look twice in a row), for data with varied content."""
    names = list(PALETTE)
    scenes, t, last = [], 0.0, None
    while t < seconds:
        end = min(seconds, round(t + float(scene_seconds * rng.uniform(0.5, 1.5)), 3))
        look = last
        while look == last:
            bg, fg = rng.choice(len(names), size=2, replace=False)
            look = (names[bg], SHAPES[rng.integers(len(SHAPES))], names[fg])
        scenes.append(Scene(round(t, 3), end, *look))
        t, last = end, look
    return tuple(scenes)


def frame_painter(width: int = 320, height: int = 240, rotation: int = 0, texture: bool = False, seed: int = 0):
    """What write_video draws with: `.frame(index, t, scene)` -> av.VideoFrame (yuv420p) of that
    frame as it goes to the encoder, for frames made in memory."""
    return _Painter(width, height, rotation % 360, texture, np.random.default_rng(seed))


class _Painter:
    """Draws frames as YUV420 planes in display orientation, rotated into coded orientation."""

    def __init__(self, width: int, height: int, rotation: int, texture: bool, rng):
        self.rotation = rotation
        self.dw, self.dh = (height, width) if rotation in (90, 270) else (width, height)
        self.dw -= self.dw % 2
        self.dh -= self.dh % 2
        self.band = max(4, self.dh // 10)
        self.block = self.dw / CODE_BITS
        self.scale = max(1, self.dh // 40)  # digit pixel size
        self._scene_cache: dict[Scene, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._glyphs = {c: np.kron(np.array([int(b) for b in s], np.uint8).reshape(5, 3),
                                   np.ones((self.scale, self.scale), np.uint8)) * 235
                        for c, s in _GLYPHS.items()}
        self._gap = np.zeros((5 * self.scale, self.scale), np.uint8)
        # a moving noise texture makes the encoder/decoder work like on real footage
        self.texture = (rng.integers(0, 24, size=(self.dh, self.dw * 2), dtype=np.uint8)
                        if texture else None)

    def _scene_planes(self, s: Scene):
        if s not in self._scene_cache:
            if len(self._scene_cache) > 64:
                self._scene_cache.clear()
            h, w = self.dh, self.dw
            planes = []
            for c in range(3):
                bgv = _yuv(PALETTE[s.background])[c]
                fgv = _yuv(PALETTE[s.shape_color])[c]
                ph, pw = (h, w) if c == 0 else (h // 2, w // 2)
                p = np.full((ph, pw), bgv, np.uint8)
                yy, xx = np.mgrid[0:ph, 0:pw]
                cy, cx, r = ph * 0.6, pw * 0.5, min(ph, pw) * 0.25
                if s.shape == "square":
                    mask = (abs(yy - cy) < r) & (abs(xx - cx) < r)
                elif s.shape == "circle":
                    mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
                else:
                    mask = (abs(yy - cy) < r / 3) & (abs(xx - cx) < r * 1.8)
                p[mask] = fgv
                planes.append(p)
            self._scene_cache[s] = tuple(planes)
        return self._scene_cache[s]

    def frame(self, index: int, t: float, scene: Scene) -> av.VideoFrame:
        y0, u0, v0 = self._scene_planes(scene)
        y, u, v = y0.copy(), u0.copy(), v0.copy()
        if self.texture is not None:
            off = (index * 3) % self.dw
            y[self.band:] += self.texture[self.band:, off:off + self.dw]
        b = self.band
        for bit in range(CODE_BITS):  # most significant bit left
            x0, x1 = int(bit * self.block), int((bit + 1) * self.block)
            val = 235 if (index >> (CODE_BITS - 1 - bit)) & 1 else 16
            y[:b, x0:x1] = val
            u[:b // 2, x0 // 2:x1 // 2] = 128
            v[:b // 2, x0 // 2:x1 // 2] = 128
        text = f"{t:.3f}s"
        parts = []
        for ch in text:
            parts += [self._glyphs[ch], self._gap]
        digits = np.hstack(parts)
        dy, dx = b + self.scale, self.scale
        hh, ww = digits.shape[0], min(digits.shape[1], self.dw - dx)
        if dy + hh <= self.dh and ww > 0:
            region = y[dy:dy + hh, dx:dx + ww]
            np.maximum(region, digits[:, :ww], out=region)
        k = -(self.rotation // 90)  # display = rot90(coded, rotation/90), so store the inverse
        if k % 4:
            y, u, v = (np.ascontiguousarray(np.rot90(p, k)) for p in (y, u, v))
        return _yuv_frame(y, u, v)


def _yuv_frame(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> av.VideoFrame:
    h, w = y.shape
    if h % 4 == 0:  # chroma rows pack into whole luma-width rows
        return av.VideoFrame.from_ndarray(
            np.concatenate([y, u.reshape(-1, w), v.reshape(-1, w)]), format="yuv420p")
    frame = av.VideoFrame(w, h, "yuv420p")
    for plane, data in zip(frame.planes, (y, u, v)):
        pad = plane.line_size - data.shape[1]
        plane.update(np.ascontiguousarray(np.pad(data, ((0, 0), (0, pad)))) if pad else data)
    return frame


def read_frame_index(frame: np.ndarray) -> int:
    """Decode the frame index from an upright RGB frame (any size) written by write_video."""
    gray = frame[..., :3].mean(axis=2) if frame.ndim == 3 else frame
    h, w = gray.shape
    row = gray[max(1, h // 40)]  # a line inside the code band (top tenth)
    index = 0
    for bit in range(CODE_BITS):
        x0, x1 = bit * w / CODE_BITS, (bit + 1) * w / CODE_BITS
        centre = row[int(x0 + (x1 - x0) * 0.3):max(int(x0 + (x1 - x0) * 0.7), int(x0) + 1)]
        index = (index << 1) | int(centre.mean() > 128)
    return index


def exact_rate(fps: float) -> Fraction:
    """fps as a fraction; 29.97, 59.94 and 23.976 mean the NTSC rates (30000/1001, ...)."""
    for base in (24, 30, 48, 60, 120):
        if abs(fps - base * 1000 / 1001) < 0.006:
            return Fraction(base * 1000, 1001)
    return Fraction(fps).limit_denominator(10000)


def frame_times_for(seconds: float, fps: float, vfr: bool, rng) -> tuple[np.ndarray, Fraction]:
    """Presentation times as integer pts and their time base."""
    if not vfr:
        rate = exact_rate(fps)
        count = int(seconds * rate)
        return np.arange(count, dtype=np.int64), 1 / rate
    # variable frame rate: intervals between a third and twice the nominal one, 1/90000 s ticks
    tb = Fraction(1, 90000)
    nominal = 90000 / fps
    steps = np.maximum(1, np.round(rng.uniform(0.33, 2.0, size=int(seconds * fps * 1.2) + 2)
                                   * nominal)).astype(np.int64)
    pts = np.concatenate([[0], np.cumsum(steps)])
    return pts[pts < seconds * 90000], tb


def write_video(path: str | os.PathLike, seconds: float, fps: float = 30.0, width: int = 320,
                height: int = 240, gop: int | None = None, codec: str = "h264", vfr: bool = False,
                rotation: int = 0, *, preset: str = "ultrafast", crf: int = 23, bframes: int = 0,
                scene_seconds: float = 3.0, texture: bool = False, audio: bool = False,
                faststart: bool = True, seed: int = 0, scenes: tuple[Scene, ...] | None = None) -> SceneSchedule:
    """Write a synthetic video and return its schedule.

    width/height are the coded (stored) size; with rotation 90/270 the displayed frame is
    height x width, as in a portrait phone video. gop is the keyframe interval in frames
    (default: 2 s). codec is an encoder name PyAV knows ("h264", "hevc", "mpeg4", "vp9",
    "ffv1", ...); the container follows the file extension (.mp4, .mkv, .webm, .mov, .avi).
    audio adds a silent AAC track (so tests cover streams the reader must ignore).
    scenes: the scenes to show (e.g. random_scenes(...)) instead of the fixed sequence.
    """
    if rotation % 90 or rotation % 360 not in (0, 90, 180, 270):
        raise ValueError("rotation must be a multiple of 90")
    rotation %= 360
    rng = np.random.default_rng(seed)
    pts, time_base = frame_times_for(seconds, fps, vfr, rng)
    # int / int is correctly rounded, so these equal float(Fraction(pts) * time_base) exactly
    num, den = time_base.numerator, time_base.denominator
    times = np.array([int(p) * num / den for p in pts], dtype=np.float64)
    made = _make_scenes(seconds, scene_seconds, rng)  # drawn even when given: same rng after it
    scenes = tuple(scenes) if scenes is not None else made
    painter = _Painter(width, height, rotation, texture, rng)
    coded_w, coded_h = (painter.dh, painter.dw) if rotation in (90, 270) else (painter.dw, painter.dh)

    path = os.fspath(path)
    options = {"movflags": "+faststart"} if faststart and path.endswith((".mp4", ".mov")) else {}
    rate = exact_rate(fps)
    encoder = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9"}.get(codec, codec)
    with av.open(path, "w", options=options) as out:
        stream = out.add_stream(encoder, rate=rate)
        stream.width, stream.height = coded_w, coded_h
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base  # VFR: pts finer than 1/fps
        opts = {"g": str(gop or max(1, int(round(2 * fps)))), "bf": str(bframes)}
        if encoder == "libx264":
            opts.update(preset=preset, crf=str(crf))
            opts["x264-params"] = "scenecut=0:log-level=error"  # keyframes exactly every gop
        elif encoder == "libx265":
            opts.update(preset=preset, crf=str(crf))
            opts["x265-params"] = "scenecut=0:log-level=error"
        elif encoder == "libvpx-vp9":
            opts.update(deadline="realtime", **{"cpu-used": "8"})
        stream.codec_context.options = opts
        if rotation:
            stream.set_display_rotation(rotation)
        if audio:
            astream = out.add_stream("aac", rate=16000, layout="mono")
        scene_i = 0
        for i, (p, t) in enumerate(zip(pts, times)):
            while scenes[scene_i].end <= t and scene_i + 1 < len(scenes):
                scene_i += 1
            frame = painter.frame(i, t, scenes[scene_i])
            frame.pts = int(p)
            frame.time_base = time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if audio:
            _write_silence(out, astream, seconds)
    return SceneSchedule(fps=fps, width=painter.dw, height=painter.dh, rotation=rotation,
                         frame_times=times, frame_pts=pts, time_base=time_base, scenes=scenes)


def _write_silence(out, astream, seconds: float) -> None:
    n = 1024
    for k in range(int(seconds * 16000) // n):
        af = av.AudioFrame.from_ndarray(np.zeros((1, n), np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts = 16000, k * n
        out.mux(astream.encode(af))
    out.mux(astream.encode(None))


def write_audio_only(path: str | os.PathLike, seconds: float = 2.0) -> None:
    """An .mp4/.m4a holding only an AAC track."""
    with av.open(os.fspath(path), "w") as out:
        _write_silence(out, out.add_stream("aac", rate=16000, layout="mono"), seconds)


def write_empty_video(path: str | os.PathLike, width: int = 320, height: int = 240) -> None:
    """A container (use .avi) with a video stream header but no frames: zero duration."""
    with av.open(os.fspath(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        out.start_encoding()

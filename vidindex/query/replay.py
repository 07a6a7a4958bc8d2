"""Replay: feed a stream the frames of a video between two times, decoded by several processes.

Kept apart from the store so that it runs wherever a model and a video are (benchmarks, GPU
hosts without the index's dependencies).

Decoding runs in worker processes, not threads: a decoder's Python side (reads, the per-frame
sampling loop) holds the GIL, which the thread feeding the GPU needs for every kernel launch.
"""

from __future__ import annotations

import multiprocessing
import os
import secrets
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from fractions import Fraction

import numpy as np
import torch

from vidindex.video import CorruptVideo, sample_frames

# Records: bench/results/; which is current: docs/benchmarks.md.
# Decoding, not the model, bounds a long replay: one decoder process per core, leaving one core
# for the thread that feeds the GPU and loads the snapshot (ask_latency-2026-11-21-h100.json).
DECODE_WORKERS = max(1, min(16, (os.cpu_count() or 2) - 1))
# The first part is short, so the model starts as soon as it is decoded; later parts, decoded
# meanwhile, grow (ask_latency-2026-11-21-h100-traced.json) up to a cap that keeps every part
# of a 5-minute replay decoded before the model reaches it (ask_latency-2026-11-22-h100-capped-parts.json).
SEGMENT_SECONDS = 1.5
SEGMENT_GROWTH = 1.5
SEGMENT_MAX_SECONDS = 30.0
# Frames fed before the next part is ready go in multiples of the model's smaller frame chunk
# (vision.COMPILED_FRAME_COUNTS, graphs.CHUNK_FRAMES): other counts run padded or frame by frame.
EARLY_FEED_MULTIPLE = 8
# Frames put through the vision tower while the snapshot loads, at most: their embeddings wait
# on the GPU, and more than this is more GPU work than the load takes (ask_latency-2026-11-22-h100-final-run6.json).
LOADING_AHEAD_FRAMES = 128

_pool: ProcessPoolExecutor | None = None


def decode_pool() -> ProcessPoolExecutor:
    """The process's pool of decoders, started on first use and kept: a later replay in the same
    process (a service, a notebook) finds its workers warm."""
    global _pool
    if _pool is None:
        try:
            context = multiprocessing.get_context("forkserver")  # no fork of a process holding CUDA
            context.set_forkserver_preload(["vidindex.query.replay"])
        except ValueError:  # no forkserver on this platform
            context = multiprocessing.get_context("spawn")
        _pool = ProcessPoolExecutor(max_workers=DECODE_WORKERS, mp_context=context, initializer=_lower_priority)
    return _pool


def _lower_priority() -> None:
    """Decoders yield the cores to the process feeding the GPU: its kernel launches are on the
    critical path, a decoder only has to stay ahead of the model."""
    try:
        os.nice(5)
    except OSError:  # not permitted here: decode at normal priority
        pass


def _drop_pool() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
    _pool = None


def segment_bounds(start_ms: int, until_ms: int, first_ms: int) -> list[int]:
    """Start times (ms) of the parts of (start_ms, until_ms] decoded separately."""
    bounds, length = [start_ms], max(1, first_ms)
    while bounds[-1] + length < until_ms:
        bounds.append(bounds[-1] + round(length))
        length = max(length, min(length * SEGMENT_GROWTH, SEGMENT_MAX_SECONDS * 1000))
    return bounds


class Replay:
    """The sampled frames of (start_s, until_s] of a video, decoding from the moment this is made,
    to be fed to a stream later: make it before loading the model or the snapshot, and the
    decoders run meanwhile.

    The range is cut into parts, the first `segment_seconds` long and each next one
    SEGMENT_GROWTH times longer up to SEGMENT_MAX_SECONDS, decoded in order by the pool's
    worker processes, DECODE_WORKERS at once (each seeks to its start): sample_frames from any
    start yields exactly the frames a run from 0 yields from there, so the parts joined in
    order are the frames of the whole range. Boundaries are whole milliseconds, exact as
    fractions, so no frame falls between two parts.
    """

    def __init__(self, uri: str, *, fps: float, size: int, start_s: float, until_s: float,
                 segment_seconds: float = SEGMENT_SECONDS):
        self.uri, self.size = uri, size
        start_ms, self.until_ms = round(start_s * 1000), round(until_s * 1000)
        starts = segment_bounds(start_ms, self.until_ms, round(segment_seconds * 1000))
        # the last part ends just after until_s: frames past it are never decoded
        bounds = [Fraction(ms, 1000) for ms in starts] + [Fraction(self.until_ms + 1, 1000)]
        try:
            self.parts = _submit_parts(uri, fps, size, bounds)
        except BrokenProcessPool:  # a worker of an earlier replay died: start fresh ones
            _drop_pool()
            self.parts = _submit_parts(uri, fps, size, bounds)

    def feed(self, stream, batch: int) -> int:
        """Feed the frames after the stream's last one, up to `batch` per feed; returns how many.
        Frames are fed as soon as their part is decoded when the next part is not ready yet
        (after the first feed, in multiples of EARLY_FEED_MULTIPLE), so the model never waits
        for a full batch. Raises VideoError for an unreadable video."""
        return sum(_feed(stream, frames, times) for frames, times in self.batches(batch))

    def feed_loaded(self, model, load, batch: int):
        """(stream, frames fed): feed() into the stream `load()` returns, e.g. one read from a
        snapshot. load runs on a thread while the frames decoded meanwhile (up to
        LOADING_AHEAD_FRAMES) go through the vision tower, which needs no stream state: the GPU
        starts before the stream is there, instead of after reading the snapshot
        (ask_latency-2026-11-22-h100-load-overlap.json)."""
        batches = self.batches(batch)
        early = []  # (embeddings, timestamps) of the batches through the tower while loading
        try:
            with ThreadPoolExecutor(1) as loader:
                loading = loader.submit(load)
                try:
                    ahead = 0
                    with torch.inference_mode():
                        while not early or (not loading.done() and ahead < LOADING_AHEAD_FRAMES):
                            frames_times = next(batches, None)
                            if frames_times is None:
                                break
                            frames, times = frames_times
                            early.append((model.embed_frames(torch.from_numpy(np.stack(frames))), times))
                            ahead += len(times)
                finally:
                    stream = loading.result()  # its error first: nothing is fed without the stream
            fed = sum(_feed_embedded(stream, embeds, times) for embeds, times in early)
            return stream, fed + sum(_feed(stream, frames, times) for frames, times in batches)
        finally:
            batches.close()  # stops the decoders if feeding failed

    def batches(self, batch: int):
        """The range's frames in the batches feed() gives a stream: (frames, timestamps) lists. A
        frame at start_s itself is included; feeding skips what the stream already holds."""
        frames, times, fed = [], [], 0
        try:
            for i, part in enumerate(self.parts):
                for ts, frame in zip(*self._result(part)):
                    if ts * 1000 > self.until_ms:
                        continue
                    frames.append(frame)
                    times.append(ts)
                    if len(frames) == batch:
                        yield frames, times
                        fed += len(frames)
                        frames, times = [], []
                following = self.parts[i + 1] if i + 1 < len(self.parts) else None
                if frames and following is not None and not following.done():
                    # The first feed takes what there is: the model has nothing else to do yet.
                    whole = len(frames) - len(frames) % (min(EARLY_FEED_MULTIPLE, batch) if fed else 1)
                    if whole:
                        yield frames[:whole], times[:whole]
                        fed += whole
                        frames, times = frames[whole:], times[whole:]
        finally:
            self.cancel()
        if frames:
            yield frames, times

    def cancel(self) -> None:
        """Stop decoding; the frames of parts decoded but not taken are released."""
        for part in self.parts:
            if not part.cancel():
                part.add_done_callback(_release_untaken)

    def _result(self, part):
        try:
            times, frames = part.result()
        except BrokenProcessPool:
            _drop_pool()  # the next replay starts fresh workers
            raise CorruptVideo(self.uri, "a decoder process died while decoding this video") from None
        part.taken = True
        return times, _take_frames(frames, len(times), self.size)


def replay(stream, uri: str, *, fps: float, size: int, start_s: float, until_s: float, batch: int,
           segment_seconds: float = SEGMENT_SECONDS) -> int:
    """Feed the frames sampled in (stream's last frame, until_s], in batches; returns how many.
    See Replay. Raises VideoError for an unreadable video."""
    return Replay(uri, fps=fps, size=size, start_s=start_s, until_s=until_s,
                  segment_seconds=segment_seconds).feed(stream, batch)


def _submit_parts(uri, fps, size, bounds):
    pool = decode_pool()
    return [pool.submit(decode_part, uri, fps, size, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def decode_part(uri: str, fps: float, size: int, start: Fraction, end: Fraction):
    """(timestamps, frames) sampled in [start, end); runs in a worker. The frames [k, size, size,
    3] uint8 come back as the path of a file in shared memory (/dev/shm) holding them, or as an
    array through the result pipe where shared memory is missing or full.

    Shared memory, because a part's frames read from the pipe and unpickled by the executor's
    thread in the feeding process held the interpreter lock the feeding thread needs, and the
    GPU waited; a file read releases it (ask_latency-2026-11-21-h100-shared-frames.json)."""
    with sample_frames(uri, fps=fps, size=size, start=start, end=end, threads=1) as reader:
        items = list(reader)
    times = [t for t, _ in items]
    frames = [np.ascontiguousarray(f) for _, f in items]
    path = _to_shared_file(frames) if frames else None
    if path is not None:
        return times, path
    return times, np.stack(frames) if frames else np.zeros((0, size, size, 3), np.uint8)


SHARED_DIR = "/dev/shm"  # decoded parts are handed over as files here (decode_part)
BLOCK_PREFIX = "vidindex-replay-"  # marks those files as a replay's


def _to_shared_file(frames: list[np.ndarray]) -> str | None:
    """The frames written one after another to a new file in SHARED_DIR (its path), or None."""
    if not os.path.isdir(SHARED_DIR):
        return None
    path = os.path.join(SHARED_DIR, f"{BLOCK_PREFIX}{secrets.token_hex(8)}")
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        return None
    try:
        os.posix_fallocate(fd, 0, sum(f.nbytes for f in frames))  # full: fail here, not mid-write
        with open(fd, "wb", closefd=False) as file:
            for frame in frames:
                file.write(frame.data)
    except OSError:
        os.unlink(path)
        return None
    finally:
        os.close(fd)
    return path


def _take_frames(frames, count: int, size: int) -> np.ndarray:
    """A decoded part's frames: read from its shared memory file, which is then removed."""
    if isinstance(frames, np.ndarray):
        return frames
    with open(frames, "rb") as file:
        data = file.read()
    os.unlink(frames)
    return np.frombuffer(data, np.uint8).reshape(count, size, size, 3)


def _release_untaken(part) -> None:
    """Remove the file of a part that finished decoding but was never taken (replay cut short)."""
    if part.cancelled() or part.exception() is not None or getattr(part, "taken", False):
        return
    _, frames = part.result()
    if isinstance(frames, str):
        try:
            os.unlink(frames)
        except FileNotFoundError:
            pass


def _after_last(stream, times) -> list[int]:
    """Indices of the times after the stream's last frame (a resumed stream may hold the first)."""
    last = stream.last_timestamp[0]
    return [i for i, t in enumerate(times) if t > last]


def _feed(stream, frames, times) -> int:
    keep = _after_last(stream, times)
    if keep:
        stream.feed(np.stack([frames[i] for i in keep])[None], [[times[i] for i in keep]])
    return len(keep)


def _feed_embedded(stream, embeds, times) -> int:
    keep = _after_last(stream, times)
    if keep:
        kept = embeds if len(keep) == len(times) else embeds[keep]
        stream.feed_embedded(kept[None], [[times[i] for i in keep]])
    return len(keep)

"""The indexing engine: videos -> captions, answers and snapshots, committed through one Committer.

    engine = Engine(IndexConfig(model=..., db_uri=...))  # or Engine(config, reader=store, writer=committer)
    results = engine.index(["a.mp4", "s3://bucket/b.mp4"])
    engine.run(inbox)  # the long-lived form: (uri, on_result) pairs from a queue, None ends it

Up to `config.streams_per_gpu` videos run as concurrent streams of one batched model state
(continuous batching): each step feeds the next frames of every active video in one forward,
and the captions and answers due at the same step are generated as one batch. When a video
ends (done or failed), the next one takes its slot in step with the others (see _may_join: it
first feeds alone up to their place in the caption window, or the batch runs on to its place);
one more video is kept warming (probed, its resume point loaded, its frames decoding in the
background) so a freed slot is refilled without waiting for I/O.
Frames are decoded on the CPU, or with config.decode "nvdec" on the NVDEC of the model's GPU,
staying there (vidindex.video.nvdec; the CPU where that cannot run).
A video whose latest committed snapshot is at t resumes there; a done video is skipped; a
failing video is recorded as failed with its error and never disturbs the others. Both the
tests and each Ray actor run this class; it needs no Ray.

Events fire at boundaries (see vidindex.index.schedule): at b, after every frame with timestamp <= b
was fed: the caption of (previous caption end, b], the questions due at b, then the snapshot:
the engine writes its blob (vidindex.store.blobs, temp then move) and commits it by uri, size
and sha256 with every row up to b. At the end of the video: a last caption up to the end, the
at-end questions, and a snapshot at the end (t = duration).
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Iterable

from vidindex.config import IndexConfig
from vidindex.model import Stream, load_model
from vidindex.index.schedule import Actions, Schedule
from vidindex.index.writes import Writes
from vidindex.store import Committer, Store, write_snapshot_blob
from vidindex.timefmt import to_ms
from vidindex.video import VideoError, VideoInfo, probe, sample_frames
from vidindex.video.nvdec import nvdec_unavailable, sample_frames_nvdec
from vidindex.video.redact import redact_uri

log = logging.getLogger(__name__)

FRAMES_PER_STEP = 8  # frames fed per stream per forward, when no event falls in between
_UNDECIDED = object()
OnResult = Callable[["VideoResult"], None]


@dataclass
class VideoResult:
    uri: str
    video_id: str | None
    status: str  # done | failed | skipped (already done with this config)
    error: str | None = None
    frames: int = 0  # frames fed in this run
    video_seconds: float = 0.0  # seconds of video covered in this run
    captions: int = 0
    answers: int = 0
    snapshots: int = 0
    resumed_from_s: float | None = None
    wall_s: float = 0.0


@dataclass
class _Event:
    t_ms: int
    actions: Actions
    end: bool = False


@dataclass
class _Task:
    """One video in flight; once it joins, its row in the batched stream is its index in Engine._tasks."""

    uri: str
    info: VideoInfo
    on_result: OnResult
    stream: Stream | None  # its own state until it joins the batched stream
    end_ms: int
    frames: object  # FrameStream
    done_until_ms: int = 0  # last boundary whose events fired
    caption_start_ms: int = 0
    buffer: deque = field(default_factory=deque)
    exhausted: bool = False
    finished: bool = False
    pending: dict = field(default_factory=lambda: {"captions": [], "answers": []})
    result: VideoResult | None = None
    started: float = field(default_factory=time.perf_counter)
    start_ms: int = 0
    last_ts: float = float("-inf")  # timestamp of the last frame fed (a resumed stream's comes from its snapshot)
    last_snapshot_ms: int = -1
    write_error: BaseException | None = None  # a write of this video failed (set by the writes thread)

    @property
    def video_id(self) -> str:
        return self.info.video_id

    def fill(self, n: int) -> None:
        while not self.exhausted and len(self.buffer) < n:
            try:
                self.buffer.append(next(self.frames))
            except StopIteration:
                self.exhausted = True

    def fill_past(self, b_ms: int) -> None:
        """Read frames until one after b is buffered (or the video ends): frames_before(b) is then exact."""
        while not self.exhausted and (not self.buffer or self.buffer[-1][0] * 1000 <= b_ms):
            self.fill(len(self.buffer) + 1)

    def frames_before(self, b_ms: int) -> int:
        return sum(1 for ts, _ in self.buffer if ts * 1000 <= b_ms)


def fallback_video_id(uri: str) -> str:
    """An id for a video that cannot even be probed (missing, unreadable), so it still gets a row."""
    return "unreadable-" + hashlib.sha256(str(uri).encode()).hexdigest()[:16]


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class Engine:
    def __init__(
        self,
        config: IndexConfig,
        model=None,
        *,
        reader: Store | None = None,
        writer: Committer | None = None,
        frames_per_step: int = FRAMES_PER_STEP,
        on_event: Callable[[str, dict], None] | None = None,
        fs_options: dict | None = None,
    ):
        """`writer` takes every write (a Committer, or a proxy to a run's committer actor);
        `reader` is the Store of the same tables, read for done videos and resume points.
        Neither given: a Committer and a Store of config.db_uri."""
        self.config = config
        self._model = model
        self.writer = writer or Committer.from_config(config, fs_options=fs_options)
        # after the writer: it creates the tables
        self.reader = reader or Store(config.db_uri, create=False, fs_options=fs_options)
        self.schedule = Schedule(config)
        self.frames_per_step = frames_per_step
        self.on_event = on_event or (lambda kind, payload: None)
        self.fs_options = fs_options
        self._config_json = json.dumps(config.to_dict(), sort_keys=True)  # stored on every videos row
        self._tasks: list[_Task] = []  # the videos of the batched stream
        self._warming: _Task | None = None  # the next video, ready to join
        self._batch: Stream | None = None
        self._writes: Writes | None = None
        self._nvdec_device = _UNDECIDED  # where NVDEC decodes to, None for the CPU (_decode_device)

    @property
    def model(self):
        if self._model is None:
            cfg = self.config
            self._model = load_model(
                cfg.model, device=None if cfg.device == "auto" else cfg.device, dtype=cfg.dtype,
                frame_size=cfg.frame_size, revision=cfg.model_revision,
            )
        return self._model

    # The run -------------------------------------------------------------------------------
    def index(self, uris: Iterable[str]) -> list[VideoResult]:
        """The results of these videos, in their order."""
        uris = list(uris)
        results: list[VideoResult | None] = [None] * len(uris)
        inbox = queue.SimpleQueue()
        for i, uri in enumerate(uris):
            inbox.put((uri, partial(results.__setitem__, i)))
        inbox.put(None)
        self.run(inbox)
        return results

    def run(self, inbox: queue.SimpleQueue) -> None:
        """Index the videos put into `inbox` as (uri, on_result) pairs until it yields None.

        Every video taken gets one on_result(VideoResult) when it ends (called on the writes
        thread once the video's last row is written, as are the events of writes). The inbox is waited on
        only while no video is active. An error that is not a video's fault (the store is gone)
        ends the run: each video it holds gets a failed result without its rows being touched
        (they stay resumable), then the error is raised.
        """
        more, taken = True, None
        self._writes = Writes(depth=2 * self.config.streams_per_gpu + 2)
        try:
            while more or self._tasks or self._warming:
                self._writes.check()
                while more and self._warming is None:  # keep one video warming
                    try:
                        taken = inbox.get(block=not self._tasks)
                    except queue.Empty:
                        break
                    if taken is None:
                        more = False
                    else:
                        self._warming = self._prepare(*taken)  # None: skipped or failed at once
                        taken = None
                if self._tasks:
                    self._settle()  # drops the videos it finishes
                if self._warming is not None and self._may_join():
                    self._join(self._warming)
                    self._warming = None
                    continue  # warm the next one, fill the next free slot
                if self._tasks:
                    self._feed()
        except Exception as error:
            message = f"not this video's fault: {describe_error(error)}"
            if taken is not None:
                uri, on_result = taken
                on_result(VideoResult(redact_uri(str(uri)), None, "failed", message))
            for task in self._held():
                if not task.finished:  # a finished one's result is on its way through the writes
                    task.result = VideoResult(task.uri, task.video_id, "failed", message)
                    task.on_result(task.result)
            raise
        finally:
            for task in self._held():
                self._close(task)
            self._tasks, self._warming, self._batch = [], None, None
            self._writes.close()
        self._writes.check()  # an error of the last writes, after the loop's last look

    def _held(self) -> list[_Task]:
        return self._tasks + ([self._warming] if self._warming else [])

    def _prepare(self, uri: str, on_result: OnResult) -> _Task | None:
        """Get a video ready to join: probed, its resume point loaded, its frames decoding.
        A video that is done already or fails here gets its result at once (returns None)."""
        config_id = self.config.config_id
        opened, uri = uri, redact_uri(str(uri))  # results, events and logs name a video without credentials
        try:
            info = probe(opened, fs_options=self.fs_options)
        except VideoError as error:
            self._record_failure(uri, fallback_video_id(opened), error, on_result)
            return None
        existing = self.reader.get_video(info.video_id, config_id)
        if existing and existing["status"] == "done":
            on_result(VideoResult(uri, info.video_id, "skipped"))
            return None
        try:
            stream, start_ms = self._resume_point(info.video_id)
            frames = self._sample_frames(info.uri, start_ms / 1000)
        except VideoError as error:
            self._record_failure(uri, info.video_id, error, on_result)
            return None
        task = _Task(uri=uri, info=info, on_result=on_result, stream=stream, end_ms=to_ms(info.duration),
                     frames=frames, done_until_ms=start_ms, caption_start_ms=self.schedule.last_caption_end(start_ms),
                     start_ms=start_ms, last_ts=stream.last_timestamp[0],
                     last_snapshot_ms=start_ms if start_ms else -1)
        task.result = VideoResult(uri, info.video_id, "done", resumed_from_s=start_ms / 1000 if start_ms else None)
        return task

    def _sample_frames(self, uri: str, start: float):
        cfg, device = self.config, self._decode_device()
        if device is not None:
            return sample_frames_nvdec(uri, fps=cfg.sample_fps, size=cfg.frame_size, start=start,
                                       fs_options=self.fs_options, device=device)
        return sample_frames(uri, fps=cfg.sample_fps, size=cfg.frame_size, start=start, fs_options=self.fs_options)

    def _decode_device(self):
        """The model's CUDA device when frames are decoded on its NVDEC, None when on the CPU.
        Decided once, and said once: decode "nvdec" where it cannot run warns why."""
        if self._nvdec_device is _UNDECIDED:
            self._nvdec_device = None
            if self.config.decode == "nvdec":
                why = nvdec_unavailable(self.model.device)
                if why:
                    log.warning("decode: nvdec is set, but %s: decoding on the CPU", why)
                else:
                    self._nvdec_device = self.model.device
                    log.info("decoding on the NVDEC of %s, frames kept there", self._nvdec_device)
        return self._nvdec_device

    def _join(self, task: _Task) -> None:
        """Start the video: its videos row says partial, its stream joins the batch."""
        self._start_row(task)
        task.started = time.perf_counter()
        self._tasks.append(task)
        self._batch = task.stream if self._batch is None else Stream.stack([self._batch, task.stream])
        task.stream = None

    def _start_row(self, task: _Task) -> None:
        cfg, info = self.config, task.info
        row = {
            "video_id": info.video_id, "config_id": cfg.config_id, "uri": info.uri,
            "duration_s": info.duration, "fps": info.fps, "width": info.width, "height": info.height,
            "model": cfg.model, "model_revision": cfg.model_revision,
            "config": self._config_json,
        }

        def start():  # its event follows the row, in order with the other videos' finish events
            self.writer.start_video(row)
            self.on_event("start", {"uri": task.uri, "video_id": info.video_id,
                                    "resumed_from_s": task.start_ms / 1000, "duration_s": info.duration})

        self._write(start)

    def _resume_point(self, video_id: str) -> tuple[Stream, int]:
        found = self.reader.latest_loadable_snapshot(video_id, self.config.config_id)
        if found is None:
            return self.model.new_stream(), 0
        row, data = found
        stream = Stream.from_bytes(self.model, data, source=row["uri"])
        log.info("resuming %s from its snapshot at %.1fs", video_id, row["t_ms"] / 1000)
        return stream, int(row["t_ms"])

    # One step: read frames, fire due events, let a video join, feed ---------------------------
    def _settle(self) -> None:
        """Read frames and fire every event that is due, dropping the videos that end."""
        for task in self._tasks:
            if task.write_error is not None:  # its storage fails: stop feeding it
                self._fail(task, task.write_error)
            else:
                self._guarded(task, self._fill, task)
        self._drop_finished()
        while True:
            due = [(i, ev) for i, t in enumerate(self._tasks) if (ev := self._due_event(t)) is not None]
            if not due:
                break
            self._fire(due)
            self._drop_finished()
        while self._joiner_waits() and self._tasks:  # _may_join compares with the oldest's window
            oldest = self._tasks[0]
            self._guarded(oldest, self._fill_to_caption, oldest)
            if not oldest.finished:
                break
            self._drop_finished()

    def _joiner_waits(self) -> bool:
        return self._warming is not None and len(self._tasks) < self.config.streams_per_gpu

    def _may_join(self) -> bool:
        """Whether the warming video takes a free slot now.

        It joins in step with the batch: as many frames before its next caption boundary as the
        oldest video has before its own. Then every video of the batch reaches its caption
        boundaries on the same step, so captions (and the questions asked with them) are
        generated as one batch and feeds stay frames_per_step long; out of step, each window
        would cost one generate call per video and feeds would shrink to the frames between two
        videos' boundaries. A joiner with more frames to go feeds them alone first (a forward
        costs the same per frame at any batch size); one with fewer waits while _feed stops the
        batch where they match (less than one window).
        """
        if not self._joiner_waits():
            return False
        if not self._tasks:
            return True
        joiner = self._warming
        try:
            self._fill_to_caption(joiner)
            to_go = self._frames_to_caption(joiner)
            ahead = to_go - self._frames_to_caption(self._tasks[0])
            if to_go and ahead > 0:
                # Never past another event of its own (a question off the caption grid): such a
                # video joins out of step, correct but slower.
                limit = joiner.frames_before(self.schedule.next_boundary(joiner.done_until_ms))
                self._feed_alone(joiner, min(ahead, limit))
        except Exception as error:  # its own decode or forward: it fails alone
            self._start_row(joiner)
            self._fail(joiner, error)
            self._warming = None
            return False
        return to_go == 0 or ahead >= 0  # nothing left to feed: no step to keep

    def _fill_to_caption(self, task: _Task) -> None:
        self._fill(task)
        task.fill_past(self.schedule.next_caption(task.done_until_ms))

    def _frames_to_caption(self, task: _Task) -> int:
        """Frames before its next caption boundary (exact after _fill_to_caption)."""
        return task.frames_before(self.schedule.next_caption(task.done_until_ms))

    def _feed_alone(self, task: _Task, n: int) -> None:
        """Feed a video that has not joined yet its next n frames, on its own stream."""
        taken = [task.buffer.popleft() for _ in range(n)]
        for i in range(0, n, self.frames_per_step):
            chunk = taken[i:i + self.frames_per_step]
            task.stream.feed([[frame for _, frame in chunk]], [[ts for ts, _ in chunk]])
            self._fed(task, [ts for ts, _ in chunk])

    def _feed(self) -> None:
        """Feed the next frames of every video, up to the first boundary any of them reaches
        (and, while a video waits to join, up to where it can join in step)."""
        limits = [t.frames_before(self.schedule.next_boundary(t.done_until_ms)) for t in self._tasks]
        n = min(min(limits), self.frames_per_step)
        if self._joiner_waits():
            gap = self._frames_to_caption(self._tasks[0]) - self._frames_to_caption(self._warming)
            if gap > 0:  # stop where the waiting video can join in step
                n = min(n, gap)
        batch_frames, batch_times = [], []
        for task in self._tasks:
            taken = [task.buffer.popleft() for _ in range(n)]
            batch_times.append([ts for ts, _ in taken])
            batch_frames.append([frame for _, frame in taken])
        try:
            self._batch.feed(batch_frames, batch_times)
        except Exception as error:  # a model error hits every stream of the forward
            for task in list(self._tasks):
                self._fail(task, error)
            self._drop_finished()
            return
        for task, times in zip(self._tasks, batch_times):
            self._fed(task, times)

    def _fed(self, task: _Task, times: list[float]) -> None:
        advanced = times[-1] - max(task.last_ts, task.start_ms / 1000)
        task.last_ts = times[-1]
        task.result.frames += len(times)
        self.on_event("frames", {"uri": task.uri, "video_id": task.video_id, "frames": len(times),
                                 "t_s": times[-1], "video_seconds": advanced})

    def _fill(self, task: _Task) -> None:
        task.fill(self.frames_per_step)
        # Resumed: frames up to the snapshot's last frame were already fed.
        while task.buffer and task.buffer[0][0] <= task.last_ts:
            task.buffer.popleft()
            task.fill(self.frames_per_step)

    def _due_event(self, task: _Task) -> _Event | None:
        """The next event of a task if it can fire now (no frame at or before it is still unfed)."""
        if task.finished:
            return None
        b = self.schedule.next_boundary(task.done_until_ms)
        if task.buffer:
            return _Event(b, self.schedule.actions_at(b)) if task.buffer[0][0] * 1000 > b else None
        if not task.exhausted:
            return None
        end_ms = max(task.end_ms, task.done_until_ms, to_ms(max(task.last_ts, 0.0)))
        if b <= end_ms:
            return _Event(b, self.schedule.actions_at(b))
        final_caption = end_ms > task.caption_start_ms
        snapshot = task.last_snapshot_ms != end_ms
        return _Event(end_ms, Actions(final_caption, self.schedule.end_questions(), snapshot), end=True)

    def _fire(self, due: list[tuple[int, _Event]]) -> None:
        cfg = self.config
        captioned = [(i, ev) for i, ev in due if ev.actions.caption]
        if captioned:
            texts = self._ask([i for i, _ in captioned], [cfg.caption_prompt] * len(captioned))
            for (i, ev), text in zip(captioned, texts):
                task = self._tasks[i]
                task.pending["captions"].append({
                    "video_id": task.video_id, "config_id": cfg.config_id,
                    "t_start_ms": task.caption_start_ms, "t_end_ms": ev.t_ms, "text": text,
                })
                task.caption_start_ms = ev.t_ms
        rounds = max((len(ev.actions.questions) for _, ev in due), default=0)
        for r in range(rounds):
            asked = [(i, ev, ev.actions.questions[r]) for i, ev in due if len(ev.actions.questions) > r]
            answers = self._ask([i for i, _, _ in asked], [q.text for _, _, q in asked])
            for (i, ev, q), answer in zip(asked, answers):
                task = self._tasks[i]
                task.pending["answers"].append({
                    "video_id": task.video_id, "config_id": cfg.config_id, "question_id": q.id,
                    "t_ms": ev.t_ms, "question": q.text, "answer": answer,
                })
        for i, ev in due:
            task = self._tasks[i]
            task.done_until_ms = ev.t_ms
            if ev.actions.snapshot:
                self._guarded(task, self._checkpoint, task, i, ev.t_ms)
            if ev.end and not task.finished:
                self._guarded(task, self._finish, task)

    def _ask(self, index: list[int], questions: list[str]) -> list[str]:
        return self._batch.ask(questions, max_new_tokens=self.config.max_new_tokens, index=index)

    def _checkpoint(self, task: _Task, i: int, t_ms: int) -> None:
        frames_seen = int(self._batch.state.counters["frames_seen"][i])
        started = time.perf_counter()
        state = self._batch.to_bytes(i)
        timings = {"serialize_s": time.perf_counter() - started}
        self._writes.put(partial(self._commit, task, t_ms, state, task.pending, frames_seen, timings))
        task.last_snapshot_ms = t_ms
        task.pending = {"captions": [], "answers": []}

    def _commit(self, task: _Task, t_ms: int, state: bytes, pending: dict, frames_seen: int, timings: dict) -> None:
        """On the writes thread: the blob, then the snapshots row with the rows up to t (the commit point)."""
        if self._writes.error is not None or task.write_error is not None:
            return
        config_id = self.config.config_id
        try:
            started = time.perf_counter()
            # The actor writes its own blob: state bytes never travel through the one committer.
            blob = write_snapshot_blob(self.config.snapshot_root, task.video_id, config_id, t_ms, state,
                                       self.fs_options)
            written = time.perf_counter()
            snapshot = self.writer.commit_checkpoint(
                task.video_id, config_id, t_ms / 1000, blob, {k: v for k, v in pending.items() if v},
                frames_seen=frames_seen, video_columns={"frames_sampled": frames_seen},
            )
        except Exception as error:  # this video's storage: it fails, the others go on
            task.write_error = error
            return
        timings.update(write_s=written - started, commit_s=time.perf_counter() - written)
        task.result.captions += len(pending["captions"])
        task.result.answers += len(pending["answers"])
        task.result.snapshots += 1
        self.on_event("checkpoint", {"uri": task.uri, "video_id": task.video_id, "t_s": t_ms / 1000,
                                     "snapshot": snapshot, **timings})

    def _finish(self, task: _Task) -> None:
        wall = time.perf_counter() - task.started
        covered = max(0.0, (task.done_until_ms - task.start_ms) / 1000)
        task.result.video_seconds = covered
        task.result.wall_s = wall
        task.finished = True
        self._close(task)
        self._writes.put(partial(self._record_end, task))

    def _record_end(self, task: _Task) -> None:
        """On the writes thread: the video's final status, then its result to the caller."""
        result, config_id = task.result, self.config.config_id
        try:
            if self._writes.error is not None:
                result.status, result.error = "failed", f"not this video's fault: {describe_error(self._writes.error)}"
                return
            if result.status == "done" and task.write_error is not None:
                self._mark_failed(task, task.write_error)
            if result.status == "done":
                wall = result.wall_s
                try:
                    self.writer.finish_video(task.video_id, config_id, "done", video_seconds_per_second=(
                        result.video_seconds / wall if wall > 0 else None))
                except Exception as error:
                    self._mark_failed(task, error)
            if result.status == "failed":
                try:
                    self.writer.finish_video(task.video_id, config_id, "failed", result.error)
                except Exception as store_error:  # the row stays partial; say so rather than hide it
                    log.error("could not record the failure of %s: %s", task.uri, describe_error(store_error))
            self.on_event("finish", {"uri": task.uri, "video_id": task.video_id, "status": result.status,
                                     **({"error": result.error} if result.error else {})})
        finally:
            task.on_result(result)

    # Failures -------------------------------------------------------------------------------
    def _guarded(self, task: _Task, fn, *args) -> None:
        """Run a per-video step; a video or storage error fails this video only."""
        try:
            fn(*args)
        except Exception as error:
            self._fail(task, error)

    def _fail(self, task: _Task, error: BaseException) -> None:
        self._mark_failed(task, error)
        task.result.wall_s = time.perf_counter() - task.started
        task.finished = True
        self._close(task)
        self._writes.put(partial(self._record_end, task))

    def _mark_failed(self, task: _Task, error: BaseException) -> None:
        log.warning("video %s failed: %s", task.uri, describe_error(error))
        task.result.status, task.result.error = "failed", describe_error(error)

    def _record_failure(self, uri: str, video_id: str, error: BaseException, on_result: OnResult) -> None:
        """A video that failed before it could start (unreadable): a failed row of its own."""
        config_id, message = self.config.config_id, describe_error(error)

        def record():
            result = VideoResult(uri, video_id, "failed", message)
            try:
                if self._writes.error is not None:
                    result.error = f"not this video's fault: {describe_error(self._writes.error)}"
                    return
                self.writer.start_video({"video_id": video_id, "config_id": config_id, "uri": uri,
                                         "model": self.config.model, "config": self._config_json})
                self.writer.finish_video(video_id, config_id, "failed", message)
                self.on_event("finish", {"uri": uri, "video_id": video_id, "status": "failed", "error": message})
            except Exception as store_error:
                result.error = f"not this video's fault: {describe_error(store_error)}"
                raise
            finally:
                on_result(result)

        self._writes.put(record)

    def _write(self, job) -> None:
        """A write that is no video's fault when it fails (it ends the run)."""
        def guarded():
            if self._writes.error is None:
                job()
        self._writes.put(guarded)

    def _close(self, task: _Task) -> None:
        task.frames.close()

    def _drop_finished(self) -> None:
        keep = [i for i, t in enumerate(self._tasks) if not t.finished]
        if len(keep) == len(self._tasks):
            return
        self._tasks = [self._tasks[i] for i in keep]
        self._batch = Stream(self.model, self._batch.state.select(keep)) if keep else None

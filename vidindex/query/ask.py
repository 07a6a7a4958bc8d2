"""Ask a video a question as of any moment, from its nearest snapshot.

    result = ask_at("/data/db", video_id, "01:23:45", "Who is at the door?")

The stream state at T is rebuilt exactly: the latest snapshot at or before T is loaded, and the
frames sampled after it up to T are decoded and fed (at most one snapshot interval of video).
The question is asked on a branch of that state. What the model answers is therefore what it
would answer had it watched the video from 0 to T in one go.

T after the end of the video means "as of the end". A failed video can be asked up to its last
snapshot. A video with no snapshot (e.g. failed before the first one) cannot be asked.

A snapshot whose blob was lost or damaged after its commit (sha256 or size not those of its row)
is passed over for the one before it (or the start of the video), with a warning and a note in
the answer naming the blob: the answer is the same, only more of the video is replayed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from vidindex.model import SnapshotError, warm_up
from vidindex.query.common import VideoTarget, open_store, parse_seconds, resolve_video
from vidindex.query.errors import QueryError, UnreadableIndexData
from vidindex.query.models import model_for
from vidindex.query.replay import SEGMENT_SECONDS, Replay
from vidindex.store import SnapshotIntegrityError, Store, StoreError
from vidindex.timefmt import format_time, from_ms
from vidindex.video import VideoError

log = logging.getLogger(__name__)

END = "end"
REPLAY_BATCH = 32  # frames per feed while replaying: one forward for many frames on a GPU


@dataclass
class AsOf:
    """How the stream state at a time was reached."""

    video_id: str
    config_id: str
    uri: str
    at: float | None  # requested time in seconds (None: the end)
    as_of: float  # time of the last moment the state covers (seconds)
    snapshot_t: float | None  # the snapshot started from (None: a fresh stream from 0)
    snapshot_uri: str | None
    frames_replayed: int
    last_frame_t: float | None  # timestamp of the last frame in the state
    note: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class AskResult:
    question: str
    answer: str
    as_of: AsOf
    device: str

    def to_dict(self) -> dict:
        return {"question": self.question, "answer": self.answer, "device": self.device, **asdict(self.as_of)}


def parse_at(at) -> float | None:
    """Seconds, HH:MM:SS, or "end" (None)."""
    if isinstance(at, str) and at.strip().lower() == END:
        return None
    return parse_seconds(at, "--at")


def ask_at(
    db: str | Store,
    video: str,
    at,
    question: str,
    *,
    config_id: str | None = None,
    device: str | None = None,
    max_new_tokens: int | None = None,
) -> AskResult:
    """The model's answer to `question` about `video` (video_id or URI) as of time `at`."""
    if not isinstance(question, str) or not question.strip():
        raise QueryError("empty question")
    if max_new_tokens is not None and (isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens <= 0):
        raise QueryError(f"--max-new-tokens must be a whole number > 0, got {max_new_tokens!r}")
    started = time.perf_counter()
    at_s = parse_at(at)
    store = open_store(db)
    target = resolve_video(store, video, config_id)
    stream, as_of = _stream_as_of(store, target, at_s, device, REPLAY_BATCH)
    t = time.perf_counter()
    [answer] = stream.ask([question], max_new_tokens=max_new_tokens or target.config.max_new_tokens)
    as_of.timings["ask_s"] = time.perf_counter() - t
    as_of.timings["total_s"] = time.perf_counter() - started
    return AskResult(question=question, answer=answer, as_of=as_of, device=str(stream.model.device))


def stream_as_of(db: str | Store, video: str, at, *, config_id: str | None = None, device: str | None = None,
                 replay_batch: int = REPLAY_BATCH, segment_seconds: float = SEGMENT_SECONDS):
    """(Stream, AsOf): the video's stream state after every sampled frame with timestamp <= at.

    replay_batch frames are fed per forward; the replay is decoded by several processes at once,
    in parts that start segment_seconds long (vidindex.query.replay)."""
    at_s = parse_at(at)
    store = open_store(db)
    return _stream_as_of(store, resolve_video(store, video, config_id), at_s, device, replay_batch,
                         segment_seconds)


def _stream_as_of(store: Store, target: VideoTarget, at_s: float | None, device: str | None, replay_batch: int,
                  segment_seconds: float = SEGMENT_SECONDS):
    timings: dict[str, float] = {}
    snapshots = store.snapshots(target.video_id, target.config_id)
    if not snapshots:
        raise QueryError(_no_snapshot_message(target))
    last = snapshots[-1]
    status = target.row["status"]
    at_ms = None if at_s is None else round(at_s * 1000)
    note = None
    if status == "failed" and (at_ms is None or at_ms > last["t_ms"]):
        note = (f"video failed ({target.row.get('error')}); its index ends at {format_time(from_ms(last['t_ms']))}, "
                "so this is the answer as of then")
        at_ms = last["t_ms"]
    elif at_ms is None:
        if status != "done":
            note = f"video is {status}: 'end' means its last snapshot, at {format_time(from_ms(last['t_ms']))}"
        at_ms = last["t_ms"]
    elif status == "done" and at_ms >= last["t_ms"]:
        if at_ms > last["t_ms"]:
            note = f"{format_time(at_s)} is past the end of the video: answering as of the end"
        at_ms = last["t_ms"]

    before = [row for row in snapshots if row["t_ms"] <= at_ms]
    damaged = []  # what was wrong with each snapshot passed over, newest first
    while True:
        snapshot = before.pop() if before else None  # None: before the first snapshot, watch from 0
        try:
            stream, replayed = _rebuild(store, target, snapshot, last, at_ms, device, replay_batch, segment_seconds,
                                        timings)
            break
        except _DamagedSnapshot as error:
            # A blob lost or damaged after its commit: the state at T is rebuilt as exactly from
            # the snapshot before it, with more of the video replayed.
            damaged.append(str(error))
            log.warning("%s; falling back to %s", error, _start_of(before[-1] if before else None))
        except UnreadableIndexData as error:
            if not damaged:
                raise
            raise UnreadableIndexData(f"{'; '.join(damaged)}; and from {_start_of(snapshot)}: {error}") from None
    if damaged:
        fallback = f"{'; '.join(damaged)}: answered from {_start_of(snapshot)} instead, replaying {replayed} frames"
        note = f"{note}; {fallback}" if note else fallback
    last_frame = stream.last_timestamp[0]
    as_of = AsOf(
        video_id=target.video_id, config_id=target.config_id, uri=target.uri, at=at_s, as_of=from_ms(at_ms),
        snapshot_t=None if snapshot is None else from_ms(snapshot["t_ms"]),
        snapshot_uri=None if snapshot is None else snapshot["uri"], frames_replayed=replayed,
        last_frame_t=None if last_frame == float("-inf") else last_frame, note=note, timings=timings,
    )
    return stream, as_of


class _DamagedSnapshot(Exception):
    """The snapshot's blob is missing, or its bytes are not those its row committed."""


def _rebuild(store: Store, target: VideoTarget, snapshot: dict | None, last: dict, at_ms: int, device: str | None,
             replay_batch: int, segment_seconds: float, timings: dict):
    """(stream, frames replayed): the state at at_ms from `snapshot` (None: from 0) and the video after it."""
    ends_here = snapshot is not None and snapshot is last and target.row["status"] == "done"
    needs_replay = not ends_here and (snapshot is None or at_ms > snapshot["t_ms"])
    start = 0.0 if snapshot is None else from_ms(snapshot["t_ms"])
    # Decoding starts now and overlaps loading the model and the snapshot.
    pending = _start_replay(target, start, from_ms(at_ms), segment_seconds) if needs_replay else None
    try:
        t = time.perf_counter()
        model = model_for(target.config, device)
        warm_up(model)  # once per model: the first ask of a process runs as fast as the next
        timings["load_model_s"] = time.perf_counter() - t

        def load():
            t = time.perf_counter()
            stream = model.new_stream() if snapshot is None else _load_snapshot_stream(store, model, target, snapshot)
            timings["load_snapshot_s"] = time.perf_counter() - t
            return stream

        t = time.perf_counter()
        if pending is None:
            stream, replayed = load(), 0
        else:  # the snapshot loads while the first frames go through the vision tower
            stream, replayed = _feed_replay(pending, model, load, target, start, replay_batch)
        if snapshot is not None:
            _verify_snapshot(stream, target, snapshot)  # its digest was checked meanwhile
        timings["replay_s"] = time.perf_counter() - t  # loading the snapshot included
    finally:
        if pending is not None:
            pending.cancel()
    return stream, replayed


def _start_of(snapshot: dict | None) -> str:
    if snapshot is None:
        return "the start of the video"
    return f"the snapshot at {format_time(from_ms(snapshot['t_ms']))}"


def _no_snapshot_message(target: VideoTarget) -> str:
    status = target.row["status"]
    if status == "failed":
        return (f"video {target.video_id!r} failed before its first snapshot and cannot be asked: "
                f"{target.row.get('error') or 'no error recorded'}")
    return (f"video {target.video_id!r} ({status}) has no snapshot yet: index it (vidindex index {target.uri}) "
            "before asking about it")


def _load_snapshot_stream(store: Store, model, target: VideoTarget, snapshot: dict):
    from vidindex.model import Stream

    with _snapshot_errors(target, snapshot):
        data = store.load_snapshot(snapshot, verify=False)  # the stream checks the sha256 meanwhile
        try:
            return Stream.from_bytes(model, data, source=snapshot["uri"], sha256=snapshot["sha256"])
        except SnapshotError:
            digest = hashlib.sha256(data).hexdigest()
            if digest != snapshot["sha256"]:  # damaged bytes, not a snapshot of another model
                raise SnapshotIntegrityError(f"snapshot blob {snapshot['uri']} has sha256 {digest}, "
                                             f"its row says {snapshot['sha256']}") from None
            raise


def _verify_snapshot(stream, target: VideoTarget, snapshot: dict) -> None:
    """Wait for the snapshot's digest check, which ran while the stream was fed."""
    with _snapshot_errors(target, snapshot):
        try:
            stream.verify()
        except SnapshotError as error:  # verify() raises only for a digest that differs
            raise SnapshotIntegrityError(str(error)) from None


@contextmanager
def _snapshot_errors(target: VideoTarget, snapshot: dict):
    at = format_time(from_ms(snapshot["t_ms"]))
    try:
        yield
    except SnapshotIntegrityError as error:
        raise _DamagedSnapshot(f"snapshot of video {target.video_id!r} at {at} is unusable: {error}") from None
    except SnapshotError as error:
        raise UnreadableIndexData(
            f"snapshot of video {target.video_id!r} at {at} is unusable: {error}; "
            f"re-index the video to rebuild it"
        ) from None
    except StoreError as error:
        raise UnreadableIndexData(f"cannot read the snapshot of video {target.video_id!r} at {at}: {error}") from None


def _start_replay(target: VideoTarget, start_s: float, until_s: float, segment_seconds: float):
    config = target.config
    return Replay(target.uri, fps=config.sample_fps, size=config.frame_size, start_s=start_s, until_s=until_s,
                  segment_seconds=segment_seconds)


def _feed_replay(pending, model, load, target: VideoTarget, start_s: float, batch: int):
    try:
        return pending.feed_loaded(model, load, batch)
    except VideoError as error:
        raise UnreadableIndexData(f"cannot replay video {target.video_id!r} from {format_time(start_s)}: {error}") from None

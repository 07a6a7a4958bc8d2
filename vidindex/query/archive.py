"""Ask one new question of many indexed videos from their saved snapshots, decoding no video.

    result = ask_archive("/data/db", "Is anyone wearing a red jacket?", where="uri LIKE '%cam3%'")

Each (video, config) stream is answered from its end snapshot (or, with `at`, its latest
snapshot at or before that time: no frames are replayed here; `ask_at` gives the exact moment).
Snapshots that share a model are stacked into one batched stream and asked in one generate call.
Batches go to a pool of Ray actors that each load the model once (one GPU each when the cluster
has GPUs); `use_ray=False` runs the same batches in this process.

Answers are upserted into the answers table under question_id "adhoc-<12 hex of sha256 of the
question>" and t_ms = the snapshot's time, and each answered video's files in the Parquet copy
its index run kept (the parquet_uri of its stored config) are exported again. Streams that
already hold an answer to that question at that time are not asked again (unless `force`), so a
re-run writes nothing new.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

from vidindex.config import IndexConfig, default_snapshot_root
from vidindex.query.ask import parse_at
from vidindex.query.common import check_where, config_of, open_store
from vidindex.query.errors import QueryError
from vidindex.query.models import model_for, pick_device
from vidindex.run.ray import plan_asking, ray_session
from vidindex.store import Committer, Store
from vidindex.store.sql import eq
from vidindex.timefmt import format_time, from_ms

DEFAULT_BATCH_SIZE = 8
ADHOC_PREFIX = "adhoc-"


def question_id_for(question: str) -> str:
    """Stable id of an ad-hoc question: the same text always lands on the same answers rows."""
    return ADHOC_PREFIX + hashlib.sha256(question.strip().encode()).hexdigest()[:12]


@dataclass
class ArchiveAnswer:
    video_id: str
    config_id: str
    uri: str
    t: float  # seconds: the snapshot's time, the moment the answer is as of
    answer: str
    cached: bool  # found in the answers table from an earlier run, not asked again


@dataclass
class ArchiveSkip:
    video_id: str
    config_id: str
    uri: str
    reason: str


@dataclass
class ArchiveResult:
    question: str
    question_id: str
    at: float | None  # None: end of each video
    answers: list[ArchiveAnswer] = field(default_factory=list)
    skipped: list[ArchiveSkip] = field(default_factory=list)  # nothing to ask from (no snapshot yet, failed)
    errors: list[ArchiveSkip] = field(default_factory=list)  # a snapshot that could not be used
    written: int = 0
    ran_on: str = "none"  # "ray", "local", "serve" (answer_batches), or "none" (everything was cached)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def ask_archive(
    db: str | Store,
    question: str,
    *,
    where: str | None = None,
    at="end",
    use_ray: bool | None = None,
    num_actors: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | None = None,
    force: bool = False,
    ray_address: str | None = None,
    answer_batches: Callable[[list[list[dict]], str], Iterable[list[dict]]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ArchiveResult:
    """Answer `question` for every videos row matching `where` (SQL on the videos table).

    use_ray: None = Ray when there is more than one batch or stream to ask, else in-process.
    answer_batches: where the models are already warm (`vidindex serve`'s replicas): called with
    (batches, question), yields each batch's answer_batch outputs in batch order.
    progress: called with (streams answered so far, streams to answer) after the plan and after
    each batch; streams with a stored answer count as answered.
    """
    started = time.perf_counter()
    if not isinstance(question, str) or not question.strip():
        raise QueryError("empty question")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise QueryError(f"--batch-size must be a whole number > 0, got {batch_size!r}")
    at_s = parse_at(at)
    store = open_store(db)
    check_where(store, "videos", where)
    videos = store.rows("videos", where=where).to_pylist()
    if not videos:
        what = f"match --where {where!r}" if where else "are indexed"
        raise QueryError(f"no videos {what} in {store.uri}")
    qid = question_id_for(question)
    result = ArchiveResult(question=question, question_id=qid, at=at_s)
    tasks = _plan(store, videos, at_s, result)

    stored = {(row["video_id"], row["config_id"], row["t_ms"]): row["answer"]
              for row in store.rows("answers", where=eq("question_id", qid)).to_pylist()}
    pending = []
    for task in tasks:
        key = (task["video_id"], task["config_id"], task["snapshot"]["t_ms"])
        if key in stored and not force:
            result.answers.append(_answer(task, stored[key], cached=True))
        else:
            pending.append(task)
    result.timings["plan_s"] = time.perf_counter() - started
    done = len(tasks) - len(pending)
    if progress:
        progress(done, len(tasks))

    batches = _batches(pending, batch_size)
    t = time.perf_counter()
    if batches:
        if use_ray is None:
            use_ray = len(pending) > 1
        if answer_batches is not None:
            outputs, result.ran_on = answer_batches(batches, question), "serve"
        else:
            outputs = (_run_on_ray(batches, question, num_actors, device, store.fs_options, ray_address) if use_ray
                       else (answer_batch(batch, question, device, store.fs_options) for batch in batches))
            result.ran_on = "ray" if use_ray else "local"
        answered = []  # (task, answers row)
        for batch, output in zip(batches, outputs):
            done += len(batch)
            if progress:
                progress(done, len(tasks))
            for task, out in zip(batch, output):
                if "error" in out:
                    result.errors.append(ArchiveSkip(task["video_id"], task["config_id"], task["uri"], out["error"]))
                    continue
                result.answers.append(_answer(task, out["answer"], cached=False))
                answered.append((task, {"video_id": task["video_id"], "config_id": task["config_id"],
                                        "question_id": qid, "t_ms": task["snapshot"]["t_ms"], "question": question,
                                        "answer": out["answer"]}))
        result.timings["ask_s"] = time.perf_counter() - t
        if answered:
            t = time.perf_counter()
            _commit(store, answered)
            result.written = len(answered)
            result.timings["commit_s"] = time.perf_counter() - t
    result.answers.sort(key=lambda a: (a.uri, a.video_id, a.config_id))
    result.timings["total_s"] = time.perf_counter() - started
    return result


def _plan(store: Store, videos: list[dict], at_s: float | None, result: ArchiveResult) -> list[dict]:
    """One task per (video, config) with a snapshot to ask; the rest are recorded as skipped."""
    tasks = []
    for row in sorted(videos, key=lambda r: (r["uri"], r["video_id"], r["config_id"])):
        skip = lambda reason: result.skipped.append(ArchiveSkip(row["video_id"], row["config_id"], row["uri"], reason))  # noqa: E731
        try:
            config = config_of(row)
        except QueryError as error:
            skip(str(error))
            continue
        snapshots = store.snapshots(row["video_id"], row["config_id"])
        if at_s is not None:
            snapshots = [s for s in snapshots if s["t_ms"] <= round(at_s * 1000)]
        if not snapshots:
            if at_s is not None and store.snapshots(row["video_id"], row["config_id"]):
                skip(f"no snapshot at or before {format_time(at_s)}")
            elif row["status"] == "failed":
                skip(f"failed before its first snapshot: {row.get('error') or 'no error recorded'}")
            else:
                skip(f"{row['status']}, no snapshot yet")
            continue
        snapshot = snapshots[-1]
        tasks.append({
            "video_id": row["video_id"], "config_id": row["config_id"], "uri": row["uri"], "config": row["config"],
            "model_key": (config.model, config.model_revision, config.dtype, config.frame_size, config.max_new_tokens),
            "snapshot": {k: snapshot[k] for k in ("t_ms", "uri", "bytes", "sha256")},
            "parquet_uri": config.parquet_uri,
        })
    return tasks


def _commit(store: Store, answered: list[tuple[dict, dict]]) -> None:
    """Upsert the new answers in one commit, then export each answered video again to the Parquet
    copy its index run kept, if any (an export replaces the video's files: no duplicate rows)."""
    snapshot_root = default_snapshot_root(store.uri)  # unused: answering writes no snapshot
    Committer(store.uri, snapshot_root, store=store).upsert("answers", [row for _, row in answered])
    copies = defaultdict(list)  # parquet_uri -> (video_id, config_id) of its answered videos
    for task, _ in answered:
        if task["parquet_uri"]:
            copies[task["parquet_uri"]].append((task["video_id"], task["config_id"]))
    for parquet_uri, keys in copies.items():
        committer = Committer(store.uri, snapshot_root, parquet_uri, store=store, fs_options=store.fs_options)
        for video_id, config_id in keys:
            committer.export_parquet(video_id, config_id)


def _batches(tasks: list[dict], batch_size: int) -> list[list[dict]]:
    """Tasks grouped by model (a batched stream needs one model), cut into batches."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for task in tasks:
        groups[task["model_key"]].append(task)
    return [group[i:i + batch_size] for group in groups.values() for i in range(0, len(group), batch_size)]


def _answer(task: dict, answer: str, cached: bool) -> ArchiveAnswer:
    return ArchiveAnswer(task["video_id"], task["config_id"], task["uri"], from_ms(task["snapshot"]["t_ms"]), answer, cached)


def answer_batch(tasks: list[dict], question: str, device: str | None = None, fs_options: dict | None = None) -> list[dict]:
    """[{"answer": text} or {"error": text}] per task: the tasks' snapshots (one model) stacked
    into one batched stream and asked together. A snapshot that cannot be used is that task's error."""
    from vidindex.model import SnapshotError, Stream
    from vidindex.store import StoreError, read_blob

    config = IndexConfig.from_dict(json.loads(tasks[0]["config"]))
    model = model_for(config, device)
    outputs: list[dict] = [{} for _ in tasks]
    streams, slots = [], []
    for i, task in enumerate(tasks):
        snapshot = task["snapshot"]
        try:
            data = read_blob(snapshot["uri"], snapshot["bytes"], snapshot["sha256"], fs_options)
            streams.append(Stream.from_bytes(model, data, source=snapshot["uri"]))
            slots.append(i)
        except (StoreError, SnapshotError) as error:
            outputs[i] = {"error": f"snapshot at {format_time(from_ms(snapshot['t_ms']))} is unusable: {error}"}
    if streams:
        batch = Stream.stack(streams) if len(streams) > 1 else streams[0]
        answers = batch.ask([question] * len(streams), max_new_tokens=config.max_new_tokens)
        for i, answer in zip(slots, answers):
            outputs[i] = {"answer": answer}
    return outputs


class ArchiveAsker:
    """A Ray actor body: loads each model once, answers batches."""

    def __init__(self, device: str | None, fs_options: dict | None):
        self.device = device
        self.fs_options = fs_options

    def answer(self, tasks: list[dict], question: str) -> list[dict]:
        return answer_batch(tasks, question, self.device, self.fs_options)


def _run_on_ray(batches, question, num_actors, device, fs_options, ray_address) -> list[list[dict]]:
    """Answers per batch, in batch order, from a pool of actors (vidindex.run.ray.plan_asking says
    how many, with what). A Ray started here is shut down before returning."""
    import ray
    from ray.util import ActorPool

    with ray_session(ray_address):
        resources = plan_asking(ray.cluster_resources(), len(batches), use_gpus=device in (None, "auto", "cuda"),
                                actors=num_actors)
        if resources.gpus_per_actor:
            actor_device = "cuda"
        else:
            actor_device = pick_device(device) if device not in (None, "auto") else "cpu"
        remote = ray.remote(**resources.options)(ArchiveAsker)
        actors = [remote.remote(actor_device, fs_options) for _ in range(resources.actors)]
        try:
            return list(ActorPool(actors).map(lambda actor, batch: actor.answer.remote(batch, question), batches))
        finally:
            for actor in actors:
                ray.kill(actor)

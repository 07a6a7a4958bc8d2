"""The distributed index run: sources -> Ray Data (one row per video) -> indexing actors -> one committer.

    report = run_index(config, ["videos/", "s3://bucket/talks/*.mp4"], ray_address=None)

Layout on the cluster:
  - driver: discovers and probes the videos, drops done ones, finds resume points, draws the
    progress bar, prints the summary;
  - one committer actor (named `vidindex-committer-<run>`): the only writer of the tables and
    Parquet files (LanceDB merge_insert races under concurrent writers). It receives rows and
    each snapshot blob's uri/size/sha256, never state bytes;
  - one progress actor: collects the engine events of every indexing actor;
  - N indexing actors (Ray Data actor pool, one row = one video): each loads the model once and
    runs one engine thread (vidindex.index.engine.Engine.run) that keeps `streams_per_gpu` videos
    in one batched stream, plus one warming. Ray Data sends an actor streams_per_gpu + 1 rows at
    a time; each call puts its video into the engine's inbox and waits for that video's result,
    so a video that ends frees its slot for the next one at once (continuous batching). The
    engine writes snapshot blobs itself, reads the tables directly (its reader, a read-only
    Store) and writes rows through a proxy to the committer actor (its writer).
What each of these actors reserves is declared in vidindex.run.ray.

A crashed indexing actor is restarted by Ray (Ray Data's actor pools use max_restarts=-1 and
max_task_retries=-1) and the videos it held are run again: done videos are skipped, partial
ones resume from their latest committed snapshot. When its node is gone, the restarted actor waits
for a GPU: the other actors take the videos not yet handed out, and once none is left Ray Data
releases its idle actors and the restarted one takes a freed GPU (or a node an autoscaler adds).
The committer and the tracker live on the driver's node (on_driver_node), so a worker node's
death never takes them.

A stopped run (SIGINT or SIGTERM through vidindex.run.stop, or Ctrl-C) ends its indexing actors
(each ends itself when the tracker says the run stops: Ray Data holds their handles), waits for
the commit in flight, kills its committer and tracker, and raises Stopped with what its videos
are now: done, or partial at their last committed snapshot (the next run resumes them).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import signal
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

from vidindex.config import IndexConfig
from vidindex.index.engine import Engine, describe_error
from vidindex.run.discover import Plan, discover, plan_videos
from vidindex.run.progress import ProgressBar, ProgressTracker
from vidindex.run.ray import COMMITTER_OPTIONS, TRACKER_OPTIONS, Resources, on_driver_node, plan_indexing, ray_session
from vidindex.run.stop import Stopped

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often the driver reads the progress actor
FLUSH_S = 0.5  # how often an indexing actor sends its buffered events
STOP_POLL_S = 0.25  # how often an indexing actor asks whether its run stops
STOP_WAIT_S = 5.0  # on a stop: the longest wait for the indexing actors to end, then for the commit in flight
RESULT_COLUMNS = ("uri", "video_id", "status", "error", "frames", "video_seconds", "captions", "answers",
                  "snapshots", "resumed_from_s", "wall_s", "pid", "node_id")


class PipelineError(RuntimeError):
    """The run could not start or its indexing stage failed (no database, unreadable database,
    actors that cannot be created); the message says why. Ray itself failing is a ClusterError."""


# ---- the committer actor and its proxy


class CommitterProxy:
    """The Engine's writer inside an indexing actor: the Committer's writes, sent to the one
    committer actor (blocking, so the engine's order of commits holds)."""

    def __init__(self, actor, on_rows: Callable[[dict], None] | None = None):
        self.actor = actor
        self.on_rows = on_rows or (lambda counts: None)

    def _call(self, method: str, *args, **kwargs):
        import ray

        return ray.get(getattr(self.actor, method).remote(*args, **kwargs))

    def start_video(self, row: dict) -> dict:
        return self._call("start_video", row)

    def commit_checkpoint(self, video_id, config_id, t, blob, rows_by_table=None, **kwargs) -> dict:
        snapshot = self._call("commit_checkpoint", video_id, config_id, t, blob, rows_by_table, **kwargs)
        rows_by_table = rows_by_table or {}
        self.on_rows({"video_id": video_id, **{table: len(rows_by_table.get(table) or [])
                                               for table in ("captions", "answers")}})
        return snapshot

    def finish_video(self, video_id, config_id, status="done", error=None, **columns) -> dict:
        return self._call("finish_video", video_id, config_id, status, error, **columns)

    def upsert(self, table, rows) -> int:
        return self._call("upsert", table, rows)

    def export_parquet(self, video_id=None, config_id=None) -> dict:
        return self._call("export_parquet", video_id, config_id)


# ---- the indexing actor


class IndexWorker:
    """One Ray Data actor: loads the model once; its concurrent calls (one video each) feed the
    inbox of one engine thread, which runs them as one batched stream."""

    def __init__(self, config: dict, committer, tracker, fs_options: dict | None = None):
        import ray

        from vidindex.run.metrics import IndexMetrics
        from vidindex.store import Store

        self.pid = os.getpid()
        self.node_id = ray.get_runtime_context().get_node_id()  # which machine ran a video, for reports
        self.config = IndexConfig.from_dict(config)
        self.tracker = tracker
        threading.Thread(target=self._end_when_stopped, daemon=True, name="vidindex-stop").start()
        self.metrics = IndexMetrics(self.config.config_id)
        self._buffer: list[dict] = []  # events, from the engine's two threads (forwards, writes)
        self._events_lock = threading.Lock()
        self._last_flush = time.monotonic()
        writer = CommitterProxy(committer, on_rows=lambda counts: self._on_event("rows", counts))
        self.engine = Engine(self.config, reader=Store(self.config.db_uri, create=False, fs_options=fs_options),
                             writer=writer, on_event=self._on_event, fs_options=fs_options)
        self.inbox = queue.SimpleQueue()
        self.load_error = None
        try:
            self.engine.model  # load once per actor, not per video
        except Exception as error:  # reported per video, so the run ends with a clear reason
            self.load_error = f"cannot load model {self.config.model!r}: {describe_error(error)}"
            log.error(self.load_error)
            return
        threading.Thread(target=self._run_engine, daemon=True, name="vidindex-engine").start()

    def _run_engine(self) -> None:
        while True:  # the inbox is never closed: the engine runs as long as the actor
            try:
                self.engine.run(self.inbox)
            except Exception as error:  # not a video's fault: the videos it held got failed results
                log.error("indexing actor error: %s", describe_error(error))
            except BaseException as error:
                # Without its engine the actor's calls would wait forever: die, so that Ray
                # restarts it and its videos resume from their snapshots.
                log.critical("indexing actor's engine stopped: %s", describe_error(error))
                os._exit(1)

    def _end_when_stopped(self) -> None:
        """End this actor (no restart) once the tracker says the run stops, or is gone (it lives as
        long as its run). Killed, not drained: its videos stay partial at their last committed
        snapshot (commits are atomic)."""
        import ray

        actor_id = ray.get_runtime_context().get_actor_id()
        while True:
            time.sleep(STOP_POLL_S)
            try:
                stopping = ray.get(self.tracker.stopping.remote(actor_id))
            except ray.exceptions.ActorDiedError:
                stopping = True
            except ray.exceptions.RayError as error:
                log.debug("cannot ask whether the run stops: %s", error)
                continue
            if stopping:
                ray.kill(ray.get_runtime_context().current_actor)
                return

    def _on_event(self, kind: str, payload: dict) -> None:
        event = {"kind": kind, "pid": self.pid, "node_id": self.node_id,
                 **{k: v for k, v in payload.items() if k != "snapshot"}}
        with self._events_lock:
            self.metrics.on_event(kind, payload)
            self._buffer.append(event)
            if kind != "frames" or time.monotonic() - self._last_flush >= FLUSH_S:
                self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self.tracker.report.remote(self._buffer)  # in order: one caller, one actor
            self._buffer = []
        self._last_flush = time.monotonic()

    def __call__(self, batch: dict) -> dict:
        """The videos of a batch (one, in the run) through the engine; waits for their results."""
        uris, video_ids = [str(uri) for uri in batch["uri"]], [str(vid) for vid in batch["video_id"]]
        if self.load_error:
            results = [_failed_row(uri, vid, self.load_error) for uri, vid in zip(uris, video_ids)]
        else:
            futures = []
            for uri in uris:
                futures.append(Future())
                self.inbox.put((uri, futures[-1].set_result))
            results = [dict(vars(future.result())) for future in futures]
            for row, video_id in zip(results, video_ids):
                row["video_id"] = row["video_id"] or video_id
        for row in results:
            row["pid"], row["node_id"] = self.pid, self.node_id
        return {column: [row.get(column) for row in results] for column in RESULT_COLUMNS}


def _failed_row(uri: str, video_id: str, error: str) -> dict:
    return {"uri": uri, "video_id": str(video_id), "status": "failed", "error": error}


# ---- the run


@dataclass
class RunReport:
    config_id: str
    db_uri: str
    parquet_uri: str | None
    videos: list[dict]  # one per video of the run: uri, video_id, status, error, counts
    already_done: list[dict]  # videos skipped: this config indexed them before (or another run did meanwhile)
    empty_sources: list[str] = field(default_factory=list)  # sources that named no video, skipped
    totals: dict = field(default_factory=dict)
    wall_s: float = 0.0
    actors: int = 0
    gpus_per_actor: float = 0.0
    ray_address: str | None = None

    @property
    def done(self) -> list[dict]:
        return [v for v in self.videos if v["status"] == "done"]

    @property
    def failed(self) -> list[dict]:
        return [v for v in self.videos if v["status"] == "failed"]

    @property
    def exit_code(self) -> int:
        """0: finished (failures are listed); 3: none of the videos named is indexed, by this run or
        an earlier one (a permanently broken file among indexed ones does not fail every re-run)."""
        return 3 if self.videos and not self.done and not self.already_done else 0

    def to_dict(self) -> dict:
        return {
            "config_id": self.config_id, "db": self.db_uri, "parquet": self.parquet_uri,
            "videos": self.videos, "already_done": self.already_done, "empty_sources": self.empty_sources,
            "totals": self.totals,
            "wall_s": self.wall_s, "actors": self.actors, "gpus_per_actor": self.gpus_per_actor,
            "counts": {"done": len(self.done), "failed": len(self.failed),
                       "already_done": len(self.already_done)},
        }


def _quiet_ray_data() -> None:
    import ray

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # vidindex draws its own, in video seconds
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # e.g. "progress bars disabled"


def run_index(
    config: IndexConfig,
    sources: list[str],
    *,
    ray_address: str | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float | None = None,
    fs_options: dict | None = None,
    progress: bool | None = None,
    on_events: Callable[[list[dict]], None] | None = None,
) -> RunReport:
    """Index the videos the sources name into config.db_uri; returns what happened to each.

    `progress`: draw the live bar (None: only on a terminal). `on_events` is called in the
    driver with each batch of engine events (each has kind, pid of its actor, uri, video_id...).
    A KeyboardInterrupt (Ctrl-C, or a signal under vidindex.run.stop.stop_on_signals) stops the
    run and raises Stopped with what its videos are now; the run's actors are ended either way.
    """
    import ray

    if not config.db_uri:
        raise PipelineError("no database given: pass --db URI (or db_uri in the config file)")
    started = time.time()
    found = discover(sources, fs_options)
    with ray_session(ray_address):
        run_id = uuid.uuid4().hex[:8]
        committer = tracker = plan = None
        try:
            _quiet_ray_data()
            committer = _start_committer(config, run_id, fs_options)
            from vidindex.store import Store

            plan = plan_videos(found.uris, Store(config.db_uri, create=False), config.config_id, fs_options)
            report = RunReport(config.config_id, config.db_uri, config.parquet_uri, videos=[],
                               already_done=plan.already_done, empty_sources=found.empty_sources,
                               ray_address=ray_address)
            if not plan.todo:
                report.wall_s = time.time() - started
                return report
            resources = plan_indexing(ray.cluster_resources(), len(plan.todo), actors=actors,
                                      gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor)
            if resources.gpus_per_actor == 0 and config.device == "auto":
                config = config.with_overrides(device="cpu")  # no GPU was reserved for the actors
            rows = [video.to_row() for video in plan.todo]
            tracker = (ray.remote(ProgressTracker)
                       .options(**TRACKER_OPTIONS, **on_driver_node(), name=f"vidindex-progress-{run_id}")
                       .remote(rows))
            results = _run_dataset(config, plan, resources, committer, tracker, fs_options, progress, on_events)
            summary = ray.get(tracker.summary.remote())
            videos = _final_videos(results, ray.get(tracker.video_table.remote()))
            # Still "skipped": another run on this database (a second `vidindex index`) finished the
            # video after this one planned it. That is "already indexed"; left among the videos it
            # counted as nothing, and a run whose videos the other one all finished exited 3.
            report.already_done += [{"uri": v["uri"], "video_id": v["video_id"]} for v in videos
                                    if v["status"] == "skipped"]
            videos = [v for v in videos if v["status"] != "skipped"]
            # Upkeep: compact, fold new rows into the indexes, drop table versions and orphan blobs older
            # than an hour (vidindex.store.upkeep). Younger ones may be in use by a concurrent run or
            # reader, so an hour, not 0; a failed step is retried by the next run's upkeep.
            for problem in ray.get(committer.maintain.remote())["errors"]:
                log.warning("upkeep after the run: %s", problem)
            report.videos, report.totals = videos, summary
            report.actors, report.gpus_per_actor = resources.actors, resources.gpus_per_actor
            report.wall_s = time.time() - started
            return report
        except KeyboardInterrupt as stop:
            counts = _stop_run(tracker, committer, plan, config, fs_options)
            raise Stopped(getattr(stop, "signum", signal.SIGINT), counts) from None
        finally:
            for actor in (tracker, committer):
                if actor is not None:
                    ray.kill(actor)


def _stop_run(tracker, committer, plan: Plan | None, config: IndexConfig, fs_options) -> dict | None:
    """After a stop: end the indexing actors, let the commit in flight land, then count what the
    videos of the plan are now (None without a plan). Each wait is bounded: `ray job stop`
    sends SIGKILL 3 s after its SIGTERM unless RAY_JOB_STOP_WAIT_TIME_S gives more."""
    import ray

    from vidindex.store import Store

    deadline = time.monotonic() + STOP_WAIT_S
    try:
        if tracker is not None:
            ray.get(tracker.stop.remote(), timeout=STOP_WAIT_S)
            # An actor that has not asked for this long is gone (e.g. released by Ray Data); one that
            # is only slow ends itself anyway, at the latest when the tracker is killed.
            alive_s = 2 * STOP_POLL_S + 0.5
            while ray.get(tracker.actors_not_stopped.remote(alive_s), timeout=STOP_WAIT_S):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        if committer is not None:  # it runs one call at a time: this one waits for the commit in flight
            ray.get(committer.__ray_ready__.remote(), timeout=STOP_WAIT_S)
    except Exception as error:  # a stop must end: what is committed is safe either way
        log.warning("stopping the run: %s", describe_error(error))
    if plan is None:
        return None
    try:
        rows = {row["video_id"]: row["status"] for row in
                Store(config.db_uri, create=False, fs_options=fs_options).videos(config_id=config.config_id)}
    except Exception as error:
        log.warning("cannot read what the stopped run indexed: %s", describe_error(error))
        return None
    counts = {"done": 0, "failed": 0, "partial": 0, "not_started": 0}
    for video in plan.todo:
        status = rows.get(video.video_id)
        counts[status if status in counts else "not_started"] += 1
    return counts


def _start_committer(config: IndexConfig, run_id: str, fs_options: dict | None):
    import ray

    from vidindex.store import Committer

    options = {**COMMITTER_OPTIONS, **on_driver_node(), "name": f"vidindex-committer-{run_id}"}
    actor = ray.remote(Committer).options(**options).remote(
        config.db_uri, config.snapshot_root, config.parquet_uri, embedding_model=config.embedding_model,
        fs_options=fs_options)
    try:
        ray.get(actor.__ray_ready__.remote())  # tables exist before any reader opens them
    except Exception as error:
        ray.kill(actor)
        raise PipelineError(f"cannot open the database at {config.db_uri}: {describe_error(error)}") from error
    return actor


def _run_dataset(config, plan: Plan, resources: Resources, committer, tracker, fs_options, progress,
                 on_events) -> list[dict]:
    import ray

    # Longest first: a run ends when its longest video does, so that one starts first.
    todo = sorted(plan.todo, key=lambda video: video.resume_from_s - video.duration_s)
    rows = [video.to_row() for video in todo]
    # The actor's slots, and one video warming to take the next free slot at once.
    calls = config.streams_per_gpu + 1
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
        IndexWorker,
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=resources.actors, max_tasks_in_flight_per_actor=calls,
                                           max_concurrent_calls_per_actor=calls, enable_true_multi_threading=True),
        num_gpus=resources.gpus_per_actor or None,
        num_cpus=resources.cpus_per_actor,
        fn_constructor_kwargs={"config": config.to_dict(), "committer": committer, "tracker": tracker,
                               "fs_options": fs_options},
    )
    bar = ProgressBar(progress)
    stop = threading.Event()
    poller = threading.Thread(target=_poll, args=(tracker, bar, on_events, stop), daemon=True)
    poller.start()
    try:
        results = list(dataset.iter_rows())
    except ray.exceptions.RayError as error:  # e.g. actors that cannot be scheduled or created
        raise PipelineError(f"the indexing stage failed: {describe_error(error)}") from error
    finally:
        stop.set()
        poller.join()
        _drain_once(tracker, bar, on_events)
        bar.close()
    return results


def _poll(tracker, bar: ProgressBar, on_events, stop: threading.Event) -> None:
    while not stop.wait(POLL_S):
        try:
            _drain_once(tracker, bar, on_events)
        except Exception as error:  # the bar is a convenience: never let it end the run
            log.debug("progress poll failed: %s", error)


def _drain_once(tracker, bar: ProgressBar, on_events) -> None:
    import ray

    events, summary = ray.get(tracker.drain.remote())
    if events and on_events is not None:
        on_events(events)
    bar.update(summary)


def _final_videos(results: list[dict], tracked: list[dict]) -> list[dict]:
    """One row per video: the engine's result, corrected by what the tracker saw in this run.

    A batch re-run after an actor crash reports videos finished before the crash as skipped;
    the tracker knows they were done in this run, and which ones were resumed.
    """
    by_id = {t["video_id"]: t for t in tracked}
    order = {t["video_id"]: i for i, t in enumerate(tracked)}  # the plan's order
    results = sorted(results, key=lambda r: order.get(str(r.get("video_id")), len(order)))
    videos = []
    for result in results:
        row = {column: _plain(result.get(column)) for column in RESULT_COLUMNS}
        seen = by_id.get(row["video_id"], {})
        if row["status"] == "skipped" and seen.get("status") in ("done", "failed"):
            row["status"], row["error"] = seen["status"], seen.get("error")
        row["duration_s"] = seen.get("duration_s")
        row["restarts"] = max(0, seen.get("starts", 1) - 1)
        # Every point this video resumed at in this run: its plan's resume point, then one per restart.
        row["resumed_at_s"] = ([seen["resumed_from_s"]] if seen.get("resumed_from_s") else []) + list(
            seen.get("restarted_from_s", []))
        del row["resumed_from_s"]
        videos.append(row)
    return videos


def _plain(value):
    """numpy scalars from Ray Data rows -> Python values (for JSON)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value

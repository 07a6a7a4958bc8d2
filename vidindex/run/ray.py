"""Ray for vidindex: the one way to reach a cluster, and what each kind of actor reserves on it.

    with ray_session(address):      # the cluster at address / RAY_ADDRESS, the Ray this process
        ...                         # already joined, or a new local one
                                    # on leaving: shut down only if this call started it

Every actor vidindex starts takes its resources from here:
  - indexing actor (Ray Data actor pool): plan_indexing -> one per GPU, INDEXING_CPUS_PER_GPU each;
  - ask-archive actor: plan_asking -> one per GPU, else a few CPU actors;
  - committer and progress tracker: COMMITTER_OPTIONS / TRACKER_OPTIONS, placed by on_driver_node;
  - `vidindex serve`: plan_serving -> model replicas (one GPU each on a GPU cluster, else one
    CPU each); its front (HTTP) and archive-job replicas: SERVE_FRONT_OPTIONS / SERVE_JOBS_OPTIONS.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

# CPUs of a GPU indexing actor: decode that keeps the GPU fed, plus the engine's host loop.
# Measured on the H200 host: one PyAV thread delivers 63.7 sampled frames/s (1 frame/s from 720p
# 30 fps H.264, 2 s GOP, to 448x448; bench/results/e2e_index-2026-12-02-h200.json), and the
# model takes 144 frames/s per GPU in bf16, 190 in float8 (feeds of 32 frames;
# bench/results/ask_latency-2026-12-01-h200.json). 145 / 60 = 2.4 cores; with
# 1.5x margin (a refilled slot decodes in bursts, real files decode slower) ceil(3.6) = 4 decode
# cores (240 frames/s: float8's 190 too), + 1 for the engine thread = 5. 1080p decodes ~2x
# slower per core (docs/benchmarks.md, video-decode): give such archives --cpus-per-actor 8.
DECODE_FRAMES_PER_S_PER_CPU = 60
MODEL_FRAMES_PER_S_PER_GPU = 145
DECODE_MARGIN = 1.5
INDEXING_CPUS_PER_GPU = math.ceil(MODEL_FRAMES_PER_S_PER_GPU * DECODE_MARGIN / DECODE_FRAMES_PER_S_PER_CPU) + 1
ASKING_CPU_ACTORS = 2  # each CPU asker holds its own model copy: more rarely pays on one machine
# The committer and the tracker mostly wait on calls: they reserve no CPU, so they never keep an
# indexing actor from starting. The committer is restarted after a crash (its writes are idempotent).
COMMITTER_OPTIONS = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1}
TRACKER_OPTIONS = {"num_cpus": 0}
# `vidindex serve`: a model replica on a GPU also decodes the frames a replay needs (one decoder
# process per core it gets, vidindex.query.replay). The front (HTTP, search, thumbnails) and the
# archive-job keeper mostly wait on calls and reserve no CPU, so they never keep a model
# replica from starting.
SERVING_CPUS_PER_GPU = 4
SERVE_FRONT_OPTIONS = {"num_cpus": 0}
SERVE_JOBS_OPTIONS = {"num_cpus": 0}


class ClusterError(RuntimeError):
    """Ray cannot be reached, or the cluster has no room for the actors asked for; the message says why."""


@dataclass(frozen=True)
class Resources:
    """A pool of like actors: how many, and what each reserves."""

    actors: int
    gpus_per_actor: float
    cpus_per_actor: float

    @property
    def options(self) -> dict:
        """ray.remote options of one actor."""
        return {"num_gpus": self.gpus_per_actor, "num_cpus": self.cpus_per_actor}


# ---- connecting


def connect(address: str | None = None) -> bool:
    """Join the Ray this process already runs, else the cluster at `address` (or RAY_ADDRESS),
    else start a local one. Returns True when this call started Ray.

    Worker output is not forwarded to this terminal (it would break the progress bar); it is in
    the Ray session logs (/tmp/ray/session_latest/logs on the head node).
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    # ray.init sets the driver's SIGTERM handler (exit; for a local Ray, kill its processes first). A
    # caller with a handler of its own (the CLI's graceful stop, vidindex.run.stop) keeps it.
    sigterm = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    try:
        with warnings.catch_warnings():
            # Ray starts its processes with fork+exec; lancedb's fork warning does not apply.
            warnings.filterwarnings("ignore", message=".*fork support is experimental.*")
            if address:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            else:
                ray.init(logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
    except Exception as error:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray cluster"
        raise ClusterError(f"cannot connect to {where}: {type(error).__name__}: {error}") from error
    if callable(sigterm):
        signal.signal(signal.SIGTERM, sigterm)
    return True


@contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """Ray for the length of the block; a Ray the caller had started is left running."""
    import ray

    started = connect(address)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


# ---- what each actor reserves


def on_driver_node() -> dict:
    """ray.remote options that keep an actor on the driver's node. A run's committer and progress
    tracker go there: a worker node that dies then takes only indexing actors with it (their videos
    are run again), never the run's one writer or its progress, which nothing could rebuild."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node_id = ray.get_runtime_context().get_node_id()
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False)}


def plan_indexing(cluster: dict, videos: int, *, actors: int | None = None,
                  gpus_per_actor: float | None = None, cpus_per_actor: float | None = None) -> Resources:
    """How many indexing actors, and with what.

    With GPUs in the cluster: one actor per GPU, INDEXING_CPUS_PER_GPU CPUs each (fewer if the
    cluster has fewer). Without: CPU actors of one core each, as many as there are cores.
    Never more actors than videos.
    """
    gpus, cpus = float(cluster.get("GPU", 0)), float(cluster.get("CPU", 0))
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if gpus >= 1 else 0.0
    if gpus_per_actor > 0 and gpus < gpus_per_actor:
        raise ClusterError(f"each indexing actor needs {gpus_per_actor:g} GPU but the cluster has {gpus:g}")
    if cpus_per_actor is None:
        if gpus_per_actor > 0:
            per_gpu_actor = cpus / max(1, int(gpus // gpus_per_actor))
            cpus_per_actor = float(max(1, min(INDEXING_CPUS_PER_GPU, int(per_gpu_actor))))
        else:
            cpus_per_actor = 1.0
    if cpus_per_actor > cpus:
        raise ClusterError(f"each indexing actor needs {cpus_per_actor:g} CPUs but the cluster has {cpus:g}")
    fit = int(gpus // gpus_per_actor) if gpus_per_actor > 0 else int(cpus // cpus_per_actor)
    if gpus_per_actor > 0:
        fit = min(fit, int(cpus // cpus_per_actor))
    count = max(1, min(actors or fit, max(1, videos)))
    if actors and actors > fit:
        raise ClusterError(f"{actors} indexing actors do not fit: the cluster has room for {fit} "
                           f"({gpus:g} GPUs, {cpus:g} CPUs; {gpus_per_actor:g} GPU and {cpus_per_actor:g} CPU each)")
    return Resources(actors=count, gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor)


def plan_asking(cluster: dict, batches: int, *, use_gpus: bool, actors: int | None = None) -> Resources:
    """Ask-archive actors: one GPU and one CPU each when the cluster has GPUs (and `use_gpus`),
    else one CPU each, at most ASKING_CPU_ACTORS; never more actors than batches."""
    gpus, cpus = int(cluster.get("GPU", 0)), int(cluster.get("CPU", 0))
    on_gpus = use_gpus and gpus > 0
    fit = min(gpus, cpus) if on_gpus else cpus
    if fit < 1 or (actors and actors > fit):
        what = f"{gpus} GPUs and {cpus} CPUs" if on_gpus else f"{cpus} CPUs"
        raise ClusterError(f"ask-archive actors do not fit: {actors or 1} asked, "
                           f"the cluster has room for {fit} ({what})")
    default = fit if on_gpus else min(ASKING_CPU_ACTORS, fit)
    count = max(1, min(actors or default, batches))
    return Resources(actors=count, gpus_per_actor=1.0 if on_gpus else 0.0, cpus_per_actor=1.0)


def plan_serving(cluster: dict, replicas: int, *, device: str = "auto") -> Resources:
    """`vidindex serve` model replicas: one GPU and up to SERVING_CPUS_PER_GPU CPUs each when
    the device is "cuda", or "auto" and the cluster has GPUs; else one CPU each.

    A cluster that can grow (an autoscaler, KubeRay) may show fewer GPUs than it will have:
    device="cuda" asks for GPU replicas whatever it shows now."""
    if replicas < 1:
        raise ClusterError(f"serve needs at least 1 model replica, got {replicas}")
    gpus, cpus = float(cluster.get("GPU", 0)), float(cluster.get("CPU", 0))
    on_gpus = device.startswith("cuda") or (device == "auto" and gpus >= 1)
    if not on_gpus:
        return Resources(actors=replicas, gpus_per_actor=0.0, cpus_per_actor=1.0)
    per_gpu = cpus / gpus if gpus >= 1 else SERVING_CPUS_PER_GPU
    return Resources(actors=replicas, gpus_per_actor=1.0,
                     cpus_per_actor=float(max(1, min(SERVING_CPUS_PER_GPU, int(per_gpu)))))

"""`vidindex serve` latency: a warm ask as of T through HTTP against the same ask in-process, and
search over an index of at least 10,000 captions.

    python bench/serve_latency.py [--dtype bfloat16|float8] [--workdir DIR] [--reps N] [--variant NAME] [--out PATH]
    python bench/serve_latency.py --tiny        # the tiny model on a CPU: checks the script runs

GPU run: a 4B-shaped checkpoint with random weights (bench/e2e_index.py writes it), a 448x448
30 fps H.264 video of 10.5 minutes indexed at 1 frame/s with captions every 30 s and snapshots
every 300 s (so at 300 s, 600 s and the end). Asked as of the median and the worst T of a
5-minute interval from the snapshot at 300 s: T = 450 s (150 frames replayed) and T = 599.5 s
(299 frames, just before the next snapshot). --tiny scales it down: the tiny model, a 160x120
video of 45 s, snapshots every 20 s, T = 30 s and 39.5 s.

Measured, each --reps times after one warm-up ask per T (the model is warm in both places):
  - in-process: vidindex.query.ask_at in this process, the store opened once (what `vidindex ask`
    does once it has loaded);
  - HTTP: POST /api/videos/{id}/ask to a local `vidindex serve` app (Ray Serve, one model
    replica on the GPU), wall time at the client, beside the replica's own total and wait;
  - search: GET /api/search and vidindex.query.search in-process, in each mode, over the
    index's captions plus synthetic ones (--captions in all, 10,000 by default) on 100 synthetic
    videos, with the store's full-text and vector indexes built.
p50 and worst (max) of each. The record goes to bench/results/serve_latency-<date>-<gpu>[-variant].json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import time
from pathlib import Path

from gpu_timing import Results
from records import add_arguments, out_path

QUESTION = "What is happening?"
SEARCH_QUERIES = ("red car turning left", "person walks past the window", "bright screen", "ball rolls",
                  "someone opens a door", "green square moves up")
WORDS = ("a the red green blue yellow car truck person people dog ball door window screen street light "
         "walks runs opens closes turns moves stops left right up down past near fast slow bright dark "
         "square circle line grows shrinks appears disappears inside outside morning night rain snow").split()
SYNTHETIC_VIDEOS = 100


def percentiles(values: list[float]) -> dict:
    return {"p50": statistics.median(values), "max": max(values), "n": len(values),
            "all": [round(v, 4) for v in values]}


def setup(args, res) -> tuple[str, str, dict]:
    """(db, video_id, plan): the model, the video and its index, built once per workdir."""
    from vidindex.config import IndexConfig
    from vidindex.index.engine import Engine
    from vidindex.store import Committer, Store
    from vidindex.video.synthetic import write_video

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        from vidindex.model import TINY_FRAME_SIZE, write_tiny_checkpoint

        checkpoint, frame_size, dtype = write_tiny_checkpoint(work / "tiny"), TINY_FRAME_SIZE, "float32"
        interval, seconds, caption_every, video = 20.0, 45.0, 15.0, dict(fps=10, width=160, height=120)
    else:
        from e2e_index import write_random_checkpoint

        t = time.perf_counter()
        checkpoint, frame_size, dtype = write_random_checkpoint(work / "checkpoint-4b-words"), 448, args.dtype
        res.put("checkpoint_write_s", time.perf_counter() - t)
        interval, seconds, caption_every = 300.0, 630.0, 30.0
        video = dict(fps=30, width=448, height=448, gop=60, texture=True)
    plan = {"snapshot_interval_s": interval, "video_s": seconds, "frame_size": frame_size, "dtype": dtype,
            "t_median": interval + interval / 2, "t_worst": 2 * interval - 0.5}
    path = work / f"video-{int(seconds)}s-{video['width']}.mp4"
    if not path.exists():
        t = time.perf_counter()
        write_video(path, seconds, **video)
        res.put("video_write_s", time.perf_counter() - t)
    db = work / f"db-{dtype}"
    shutil.rmtree(db, ignore_errors=True)  # indexed afresh each run: a few seconds on the GPU
    config = IndexConfig(model=str(checkpoint), db_uri=str(db), sample_fps=1.0, frame_size=frame_size, dtype=dtype,
                         caption_interval=caption_every, snapshot_interval=interval, max_new_tokens=16,
                         device="auto")
    committer = Committer.from_config(config)
    store = Store(str(db), create=False)
    t = time.perf_counter()
    [result] = Engine(config, reader=store, writer=committer).index([str(path)])
    assert result.status == "done", result.error
    res.put("index_s", time.perf_counter() - t)
    add_captions(store, committer, result.video_id, config.config_id, args.captions, res)
    return str(db), result.video_id, plan


def add_captions(store, committer, video_id: str, config_id: str, total: int, res) -> None:
    """Synthetic captions on SYNTHETIC_VIDEOS videos (rows like the real one's) up to `total`
    captions in all, then the store's indexes (full text; IVF_PQ vectors past 4096 rows)."""
    have = store.count("captions")
    if have >= total:
        res.put("captions", have)
        return
    real = store.get_video(video_id, config_id)
    per_video = -(-(total - have) // SYNTHETIC_VIDEOS)
    rng = random.Random(0)
    t = time.perf_counter()
    for v in range(SYNTHETIC_VIDEOS):
        synthetic_id = f"bench-{v:04d}"
        committer.upsert("videos", [{**real, "video_id": synthetic_id, "duration_s": 30.0 * per_video}])
        committer.upsert("captions", [{
            "video_id": synthetic_id, "config_id": config_id, "t_start_ms": 30_000 * i, "t_end_ms": 30_000 * (i + 1),
            "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14)))} for i in range(per_video)])
    res.put("captions_add_s", time.perf_counter() - t)
    t = time.perf_counter()
    res.put("indexes", store.ensure_indexes())
    res.put("indexes_s", time.perf_counter() - t)
    res.put("captions", store.count("captions"))


def in_process(db: str, video_id: str, plan: dict, reps: int, res) -> None:
    from vidindex.query import ask_at, open_store, search

    db = open_store(db)  # opened once, as a warm process (and the service) holds it
    for label in ("t_median", "t_worst"):
        at = plan[label]
        first = ask_at(db, video_id, at, QUESTION)  # the process's first ask warms the model up
        res.put(f"inprocess.{label}.first_total_s", first.as_of.timings["total_s"])
        totals, replays = [], []
        for _ in range(reps):
            t = time.perf_counter()
            result = ask_at(db, video_id, at, QUESTION)
            totals.append(time.perf_counter() - t)
            replays.append(result.as_of.timings["replay_s"])
        res.put(f"inprocess.{label}", {**percentiles(totals), "replay_s_p50": statistics.median(replays),
                                       "frames_replayed": result.as_of.frames_replayed,
                                       "snapshot_t": result.as_of.snapshot_t, "device": result.device})
    for mode in ("fts", "vector", "hybrid"):
        search(db, SEARCH_QUERIES[0], mode=mode)  # the embedder loads on the first vector search
        times = []
        for i in range(reps * 4):
            t = time.perf_counter()
            search(db, SEARCH_QUERIES[i % len(SEARCH_QUERIES)], mode=mode, limit=24)
            times.append(time.perf_counter() - t)
        res.put(f"inprocess.search_{mode}", percentiles(times))


def over_http(db: str, video_id: str, plan: dict, reps: int, res) -> None:
    import httpx
    import ray
    from ray import serve

    from vidindex.serve.app import APP_NAME, application

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        t = time.perf_counter()
        serve.run(application(db), name=APP_NAME, route_prefix="/", blocking=False)
        res.put("serve_start_s", time.perf_counter() - t)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/", timeout=600) as client:
            res.put("serve_models", client.get("api/info").json()["model"])
            for label in ("t_median", "t_worst"):
                body = {"question": QUESTION, "at": plan[label]}
                warm = client.post(f"api/videos/{video_id}/ask", json=body)
                warm.raise_for_status()
                res.put(f"http.{label}.first_total_s", warm.json()["timings"]["total_s"])
                walls, server, queued = [], [], []
                for _ in range(reps):
                    t = time.perf_counter()
                    response = client.post(f"api/videos/{video_id}/ask", json=body)
                    walls.append(time.perf_counter() - t)
                    response.raise_for_status()
                    timings = response.json()["timings"]
                    server.append(timings["total_s"])
                    queued.append(timings["queued_s"])
                res.put(f"http.{label}", {**percentiles(walls), "replica_total_s_p50": statistics.median(server),
                                          "http_overhead_s_p50": statistics.median(w - s for w, s in zip(walls, server)),
                                          "queued_s_max": max(queued),
                                          "frames_replayed": response.json()["frames_replayed"]})
            for mode in ("fts", "vector", "hybrid"):
                client.get("api/search", params={"q": SEARCH_QUERIES[0], "mode": mode}).raise_for_status()
                times = []
                for i in range(reps * 4):
                    t = time.perf_counter()
                    client.get("api/search", params={"q": SEARCH_QUERIES[i % len(SEARCH_QUERIES)], "mode": mode,
                                                     "limit": 24}).raise_for_status()
                    times.append(time.perf_counter() - t)
                res.put(f"http.search_{mode}", percentiles(times))
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap)
    ap.add_argument("--tiny", action="store_true", help="the tiny model on a CPU (a check that the script runs)")
    ap.add_argument("--dtype", default="bfloat16", help="bfloat16 or float8 (GPU run)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vidindex-serve-bench"))
    ap.add_argument("--captions", type=int, default=10_000, help="captions in the index, synthetic ones added")
    ap.add_argument("--reps", type=int, default=5, help="timed asks per T (searches: 4x this per mode)")
    args = ap.parse_args()
    if args.tiny:
        args.workdir = args.workdir / "tiny"
    import torch

    res = Results(out_path(args, "serve_latency", variant="tiny" if args.tiny else
                           (None if args.dtype == "bfloat16" else args.dtype)))
    res.put("device", torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
    res.put("cpus", os.cpu_count())
    res.put("reps", args.reps)
    db, video_id, plan = setup(args, res)
    res.put("plan", plan)
    in_process(db, video_id, plan, args.reps, res)
    over_http(db, video_id, plan, args.reps, res)
    summary = {label: {"http_p50_s": res[f"http.{label}"]["p50"], "http_max_s": res[f"http.{label}"]["max"],
                       "inprocess_p50_s": res[f"inprocess.{label}"]["p50"],
                       "inprocess_max_s": res[f"inprocess.{label}"]["max"]} for label in ("t_median", "t_worst")}
    summary["search_hybrid_http_p50_s"] = res["http.search_hybrid"]["p50"]
    res.put("summary", summary)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Many short videos through `vidindex index` on local Ray: does anything grow per video?

    python bench/load_videos.py [--videos 200] [--seconds 6] [--workdir DIR] [--variant NAME] [--out PATH]

Writes --videos synthetic videos (96x64, 10 fps, --seconds each) and the tiny model, then runs the
index run a user runs (vidindex.run.pipeline.run_index: local Ray, one indexing actor on the CPU
with 2 streams, the committer actor, LanceDB, the Parquet copy, caption embeddings) at 1 frame/s,
captions every 2 s, snapshots every 4 s. Every 2 s it samples the RSS of the driver (this
process), the committer and the indexing actor (their pids from Ray's state API). Prints and
records (bench/results/load_videos-<date>-cpu.json):
  - statuses (every video must end done);
  - RSS of each process at each quarter of the videos finished, and its growth from the first
    quarter to the end (flat: nothing kept per video);
  - the engine's seconds per video (median in each quarter of the run; flat: no slowdown as the
    tables grow).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from records import add_arguments, out_path  # noqa: E402

MIB = 1024 * 1024


class RssSampler:
    """RSS of the driver and of the run's Ray actors (by class name) every `every` seconds."""

    def __init__(self, finished: list, every: float = 2.0):
        self.finished, self.every = finished, every
        self.samples: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        import psutil
        import ray
        import ray._private.state as ray_state  # the GCS's actor table: no dashboard needed

        while not self._stop.wait(self.every):
            sample = {"t": time.time(), "finished": len(self.finished),
                      "driver": psutil.Process().memory_info().rss}
            try:
                if ray.is_initialized():  # (asking before would start a Ray of its own)
                    for actor in ray_state.actors().values():
                        role = _role(actor.get("ActorClassName", ""))
                        if role and actor.get("State") == "ALIVE" and actor.get("Pid"):
                            sample[role] = psutil.Process(actor["Pid"]).memory_info().rss
            except Exception:  # Ray starting or stopping, an actor just gone: the driver's RSS only
                pass
            self.samples.append(sample)


def _role(class_name: str) -> str | None:
    if "IndexWorker" in class_name:
        return "indexing_actor"
    if "Committer" in class_name:
        return "committer"
    return None


def quarters(samples: list[dict], videos: int, role: str) -> list[float | None]:
    """RSS (MiB) of `role` at the last sample of each quarter of the videos finished."""
    out = []
    for q in (1, 2, 3, 4):
        upto = [s[role] for s in samples if role in s and s["finished"] <= videos * q // 4]
        out.append(round(upto[-1] / MIB, 1) if upto else None)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each video")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vidindex-load"))
    args = ap.parse_args()

    from vidindex.config import IndexConfig, Question
    from vidindex.model import TINY_FRAME_SIZE, write_tiny_checkpoint
    from vidindex.run.pipeline import run_index
    from vidindex.video.synthetic import write_video

    shutil.rmtree(args.workdir, ignore_errors=True)
    (args.workdir / "videos").mkdir(parents=True)
    uris = []
    for i in range(args.videos):
        path = args.workdir / "videos" / f"v{i:04d}.mp4"
        write_video(path, args.seconds, fps=10, width=96, height=64, seed=i)
        uris.append(str(path))
    checkpoint = write_tiny_checkpoint(args.workdir / "tiny")
    config = IndexConfig(model=str(checkpoint), db_uri=str(args.workdir / "db"),
                         parquet_uri=str(args.workdir / "parquet"), device="cpu", dtype="float32",
                         frame_size=TINY_FRAME_SIZE, sample_fps=1.0, caption_interval=2, snapshot_interval=4,
                         max_new_tokens=4, streams_per_gpu=2,
                         questions=(Question("moving", "Is anything moving?", every=2, at_end=True),))
    finished: list[float] = []

    def on_events(events):
        for event in events:
            if event["kind"] == "finish":
                finished.append(time.time())

    start = time.time()
    with RssSampler(finished) as sampler:
        report = run_index(config, uris, actors=1, on_events=on_events, progress=False)
    wall = time.time() - start

    statuses: dict[str, int] = {}
    for video in report.videos:
        statuses[video["status"]] = statuses.get(video["status"], 0) + 1
    n = len(finished)
    # The engine's wall time per video (join to finish; 2 streams share the actor), in run order.
    walls = [video["wall_s"] for video in report.videos if video.get("wall_s")]
    per_quarter = [round(statistics.median(walls[len(walls) * q // 4:len(walls) * (q + 1) // 4]), 3)
                   for q in range(4)] if len(walls) >= 4 else []
    record = {
        "videos": args.videos, "seconds_each": args.seconds, "cpus": os.cpu_count(), "wall_s": round(wall, 1),
        "statuses": statuses,
        "video_wall_s_p50_by_quarter": per_quarter,
        "rss_mib_by_quarter": {role: quarters(sampler.samples, n, role)
                               for role in ("driver", "committer", "indexing_actor")},
        "samples": len(sampler.samples),
    }
    for role, values in record["rss_mib_by_quarter"].items():
        if values[0] is not None and values[-1] is not None:
            record[f"rss_growth_mib_{role}"] = round(values[-1] - values[0], 1)
    path = out_path(args, "load_videos")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({k: v for k, v in record.items()}, indent=1))
    print(f"engine seconds per video, median of each quarter of the run: {per_quarter}")
    print(f"record: {path}")
    return 0 if statuses == {"done": args.videos} else 1


if __name__ == "__main__":
    sys.exit(main())

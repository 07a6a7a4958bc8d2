"""`vidindex index` end to end on one GPU: decode + model + LanceDB + Parquet + embeddings + Ray.

    python bench/e2e_index.py [--dtype bfloat16|float8] [--workdir DIR] [--variant NAME] [--out PATH]

Makes a corpus of synthetic 720p H.264 videos of mixed lengths (default 12 videos, 2 to 60
minutes, 3.8 video-hours; 30 fps, 2 s GOPs), a 4B-shaped checkpoint with random weights, then
runs the index run a user runs (vidindex.run.pipeline.run_index, what `vidindex index` calls:
local Ray, one indexing actor on the GPU, the committer actor, LanceDB, the Parquet copy,
caption embeddings) at 1 frame/s, captions every 30 s, snapshots every 300 s. Prints and
records (bench/results/e2e_index-<date>-<gpu>[-variant].json):
  - video-hours per GPU-hour, over the whole run and from the first frame to the last video;
  - the GPU's busy share (NVML utilisation, sampled every 0.5 s);
  - frames sampled per second over the run and a single-thread decode rate of one video;
  - commit latency of snapshots (p50, p99), as the indexing actor sees it, and the time it
    takes the actor to write each snapshot blob before committing it;
  - the model-only figure in the same process: the engine's cadence (8 frames per feed, the
    same captions, snapshot bytes) on frames already in memory, no decode, no storage;
    and the run's share of it.
Physical limit: 243 frames/s of compute per GPU (docs/benchmarks.md), i.e. 243 video-hours
per GPU-hour at 1 frame/s before captions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from records import add_arguments, out_path

LENGTHS_MIN = (2, 3, 5, 8, 10, 12, 15, 20, 25, 30, 40, 60)
CLIP_SECONDS = 60  # each video repeats a one-minute clip of its own (remuxed, not re-encoded)
COMPUTE_CEILING_FPS = 243.0


# ---- the corpus


def loop_clip(src: Path, dst: Path, seconds: int) -> None:
    """dst = src's packets repeated, timestamps shifted, up to `seconds` (a whole number of clips)."""
    import av

    with av.open(str(src)) as inp:
        stream = inp.streams.video[0]
        packets = [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in inp.demux(stream) if p.size]
        tb = stream.time_base
        period = int(round(CLIP_SECONDS / tb))
        with av.open(str(dst), "w") as out:
            ostream = out.add_stream_from_template(stream)
            for k in range(max(1, seconds // CLIP_SECONDS)):
                for data, pts, dts, key in packets:
                    packet = av.Packet(data)
                    packet.pts, packet.dts = pts + k * period, dts + k * period
                    packet.time_base = tb
                    packet.is_keyframe = key
                    packet.stream = ostream
                    out.mux(packet)


def make_video(args) -> str:
    from vidindex.video.synthetic import write_video

    directory, index, minutes, width, height = args
    path = Path(directory) / f"video{index:02d}-{minutes}min.mp4"
    if path.exists():
        return str(path)
    clip = Path(directory) / f".clip{index:02d}.mp4"
    write_video(clip, CLIP_SECONDS, 30, width, height, gop=60, seed=index)
    loop_clip(clip, path.with_suffix(".tmp.mp4"), minutes * 60)
    path.with_suffix(".tmp.mp4").rename(path)
    clip.unlink()
    return str(path)


def make_corpus(directory: Path, lengths_min, width=1280, height=720) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    jobs = [(str(directory), i, m, width, height) for i, m in enumerate(lengths_min)]
    with ProcessPoolExecutor(min(len(jobs), os.cpu_count() or 1)) as pool:
        return list(pool.map(make_video, jobs))


# ---- the checkpoint


def write_random_checkpoint(directory: Path, seed: int = 0) -> Path:
    """A 4B-shaped checkpoint (official names, bf16) with seeded random weights and the word-level
    tokenizer: what load_model reads from a user's checkpoint folder."""
    import torch
    from safetensors.torch import save_file

    from vidindex.model import InfiniteVL, ModelConfig
    from vidindex.model.tiny import build_tokenizer, random_weights, tiny_config

    if (directory / "config.json").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tiny = tiny_config(tokenizer)  # the 4B shapes with the word-level tokenizer's special token ids
    cfg = dataclasses.replace(ModelConfig(), **{f: getattr(tiny, f) for f in (
        "bos_token_id", "eos_token_id", "vision_start_token_id", "vision_end_token_id", "image_token_id",
        "video_token_id")})
    with torch.device("meta"):
        model = InfiniteVL(cfg, 448)  # the checkpoint's names and shapes, nothing allocated
    weights = {name: t.to(torch.bfloat16).cpu() for name, t in random_weights(model, seed, device="cuda").items()}
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(str(directory))
    (directory / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    return directory


# ---- measuring


class GpuSampler:
    """NVML utilisation of GPU 0 every `every` seconds, in a thread."""

    def __init__(self, every: float = 0.5):
        import pynvml

        pynvml.nvmlInit()
        self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        self.every, self.samples = every, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.every):
            util = self.nvml.nvmlDeviceGetUtilizationRates(self.handle)
            self.samples.append((time.time(), util.gpu))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def busy(self, start: float | None = None, end: float | None = None) -> float | None:
        values = [u for t, u in self.samples if (start is None or t >= start) and (end is None or t <= end)]
        return sum(values) / len(values) / 100 if values else None


def percentile(values, q):
    return float(np.percentile(values, q)) if values else None


def decode_rate(uri: str, seconds: float = 120.0) -> float:
    """Sampled frames per second one decode thread delivers (1 frame/s, 448x448 out)."""
    from vidindex.video import sample_frames

    start = time.perf_counter()
    n = sum(1 for _ in sample_frames(uri, fps=1.0, size=448, end=seconds))
    return n / (time.perf_counter() - start)


def model_only(checkpoint: Path, dtype: str, streams: int, max_new_tokens: int, seconds: int,
               caption_prompt: str) -> dict:
    """The engine's cadence with frames in memory: video-seconds per second of B streams."""
    import torch

    from vidindex.index.engine import FRAMES_PER_STEP
    from vidindex.model import load_model

    model = load_model(str(checkpoint), dtype=dtype)
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (64, model.frame_size, model.frame_size, 3), dtype=np.uint8)

    def run(video_seconds: int) -> tuple[float, int]:
        stream = model.new_stream(batch=streams)
        fed, snapshot_bytes = 0, 0
        torch.cuda.synchronize()
        start = time.perf_counter()
        while fed < video_seconds:
            n = min(FRAMES_PER_STEP, 30 - fed % 30)  # stop at each caption boundary, as the engine does
            frames = np.stack([pool[(fed + np.arange(n)) % len(pool)]] * streams)
            times = np.tile(fed + np.arange(n, dtype=np.float64), (streams, 1))
            stream.feed(frames, times)
            fed += n
            if fed % 30 == 0:
                stream.ask([caption_prompt] * streams, max_new_tokens=max_new_tokens)
            if fed % 300 == 0:
                snapshot_bytes += sum(len(stream.to_bytes(i)) for i in range(streams))
        torch.cuda.synchronize()
        return time.perf_counter() - start, snapshot_bytes

    run(60)  # compile, capture graphs
    wall, snapshot_bytes = run(seconds)
    result = {"streams": streams, "video_seconds_per_stream": seconds, "wall_s": wall,
              "video_hours_per_gpu_hour": streams * seconds / wall, "snapshot_bytes": snapshot_bytes}
    del model
    torch.cuda.empty_cache()
    return result


# ---- the run


def main() -> int:
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/vidindex-e2e"))
    ap.add_argument("--minutes", default=",".join(map(str, LENGTHS_MIN)),
                    help="video lengths in whole minutes, comma-separated")
    ap.add_argument("--streams-per-gpu", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=32,
                    help="caption and answer length (random weights never stop early)")
    ap.add_argument("--model-only-seconds", type=int, default=600)
    ap.add_argument("--keep-db", action="store_true", help="keep an earlier run's database (resume)")
    args = ap.parse_args()

    from gpu_timing import Results

    res = Results(out_path(args, "e2e_index", variant=None if args.dtype == "bfloat16" else args.dtype))
    import torch

    res.put("device", torch.cuda.get_device_name())
    res.put("cpus", os.cpu_count())
    res.put("dtype", args.dtype)
    res.put("streams_per_gpu", args.streams_per_gpu)
    res.put("max_new_tokens", args.max_new_tokens)

    lengths = [int(m) for m in args.minutes.split(",")]
    t = time.perf_counter()
    videos = make_corpus(args.workdir / "videos", lengths)
    res.put("corpus", {"videos": len(videos), "video_hours": sum(lengths) / 60, "minutes": lengths,
                       "size": "1280x720", "codec": "h264", "fps": 30, "gop_s": 2})
    res.put("corpus_make_s", time.perf_counter() - t)
    t = time.perf_counter()
    checkpoint = write_random_checkpoint(args.workdir / "checkpoint-4b-words")
    res.put("checkpoint_write_s", time.perf_counter() - t)
    res.put("decode_fps_one_thread_720p_h264", decode_rate(videos[-1]))

    from vidindex.config import IndexConfig
    from vidindex.run.pipeline import run_index

    db = args.workdir / f"db-{args.dtype}"
    parquet = args.workdir / f"parquet-{args.dtype}"
    if not args.keep_db:
        shutil.rmtree(db, ignore_errors=True)
        shutil.rmtree(parquet, ignore_errors=True)
    config = IndexConfig(model=str(checkpoint), db_uri=str(db), parquet_uri=str(parquet), sample_fps=1.0,
                         caption_interval=30, snapshot_interval=300, dtype=args.dtype,
                         max_new_tokens=args.max_new_tokens, streams_per_gpu=args.streams_per_gpu)
    commits, blob_writes, frame_times, finish_times = [], [], [], []

    progress = {"frames": 0, "started": 0, "finished": 0, "printed": 0.0}

    def on_events(events):
        now = time.time()
        for ev in events:
            kind = ev.get("kind")
            progress["frames"] += ev.get("frames", 0) if kind == "frames" else 0
            progress["started"] += kind == "start"
            progress["finished"] += kind == "finish"
            if ev.get("kind") == "checkpoint" and ev.get("commit_s") is not None:
                commits.append(ev["commit_s"])
                blob_writes.append(ev["write_s"])
            elif ev.get("kind") == "frames":
                frame_times.append(now)
            elif ev.get("kind") == "finish":
                finish_times.append(now)
        if now - progress["printed"] >= 15:  # a stalled run shows where it stopped
            progress["printed"] = now
            print(f"[run {now - start:6.0f}s] videos started {progress['started']}, finished "
                  f"{progress['finished']}, frames {progress['frames']}", flush=True)

    with GpuSampler() as gpu:
        start = time.time()
        report = run_index(config, videos, on_events=on_events, progress=False)
        end = time.time()
    wall = end - start
    rows = report.to_dict() if hasattr(report, "to_dict") else report.__dict__
    statuses = {}
    for v in rows["videos"]:
        statuses[v["status"]] = statuses.get(v["status"], 0) + 1
    video_seconds = sum(v.get("video_seconds") or 0 for v in rows["videos"])
    frames = sum(v.get("frames") or 0 for v in rows["videos"])
    first, last = (min(frame_times), max(finish_times)) if frame_times and finish_times else (start, end)
    res.put("statuses", statuses)
    res.put("run_wall_s", wall)
    res.put("video_hours_indexed", video_seconds / 3600)
    res.put("video_hours_per_gpu_hour", video_seconds / wall)
    res.put("steady_wall_s", last - first)
    res.put("video_hours_per_gpu_hour_steady", video_seconds / (last - first))
    res.put("gpu_busy_share", gpu.busy(start, end))
    res.put("gpu_busy_share_steady", gpu.busy(first, last))
    res.put("frames_sampled_per_s", frames / wall)
    res.put("commit_s_p50", percentile(commits, 50))
    res.put("commit_s_p99", percentile(commits, 99))
    res.put("commits", len(commits))
    res.put("blob_write_s_p50", percentile(blob_writes, 50))  # by the indexing actor, before its commit
    res.put("blob_write_s_p99", percentile(blob_writes, 99))
    res.put("share_of_compute_ceiling", video_seconds / wall / COMPUTE_CEILING_FPS)

    if args.model_only_seconds:
        with GpuSampler() as gpu:
            only = model_only(checkpoint, args.dtype, args.streams_per_gpu, args.max_new_tokens,
                              args.model_only_seconds, config.caption_prompt)
        only["gpu_busy_share"] = gpu.busy()
        res.put("model_only", only)
        res.put("run_share_of_model_only", video_seconds / wall / only["video_hours_per_gpu_hour"])
        res.put("run_share_of_model_only_steady",
                video_seconds / (last - first) / only["video_hours_per_gpu_hour"])
    print(json.dumps(res, indent=1), flush=True)
    return 0 if statuses.get("done", 0) == len(videos) else 1


if __name__ == "__main__":
    sys.exit(main())

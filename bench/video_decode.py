"""Video decode benchmark: vidindex's PyAV reader on synthetic files.

    python bench/video_decode.py [--seconds 60] [--hour 3600] [--videos DIR] [--variant NAME] [--out PATH]

Prints and records (bench/results/video_decode-<date>-cpu[-variant].json, records.py): sampled
frames/s per CPU core (CPU time of all threads) and wall-clock, and the decoded/sampled frame
ratio, when sampling 1 frame/s from 320x240, 720p and 1080p H.264 with a short (16 frames,
0.53 s; keyframes off the 1 s grid) and a long (10 s) GOP; RSS over a full hour-long 320x240
video; RSS of an idle reader; what the reader does with truncated and corrupt files; and seek
accuracy (is the frame returned for time t really the frame at t). Every measurement runs in
its own process so RSS does not mix. The comparison with decord that chose PyAV is in
docs/benchmarks.md ("What was tried").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

from records import add_arguments, out_path, save

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


# --- worker side: one measurement in a fresh process ---------------------------------------

def _rss_sampler(stop, samples):
    import psutil

    proc = psutil.Process()
    while not stop.is_set():
        samples.append((time.monotonic(), proc.memory_info().rss))
        time.sleep(0.1)


def worker(args) -> dict:
    import numpy as np

    from vidindex.video import VideoError, sample_frames
    from vidindex.video.synthetic import read_frame_index

    result: dict = {}
    if args.task == "speed":
        stop, rss = threading.Event(), []
        sampler = threading.Thread(target=_rss_sampler, args=(stop, rss), daemon=True)
        sampler.start()
        cpu0, wall0 = time.process_time(), time.monotonic()
        stream = sample_frames(args.file, fps=args.fps, size=448)
        n = 0
        for _ in stream:
            n += 1
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        stop.set()
        sampler.join()
        values = [r for _, r in rss]
        tenth = values[len(values) // 10] if values else 0
        result = dict(sampled=n, cpu_s=cpu, wall_s=wall, decoded=stream.stats["decoded_frames"],
                      rss_peak_mib=max(values) / 2**20, rss_growth_mib=(values[-1] - tenth) / 2**20)
    elif args.task == "idle":
        import psutil

        base = psutil.Process().memory_info().rss
        stream = sample_frames(args.file, fps=1, size=448)
        next(stream)
        time.sleep(2)
        result = dict(idle_rss_mib=(psutil.Process().memory_info().rss - base) / 2**20)
        stream.close()
    elif args.task == "bad":
        n, err = 0, None
        try:
            for _ in sample_frames(args.file, fps=30, size=64):
                n += 1
        except VideoError as e:
            err = f"{type(e).__name__} at t={e.last_timestamp}"
        result = dict(frames=n, error=err)
    elif args.task == "seek":
        # the resume path: start at frame i's time, take the first frame, check it is frame i
        import av

        rng = np.random.default_rng(0)
        count = json.loads(args.extra)["frames"]
        targets = sorted(rng.choice(count, size=40, replace=False).tolist())
        rng.shuffle(targets)
        with av.open(args.file) as c:
            times = [float(f.time) for f in c.decode(video=0)]
        hits = 0
        for i in targets:
            s = sample_frames(args.file, fps=1000, size=None, start=times[i])
            t, frame = next(s)
            s.close()
            hits += read_frame_index(frame) == i and t == times[i]
        result = dict(correct=hits, tried=len(targets))
    return result


# --- driver ---------------------------------------------------------------------------------

def run_worker(task, file, fps=1.0, extra="{}") -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--task", task, "--file", file,
           "--fps", str(fps), "--extra", extra]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"failed": f"exit {out.returncode}: {tail[:120]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60, help="length of the speed-test clips")
    p.add_argument("--hour", type=float, default=3600, help="length of the RSS video (s)")
    p.add_argument("--videos", help="where to write the videos (default: a temp dir)")
    add_arguments(p)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--task")
    p.add_argument("--file")
    p.add_argument("--fps", type=float, default=1.0)
    p.add_argument("--extra", default="{}")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    import av

    from vidindex.video.synthetic import write_video

    videos = args.videos or tempfile.mkdtemp(prefix="vidindex-bench-")
    os.makedirs(videos, exist_ok=True)
    path_out = out_path(args, "video_decode", device="cpu")  # decoding runs on the CPU
    record = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "python": platform.python_version(), "pyav": av.__version__,
              "speed": {}, "seek": {}, "damaged": {}, "memory": {}}
    print(f"# vidindex video decode benchmark  {time.strftime('%Y-%m-%d')}  {record['machine']}, "
          f"python {record['python']}, PyAV {record['pyav']}; record: {path_out}")

    def make(name, *a, **kw):
        path = os.path.join(videos, name)
        t0 = time.monotonic()
        schedule = write_video(path, *a, **kw)
        print(f"  wrote {name}: {os.path.getsize(path) / 2**20:.1f} MiB in "
              f"{time.monotonic() - t0:.1f}s", flush=True)
        return path, schedule

    print("\n## speed: sampling 1 frame/s, 448x448 output, 30 fps H.264 sources "
          f"({args.seconds:g} s each, moving noise texture)")
    print(f"{'video':<22}{'sampled/s/core':>15}{'sampled/s wall':>15}{'decoded/sampled':>16}{'peak RSS MiB':>13}")
    for (w, h) in [(320, 240), (1280, 720), (1920, 1080)]:
        for gop_name, gop in [("gop0.53s", 16), ("gop10s", 300)]:
            path, _ = make(f"speed_{h}p_{gop_name}.mp4", args.seconds, 30, w, h, gop=gop,
                           texture=True, scene_seconds=10)
            r = run_worker("speed", path)
            name = f"{w}x{h} {gop_name}"
            record["speed"][name] = r
            save(path_out, record)
            if "failed" in r:
                print(f"{name:<22} {r['failed']}")
                continue
            print(f"{name:<22}{r['sampled'] / r['cpu_s']:>15.1f}{r['sampled'] / r['wall_s']:>15.1f}"
                  f"{r['decoded'] / r['sampled']:>16.1f}{r['rss_peak_mib']:>13.0f}", flush=True)

    print("\n## seek accuracy: 40 random frames, frame content checked")
    path_b, sched_b = make("seek_bframes.mp4", 20, 30, 320, 240, gop=60, bframes=3)
    path_v, sched_v = make("seek_vfr.mkv", 20, 30, 320, 240, gop=60, vfr=True)
    for path, sched in ((path_b, sched_b), (path_v, sched_v)):
        r = run_worker("seek", path, extra=json.dumps({"frames": len(sched.frame_times)}))
        record["seek"][os.path.basename(path)] = r
        save(path_out, record)
        text = r.get("failed") or "{correct}/{tried} correct".format(**r)
        print(f"  {os.path.basename(path):<20}{text}", flush=True)

    print("\n## damaged files: frames yielded at 30 fps sampling, then the error")
    whole, _ = make("whole.mp4", 10, 30, 320, 240, gop=30)
    data = open(whole, "rb").read()
    damaged = {
        "cut at 60% (index first)": data[:int(len(data) * 0.6)],
        "3 KB garbage at 50%": data[:len(data) // 2] + os.urandom(3000) + data[len(data) // 2 + 3000:],
    }
    tail_index, _ = make("index_last.mp4", 10, 30, 320, 240, gop=30, faststart=False)
    tdata = open(tail_index, "rb").read()
    damaged["cut at 60% (index last)"] = tdata[:int(len(tdata) * 0.6)]
    for k, (label, blob) in enumerate(damaged.items()):
        path = os.path.join(videos, f"damaged_{k}.mp4")
        with open(path, "wb") as f:
            f.write(blob)
        r = run_worker("bad", path)
        record["damaged"][label] = r
        save(path_out, record)
        text = r.get("failed") or "{frames}/300 frames, then {error}".format(**r)
        print(f"  {label:<26}{text}", flush=True)

    print(f"\n## memory: full {args.hour / 60:g}-minute 320x240 30 fps video, 1 frame/s, 448x448")
    hour, _ = make("hour_320x240.mp4", args.hour, 30, 320, 240, gop=60, scene_seconds=30)
    idle = run_worker("idle", hour)
    r = run_worker("speed", hour)
    record["memory"] = {"idle": idle, "speed": r}
    save(path_out, record)
    if "failed" in r:
        print(f"  {r['failed']}")
        return
    print(f"  idle reader +{idle.get('idle_rss_mib', float('nan')):.0f} MiB; "
          f"sampled {r['sampled']} in {r['wall_s']:.0f}s wall / {r['cpu_s']:.0f}s CPU; "
          f"peak RSS {r['rss_peak_mib']:.0f} MiB, growth after first 10% "
          f"{r['rss_growth_mib']:+.1f} MiB", flush=True)


if __name__ == "__main__":
    main()

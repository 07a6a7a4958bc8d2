"""Video decode benchmark: backends side by side on the same synthetic files.

    python bench/video_decode.py [--seconds 60] [--hour 3600] [--decord06 PATH] [--out DIR]

Prints, per backend: sampled frames/s per CPU core (CPU time of all threads) and wall-clock,
the decoded/sampled frame ratio when sampling 1 frame/s from 320x240, 720p and 1080p H.264 with a
short (16 frames, 0.53 s; keyframes off the 1 s grid) and a long (10 s) GOP; RSS over a full hour-long 320x240 video; RSS of an idle
reader; what each does with truncated and corrupt files; and seek accuracy (is the frame
returned for time t really the frame at t). Every measurement runs in its own process so RSS
and imports do not mix. --decord06 adds decord 0.6.0 from a `pip install --target PATH` tree
(it has the same module name as decord2).
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

    backend = "decord" if args.backend.startswith("decord") else args.backend
    result: dict = {}
    if args.task == "speed":
        stop, rss = threading.Event(), []
        sampler = threading.Thread(target=_rss_sampler, args=(stop, rss), daemon=True)
        sampler.start()
        cpu0, wall0 = time.process_time(), time.monotonic()
        stream = sample_frames(args.file, fps=args.fps, size=448, backend=backend)
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
        if backend == "decord":
            import decord

            reader = decord.VideoReader(args.file, ctx=decord.cpu(0))
        else:
            stream = sample_frames(args.file, fps=1, size=448, prefetch=8)
            next(stream)
        time.sleep(2)
        if backend == "decord":
            del reader  # held open while measuring
        result = dict(idle_rss_mib=(psutil.Process().memory_info().rss - base) / 2**20)
    elif args.task == "bad":
        n, err = 0, None
        try:
            for _ in sample_frames(args.file, fps=30, size=64, backend=backend):
                n += 1
        except VideoError as e:
            err = f"{type(e).__name__} at t={e.last_timestamp}"
        result = dict(frames=n, error=err)
    elif args.task == "seek":
        # random access to frame indices through the backend's own seeking
        rng = np.random.default_rng(0)
        count = json.loads(args.extra)["frames"]
        targets = sorted(rng.choice(count, size=40, replace=False).tolist())
        rng.shuffle(targets)
        hits = 0
        if backend == "decord":
            import decord

            vr = decord.VideoReader(args.file, ctx=decord.cpu(0))
            for i in targets:
                hits += read_frame_index(vr[int(i)].asnumpy()) == i
        else:  # vidindex resume path: start at frame i's time, take the first frame
            import av

            with av.open(args.file) as c:
                times = [float(f.time) for f in c.decode(video=0)]
            for i in targets:
                s = sample_frames(args.file, fps=1000, size=None, start=times[i])
                t, frame = next(s)
                s.close()
                hits += read_frame_index(frame) == i and t == times[i]
        result = dict(correct=hits, tried=len(targets))
    return result


# --- driver ---------------------------------------------------------------------------------

def run_worker(backend, task, file, decord06=None, fps=1.0, extra="{}") -> dict:
    env = dict(os.environ)
    if backend == "decord-0.6.0":
        env["PYTHONPATH"] = decord06 + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--backend", backend,
           "--task", task, "--file", file, "--fps", str(fps), "--extra", extra]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        tail = (out.stderr.strip().splitlines() or ["?"])[-1]
        return {"failed": f"exit {out.returncode}: {tail[:120]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60, help="length of the speed-test clips")
    p.add_argument("--hour", type=float, default=3600, help="length of the RSS video (s)")
    p.add_argument("--decord06", help="directory holding decord 0.6.0 (pip install --target)")
    p.add_argument("--out", help="where to write the videos (default: a temp dir)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--backend", default="pyav")
    p.add_argument("--task")
    p.add_argument("--file")
    p.add_argument("--fps", type=float, default=1.0)
    p.add_argument("--extra", default="{}")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    from vidindex.video.synthetic import write_video

    out = args.out or tempfile.mkdtemp(prefix="vidindex-bench-")
    os.makedirs(out, exist_ok=True)
    backends = ["pyav", "decord2"] + (["decord-0.6.0"] if args.decord06 else [])
    print(f"# vidindex video decode benchmark  {time.strftime('%Y-%m-%d')}  "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")

    def make(name, *a, **kw):
        path = os.path.join(out, name)
        t0 = time.monotonic()
        schedule = write_video(path, *a, **kw)
        print(f"  wrote {name}: {os.path.getsize(path) / 2**20:.1f} MiB in "
              f"{time.monotonic() - t0:.1f}s", flush=True)
        return path, schedule

    print("\n## speed: sampling 1 frame/s, 448x448 output, 30 fps H.264 sources "
          f"({args.seconds:g} s each, moving noise texture)")
    print(f"{'video':<22}{'backend':<14}{'sampled/s/core':>15}{'sampled/s wall':>15}"
          f"{'decoded/sampled':>16}{'peak RSS MiB':>13}")
    for (w, h) in [(320, 240), (1280, 720), (1920, 1080)]:
        for gop_name, gop in [("gop0.53s", 16), ("gop10s", 300)]:
            path, _ = make(f"speed_{h}p_{gop_name}.mp4", args.seconds, 30, w, h, gop=gop,
                           texture=True, scene_seconds=10)
            for b in backends:
                r = run_worker(b, "speed", path, args.decord06)
                name = f"{w}x{h} {gop_name}"
                if "failed" in r:
                    print(f"{name:<22}{b:<14} {r['failed']}")
                    continue
                ratio = f"{r['decoded'] / r['sampled']:.1f}" if b == "pyav" else "n/a"
                print(f"{name:<22}{b:<14}{r['sampled'] / r['cpu_s']:>15.1f}"
                      f"{r['sampled'] / r['wall_s']:>15.1f}{ratio:>16}{r['rss_peak_mib']:>13.0f}",
                      flush=True)

    print("\n## seek accuracy: 40 random frames, frame content checked")
    path_b, sched_b = make("seek_bframes.mp4", 20, 30, 320, 240, gop=60, bframes=3)
    path_v, sched_v = make("seek_vfr.mkv", 20, 30, 320, 240, gop=60, vfr=True)
    for b in backends:
        for path, sched in ((path_b, sched_b), (path_v, sched_v)):
            r = run_worker(b, "seek", path, args.decord06,
                           extra=json.dumps({"frames": len(sched.frame_times)}))
            text = r.get("failed") or "{correct}/{tried} correct".format(**r)
            print(f"  {b:<14}{os.path.basename(path):<20}{text}", flush=True)

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
        path = os.path.join(out, f"damaged_{k}.mp4")
        with open(path, "wb") as f:
            f.write(blob)
        for b in backends:
            r = run_worker(b, "bad", path, args.decord06)
            text = r.get("failed") or "{frames}/300 frames, then {error}".format(**r)
            print(f"  {label:<26}{b:<14}{text}", flush=True)

    print(f"\n## memory: full {args.hour / 60:g}-minute 320x240 30 fps video, 1 frame/s, 448x448")
    hour, _ = make("hour_320x240.mp4", args.hour, 30, 320, 240, gop=60, scene_seconds=30)
    for b in backends:
        idle = run_worker(b, "idle", hour, args.decord06)
        r = run_worker(b, "speed", hour, args.decord06)
        if "failed" in r:
            print(f"  {b:<14}{r['failed']}")
            continue
        print(f"  {b:<14}idle reader +{idle.get('idle_rss_mib', float('nan')):.0f} MiB; "
              f"sampled {r['sampled']} in {r['wall_s']:.0f}s wall / {r['cpu_s']:.0f}s CPU; "
              f"peak RSS {r['rss_peak_mib']:.0f} MiB, growth after first 10% "
              f"{r['rss_growth_mib']:+.1f} MiB", flush=True)


if __name__ == "__main__":
    main()

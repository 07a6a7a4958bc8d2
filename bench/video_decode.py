"""Video decode benchmark: vidindex's PyAV reader on synthetic files, on the CPU and on NVDEC.

    python bench/video_decode.py [--quick] [--seconds 60] [--hour 3600] [--codecs h264,hevc]
                                 [--nvdec auto|off] [--nvdec-readers 4] [--videos DIR]
                                 [--variant NAME] [--out PATH]

Prints and records (bench/results/video_decode-<date>-<gpu or cpu>[-variant].json, records.py),
when sampling 1 frame/s to 448x448 from 30 fps sources with a short (16 frames, 0.53 s; keyframes
off the 1 s grid) and a long (10 s) GOP: 320x240 H.264, and 720p and 1080p H.264 and HEVC
(HEVC when this PyAV can encode it: libx265), per case sampled frames/s per CPU core (CPU time
of all threads), CPU ms per sampled frame, sampled frames/s wall-clock with one reader as the
product runs it (sample_frames, decoder threads = cores), the CPU cores one GPU needs to be fed
MODEL_FPS (145) frames/s (the model's bf16 rate on one H200, docs/benchmarks.md), the
decoded/sampled frame ratio and the time to the first frame.

At 1080p it also decodes on NVDEC through PyAV's hwaccel (av.open(..., hwaccel=HWAccel("cuda")),
no software fallback) when the GPU and this PyAV's FFmpeg allow it, else prints "NVDEC: not
available (<reason>)": "nvdec" is the product's CPU reader with the hwaccel handed to its av.open
(FFmpeg makes a CUDA context of its own per av.open, and copies every decoded frame, sampled
or not, to host memory; RGB and resize on the CPU); "nvdec-gpu" is the product's NVDEC reader
(vidindex.video.nvdec.sample_frames_nvdec, what `decode: nvdec` runs): frames stay on the GPU
and the sampled ones become 448x448 RGB there in torch (a run that falls back to the CPU is
recorded as failed). Then N readers decode at once on NVDEC (what several streams per GPU
would get).

Also as before: RSS over a full hour-long 320x240 video; RSS of an idle reader; what the reader
does with truncated and corrupt files; seek accuracy (is the frame returned for time t really
the frame at t). Every measurement runs in its own process so RSS and CPU time do not mix.
The comparison with decord that chose PyAV is in docs/benchmarks.md ("What was tried").
On a 16-core H200 host the defaults should take 2-3 minutes, --quick (20 s clips, a 10-minute
RSS video) about one (estimates: first written on a 2-core machine without a GPU).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

from records import add_arguments, device_short_name, out_path, save

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

MODEL_FPS = 145  # frames/s the model takes on one H200 in bf16 (docs/benchmarks.md, "feed")
SAMPLE_FPS = 1.0
SIZE = 448
GOPS = [("gop0.53s", 16), ("gop10s", 300)]


# --- worker side: one measurement in a fresh process ---------------------------------------

def _rss_sampler(stop, samples):
    import psutil

    proc = psutil.Process()
    while not stop.is_set():
        samples.append((time.monotonic(), proc.memory_info().rss))
        time.sleep(0.1)


def _hwaccel():
    """CUDA (NVDEC) decoding, frames copied to host memory; no software fallback, so a stream
    NVDEC cannot take fails loudly. FFmpeg creates a CUDA context of its own per av.open."""
    from av.codec.hwaccel import HWAccel

    return HWAccel("cuda", device=os.environ.get("VIDINDEX_BENCH_CUDA_DEVICE"),
                   allow_software_fallback=False)


def _cuda_device():
    import torch

    return torch.device("cuda", int(os.environ.get("VIDINDEX_BENCH_CUDA_DEVICE") or 0))


def _use_hwaccel_in_product_reader(hwaccel) -> None:
    """Hand the hwaccel to the product reader's av.open (vidindex.video.probe.open_container)
    without changing vidindex: its keyword arguments come from the module's _OPEN_OPTIONS."""
    import importlib

    # not "import vidindex.video.probe as m": the package's attribute `probe` is the function
    probe_mod = importlib.import_module("vidindex.video.probe")
    if not hasattr(probe_mod, "_OPEN_OPTIONS"):
        raise RuntimeError("vidindex.video.probe._OPEN_OPTIONS is gone: update the bench's hook")
    probe_mod._OPEN_OPTIONS = {**probe_mod._OPEN_OPTIONS, "hwaccel": hwaccel}


def _barrier(folder: str, timeout: float = 300) -> None:
    """Say this worker is ready, then wait for the driver's go (readers that start together)."""
    open(os.path.join(folder, f"ready-{os.getpid()}"), "w").close()
    end = time.monotonic() + timeout
    while not os.path.exists(os.path.join(folder, "go")) and time.monotonic() < end:
        time.sleep(0.005)


def _speed(args, extra) -> dict:
    """Sample 1 frame/s to 448x448 from args.file with the decoder args.mode names."""
    from vidindex.video import sample_frames

    mode = extra.get("mode", "cpu")
    result: dict = {"mode": mode}
    if mode == "nvdec":
        _use_hwaccel_in_product_reader(_hwaccel())
    elif mode == "nvdec-gpu":  # torch only here: the other modes' RSS stays without it
        import torch

        from vidindex.video.nvdec import sample_frames_nvdec

        torch.zeros(1, device=_cuda_device())  # not timed: a product process has its context up already
    if extra.get("barrier"):
        _barrier(extra["barrier"])
    stop, rss = threading.Event(), []
    sampler = threading.Thread(target=_rss_sampler, args=(stop, rss), daemon=True)
    sampler.start()
    cpu0, wall0, t_abs0 = time.process_time(), time.monotonic(), time.time()
    first = None
    n = 0
    # the product's readers with their defaults: cpu and nvdec through sample_frames, nvdec-gpu
    # through sample_frames_nvdec (frames on the GPU)
    if mode == "nvdec-gpu":
        stream = sample_frames_nvdec(args.file, fps=args.fps, size=SIZE, device=_cuda_device())
    else:
        stream = sample_frames(args.file, fps=args.fps, size=SIZE)
    with stream:
        for _ in stream:
            n += 1
            if first is None:
                if mode == "nvdec-gpu":
                    torch.cuda.synchronize()
                first = time.monotonic() - wall0
    if mode == "nvdec-gpu":
        torch.cuda.synchronize()
        decoder = stream.stats.get("decoder")
        if decoder != "nvdec":
            raise RuntimeError(f"the NVDEC reader decoded on the {decoder} (see its warning)")
        result["frame_format"] = "cuda"
        result["sw_format"] = stream.stats.get("pixel_format")
    decoded = stream.stats["decoded_frames"]
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    stop.set()
    sampler.join()
    values = [r for _, r in rss]
    tenth = values[len(values) // 10] if values else 0
    result.update(sampled=n, cpu_s=cpu, wall_s=wall, decoded=decoded, first_frame_s=first,
                  t_start=t_abs0, t_end=time.time(),
                  rss_peak_mib=max(values) / 2**20 if values else 0.0,
                  rss_growth_mib=(values[-1] - tenth) / 2**20 if values else 0.0)
    return result


def _nvdec_check(args, extra) -> dict:
    """Can this PyAV decode on NVDEC? Per file: the exact error (with FFmpeg's log), or the
    decoded frames' format and the time to open (CUDA device context) and decode 5 frames."""
    import av
    import av.logging
    from av.codec.hwaccel import hwdevices_available

    out: dict = {"hwdevices": list(hwdevices_available()), "files": {}}
    if "cuda" not in out["hwdevices"]:
        out["reason"] = ("this PyAV's FFmpeg has no cuda hwdevice (has: "
                         f"{', '.join(out['hwdevices']) or 'none'})")
        return out
    av.logging.set_level(av.logging.VERBOSE)
    for name, path in extra["files"].items():
        r: dict = {}
        t0 = time.monotonic()
        with av.logging.Capture(True) as logs:
            try:
                with av.open(path, hwaccel=_hwaccel()) as c:
                    r["open_s"] = time.monotonic() - t0
                    ctx = c.streams.video[0].codec_context
                    r["is_hwaccel"] = bool(ctx.is_hwaccel)
                    for i, frame in enumerate(c.decode(video=0)):
                        r.setdefault("frame_format", frame.format.name)
                        if i == 4:
                            break
                r["ok"] = r["is_hwaccel"] and r.get("frame_format") is not None
                r["open_decode_5_s"] = time.monotonic() - t0
            except Exception as e:  # the exact text is the finding
                r["ok"] = False
                r["error"] = f"{type(e).__name__}: {e}"
        r["ffmpeg_log"] = [f"[{name_}] {msg.strip()}" for level, name_, msg in logs
                           if level <= av.logging.WARNING][:8]
        out["files"][name] = r
    bad = {k: v for k, v in out["files"].items() if not v.get("ok")}
    if bad:
        k, v = next(iter(bad.items()))
        why = v.get("error") or f"opened without hwaccel (is_hwaccel={v.get('is_hwaccel')})"
        log = "; ".join(ln for ln in v["ffmpeg_log"][-3:] if ln.split("] ", 1)[-1] not in why)
        out["reason"] = f"{k}: {why}" + (f" [FFmpeg log: {log}]" if log else "")
    return out


def worker(args) -> dict:
    import numpy as np

    from vidindex.video import VideoError, sample_frames
    from vidindex.video.synthetic import read_frame_index

    extra = json.loads(args.extra)
    result: dict = {}
    if args.task == "speed":
        result = _speed(args, extra)
    elif args.task == "nvdec_check":
        result = _nvdec_check(args, extra)
    elif args.task == "write":
        from vidindex.video.synthetic import write_video

        t0 = time.monotonic()
        write_video(args.file, *extra["args"], **extra["kwargs"])
        result = dict(seconds=time.monotonic() - t0, mib=os.path.getsize(args.file) / 2**20)
    elif args.task == "idle":
        import psutil

        base = psutil.Process().memory_info().rss
        stream = sample_frames(args.file, fps=1, size=SIZE)
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
        count = extra["frames"]
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

def _worker_cmd(task, file, fps=SAMPLE_FPS, extra="{}"):
    return [sys.executable, os.path.abspath(__file__), "--worker", "--task", task, "--file", file,
            "--fps", str(fps), "--extra", extra]


def _parse(returncode, stdout, stderr) -> dict:
    if returncode != 0:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()] or ["?"]
        return {"failed": f"exit {returncode}: {lines[-1].strip()[:400]}"}
    try:
        return json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"failed": f"no result (stdout: {stdout.strip()[-200:]!r})"}


def run_worker(task, file, fps=SAMPLE_FPS, extra="{}", timeout=1800) -> dict:
    try:
        out = subprocess.run(_worker_cmd(task, file, fps, extra), capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"failed": f"timed out after {timeout}s"}
    return _parse(out.returncode, out.stdout, out.stderr)


def run_workers_together(task, file, count, extra: dict, timeout=600) -> list[dict]:
    """`count` workers at once, all starting their measurement at the same moment (once every
    process has imported and set up)."""
    folder = tempfile.mkdtemp(prefix="vidindex-barrier-")
    extra = dict(extra, barrier=folder)
    procs = [subprocess.Popen(_worker_cmd(task, file, extra=json.dumps(extra)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(count)]
    end = time.monotonic() + 120
    while time.monotonic() < end and any(p.poll() is None for p in procs):
        if sum(n.startswith("ready-") for n in os.listdir(folder)) >= count:
            break
        time.sleep(0.01)
    open(os.path.join(folder, "go"), "w").close()
    results = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
            results.append(_parse(p.returncode, stdout, stderr))
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            results.append({"failed": f"timed out after {timeout}s"})
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    os.rmdir(folder)
    return results


def hevc_encoder() -> tuple[str | None, str]:
    """(encoder write_video uses for codec="hevc", or None; what this PyAV offers)."""
    import av

    offered = []
    for name in sorted(av.codecs_available):
        try:
            c = av.codec.Codec(name, "w")
        except Exception:
            continue
        if c.type == "video" and c.canonical_name == "hevc":
            offered.append(name)
    text = ", ".join(offered) or "none"
    if "libx265" in offered:
        return "libx265", text
    return None, text


def rates(r: dict) -> dict:
    """The per-case figures the table prints (also stored in the record)."""
    per_core = r["sampled"] / r["cpu_s"] if r["cpu_s"] > 0 else float("inf")
    return dict(sampled_per_s_per_core=per_core,
                cpu_ms_per_sampled=1000 * r["cpu_s"] / max(1, r["sampled"]),
                sampled_per_s_wall=r["sampled"] / r["wall_s"] if r["wall_s"] > 0 else float("inf"),
                cores_for_model_fps=MODEL_FPS / per_core,
                decoded_per_sampled=r["decoded"] / max(1, r["sampled"]))


HEADER = (f"{'video':<26}{'decode':<11}{'sampled/s/core':>15}{'CPU ms/frame':>13}"
          f"{'sampled/s wall':>15}{f'cores for {MODEL_FPS}/s':>16}{'decoded/sampled':>16}"
          f"{'1st frame s':>12}{'peak RSS MiB':>13}")


def row(name, mode, r) -> str:
    if "failed" in r:
        return f"{name:<26}{mode:<11} {r['failed']}"
    f = rates(r)
    first = r.get("first_frame_s")
    return (f"{name:<26}{mode:<11}{f['sampled_per_s_per_core']:>15.1f}{f['cpu_ms_per_sampled']:>13.1f}"
            f"{f['sampled_per_s_wall']:>15.1f}{f['cores_for_model_fps']:>16.2f}"
            f"{f['decoded_per_sampled']:>16.1f}{(first if first is not None else float('nan')):>12.2f}"
            f"{r['rss_peak_mib']:>13.0f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, help="length of the speed-test clips (default 60; --quick 20)")
    p.add_argument("--hour", type=float, help="length of the RSS video in s (default 3600; --quick 600)")
    p.add_argument("--quick", action="store_true",
                   help="short clips and RSS video (about a minute on 16 cores, estimated)")
    p.add_argument("--codecs", default="h264,hevc", help="source codecs of the 720p/1080p cases")
    p.add_argument("--nvdec", choices=["auto", "off"], default="auto",
                   help="auto: measure NVDEC at 1080p where available")
    p.add_argument("--nvdec-readers", type=int, default=4, help="readers decoding at once on NVDEC")
    p.add_argument("--jobs", type=int, help="videos written at once (default: cores / 3, at most 6)")
    p.add_argument("--videos", help="where to write the videos (default: a temp dir)")
    add_arguments(p)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--task", help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    p.add_argument("--fps", type=float, default=SAMPLE_FPS, help=argparse.SUPPRESS)
    p.add_argument("--extra", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.seconds is None:
        args.seconds = 20 if args.quick else 60
    if args.hour is None:
        args.hour = 600 if args.quick else 3600

    import av

    from vidindex.video.synthetic import write_video

    t_run = time.monotonic()
    cores = os.cpu_count() or 1
    videos = args.videos or tempfile.mkdtemp(prefix="vidindex-bench-")
    os.makedirs(videos, exist_ok=True)
    gpu = device_short_name()  # "cpu" where there is no CUDA device (or no torch)
    path_out = out_path(args, "video_decode", device=gpu)
    record = {"machine": f"{platform.processor() or platform.machine()}, {cores} cores",
              "gpu": gpu, "python": platform.python_version(), "pyav": av.__version__,
              "ffmpeg": {k: ".".join(map(str, v)) for k, v in av.library_versions.items()},
              "settings": {"seconds": args.seconds, "hour": args.hour, "sample_fps": SAMPLE_FPS,
                           "size": SIZE, "model_fps": MODEL_FPS, "codecs": args.codecs,
                           "nvdec": args.nvdec, "nvdec_readers": args.nvdec_readers},
              "encoders": {}, "nvdec": {}, "speed": {}, "nvdec_parallel": {},
              "seek": {}, "damaged": {}, "memory": {}}
    print(f"# vidindex video decode benchmark  {time.strftime('%Y-%m-%d')}  {record['machine']}, "
          f"GPU {gpu}, python {record['python']}, PyAV {record['pyav']} "
          f"(libavcodec {record['ffmpeg'].get('libavcodec')}); record: {path_out}", flush=True)

    def make(name, *a, **kw):
        path = os.path.join(videos, name)
        t0 = time.monotonic()
        schedule = write_video(path, *a, **kw)
        print(f"  wrote {name}: {os.path.getsize(path) / 2**20:.1f} MiB in "
              f"{time.monotonic() - t0:.1f}s", flush=True)
        return path, schedule

    # -- what this PyAV can do ----------------------------------------------------------------
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    enc, offered = hevc_encoder()
    record["encoders"] = {"hevc_encoders_offered": offered, "hevc_encoder_used": enc}
    if "hevc" in codecs:
        if enc is None:
            print(f"HEVC: no libx265 in this PyAV (HEVC encoders it offers: {offered}): "
                  "HEVC cases skipped")
            codecs.remove("hevc")
            record["encoders"]["hevc_skipped"] = "no libx265"
        else:
            print(f"HEVC: encoding with {enc} (HEVC encoders this PyAV offers: {offered})")

    # -- the speed videos and the long RSS video, written several at once ------------------------
    cases = [(320, 240, "h264", g, n) for g, n in GOPS]
    for w, h in [(1280, 720), (1920, 1080)]:
        cases += [(w, h, c, g, n) for c in codecs for g, n in GOPS]
    jobs = args.jobs or max(1, min(6, cores // 3))
    print(f"\n## writing {len(cases)} speed videos ({args.seconds:g} s each) and the "
          f"{args.hour / 60:g}-minute RSS video, {jobs} at once", flush=True)
    # the RSS video first: its single-threaded painting is the longest job
    writes = [("hour", "hour_320x240.mp4", [args.hour, 30, 320, 240],
               dict(gop=60, scene_seconds=30))]
    for w, h, codec, gop_name, gop in sorted(
            cases, key=lambda c: -(c[0] * c[1] * (3 if c[2] == "hevc" else 1))):
        writes.append(((w, h, codec, gop_name), f"speed_{h}p_{codec}_{gop_name}.mp4",
                       [args.seconds, 30, w, h],
                       dict(gop=gop, codec=codec, texture=True, scene_seconds=10)))
    files = {}
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = {}
        for key, name, a, kw in writes:
            path = os.path.join(videos, name)
            extra = json.dumps({"args": a, "kwargs": kw})
            futures[pool.submit(run_worker, "write", path, extra=extra)] = (key, path)
        for fut in concurrent.futures.as_completed(futures):
            key, path = futures[fut]
            r = fut.result()
            if "failed" in r:
                print(f"  {os.path.basename(path)}: not written ({r['failed']})", flush=True)
                continue
            files[key] = path
            print(f"  wrote {os.path.basename(path)}: {r['mib']:.1f} MiB in {r['seconds']:.1f}s",
                  flush=True)
    record["write_s"] = time.monotonic() - t0
    print(f"  all written in {record['write_s']:.0f}s", flush=True)

    # -- NVDEC: available? --------------------------------------------------------------------
    nvdec_ok = False
    if args.nvdec == "off":
        record["nvdec"] = {"available": False, "reason": "--nvdec off"}
        print("\nNVDEC: not measured (--nvdec off)")
    else:
        probe_files = {c: files[(1920, 1080, c, "gop0.53s")] for c in codecs
                       if (1920, 1080, c, "gop0.53s") in files}
        check = run_worker("nvdec_check", "-", extra=json.dumps({"files": probe_files}), timeout=300)
        if "failed" in check:
            check["reason"] = f"check process died: {check['failed']}"
        nvdec_ok = "reason" not in check and bool(check.get("files"))
        if not nvdec_ok and "reason" not in check:
            check["reason"] = "no 1080p file to try"
        record["nvdec"] = dict(check, available=nvdec_ok)
        save(path_out, record)
        if nvdec_ok:
            parts = [f"{k}: {v['frame_format']} frames, open+5 frames {v['open_decode_5_s']:.2f}s"
                     for k, v in check["files"].items()]
            print(f"\nNVDEC: available ({'; '.join(parts)})", flush=True)
        else:
            print(f"\nNVDEC: not available ({check['reason']})", flush=True)

    # -- speed ----------------------------------------------------------------------------------
    print(f"\n## speed: sampling {SAMPLE_FPS:g} frame/s to {SIZE}x{SIZE} from 30 fps sources "
          f"({args.seconds:g} s each, moving noise texture); one reader as the product runs it "
          f"(decoder threads = cores); cores for {MODEL_FPS}/s = {MODEL_FPS} / sampled/s/core "
          "(CPU cores, NVDEC aside)")
    print("   decode: cpu = FFmpeg software; nvdec = NVDEC, frames copied to host, RGB+resize on the "
          "CPU; nvdec-gpu = NVDEC, frames kept on the GPU, RGB+resize in torch")
    print(HEADER)
    for w, h, codec, gop_name, _ in cases:
        path = files.get((w, h, codec, gop_name))
        name = f"{w}x{h} {codec} {gop_name}"
        if path is None:
            record["speed"][name + " cpu"] = {"failed": "video not written"}
            print(f"{name:<26}{'-':<11} video not written")
            continue
        modes = ["cpu"] + (["nvdec", "nvdec-gpu"] if nvdec_ok and h >= 1080 else [])
        for mode in modes:
            r = run_worker("speed", path, extra=json.dumps({"mode": mode}))
            if "failed" not in r:
                r.update(rates(r))
            record["speed"][f"{name} {mode}"] = r
            save(path_out, record)
            print(row(name, mode, r), flush=True)

    # -- NVDEC, several readers at once ---------------------------------------------------------
    if nvdec_ok and args.nvdec_readers > 1:
        k = args.nvdec_readers
        print(f"\n## NVDEC, {k} readers at once on one GPU (1080p, 10 s GOP, each its own process "
              "and file handle)")
        print(f"{'video':<26}{'decode':<11}{'sampled/s all':>14}{'CPU ms/frame':>13}"
              f"{f'cores for {MODEL_FPS}/s':>16}{'decoded/s all':>14}")
        for codec in codecs:
            path = files.get((1920, 1080, codec, "gop10s"))
            if path is None:
                continue
            for mode in ("nvdec", "nvdec-gpu"):
                rs = run_workers_together("speed", path, k, {"mode": mode})
                name = f"1920x1080 {codec} gop10s"
                good = [r for r in rs if "failed" not in r]
                if len(good) < len(rs):
                    fail = next(r for r in rs if "failed" in r)["failed"]
                    record["nvdec_parallel"][f"{name} {mode}"] = {"runs": rs}
                    print(f"{name:<26}{mode:<11} {len(rs) - len(good)}/{k} failed: {fail}", flush=True)
                    continue
                span = max(r["t_end"] for r in good) - min(r["t_start"] for r in good)
                sampled = sum(r["sampled"] for r in good)
                cpu = sum(r["cpu_s"] for r in good)
                agg = dict(readers=k, sampled=sampled, decoded=sum(r["decoded"] for r in good),
                           cpu_s=cpu, span_s=span, sampled_per_s=sampled / span,
                           decoded_per_s=sum(r["decoded"] for r in good) / span,
                           cpu_ms_per_sampled=1000 * cpu / sampled,
                           cores_for_model_fps=MODEL_FPS * cpu / sampled, runs=rs)
                record["nvdec_parallel"][f"{name} {mode}"] = agg
                save(path_out, record)
                print(f"{name:<26}{mode:<11}{agg['sampled_per_s']:>14.1f}"
                      f"{agg['cpu_ms_per_sampled']:>13.1f}{agg['cores_for_model_fps']:>16.2f}"
                      f"{agg['decoded_per_s']:>14.0f}", flush=True)

    # -- sizing summary -------------------------------------------------------------------------
    print(f"\n## sizing: CPU cores one GPU needs for {MODEL_FPS} sampled frames/s "
          "(worst of the two GOPs; NVDEC: CPU cores besides the decoder engines)")
    summary = {}
    for w, h in [(320, 240), (1280, 720), (1920, 1080)]:
        for codec in ["h264"] + [c for c in codecs if c != "h264"]:
            for mode in ("cpu", "nvdec", "nvdec-gpu"):
                rs = [record["speed"].get(f"{w}x{h} {codec} {g} {mode}") for g, _ in GOPS]
                rs = [r for r in rs if r and "failed" not in r]
                if not rs:
                    continue
                worst = max(r["cores_for_model_fps"] for r in rs)
                summary[f"{w}x{h} {codec} {mode}"] = worst
                print(f"  {f'{w}x{h} {codec}':<18}{mode:<11}{worst:>6.2f} cores", flush=True)
    record["sizing_cores_for_model_fps"] = summary
    save(path_out, record)

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

    print(f"\n## memory: full {args.hour / 60:g}-minute 320x240 30 fps video, 1 frame/s, {SIZE}x{SIZE}")
    hour = files.get("hour")
    if hour is None:
        record["memory"] = {"failed": "video not written"}
        save(path_out, record)
        print("  video not written")
        return
    idle = run_worker("idle", hour)
    r = run_worker("speed", hour)
    record["memory"] = {"idle": idle, "speed": r}
    if "failed" in r:
        print(f"  {r['failed']}")
    else:
        print(f"  idle reader +{idle.get('idle_rss_mib', float('nan')):.0f} MiB; "
              f"sampled {r['sampled']} in {r['wall_s']:.0f}s wall / {r['cpu_s']:.0f}s CPU; "
              f"peak RSS {r['rss_peak_mib']:.0f} MiB, growth after first 10% "
              f"{r['rss_growth_mib']:+.1f} MiB", flush=True)
    record["total_s"] = time.monotonic() - t_run
    save(path_out, record)
    print(f"\n# done in {record['total_s']:.0f}s; record: {path_out}", flush=True)


if __name__ == "__main__":
    main()

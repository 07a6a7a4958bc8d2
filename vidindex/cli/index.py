"""`vidindex index` and `vidindex status`: their parsers, runners and reports."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from vidindex.cli.output import (EXIT_FAILURE, EXIT_NOTHING_INDEXED, EXIT_OK, error, format_table, plural,
                                 print_json, seconds_text, short)
from vidindex.config import DECODERS, DTYPES, ConfigError, IndexConfig, Question

# ---- index


def add_index_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "index", help="index videos into a database",
        description="Index videos (files, folders, globs, fsspec URIs, or manifests: .txt with one URI per line, "
                    ".csv/.parquet with a uri column) on a Ray cluster. Flags override the config file. "
                    "Re-running skips done videos and resumes partial ones from their last snapshot. "
                    "A source that names no video is skipped with a warning. SIGINT (Ctrl-C) or SIGTERM "
                    "stops the run within seconds, keeping every committed snapshot (exit code 130 / 143); "
                    "a second one exits at once.")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="video, folder, glob, URI or manifest")
    p.add_argument("--db", help="LanceDB database URI (local folder or s3://...)")
    p.add_argument("--parquet", help="also write a Parquet copy of every table here")
    p.add_argument("--snapshots", help="where snapshot blobs go (default: <db>/snapshots)")
    p.add_argument("--config", help="index config file (YAML)")
    p.add_argument("--model", help="model: local checkpoint folder or hub id, e.g. hustvl/InfiniteVL-LongSFT")
    p.add_argument("--fps", type=float, help="frames sampled per second of video")
    p.add_argument("--frame-size", type=int, help="frame side in pixels fed to the model (multiple of 28)")
    p.add_argument("--caption-every", metavar="S", help="caption interval, seconds or HH:MM:SS")
    p.add_argument("--snapshot-every", metavar="S", help="snapshot interval, seconds or HH:MM:SS")
    p.add_argument("--question", action="append", metavar="TEXT",
                   help="a question asked at every caption and at the end (repeatable; replaces the config's)")
    p.add_argument("--max-new-tokens", type=int, help="longest caption or answer, in tokens")
    p.add_argument("--streams-per-gpu", type=int, help="videos one actor indexes at the same time")
    p.add_argument("--device", help="cpu, cuda, cuda:0 or auto")
    p.add_argument("--dtype", choices=DTYPES)
    p.add_argument("--decode", choices=DECODERS,
                   help="where videos are decoded: cpu (default), or nvdec on the model's GPU (opt-in: "
                        "falls back to the CPU, saying why, where it cannot run)")
    p.add_argument("--ray-address", help="Ray cluster to use (default: RAY_ADDRESS, else a local cluster)")
    p.add_argument("--actors", type=int, help="indexing actors (default: one per GPU, or one per CPU core)")
    p.add_argument("--gpus-per-actor", type=float, help="GPUs per indexing actor (default 1, or 0 without GPUs)")
    p.add_argument("--cpus-per-actor", type=float, help="CPUs per indexing actor (decode threads)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="live progress bar (default: when stderr is a terminal)")
    p.add_argument("--json", action="store_true", help="print the run report as JSON")
    p.set_defaults(run=run_index_command)
    return p


def config_from_args(args) -> IndexConfig:
    """The config file (or defaults) with the flags given on the command line on top."""
    config = IndexConfig.from_yaml(args.config) if args.config else IndexConfig()
    config = config.with_overrides(
        db_uri=args.db, parquet_uri=args.parquet, snapshot_uri=args.snapshots, model=args.model,
        sample_fps=args.fps, frame_size=args.frame_size, caption_interval=args.caption_every,
        snapshot_interval=args.snapshot_every, max_new_tokens=args.max_new_tokens,
        streams_per_gpu=args.streams_per_gpu, device=args.device, dtype=args.dtype, decode=args.decode,
    )
    if args.question:
        config = config.with_overrides(questions=questions_from_flags(args.question, config.caption_interval))
    if not config.db_uri:
        raise ConfigError("no database given: pass --db URI (or set db_uri in the config file)")
    if _looks_like_path(config.model) and not Path(config.model).expanduser().exists():
        raise ConfigError(f"model {config.model!r} does not exist (give a checkpoint folder or a hub id such as "
                          "hustvl/InfiniteVL-LongSFT)")
    return config


def _looks_like_path(model: str) -> bool:
    """A hub id is 'org/name'; a local checkpoint is given as an absolute or ./relative path."""
    return model.startswith(("/", "./", "../", "~")) or Path(model).is_absolute()


def questions_from_flags(texts: list[str], every: float) -> tuple[Question, ...]:
    """--question texts as questions asked with every caption and at the end; the id comes
    from the text, so the same question keeps its id (and its answers) across runs."""
    questions = {}
    for text in texts:
        if not text.strip():
            raise ConfigError("--question needs a non-empty text")
        qid = "q-" + hashlib.sha256(text.strip().encode()).hexdigest()[:8]
        questions[qid] = Question(id=qid, text=text.strip(), every=every, at_end=True)
    return tuple(questions.values())


def run_index_command(args) -> int:
    from vidindex.run.discover import EmptySource, SourceError
    from vidindex.run.pipeline import PipelineError, run_index
    from vidindex.run.ray import ClusterError
    from vidindex.run.stop import Stopped, stop_on_signals
    from vidindex.store import StoreError

    try:
        config = config_from_args(args)
        with stop_on_signals():  # SIGINT, SIGTERM: a clean stop, committed work kept
            report = run_index(config, args.sources, ray_address=args.ray_address, actors=args.actors,
                               gpus_per_actor=args.gpus_per_actor, cpus_per_actor=args.cpus_per_actor,
                               progress=args.progress if not args.json else False)
    except Stopped as stop:
        if args.json:
            print_json({"stopped_by": stop.signum.name, "counts": stop.counts, "exit_code": stop.exit_code})
        print(format_stopped(stop), file=sys.stderr)
        return stop.exit_code
    except EmptySource as problem:  # not a bad flag: the sources are fine, they hold no video (yet)
        return error("index", str(problem), EXIT_NOTHING_INDEXED)
    except (ConfigError, SourceError) as problem:
        return error("index", str(problem))
    except (PipelineError, ClusterError, StoreError) as problem:
        return error("index", str(problem), EXIT_FAILURE)
    if args.json:
        print_json(report.to_dict())
    else:
        print(format_report(report))
    if report.exit_code == EXIT_NOTHING_INDEXED and not args.json:
        print("\nnothing could be indexed: every video failed (see the errors above)", file=sys.stderr)
    return report.exit_code


def format_stopped(stop) -> str:
    """The one line of a stopped run, e.g. "vidindex index: stopped by SIGTERM: 3 videos done,
    2 partial (a re-run resumes them)"."""
    head = f"vidindex index: stopped by {stop.signum.name}"
    counts = stop.counts
    if counts is None:
        return f"{head} before any video started: nothing was indexed"
    parts = [plural(counts["done"], "video") + " done"] + [
        f"{counts[key]} {label}" for key, label in (("failed", "failed"), ("partial", "partial"),
                                                    ("not_started", "not started"))
        if counts[key] or key == "partial"]
    left = counts["partial"] + counts["not_started"]
    return f"{head}: {', '.join(parts)}" + (" (a re-run resumes them)" if left else "")


def format_report(report) -> str:
    lines = []
    if report.videos:
        rows = [[v["status"], short(v["uri"], 48, keep="end"), seconds_text(v.get("duration_s")), v["frames"],
                 v["captions"], v["snapshots"], ", ".join(seconds_text(t) for t in v.get("resumed_at_s") or []),
                 short(v.get("error"), 70)] for v in report.videos]
        lines.append(format_table(["status", "video", "length", "frames", "captions", "snapshots", "resumed at",
                                   "error"], rows, right={2, 3, 4, 5}))
        lines.append("")
    totals = report.totals or {}
    seconds = max(0.0, totals.get("covered_s", 0.0) - totals.get("resumed_s", 0.0))
    speed = seconds / report.wall_s if report.wall_s else 0.0
    lines.append(
        f"{len(report.done)} done, {len(report.failed)} failed, {len(report.already_done)} already indexed "
        f"(config {report.config_id}); {seconds_text(seconds)} of video in {seconds_text(report.wall_s)} "
        f"({speed:.1f}x real time) on {report.actors} actor(s), {totals.get('frames', 0)} frames, "
        f"{totals.get('captions', 0)} captions, {totals.get('answers', 0)} answers, "
        f"{totals.get('snapshots', 0)} snapshots")
    if not report.videos and report.already_done:
        lines.append("nothing to do: every video is already indexed with this config")
    for video in report.failed:
        lines.append(f"failed: {video['uri']}: {video['error']}")
    for source in report.empty_sources:
        lines.append(f"warning: no videos in {source!r}: skipped")
    lines.append(f"tables: {report.db_uri}" + (f"  parquet: {report.parquet_uri}" if report.parquet_uri else ""))
    return "\n".join(lines)


# ---- status


def add_status_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser("status", help="what is indexed, failed or partial",
                            description="List the videos of an index with their state: done, failed (with "
                                        "the error) or partial (resumable from its last snapshot).")
    p.add_argument("--db", required=True, help="LanceDB database URI")
    p.add_argument("--config-id", help="only videos indexed with this config id")
    p.add_argument("--status", choices=("done", "failed", "partial"), help="only videos in this state")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run_status_command)
    return p


def index_status(db_uri: str, config_id: str | None = None, status: str | None = None) -> dict:
    """The videos rows (without the config text) and counts by status."""
    from vidindex.store import Store

    store = Store(db_uri, create=False)
    videos = store.videos(config_id=config_id, status=status)
    keep = ("video_id", "config_id", "uri", "status", "duration_s", "last_snapshot_ms", "frames_sampled", "error",
            "model", "started_at", "finished_at", "video_seconds_per_second")
    videos = sorted(({k: v.get(k) for k in keep} for v in videos), key=lambda v: (v["uri"] or "", v["config_id"]))
    counts = {state: sum(v["status"] == state for v in videos) for state in ("done", "failed", "partial")}
    tables = {table: store.count(table) for table in ("videos", "captions", "answers", "snapshots")}
    return {"db": db_uri, "counts": counts, "rows": tables, "videos": videos}


def run_status_command(args) -> int:
    from vidindex.store import StoreError

    try:
        status = index_status(args.db, args.config_id, args.status)
    except StoreError as problem:
        return error("status", str(problem))
    if args.json:
        print_json(status)
    else:
        print(format_status(status))
    return EXIT_OK


def format_status(status: dict) -> str:
    rows = []
    for v in status["videos"]:
        indexed_to = v["duration_s"] if v["status"] == "done" else (v["last_snapshot_ms"] or 0) / 1000
        rows.append([v["status"], v["video_id"][:12], v["config_id"], short(v["uri"], 48, keep="end"),
                     seconds_text(v["duration_s"]), seconds_text(indexed_to) if v["status"] != "failed" else "",
                     short(v["error"], 70)])
    counts, tables = status["counts"], status["rows"]
    lines = [format_table(["status", "video", "config", "uri", "length", "indexed to", "error"], rows, right={4, 5})
             if rows else f"no videos in {status['db']}"]
    lines.append("")
    lines.append(f"{counts['done']} done, {counts['failed']} failed, {counts['partial']} partial"
                 f" | rows: {tables['captions']} captions, {tables['answers']} answers, {tables['snapshots']} snapshots")
    if counts["partial"]:
        lines.append("partial videos resume from their last snapshot when indexed again with the same config")
    return "\n".join(lines)

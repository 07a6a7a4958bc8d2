"""`vidindex demo`: the whole system end to end on a laptop, in a minute or two, with no downloads.

Makes 3 synthetic sample videos whose scenes are known (a shape and colours that change every few
seconds; one video deliberately truncated), indexes them with the self-test model shipped in the
package (a tiny InfiniteVL trained on such videos, vidindex/model/selftest-model) on a local Ray
cluster through the same pipeline as `vidindex index`, then prints the status table, the captions
next to what was on screen, a search for a shape and colour, answers asked as of a timestamp,
and the commands to explore further, last the one that serves the demo's index with its web page
(`vidindex serve`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from vidindex.cli.index import format_report, format_status, index_status
from vidindex.cli.output import EXIT_FAILURE, EXIT_NOTHING_INDEXED, EXIT_OK, error, seconds_text
from vidindex.config import IndexConfig, Question

SAMPLES = (("shapes1.mp4", 0), ("shapes2.mp4", 1), ("broken.mp4", 2))  # (name, seed)
SAMPLE_FPS, SAMPLE_WIDTH, SAMPLE_HEIGHT = 10, 160, 120
# Mean scene length: the longest the self-test model was trained on (selftest.TaskConfig, 2-6 s).
SCENE_SECONDS = 6.0
CAPTION_EVERY_S = 10.0
ASK_AT_S = 90.0  # asked as of 00:01:30 (or mid-video for shorter samples)
ASK_NOW = "What is on the screen?"
ASK_MEMORY = "What colour was the first shape?"
CAPTIONS_SHOWN = 6
MODEL_NOTE = (
    "The model: vidindex's self-test model, a tiny InfiniteVL (1.9M parameters, the code and checkpoint format of\n"
    "the 4B model) trained on synthetic videos like these samples, so every caption and answer can be checked:\n"
    "it knows their shapes and colours and nothing else. Real videos need the real checkpoint on a GPU:\n"
    "--model hustvl/InfiniteVL-LongSFT (or a local path) --device cuda."
)


def add_demo_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser("demo", help="index sample videos with the tiny self-test model, then search and ask",
                            description="Make 3 synthetic videos of known scenes (one broken), index them with the "
                                        "self-test model on a local Ray cluster, then check the captions against "
                                        "the scenes, run a search and ask as of a time.")
    p.add_argument("--workdir", default="vidindex-demo", help="where everything goes (default ./vidindex-demo)")
    p.add_argument("--seconds", type=float, default=180.0, help="length of each sample video (default 180)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="live progress bar (default: when stderr is a terminal)")
    p.set_defaults(run=run_demo_command)
    return p


def run_demo_command(args) -> int:
    from vidindex.run.pipeline import PipelineError
    from vidindex.run.ray import ClusterError
    from vidindex.store import StoreError

    try:
        return run_demo(args.workdir, seconds=args.seconds, progress=args.progress)
    except (PipelineError, ClusterError, StoreError) as problem:  # e.g. Ray could not start: one line, not a traceback
        return error("demo", str(problem), EXIT_FAILURE)


def demo_config(workdir: Path) -> IndexConfig:
    """What the self-test model was trained for (1 frame/s, 56-pixel frames, the default caption
    prompt, its questions), small and fast on a 2-core CPU: float32, a caption every 10 s, a
    snapshot every 60 s."""
    from vidindex.model import TINY_FRAME_SIZE
    from vidindex.model.selftest import NOW_QUESTIONS
    from vidindex.model.tiny import SELFTEST_MODEL_DIR

    return IndexConfig(
        model=str(SELFTEST_MODEL_DIR), frame_size=TINY_FRAME_SIZE, dtype="float32", device="cpu", sample_fps=1.0,
        caption_interval=CAPTION_EVERY_S, snapshot_interval=60.0, max_new_tokens=12, streams_per_gpu=2,
        questions=(Question(id="shape-now", text=NOW_QUESTIONS[1], every=30.0),
                   Question(id="first-shape-colour", text=ASK_MEMORY, every=60.0, at_end=True)),
        db_uri=str(workdir / "db"), parquet_uri=str(workdir / "parquet"),
    )


def make_samples(video_dir: Path, seconds: float) -> dict[str, object]:
    """Three synthetic videos of random scenes; the last one is cut off at 60% of its bytes (a
    truncated upload). Returns file name -> SceneSchedule (what each shows when)."""
    import numpy as np

    from vidindex.video.synthetic import random_scenes, write_video

    video_dir.mkdir(parents=True, exist_ok=True)
    schedules = {}
    for name, seed in SAMPLES:
        path = video_dir / name
        scenes = random_scenes(seconds, SCENE_SECONDS, np.random.default_rng(seed))
        schedules[name] = write_video(path, seconds, fps=SAMPLE_FPS, width=SAMPLE_WIDTH, height=SAMPLE_HEIGHT,
                                           scenes=scenes, seed=seed)
    broken = video_dir / SAMPLES[-1][0]
    data = broken.read_bytes()
    broken.write_bytes(data[: int(len(data) * 0.6)])
    return schedules


def run_demo(workdir: str | os.PathLike = "vidindex-demo", *, seconds: float = 180.0, progress: bool | None = None,
             out=None) -> int:
    from vidindex.run.pipeline import run_index

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" bars would interleave with the report
    out = out or sys.stdout
    say = lambda text="": print(text, file=out, flush=True)  # noqa: E731
    workdir = Path(workdir).resolve()
    for owned in ("db", "parquet"):  # a fresh index each time, so every step shows
        shutil.rmtree(workdir / owned, ignore_errors=True)

    say(f"vidindex demo in {workdir}")
    say(MODEL_NOTE)
    say()
    say(f"1/4 making {len(SAMPLES)} sample videos of {seconds:.0f} s ({SAMPLE_WIDTH}x{SAMPLE_HEIGHT}, "
        f"{SAMPLE_FPS} fps, a new shape and colours every ~{SCENE_SECONDS:g} s; {SAMPLES[-1][0]} is truncated "
        f"on purpose) in {workdir / 'videos'}")
    schedules = make_samples(workdir / "videos", seconds)
    config = demo_config(workdir)
    say(f"2/4 the model: {config.model}")
    config_file = workdir / "index.yaml"
    config.to_yaml(config_file)  # so the commands below index with exactly this config

    say("3/4 indexing on a local Ray cluster (one indexing actor per CPU core)")
    report = run_index(config, [str(workdir / "videos")], progress=progress)
    say(format_report(report))
    say()
    say(format_status(index_status(config.db_uri)))
    if not report.done:
        say("\nnothing could be indexed; see the errors above")
        return EXIT_NOTHING_INDEXED

    say("\n4/4 checking and querying")
    video = report.done[0]
    schedule_of = {v["video_id"]: schedules[Path(v["uri"]).name] for v in report.videos}
    ask_s = min(ASK_AT_S, seconds / 2)
    ask_at = seconds_text(ask_s)
    captions = _caption_rows(config.db_uri)
    _show_captions(say, config, video, captions, schedule_of)
    query = _show_search(say, config, video, ask_s, captions, schedule_of)
    _show_ask(say, config, video["video_id"], ask_at, schedule_of[video["video_id"]])

    db = config.db_uri
    say("\nExplore further:")
    say(f"  vidindex status --db {db}")
    say(f"  vidindex search \"{query}\" --db {db}")
    say(f"  vidindex ask {video['video_id']} --at {ask_at} \"{ASK_NOW}\" --db {db}")
    say(f"  vidindex ask-archive \"{ASK_MEMORY}\" --db {db}")
    say(f"  duckdb -c \"SELECT * FROM read_parquet('{config.parquet_uri}/captions/*/*.parquet')\"")
    say(f"  vidindex index {workdir / 'videos'} --config {config_file}   # again: skips done videos, retries the broken one")
    say("  vidindex index VIDEOS... --db DB --model hustvl/InfiniteVL-LongSFT --device cuda   # real videos, GPU")
    say("\nSee it in a browser (search, play the moments found, ask as of any time), at http://127.0.0.1:8000/:")
    say(f"  vidindex serve --db {db}")
    return EXIT_OK


def _caption_rows(db_uri: str) -> list[dict]:
    from vidindex.store import Store

    rows = Store(db_uri, create=False).rows("captions").to_pylist()
    return sorted(rows, key=lambda r: (r["video_id"], r["t_end_ms"]))


def _seen(schedule, t: float):
    """The scene a caption or an answer as of t is about: that of the last frame sampled at or before t."""
    from vidindex.model.selftest import scene_at, time_seen_at

    return scene_at(schedule.scenes, time_seen_at(schedule, t))


def _show_captions(say, config: IndexConfig, video: dict, captions: list[dict], schedule_of: dict) -> None:
    """The first captions of one video next to what was on screen, and the tally over every video."""
    from vidindex.model.selftest import caption_text

    right = [r["text"] == caption_text(_seen(schedule_of[r["video_id"]], r["t_end_ms"] / 1000)) for r in captions]
    say(f"captions of {Path(video['uri']).name} (one every {config.caption_interval:g} s, each of the last frame "
        "before its time), checked against the scene on screen then:")
    shown = [(r, ok) for r, ok in zip(captions, right) if r["video_id"] == video["video_id"]][:CAPTIONS_SHOWN]
    for r, ok in shown:
        say(f"  {seconds_text(r['t_end_ms'] / 1000)}  {r['text']:<44} {'right' if ok else 'WRONG'}")
    videos = len({r["video_id"] for r in captions})
    say(f"  ... {sum(right)} of {len(right)} captions (all {videos} videos) name the scene on screen")


def _look_to_search(video: dict, ask_s: float, captions: list[dict], schedule_of: dict) -> tuple[str, str]:
    """A (colour, shape) on screen in `video` at a caption time, at the ask time or the latest
    before it where possible, that no caption time shows the other way round: search matches
    words, so "grey bar" would find "an orange bar on a grey background" as well."""
    seen = [(r["video_id"], r["t_end_ms"] / 1000, _seen(schedule_of[r["video_id"]], r["t_end_ms"] / 1000))
            for r in captions]
    reversed_words = {(s.background, s.shape) for _, _, s in seen}
    mine = sorted(((t, s) for v, t, s in seen if v == video["video_id"]),
                  key=lambda ts: (ts[0] > ask_s, abs(ts[0] - ask_s)))
    looks = [(s.shape_color, s.shape) for _, s in mine]
    clear = [look for look in looks if look not in reversed_words]
    return (clear or looks)[0]


def _show_search(say, config: IndexConfig, video: dict, ask_s: float, captions: list[dict], schedule_of: dict) -> str:
    """Search for a shape and colour on screen in `video`; returns the query."""
    from vidindex.query import search

    look = _look_to_search(video, ask_s, captions, schedule_of)
    query = " ".join(look)
    say(f"\nsearch {query!r} (top 3; 'on screen': a {query} is on screen at the end of that caption's window):")
    hits = search(config.db_uri, query, mode="hybrid", limit=3).hits
    for hit in hits:
        shown = _seen(schedule_of[hit.video_id], hit.t_end)
        on_screen = (shown.shape_color, shown.shape) == look
        say(f"  {Path(hit.uri or hit.video_id).name:<12} {seconds_text(hit.t_start)}-{seconds_text(hit.t_end)}  "
            f"{hit.text[:60]:<44} {'on screen' if on_screen else 'not on screen'}")
    if not hits:
        say("  (no hits)")
    return query


def _show_ask(say, config: IndexConfig, video_id: str, at: str, schedule) -> None:
    from vidindex.model.selftest import answer_text, time_seen_at
    from vidindex.query import ask_at

    for question in (ASK_NOW, ASK_MEMORY):
        say(f"\nask {video_id[:12]} as of {at}: {question!r}")
        result = ask_at(config.db_uri, video_id, at, question, device="cpu")
        how = (f"from the snapshot at {result.as_of.snapshot_t:g} s" if result.as_of.snapshot_t is not None
               else "from the start")
        want = answer_text(question, schedule.scenes, time_seen_at(schedule, result.as_of.as_of))
        say(f"  answer as of {result.as_of.as_of:g} s ({how}, {result.as_of.frames_replayed} frames replayed): "
            f"{result.answer}")
        say(f"  the video: {want} ({'right' if result.answer == want else 'WRONG'})")

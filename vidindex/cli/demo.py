"""`vidindex demo`: the whole system end to end on a laptop, in a few minutes, with no downloads.

Makes 3 synthetic sample videos (one of them deliberately truncated), writes the tiny
random-weight InfiniteVL checkpoint, indexes the videos on a local Ray cluster through the same
pipeline as `vidindex index`, then prints the status table, a search result and an answer asked
as of a timestamp, and the commands to explore further, last the one that serves the demo's
index with its web page (`vidindex serve`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

from vidindex.cli.index import format_report, format_status, index_status
from vidindex.cli.output import EXIT_NOTHING_INDEXED, EXIT_OK, seconds_text
from vidindex.config import IndexConfig, Question

SAMPLES = (("traffic.mp4", 0), ("lecture.mp4", 1), ("broken.mp4", 2))  # (name, seed)
SAMPLE_FPS, SAMPLE_WIDTH, SAMPLE_HEIGHT = 10, 160, 120
ASK_AT_S = 90.0  # asked as of 00:01:30 (or mid-video for shorter samples)
ASK_QUESTION = "What is on the screen?"
RANDOM_WEIGHTS_NOTE = (
    "Note: the demo model is a tiny InfiniteVL with RANDOM weights, so its captions and answers are random "
    "words.\nReal captions need the real checkpoint on a GPU: --model hustvl/InfiniteVL-LongSFT (or a local "
    "path) --device cuda."
)
_COMMON_WORDS = set("a an the and or but with of in on at to from into is are was were be it its this that".split())


def add_demo_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser("demo", help="index sample videos with a tiny model, then search and ask",
                            description="Make 3 synthetic videos (one broken) and a tiny random-weight model, "
                                        "index them on a local Ray cluster, then run a search and an ask.")
    p.add_argument("--workdir", default="vidindex-demo", help="where everything goes (default ./vidindex-demo)")
    p.add_argument("--seconds", type=float, default=180.0, help="length of each sample video (default 180)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="live progress bar (default: when stderr is a terminal)")
    p.set_defaults(run=run_demo_command)
    return p


def run_demo_command(args) -> int:
    return run_demo(args.workdir, seconds=args.seconds, progress=args.progress)


def demo_config(workdir: Path, model_dir: Path) -> IndexConfig:
    """Small and fast on a 2-core CPU: tiny model, float32, 1 frame/s, caption every 30 s, snapshot every 60 s."""
    from vidindex.model import TINY_FRAME_SIZE

    return IndexConfig(
        model=str(model_dir), frame_size=TINY_FRAME_SIZE, dtype="float32", device="cpu", sample_fps=1.0,
        caption_interval=30.0, snapshot_interval=60.0, max_new_tokens=24, streams_per_gpu=2,
        questions=(Question(id="shapes", text="Which shapes and colours are on the screen?", every=60.0, at_end=True),),
        db_uri=str(workdir / "db"), parquet_uri=str(workdir / "parquet"),
    )


def make_samples(video_dir: Path, seconds: float) -> list[Path]:
    """Three synthetic videos; the last one is cut off at 60% of its bytes (a truncated upload)."""
    from vidindex.video.synthetic import write_video

    video_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, seed in SAMPLES:
        path = video_dir / name
        write_video(path, seconds, fps=SAMPLE_FPS, width=SAMPLE_WIDTH, height=SAMPLE_HEIGHT, seed=seed)
        paths.append(path)
    broken = paths[-1]
    data = broken.read_bytes()
    broken.write_bytes(data[: int(len(data) * 0.6)])
    return paths


def run_demo(workdir: str | os.PathLike = "vidindex-demo", *, seconds: float = 180.0, progress: bool | None = None,
             out=None) -> int:
    from vidindex.model import write_tiny_checkpoint
    from vidindex.run.pipeline import run_index

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" bars would interleave with the report
    out = out or sys.stdout
    say = lambda text="": print(text, file=out, flush=True)  # noqa: E731
    workdir = Path(workdir).resolve()
    for owned in ("db", "parquet"):  # a fresh index each time, so every step shows
        shutil.rmtree(workdir / owned, ignore_errors=True)

    say(f"vidindex demo in {workdir}")
    say(RANDOM_WEIGHTS_NOTE)
    say()
    say(f"1/4 making {len(SAMPLES)} sample videos of {seconds:.0f} s ({SAMPLE_WIDTH}x{SAMPLE_HEIGHT}, "
        f"{SAMPLE_FPS} fps; {SAMPLES[-1][0]} is truncated on purpose) in {workdir / 'videos'}")
    make_samples(workdir / "videos", seconds)
    model_dir = workdir / "tiny-model"
    say(f"2/4 writing the tiny model to {model_dir}")
    write_tiny_checkpoint(model_dir)
    config = demo_config(workdir, model_dir)
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

    say("\n4/4 querying")
    video = report.done[0]
    word = _a_caption_word(config.db_uri)
    ask_at = seconds_text(min(ASK_AT_S, seconds / 2))
    _show_search(say, config.db_uri, word)
    _show_ask(say, config.db_uri, video["video_id"], ask_at)

    db = config.db_uri
    say("\nExplore further:")
    say(f"  vidindex status --db {db}")
    say(f"  vidindex search {word} --db {db}")
    say(f"  vidindex ask {video['video_id']} --at {ask_at} \"{ASK_QUESTION}\" --db {db}")
    say(f"  vidindex ask-archive \"Is anything moving?\" --db {db}")
    say(f"  duckdb -c \"SELECT * FROM read_parquet('{config.parquet_uri}/captions/*/*.parquet')\"")
    say(f"  vidindex index {workdir / 'videos'} --config {config_file}   # again: skips done videos, retries the broken one")
    say("  vidindex index VIDEOS... --db DB --model hustvl/InfiniteVL-LongSFT --device cuda   # real captions, GPU")
    say()
    say(RANDOM_WEIGHTS_NOTE)
    say("\nSee it in a browser (search, play the moments found, ask as of any time), at http://127.0.0.1:8000/:")
    say(f"  vidindex serve --db {db}")
    return EXIT_OK


def _a_caption_word(db_uri: str) -> str:
    """A word the random model actually wrote, so the search has something to find."""
    from vidindex.store import Store

    texts = Store(db_uri, create=False).rows("captions").column("text").to_pylist()
    words = Counter(w for text in texts for w in text.split() if w.isalpha() and w not in _COMMON_WORDS)
    return words.most_common(1)[0][0] if words else "video"


def _show_search(say, db_uri: str, word: str) -> None:
    from vidindex.query import search

    say(f"search {word!r} (a word the random model happened to write):")
    hits = search(db_uri, word, mode="hybrid", limit=3).hits
    for hit in hits:
        say(f"  {hit.video_id[:12]}  {seconds_text(hit.t_start)}-{seconds_text(hit.t_end)}  {hit.text[:100]}")
    if not hits:
        say("  (no hits)")


def _show_ask(say, db_uri: str, video_id: str, at: str) -> None:
    from vidindex.query import ask_at

    say(f"\nask {video_id[:12]} as of {at}: {ASK_QUESTION!r}")
    result = ask_at(db_uri, video_id, at, ASK_QUESTION, device="cpu")
    how = (f"from the snapshot at {result.as_of.snapshot_t:g} s" if result.as_of.snapshot_t is not None
           else "from the start")
    say(f"  answer as of {result.as_of.as_of:g} s ({how}, {result.as_of.frames_replayed} frames replayed): "
        f"{result.answer}")

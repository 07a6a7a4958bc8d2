"""Fixtures: one real local Ray cluster per session (2 CPUs and 2 fake GPUs, so the pipeline
takes its GPU path: one actor per GPU), the tiny model, and real synthetic videos, one of them
truncated and one not a video at all."""

from __future__ import annotations

import logging

import pytest

from vidindex.video.synthetic import write_video

# Flags shared by every index run of these tests: tiny model, fast and deterministic.
FAST = ["--frame-size", "56", "--dtype", "float32", "--fps", "1", "--caption-every", "10",
        "--snapshot-every", "20", "--max-new-tokens", "6"]


@pytest.fixture(scope="package")
def ray_cluster():
    """Package scope: other test packages start their own cluster (without fake GPUs) after this one stops."""
    import ray

    if ray.is_initialized():  # another package's cluster, which has no fake GPUs
        ray.shutdown()
    context = ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, logging_level=logging.ERROR,
                       log_to_driver=False)
    yield context
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_checkpoint):
    """The shared tiny checkpoint (tests/conftest.py), as the path the CLI takes."""
    return str(tiny_checkpoint)


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    """good1 (60 s), good2 (45 s), broken (60 s cut at half its bytes), notvideo (text)."""
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "good1.mp4", 60, fps=4, width=96, height=72, seed=0)
    write_video(folder / "good2.mp4", 45, fps=4, width=96, height=72, seed=1)
    write_video(folder / "broken.mp4", 60, fps=4, width=96, height=72, seed=2)
    data = (folder / "broken.mp4").read_bytes()
    (folder / "broken.mp4").write_bytes(data[: len(data) // 2])
    (folder / "notvideo.mp4").write_text("this is a text file, not a video\n" * 50)
    return {name: str(folder / f"{name}.mp4") for name in ("good1", "good2", "broken", "notvideo")} | {
        "folder": str(folder)}


@pytest.fixture(scope="session")
def long_video(tmp_path_factory):
    """15 minutes at 2 fps: long enough (a few seconds of indexing) to kill an actor in the middle."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    write_video(path, 900, fps=2, width=96, height=72, seed=3)
    return str(path)


def index_args(db, tiny_model_dir, *sources, extra=()) -> list[str]:
    return ["index", *sources, "--db", str(db), "--model", tiny_model_dir, *FAST, *extra]

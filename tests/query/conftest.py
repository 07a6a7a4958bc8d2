"""One indexed archive per session, built by the real engine: three synthetic videos and one file
that is not a video, indexed with the tiny model into a real LanceDB; then a few caption texts
are planted (upserted over the engine's own captions) so search has known targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from vidindex.config import IndexConfig
from vidindex.index.engine import Engine
from vidindex.model import TINY_FRAME_SIZE, write_tiny_checkpoint
from vidindex.store import Committer, Store, get_embedder
from vidindex.video.synthetic import write_video

from tests.video.conftest import make_video, video_dir  # noqa: F401  (fixtures for test_replay.py)

VIDEO_SECONDS = 10.0
# (video name, caption window end in seconds, planted text)
PLANTED = {
    "balloon": ("cam0.mp4", 6.0, "a red balloon drifts over the harbor at dawn"),
    "truck": ("cam1.mp4", 8.0, "a delivery truck unloads crates beside the warehouse"),
    "sandcastle": ("cam2.mp4", 4.0, "children build a sandcastle on the beach"),
}


@dataclass
class Archive:
    db: str
    root: Path
    config: IndexConfig
    video_ids: dict[str, str]  # file name -> video_id
    uris: dict[str, str]  # file name -> uri as indexed
    failed_id: str

    def store(self) -> Store:
        return Store(self.db, create=False)


def index_config(tiny_dir, db: str, **overrides) -> IndexConfig:
    values = dict(model=str(tiny_dir), sample_fps=2.0, frame_size=TINY_FRAME_SIZE, caption_interval=2.0,
                  snapshot_interval=4.0, dtype="float32", max_new_tokens=6, db_uri=db, device="cpu")
    return IndexConfig(**{**values, **overrides})


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="session")
def embedder():
    return get_embedder()


@pytest.fixture(scope="session")
def video_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    paths = {}
    for i in range(3):
        paths[f"cam{i}.mp4"] = str(root / f"cam{i}.mp4")
        write_video(paths[f"cam{i}.mp4"], VIDEO_SECONDS, fps=10, width=160, height=120, seed=i)
    broken = root / "broken.mp4"
    broken.write_bytes(b"this is not a video\n" * 10)
    paths["broken.mp4"] = str(broken)
    return paths


@pytest.fixture(scope="session")
def archive(tmp_path_factory, tiny_dir, video_files, embedder) -> Archive:
    root = tmp_path_factory.mktemp("archive")
    db = str(root / "db")
    config = index_config(tiny_dir, db)
    committer = Committer.from_config(config)  # creates the tables the reader opens
    store = Store(db, create=False)
    results = Engine(config, reader=store, writer=committer).index(list(video_files.values()))
    by_name = {Path(r.uri).name: r for r in results}
    assert [by_name[f"cam{i}.mp4"].status for i in range(3)] == ["done"] * 3
    assert by_name["broken.mp4"].status == "failed"
    video_ids = {name: r.video_id for name, r in by_name.items()}
    uris = {row["video_id"]: row["uri"] for row in store.rows("videos").to_pylist()}
    planted = []
    for name, t_end, text in PLANTED.values():
        row = store.rows("captions", video_id=video_ids[name], where=f"t_end_ms = {int(t_end * 1000)}").to_pylist()
        assert len(row) == 1, f"no caption of {name} ending at {t_end}"
        planted.append({**{k: row[0][k] for k in ("video_id", "config_id", "t_start_ms", "t_end_ms")}, "text": text})
    committer.upsert("captions", planted)
    return Archive(db=db, root=root, config=config, video_ids=video_ids,
                   uris={name: uris[vid] for name, vid in video_ids.items()}, failed_id=video_ids["broken.mp4"])


@pytest.fixture
def ray_local():
    """A real local Ray cluster of 2 CPUs, started by the caller (the test) and stopped after it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def index_one(tiny_dir, root: Path, video: str, **engine_options):
    """A database holding one video, indexed one stream at a time and one frame per forward:
    the feeding order that a frame-by-frame replay reproduces bit for bit."""
    from vidindex.query.models import model_for

    db = str(root / "db")
    config = index_config(tiny_dir, db, streams_per_gpu=1)
    engine = Engine(config, model=model_for(config, "cpu"), frames_per_step=1, **engine_options)
    (result,) = engine.index([video])
    assert result.status == "done", result.error
    return db, result.video_id


@pytest.fixture(scope="session")
def exact_archive(tmp_path_factory, tiny_dir, video_files, embedder):
    """(db, video_id) of cam0 indexed frame by frame, alone."""
    return index_one(tiny_dir, tmp_path_factory.mktemp("exact"), video_files["cam0.mp4"])


@pytest.fixture
def single_video_db(tmp_path, tiny_dir, video_files, embedder):
    """(db, video_id) of cam1 alone in a fresh database, for tests that damage it."""
    return index_one(tiny_dir, tmp_path, video_files["cam1.mp4"])

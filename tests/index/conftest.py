import pytest

from vidindex.config import IndexConfig, Question
from vidindex.model import TINY_FRAME_SIZE
from vidindex.video.synthetic import write_video


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    write_video(d / "a.mp4", 25, fps=10, width=160, height=120, seed=1)
    write_video(d / "b.mp4", 17, fps=25, width=128, height=96, seed=2)
    data = (d / "a.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: int(len(data) * 0.6)])
    (d / "text.mp4").write_text("this is not a video")
    return {name: str(d / f"{name}.mp4") for name in ("a", "b", "truncated", "text")}


def make_config(tiny_checkpoint, db, **overrides):
    base = dict(
        model=str(tiny_checkpoint), dtype="float32", device="cpu", frame_size=TINY_FRAME_SIZE,
        sample_fps=1.0, caption_interval=5, snapshot_interval=10, max_new_tokens=6, streams_per_gpu=1,
        questions=[Question("colour", "What colour is the shape?", every=7),
                   Question("at", "Is there a counter?", at=[12.5]),
                   Question("summary", "What happened?", at_end=True)],
        db_uri=str(db),
    )
    base.update(overrides)
    return IndexConfig(**base)

"""The trained self-test model through the real system: videos whose scenes are known, indexed
on local Ray (one video stopped after its first snapshot and resumed by the run), then its
captions, answers, `vidindex ask --at T`, ask-archive and search checked against what each video
showed at each time.

The model scored 100% on captions and memory questions over 180-s encoded videos
(vidindex/model/selftest-model/training.json); the thresholds here are well above chance
(1/10 for a colour, 1/3 for a shape, 1/270 for a caption) and leave room below 100%.
One database is indexed once for the module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from vidindex.cli.main import main
from vidindex.config import IndexConfig, Question
from vidindex.index.engine import Engine
from vidindex.model import TINY_FRAME_SIZE
from vidindex.model.selftest import (CAPTION_PROMPTS, MEMORY_QUESTIONS, NOW_QUESTIONS, answer_text, scene_at,
                                     time_seen_at)
from vidindex.model.tiny import SELFTEST_MODEL_DIR
from vidindex.query import ask_archive, ask_at, search
from vidindex.run.pipeline import run_index
from vidindex.store import Store
from vidindex.video.synthetic import random_scenes, write_video

SECONDS = 120.0
VIDEOS = {"resumed": (11, 160, 120), "straight": (12, 192, 192)}  # name -> (seed, width, height)
SNAPSHOT_EVERY = 30.0
MEMORY = MEMORY_QUESTIONS[0]  # "What colour was the first shape?"
NOW = NOW_QUESTIONS[1]  # "What shape is on the screen?"
ENOUGH = 0.8


class Stop(BaseException):
    """Ends the engine like a crash would (no per-video handler catches it)."""


@dataclass
class Indexed:
    db: str
    config: IndexConfig
    schedules: dict  # video_id -> SceneSchedule
    ids: dict  # name -> video_id

    def truth(self, question: str, video_id: str, t: float) -> str:
        """The right answer to `question` as of t (after every frame sampled at or before t)."""
        schedule = self.schedules[video_id]
        return answer_text(question, schedule.scenes, time_seen_at(schedule, t, self.config.sample_fps))


@pytest.fixture(scope="module")
def indexed(ray_cluster, tmp_path_factory) -> Indexed:
    folder = tmp_path_factory.mktemp("selftest")
    schedules, paths = {}, {}
    for name, (seed, width, height) in VIDEOS.items():
        paths[name] = str(folder / f"{name}.mp4")
        scenes = random_scenes(SECONDS, 4.0, np.random.default_rng(seed))
        schedules[name] = write_video(paths[name], SECONDS, fps=10, width=width, height=height, scenes=scenes,
                                      seed=seed)
    config = IndexConfig(
        model=str(SELFTEST_MODEL_DIR), frame_size=TINY_FRAME_SIZE, dtype="float32", device="cpu", sample_fps=1.0,
        caption_interval=10.0, snapshot_interval=SNAPSHOT_EVERY, max_new_tokens=12, streams_per_gpu=2,
        questions=(Question(id="shape-now", text=NOW, every=20.0),
                   Question(id="first-shape-colour", text=MEMORY, every=30.0, at_end=True)),
        db_uri=str(folder / "db"),
    )
    assert config.caption_prompt == CAPTION_PROMPTS[0]  # the default prompt is one the model was trained on

    def stop_at_first_checkpoint(kind, payload):
        if kind == "checkpoint":
            raise Stop

    with pytest.raises(Stop):  # "resumed" is left partial at its first snapshot ...
        Engine(config, on_event=stop_at_first_checkpoint).index([paths["resumed"]])
    report = run_index(config, list(paths.values()))  # ... and this run resumes it there
    by_name = {Path(v["uri"]).stem: v for v in report.videos}
    assert {name: v["status"] for name, v in by_name.items()} == {"resumed": "done", "straight": "done"}
    assert by_name["resumed"]["resumed_at_s"] == [SNAPSHOT_EVERY] and by_name["straight"]["resumed_at_s"] == []
    ids = {name: v["video_id"] for name, v in by_name.items()}
    return Indexed(config.db_uri, config, {ids[n]: s for n, s in schedules.items()}, ids)


def share_right(pairs) -> float:
    pairs = list(pairs)
    assert pairs
    return sum(got == want for got, want in pairs) / len(pairs)


def test_captions_name_the_scene_on_screen_as_of_their_time(indexed):
    """A caption row (t_start, t_end] is generated after every frame with timestamp <= t_end:
    it describes the last of them (at 1 frame/s, the frame at floor(t_end)). Checked against
    the frame one sample earlier or later instead, these captions score 0.7-0.875, so the
    pooled 0.9 also checks that alignment."""
    rows = Store(indexed.db, create=False).rows("captions").to_pylist()
    pooled = []
    for name, video_id in indexed.ids.items():
        mine = sorted((r for r in rows if r["video_id"] == video_id), key=lambda r: r["t_end_ms"])
        assert [r["t_end_ms"] for r in mine] == list(range(10_000, 120_001, 10_000)), name
        checked = [(r["text"], indexed.truth(CAPTION_PROMPTS[0], video_id, r["t_end_ms"] / 1000)) for r in mine]
        assert share_right(checked) >= ENOUGH, (name, checked)
        pooled += checked
    assert share_right(pooled) >= 0.9, pooled
    # after the resume, from the state its snapshot restored
    resumed = [(r["text"], indexed.truth(CAPTION_PROMPTS[0], r["video_id"], r["t_end_ms"] / 1000)) for r in rows
               if r["video_id"] == indexed.ids["resumed"] and r["t_end_ms"] > SNAPSHOT_EVERY * 1000]
    assert share_right(resumed) >= ENOUGH, resumed


def test_index_time_answers_know_the_scene_now_and_the_first_scene(indexed):
    rows = Store(indexed.db, create=False).rows("answers").to_pylist()
    for question_id, question in (("shape-now", NOW), ("first-shape-colour", MEMORY)):
        mine = [r for r in rows if r["question_id"] == question_id]
        assert len(mine) == {"shape-now": 2 * 6, "first-shape-colour": 2 * 4}[question_id]  # the end is t=120 s
        assert share_right((r["answer"], indexed.truth(question, r["video_id"], r["t_ms"] / 1000))
                           for r in mine) >= ENOUGH, question
    # The first shape's colour asked after the resume (at 60, 90 and 120 s): in the restored
    # Gated DeltaNet state only, the first scene being far out of reach of the window layers.
    after_resume = [r for r in rows if r["video_id"] == indexed.ids["resumed"] and r["question_id"] ==
                    "first-shape-colour" and r["t_ms"] > SNAPSHOT_EVERY * 1000]
    assert len(after_resume) == 3
    assert share_right((r["answer"], indexed.truth(MEMORY, r["video_id"], r["t_ms"] / 1000))
                       for r in after_resume) >= 2 / 3


def test_cli_ask_at_t_describes_the_scene_at_t(indexed, capsys):
    """`vidindex ask VIDEO --at T`: the nearest snapshot at or before T, the frames after it fed
    up to T, the question on a branch."""
    asked = []
    for name, at in (("straight", "25"), ("straight", "00:01:17.5"), ("resumed", "44"), ("resumed", "103")):
        video_id = indexed.ids[name]
        assert main(["ask", video_id, "--at", at, CAPTION_PROMPTS[1], "--db", indexed.db, "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["frames_replayed"] > 0  # T is between snapshots
        asked.append((result["answer"], indexed.truth(CAPTION_PROMPTS[1], video_id, result["as_of"])))
    assert share_right(asked) >= 3 / 4, asked


def test_memory_questions_after_restoring_a_snapshot(indexed):
    """As of 100 s: the snapshot at 90 s restored and 10 frames fed, then the questions about the
    first scene (over a minute and a half earlier); and ask-archive from the end snapshots, no
    frame decoded."""
    video_id = indexed.ids["resumed"]
    asked = []
    for question in MEMORY_QUESTIONS:
        result = ask_at(indexed.db, video_id, 100, question, device="cpu")
        assert (result.as_of.snapshot_t, result.as_of.frames_replayed) == (90.0, 10)
        asked.append((result.answer, indexed.truth(question, video_id, 100)))
    assert share_right(asked) >= 2 / 3, asked

    archive = ask_archive(indexed.db, MEMORY_QUESTIONS[1], use_ray=False, device="cpu")
    assert {a.video_id for a in archive.answers} == set(indexed.ids.values())
    assert share_right((a.answer, indexed.truth(MEMORY_QUESTIONS[1], a.video_id, a.t))
                       for a in archive.answers) >= 1 / 2


def test_search_for_a_shape_and_colour_finds_a_moment_it_is_on_screen(indexed):
    """Every shape and colour on screen at a caption time, searched for by name ("red circle"):
    the best hit is a caption naming both, and mostly a moment where that shape in that colour is
    on screen (at the end of the hit's caption window). Not always: neither the full-text index
    (words, no positions) nor the sentence embedding binds a colour to its shape, so "grey bar"
    also finds "an orange bar on a grey background" (measured: 13 of 16 here, 18 of 23 in the
    demo), while every caption is right (the test above)."""
    looks = sorted({(s.shape_color, s.shape) for video_id, schedule in indexed.schedules.items()
                    for s in [scene_at(schedule.scenes, time_seen_at(schedule, t)) for t in range(10, 121, 10)]})
    found = []
    for colour, shape in looks:
        [hit] = search(indexed.db, f"{colour} {shape}", limit=1).hits
        assert hit.source == "caption" and {colour, shape} <= set(hit.text.split()), (colour, shape, hit.text)
        schedule = indexed.schedules[hit.video_id]
        seen = scene_at(schedule.scenes, time_seen_at(schedule, hit.t_end))
        found.append(((seen.shape_color, seen.shape), (colour, shape)))
    assert len(looks) >= 10
    assert share_right(found) >= 0.6, [f for f in found if f[0] != f[1]]

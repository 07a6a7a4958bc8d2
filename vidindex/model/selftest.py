"""The self-test model's task: synthetic videos whose scenes are known, captions of what is on
screen, questions about the scene now and about the first scene (train_tiny.py trains on it).

A scene is a look (background colour, shape, shape colour) shown for a few seconds
(vidindex.video.synthetic). Every answer follows from the scene schedule:

    caption_text(scene)                    "a red circle on a blue background"
    answer_text(question, scenes, t)       for any question of QUESTIONS, as of time t

Frames are made in memory the way write_video draws them and sample_frames converts them
(frame_painter -> to_model_rgb); on 56-pixel frames they are within a few levels of the
decoded H.264 frames (tests/model/test_training.py checks it).
A FrameBank renders every look once per source size and timestamp, and episodes (batches of
streams with branches, training.py) are drawn from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vidindex.video.frames import to_model_rgb
from vidindex.video.synthetic import PALETTE, SHAPES, Scene, frame_painter, random_scenes

from .generate import question_prompts
from .prompts import encode
from .training import Branch

COLOURS = tuple(PALETTE)
LOOKS = tuple((bg, shape, fg) for bg in COLOURS for shape in SHAPES for fg in COLOURS if fg != bg)

# question -> (kind, what it asks for). Kinds: "caption" and "now" are about the scene on
# screen (the last frame fed), "memory" about the first scene of the video.
CAPTION_PROMPTS = (
    "Describe what happened in the video since the last description.",  # vidindex.config's default
    "What is on the screen?",
    "Which shapes and colours are on the screen?",
)
QUESTIONS = {
    **{q: ("caption", "caption") for q in CAPTION_PROMPTS},
    "What colour is the background?": ("now", "background"),
    "What shape is on the screen?": ("now", "shape"),
    "What colour is the shape?": ("now", "shape_color"),
    "What colour was the first shape?": ("memory", "shape_color"),
    "What was the first shape?": ("memory", "shape"),
    "What colour was the first background?": ("memory", "background"),
}
MEMORY_QUESTIONS = tuple(q for q, (kind, _) in QUESTIONS.items() if kind == "memory")
NOW_QUESTIONS = tuple(q for q, (kind, _) in QUESTIONS.items() if kind == "now")

# Source videos of the bank: displayed width, height, moving noise texture.
SOURCES = ((160, 120, False), (320, 240, True), (192, 192, False), (176, 320, False))


def caption_text(scene: Scene) -> str:
    return f"a {scene.shape_color} {scene.shape} on a {scene.background} background"


def scene_at(scenes, t: float) -> Scene:
    for s in scenes:
        if s.start <= t < s.end:
            return s
    return scenes[-1]


def time_seen_at(schedule, t: float, fps: float = 1.0) -> float:
    """Timestamp of the last frame sampled at `fps` at or before t, in a video write_video made
    (`schedule`: its SceneSchedule): what a caption or an answer as of t is about, since the
    indexer's events at t fire after every frame with timestamp <= t (vidindex.index.schedule).
    The right answer as of t is answer_text(question, schedule.scenes, time_seen_at(schedule, t))."""
    times = schedule.expected_samples(fps)
    seen = [s for s in times if s <= t + 1e-9]
    return seen[-1] if seen else times[0]


def answer_text(question: str, scenes, t: float) -> str:
    """The answer to `question` asked after the frame shown at time t."""
    kind, field = QUESTIONS[question]
    scene = scenes[0] if kind == "memory" else scene_at(scenes, t)
    return caption_text(scene) if field == "caption" else getattr(scene, field)


def memory_reach_frames(cfg, tokens_per_frame: int) -> int:
    """Frames after which a frame is out of reach of every window layer: each of them reaches
    sliding_window - 1 tokens further back, so stacked they reach n * (window - 1)."""
    layers = sum(cfg.is_attention_layer(i) for i in range(cfg.num_hidden_layers))
    return math.ceil(layers * (cfg.sliding_window - 1) / tokens_per_frame)


class FrameBank:
    """Every look rendered per source (SOURCES) and per timestamp: uint8 frames
    [looks, sources, times, size, size, 3]. The timestamp digits and frame-index code band of
    write_video's frames differ from frame to frame; a video draws each frame's from `times`."""

    def __init__(self, frames: torch.Tensor):
        self.frames = frames

    @classmethod
    def render(cls, size: int, sources=SOURCES, times: int = 4, seed: int = 0) -> "FrameBank":
        rng = np.random.default_rng(seed)
        out = np.empty((len(LOOKS), len(sources), times, size, size, 3), np.uint8)
        for s, (w, h, texture) in enumerate(sources):
            painter = frame_painter(w, h, texture=texture, seed=seed + s)
            for k in range(times):
                t = float(rng.uniform(0, 3600))
                index = int(rng.integers(0, 100_000))
                for i, (bg, shape, fg) in enumerate(LOOKS):
                    frame = painter.frame(index, t, Scene(0.0, 1.0, bg, shape, fg))
                    out[i, s, k] = to_model_rgb(frame, size)
        return cls(torch.from_numpy(out))

    def to(self, device) -> "FrameBank":
        return FrameBank(self.frames.to(device))

    def videos(self, looks: np.ndarray, rng) -> torch.Tensor:
        """Frames [B, N, size, size, 3] showing looks [B, N] (LOOKS indices), each video from
        one random source, each frame with random timestamp digits."""
        B, N = looks.shape
        _, sources, times = self.frames.shape[:3]
        index = (looks, rng.integers(sources, size=(B, 1)), rng.integers(times, size=(B, N)))
        return self.frames[tuple(torch.as_tensor(i, device=self.frames.device) for i in index)]


@dataclass
class Episode:
    """B streams of N frames and the questions asked on branches (training.forward_train)."""

    frames: torch.Tensor  # uint8 [B, N, size, size, 3]
    timestamps: np.ndarray  # float64 [B, N]
    branches: list[Branch]
    questions: list[str]  # one per branch
    far: list[np.ndarray]  # per branch, bool [B]: the first scene is out of every window's reach


@dataclass(frozen=True)
class TaskConfig:
    fps: float = 1.0
    min_frames: int = 8
    max_frames: int = 192  # video lengths are log-uniform between these
    scene_seconds: tuple[float, float] = (2.0, 6.0)  # mean scene length, uniform per video
    points: int = 4  # branch points: the last frame and random others, a caption asked at each


class SceneTask:
    """Draws episodes for one model (its tokenizer and config): every answer of every look as
    token ids, looked up per stream."""

    def __init__(self, model, config: TaskConfig = TaskConfig()):
        self.config = config
        self.reach = memory_reach_frames(model.config, model.tokens_per_frame)
        self.prompts = {q: question_prompts(model, [q], [True])[0] for q in QUESTIONS}
        scenes = [Scene(0.0, 1.0, *look) for look in LOOKS]
        self.answers = {  # field -> ids [looks, answer tokens]
            field: torch.tensor([answer_ids(model, caption_text(s) if field == "caption" else getattr(s, field))
                                 for s in scenes])
            for field in ("caption", "background", "shape", "shape_color")
        }

    def episode(self, bank: FrameBank, rng, batch: int) -> Episode:
        """A random episode. Its videos' scenes are drawn as random_scenes draws them (lengths of
        scene_seconds * U(0.5, 1.5), a uniform look never the same twice in a row), for the
        whole batch at once; every stream has the same frame count and questions. At each
        branch point a caption; at one of them a question about the scene now; memory questions
        at the end and at a point of the second half. One wording of each kind per episode, so
        the branches of a kind have one length and run as one batch."""
        task = self.config
        n = int(round(math.exp(rng.uniform(math.log(task.min_frames), math.log(task.max_frames)))))
        step = 1.0 / task.fps
        ts = rng.uniform(0, 0.5 * step, size=(batch, 1)) + np.arange(n) * step
        most = int(math.ceil((n + 1) * step / (0.5 * task.scene_seconds[0]))) + 1  # scenes per video, at most
        lengths = rng.uniform(*task.scene_seconds, size=(batch, 1)) * rng.uniform(0.5, 1.5, size=(batch, most))
        ends = np.cumsum(lengths, 1)
        shifts = 1 + rng.integers(len(LOOKS) - 1, size=(batch, most))
        shifts[:, 0] = rng.integers(len(LOOKS), size=batch)
        looks = np.cumsum(shifts, 1) % len(LOOKS)  # [B, scenes]
        # scene of each frame: one searchsorted over all rows, each row shifted past the previous
        shift = np.arange(batch)[:, None] * (ends[:, -1:].max() + 1)
        scene = np.searchsorted((ends + shift).ravel(), (ts + shift).ravel(), side="right").reshape(batch, n)
        on_screen = np.take_along_axis(looks, scene - np.arange(batch)[:, None] * most, 1)  # [B, N]
        first_frames = (ts < ends[:, :1]).sum(1)  # frames of the first scene

        others = rng.choice(np.arange(1, n), size=min(task.points - 1, n - 1), replace=False)
        points = sorted(int(p) for p in others) + [n]
        caption, now, memory = (str(rng.choice(q)) for q in (CAPTION_PROMPTS, NOW_QUESTIONS, MEMORY_QUESTIONS))
        asked = [(p, caption) for p in points] + [(int(rng.choice(points)), now), (n, memory)]
        late = [p for p in points[:-1] if 2 * p >= n]
        if late:
            asked.append((int(rng.choice(late)), memory))
        branches, far = [], []
        for after, question in asked:
            kind, field = QUESTIONS[question]
            look = looks[:, 0] if kind == "memory" else on_screen[:, after - 1]
            answer = self.answers[field][torch.as_tensor(look)]
            branches.append(Branch(after, torch.tensor([self.prompts[question]] * batch), answer))
            far.append(after - np.minimum(first_frames, after) >= self.reach)
        return Episode(bank.videos(on_screen, rng), ts, branches, [q for _, q in asked], far)


def answer_ids(model, text: str) -> list[int]:
    return encode(model.tokenizer, text) + [model.config.eos_token_id]


# Evaluation -----------------------------------------------------------------------------------

def evaluate(model, episodes: list[Episode]) -> dict:
    """Exact-answer accuracy on episodes by kind (teacher-forced argmax, which is what greedy
    decoding gives): caption, now, memory_far (first scene out of every window's reach),
    memory_near; and the mean loss."""
    from .training import answer_loss, answers_right, forward_train

    right: dict[str, list] = {"caption": [], "now": [], "memory_far": [], "memory_near": []}
    losses = []
    with torch.no_grad():
        for ep in episodes:
            logits = forward_train(model, ep.frames, ep.timestamps, ep.branches)
            losses.append(float(answer_loss(logits, ep.branches)))
            for lg, b, q, far in zip(logits, ep.branches, ep.questions, ep.far):
                ok = answers_right(lg, b.answer).cpu().numpy()
                kind = QUESTIONS[q][0]
                if kind == "memory":
                    right["memory_far"] += ok[far].tolist()
                    right["memory_near"] += ok[~far].tolist()
                else:
                    right[kind] += ok.tolist()
    out = {k: (float(np.mean(v)) if v else None) for k, v in right.items()}
    out["counts"] = {k: len(v) for k, v in right.items()}
    out["loss"] = float(np.mean(losses))
    return out


def evaluate_videos(model, directory, videos: int = 8, seconds: float = 120.0, seed: int = 0,
                    sample_fps: float = 1.0, caption_every: float = 10.0) -> dict:
    """Accuracy through the inference path on encoded videos: write_video (H.264, random
    scenes) -> sample_frames -> one batched Stream fed as the indexer feeds it; the caption
    prompt every `caption_every` seconds (answer: what the last frame fed shows); at half time
    every stream is saved to snapshot bytes and resumed from them; at the end the memory
    questions. Returns accuracies and the per-question detail."""
    from pathlib import Path

    from vidindex.video import sample_frames
    from vidindex.video.synthetic import write_video

    from .stream import Stream

    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    schedules, clips = [], []
    for i in range(videos):
        scenes = random_scenes(seconds, float(rng.uniform(2.0, 6.0)), rng)
        w, h, texture = SOURCES[i % len(SOURCES)]
        path = directory / f"eval-{seed}-{i}.mp4"
        write_video(path, seconds, fps=10, width=w, height=h, texture=texture, scenes=scenes, seed=seed + i)
        with sample_frames(str(path), fps=sample_fps, size=model.frame_size) as frames:
            clips.append(list(frames))
        schedules.append(scenes)
    n = min(len(c) for c in clips)
    times = np.array([[t for t, _ in c[:n]] for c in clips])
    frames = np.stack([np.stack([f for _, f in c[:n]]) for c in clips])
    stream = model.new_stream(batch=videos)
    caption_right, fed, resumed = [], 0, False
    reach = memory_reach_frames(model.config, model.tokens_per_frame)
    for boundary in np.arange(caption_every, times.max() + caption_every, caption_every):
        upto = int((times.max(0) <= boundary).sum())
        if upto > fed:
            stream.feed(frames[:, fed:upto], times[:, fed:upto])
            fed = upto
        if not resumed and fed >= n // 2:  # save and resume every stream: the rest runs on the copies
            stream = Stream.stack([Stream.from_bytes(model, stream.to_bytes(i)) for i in range(videos)])
            resumed = True
        got = stream.ask([CAPTION_PROMPTS[0]] * videos, max_new_tokens=16)
        caption_right += [g == caption_text(scene_at(s, times[i, fed - 1]))
                          for i, (g, s) in enumerate(zip(got, schedules))]
    memory = {}
    for q in MEMORY_QUESTIONS:
        got = stream.ask([q] * videos, max_new_tokens=4)
        memory[q] = float(np.mean([g == answer_text(q, s, times[i, -1])
                                   for i, (g, s) in enumerate(zip(got, schedules))]))
    first_frames = [int((times[i] < s[0].end).sum()) for i, s in enumerate(schedules)]
    return {
        "videos": videos, "seconds": seconds, "sample_fps": sample_fps,
        "caption": float(np.mean(caption_right)), "captions_asked": len(caption_right),
        "memory": float(np.mean(list(memory.values()))), "memory_by_question": memory,
        "memory_all_far": all(n - f >= reach for f in first_frames),
    }

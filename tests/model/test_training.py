"""Training: the differentiable forward is the inference path, a step learns, and a trained
checkpoint is an ordinary one."""

import json
from contextlib import contextmanager

import numpy as np
import torch

from vidindex.model import TINY_FRAME_SIZE, load_model
from vidindex.model.decode import eager_step
from vidindex.model.generate import generate, prefill, question_prompts
from vidindex.model.training import Branch, answer_loss, answers_right, forward_train, make_trainable

from .conftest import make_frames


@contextmanager
def one_thread():
    """Autograd on a shared 2-core machine runs far faster on one thread than on two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def inference_rows(model, frames, times, branch):
    """What Stream.ask's decode sees for `branch`: the prompt's prefill, then one step per answer
    token, on a branch of a stream fed the frames (logits [B, A, vocab])."""
    B = frames.shape[0]
    stream = model.new_stream(batch=B)
    stream.feed(frames[:, :branch.after], times[:, :branch.after])
    with torch.inference_mode():
        state = stream.state.select(list(range(B)))
        rows = [prefill(model, state, list(range(B)), branch.prompt.tolist())]
        for k in range(branch.answer.shape[1] - 1):
            rows.append(eager_step(model, state, branch.answer[:, k]))
    return torch.stack(rows, 1)


def test_training_forward_equals_the_inference_path(tiny_checkpoint, tiny_model):
    n = 20  # 81 tokens of frames: past the 32-token window and the 64-token delta-rule chunk
    frames = np.stack([make_frames(n, seed=1), make_frames(n, seed=2)])
    times = np.stack([np.arange(n) * 1.0, np.arange(n) * 0.5 + 0.25])  # the streams' own times
    rng = np.random.default_rng(0)
    asked = [(3, "What is on the screen?"), (12, "Describe what happened."), (20, "What is on the screen?"),
             (12, "What is on the screen?")]
    branches = [Branch(after, torch.tensor(question_prompts(tiny_model, [q], [True]) * 2),
                       torch.as_tensor(rng.integers(0, 200, (2, 5))))
                for after, q in asked]
    # The answers of the greedy decode itself, for one more branch: training must score them right.
    stream = tiny_model.new_stream(batch=2)
    stream.feed(frames[:, :9], times[:, :9])
    prompt = question_prompts(tiny_model, ["What colour is the shape?"], [True]) * 2
    with torch.inference_mode():
        greedy = generate(tiny_model, stream.state.select([0, 1]), prompt, max_new_tokens=4)
    assert len(set(map(len, greedy))) == 1, "greedy answers of different lengths: pick another prompt"
    branches.append(Branch(9, torch.tensor(prompt), torch.tensor(greedy)))

    trainee = make_trainable(load_model(tiny_checkpoint, device="cpu", dtype="float32", frame_size=TINY_FRAME_SIZE))
    with one_thread():
        logits = forward_train(trainee, torch.as_tensor(frames), times, branches)
        for branch, got in zip(branches, logits):
            torch.testing.assert_close(got, inference_rows(tiny_model, frames, times, branch), atol=1e-4, rtol=0)
        assert answers_right(logits[-1], branches[-1].answer).all()
        answer_loss(logits, branches).backward()
    untouched = [name for name, p in trainee.named_parameters() if p.grad is None or not p.grad.any()]
    assert untouched == []


def test_training_steps_lower_the_loss_on_a_fixed_batch():
    from vidindex.model.selftest import FrameBank, SceneTask, TaskConfig
    from vidindex.model.train_tiny import build, parse_args

    args = parse_args(["--smoke"])
    with one_thread():
        model, _, _ = build(args)
        bank = FrameBank.render(TINY_FRAME_SIZE, times=1, sources=((160, 120, False),))
        task = SceneTask(model, TaskConfig(min_frames=6, max_frames=10, points=2))
        episode = task.episode(bank, np.random.default_rng(0), batch=2)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        losses = []
        for _ in range(12):
            loss = answer_loss(forward_train(model, episode.frames, episode.timestamps, episode.branches),
                               episode.branches)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_episodes_answer_what_is_on_screen_and_what_was_first():
    from vidindex.model.selftest import LOOKS, QUESTIONS, FrameBank, SceneTask, TaskConfig
    from vidindex.model.train_tiny import build, parse_args

    model, tokenizer, _ = build(parse_args(["--smoke"]))
    bank = FrameBank(torch.arange(len(LOOKS))[:, None, None, None, None, None].expand(-1, 1, 1, 1, 1, 1))
    task = SceneTask(model, TaskConfig(min_frames=30, max_frames=30))
    ep = task.episode(bank, np.random.default_rng(1), batch=3)
    shown = ep.frames.flatten(2)[..., 0]  # [B, N]: the look each frame shows
    captions = task.answers["caption"].tolist()
    words = {i: tokenizer.decode(ids, skip_special_tokens=True) for i, ids in enumerate(captions)}
    for branch, question, far in zip(ep.branches, ep.questions, ep.far):
        kind, _ = QUESTIONS[question]
        for b in range(3):
            text = tokenizer.decode(branch.answer[b].tolist(), skip_special_tokens=True)
            look = LOOKS[int(shown[b, 0 if kind == "memory" else branch.after - 1])]
            if kind == "caption":
                assert text == words[int(shown[b, branch.after - 1])]
                assert text == f"a {look[2]} {look[1]} on a {look[0]} background"
            else:
                assert text in look
        if kind == "memory":
            first = (shown == shown[:, :1]).int().cumprod(1).sum(1).numpy()  # frames of the first scene
            assert (far == (branch.after - first >= task.reach)).all()
    assert {QUESTIONS[q][0] for q in ep.questions} == {"caption", "now", "memory"}


def test_trained_checkpoint_loads_and_runs_through_the_engine(tmp_path):
    from vidindex.config import IndexConfig
    from vidindex.index.engine import Engine
    from vidindex.model.train_tiny import parse_args, train
    from vidindex.store import Store
    from vidindex.video.synthetic import write_video

    out = tmp_path / "selftest"
    args = parse_args(["--smoke", "--out", str(out)])
    args.steps, args.eval_every = 3, 3
    with one_thread():
        result = train(args, say=lambda *_: None)
    assert json.loads((out / "training.json").read_text())["args"]["steps"] == 3
    assert "seed 0" in (out / "README.md").read_text() and result["evals"]

    model = load_model(out, device="cpu", dtype="float32", frame_size=TINY_FRAME_SIZE)
    assert model.config.sliding_window == 32
    assert model.tokenizer("What IS")["input_ids"] == model.tokenizer("what is")["input_ids"]
    video = tmp_path / "v.mp4"
    write_video(video, 6, fps=10, width=160, height=120)
    config = IndexConfig(model=str(out), dtype="float32", device="cpu", frame_size=TINY_FRAME_SIZE, sample_fps=1.0,
                         caption_interval=3, snapshot_interval=3, max_new_tokens=4, streams_per_gpu=1,
                         db_uri=str(tmp_path / "db"))
    [result] = Engine(config, model=model).index([str(video)])
    assert (result.status, result.frames) == ("done", 6)
    captions = Store(str(tmp_path / "db")).rows("captions").to_pylist()
    assert sorted(c["t_end_ms"] for c in captions) == [3000, 6000]


def test_frames_made_in_memory_match_decoded_frames(tmp_path):
    """Training frames skip the codec: on the model's 56-pixel frames the difference to the
    decoded video is a level or two (the encoder's loss), far below what tells scenes apart."""
    from vidindex.video import sample_frames
    from vidindex.video.frames import to_model_rgb
    from vidindex.video.synthetic import frame_painter, random_scenes, write_video

    scenes = random_scenes(4.0, 2.0, np.random.default_rng(0))
    schedule = write_video(tmp_path / "v.mp4", 4.0, fps=10, width=160, height=120, scenes=scenes)
    painter = frame_painter(160, 120)
    with sample_frames(str(tmp_path / "v.mp4"), fps=1.0, size=TINY_FRAME_SIZE) as frames:
        for t, decoded in frames:
            i = schedule.frame_index_at(t)
            made = to_model_rgb(painter.frame(i, float(schedule.frame_times[i]), schedule.scene_at(t)), TINY_FRAME_SIZE)
            diff = np.abs(made.astype(int) - decoded.astype(int))
            assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 4, (t, diff.mean())

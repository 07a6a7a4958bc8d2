"""The training forward and its gradients on CUDA against the same on the CPU (train_tiny.py
trains on a GPU; tests/model/test_training.py ties the CPU training forward to inference)."""

import numpy as np
import torch

from vidindex.model import TINY_FRAME_SIZE, load_model
from vidindex.model.generate import question_prompts
from vidindex.model.training import Branch, answer_loss, forward_train, make_trainable

from .conftest import random_frames


def run(tiny_dir, device, frames, times, branches):
    model = make_trainable(load_model(tiny_dir, device=device, dtype="float32", frame_size=TINY_FRAME_SIZE))
    logits = forward_train(model, torch.as_tensor(frames).to(device), times, branches)
    answer_loss(logits, branches).backward()
    return [lg.detach().cpu() for lg in logits], {n: p.grad.cpu() for n, p in model.named_parameters()}


def test_training_forward_and_gradients_on_cuda_match_cpu(tiny_dir):
    torch.backends.cuda.matmul.allow_tf32 = False
    n = 40  # 161 tokens of frames: several 64-token chunks of the delta rule, the window wrapped
    frames = np.stack([random_frames(n, seed=1, size=TINY_FRAME_SIZE), random_frames(n, seed=2, size=TINY_FRAME_SIZE)])
    times = np.stack([np.arange(n) * 1.0, np.arange(n) * 1.0 + 0.3])
    cpu_model = load_model(tiny_dir, device="cpu", dtype="float32", frame_size=TINY_FRAME_SIZE)
    rng = np.random.default_rng(0)
    branches = [Branch(after, torch.tensor(question_prompts(cpu_model, [q], [True]) * 2),
                       torch.as_tensor(rng.integers(0, 200, (2, 6))))
                for after, q in ((5, "What is on the screen?"), (40, "What is on the screen?"), (23, "Describe it."))]
    want_logits, want_grads = run(tiny_dir, "cpu", frames, times, branches)
    got_logits, got_grads = run(tiny_dir, "cuda", frames, times, branches)
    for got, want in zip(got_logits, want_logits):
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)
    for name, want in want_grads.items():
        scale = want.abs().max().clamp(min=1e-6)
        assert (got_grads[name] - want).abs().max() / scale < 1e-2, name

"""The training forward: InfiniteVL's own modules and stream steps, differentiable.

Inference feeds frames into a stream and asks questions on branches (stream.py, generate.py),
writing fixed state buffers in place under inference_mode. Training runs the same steps with
gradients on: the layers then replace state entries instead of writing them (layers.store),
and a branch is a copy of the state. One call is an episode of B streams:

    model = make_trainable(model)
    logits = forward_train(model, frames, timestamps, branches)   # one [B, A, vocab] per branch
    loss = answer_loss(logits, branches)

Each stream gets `<|vision_start|>` and its frames at its own times; each branch asks after the
first `after` frames (`prompt`, e.g. generate.question_prompts) and teacher-forces `answer`. Row
k of a branch's logits predicts answer token k, exactly what Stream.ask's greedy decode sees
(the prompt's prefill, then one step per token), so an answer whose every row has its token as
the argmax is the answer ask generates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .infinitevl import InfiniteVL
from .kernels import Kernels
from .state import StreamState
from .stream import frame_positions


@dataclass(frozen=True)
class Branch:
    after: int  # frames fed before the question (>= 1)
    prompt: torch.Tensor  # [B, P] token ids of the question turn, `<|vision_end|>` first
    answer: torch.Tensor  # [B, A] token ids of the answers, end-of-turn token last


def make_trainable(model: InfiniteVL) -> InfiniteVL:
    """A float32 model (loaded or random) ready to train, in place: gradients on, kernels that
    autograd can go through (plain PyTorch, the delta rule chunked)."""
    if model.dtype != torch.float32:
        raise ValueError(f"training needs float32 weights, got {model.dtype}")
    for block in model.visual.blocks:  # finish_model may have padded it (vision.pad_mlp_width)
        if block.mlp.down_proj.in_features != model.config.vision.intermediate_size:
            raise ValueError("vision MLP was padded: use a vision intermediate_size that is a multiple of 16")
    model.requires_grad_(True).train()
    model.kernels = Kernels("train")
    return model


def forward_train(model: InfiniteVL, frames: torch.Tensor, timestamps: torch.Tensor,
                  branches: list[Branch]) -> list[torch.Tensor]:
    """frames uint8 [B, N, H, W, 3]; timestamps [B, N] seconds, increasing. Returns per branch
    the logits [B, len(answer), vocab] (fp32) of its answer tokens, on fresh streams."""
    B, N = frames.shape[:2]
    if not branches or any(not 1 <= b.after <= N for b in branches):
        raise ValueError(f"branches: need at least one, each after 1..{N} frames")
    cfg, dev, per_frame = model.config, model.device, model.tokens_per_frame
    embeds = model.embed_frames(frames.reshape(B * N, *frames.shape[2:])).reshape(B, N * per_frame, -1)
    ts = torch.as_tensor(timestamps, dtype=torch.float64).to(dev)
    # As a fresh Stream: <|vision_start|> at position 0 opens the span at 1; frames follow.
    start_pos = torch.zeros(3, B, 1, dtype=torch.long, device=dev)
    positions = frame_positions(torch.ones(B, dtype=torch.long, device=dev), ts, per_frame,
                                cfg.vision.tokens_per_second)
    next_pos = positions.amax(0).view(B, N, per_frame).amax(-1).cummax(1).values + 1  # [B, N]: after frame k
    start = model.embed_tokens(torch.full((B, 1), cfg.vision_start_token_id, device=dev))

    state = model.new_state(B)
    at: dict[int, tuple[StreamState, torch.Tensor]] = {}  # frames fed -> (state copy, next position)
    fed = 0
    for stop in sorted({b.after for b in branches}):
        seg = slice(fed * per_frame, stop * per_frame)
        e, p = embeds[:, seg], positions[:, :, seg]
        if fed == 0:
            e, p = torch.cat((start, e), 1), torch.cat((start_pos, p), 2)
        model.forward_embeds(e, p, state)
        at[stop] = (state.clone(), next_pos[:, stop - 1])
        fed = stop

    # Branches of the same token count run as one batch (as generate.prefill groups them).
    groups: dict[int, list[int]] = {}
    for i, b in enumerate(branches):
        groups.setdefault(b.prompt.shape[1] + b.answer.shape[1], []).append(i)
    out: list[torch.Tensor | None] = [None] * len(branches)
    for length, members in groups.items():
        ids = torch.cat([torch.cat((branches[i].prompt, branches[i].answer[:, :-1]), 1) for i in members]).to(dev)
        branch_state = StreamState.cat(at[branches[i].after][0] for i in members)
        first = torch.cat([at[branches[i].after][1] for i in members])
        pos = (first[:, None] + torch.arange(length - 1, device=dev))[None].expand(3, -1, -1)
        logits = model.forward_all(model.embed_tokens(ids), pos, branch_state)
        for j, i in enumerate(members):
            out[i] = logits[j * B:(j + 1) * B, branches[i].prompt.shape[1] - 1:]
    return out


def answer_loss(logits: list[torch.Tensor], branches: list[Branch]) -> torch.Tensor:
    """Cross-entropy of each branch's answer tokens, averaged per branch, then over branches
    (a one-word answer weighs as much as a sentence)."""
    losses = [F.cross_entropy(lg.flatten(0, 1), b.answer.to(lg.device).flatten()) for lg, b in zip(logits, branches)]
    return torch.stack(losses).mean()


def answers_right(logits: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
    """[B] bool: every token of the answer is the argmax, i.e. greedy decoding gives exactly it."""
    return (logits.argmax(-1) == answer.to(logits.device)).all(-1)

"""Text into a stream state and greedy answers out of it.

    logits = prefill(model, state, index, token_lists)   # text tokens, each stream its own list
    tokens = generate(model, branch, prompts, max_new_tokens)

generate runs on a branch (a copy of the streams' state) that it changes: Stream.ask makes the
branch and turns the tokens into text.
"""

from __future__ import annotations

import torch

from .decode import decoder_for
from .graphs import forward_tokens
from .prompts import encode, question_text
from .state import StreamState
from .vision import host_to_device


def question_prompts(model, questions: list[str], vision_open: list[bool]) -> list[list[int]]:
    """Token ids of each question's turn; a stream inside a vision span closes it first."""
    cfg = model.config
    prompts = []
    for question, is_open in zip(questions, vision_open):
        ids = encode(model.tokenizer, question_text(question))
        prompts.append([cfg.vision_end_token_id] + ids if is_open else ids)
    return prompts


def prefill(model, state: StreamState, index: list[int], token_lists: list[list[int]]) -> torch.Tensor:
    """Feed text tokens to the streams of `state` at `index` (each its own list), one group of
    streams per distinct length. Returns last-position logits [len(index), vocab]."""
    groups: dict[int, list[int]] = {}
    for k, ids in enumerate(token_lists):
        groups.setdefault(len(ids), []).append(k)
    logits = torch.empty(len(index), model.config.vocab_size, device=model.device)
    for length, members in groups.items():
        slots = [index[k] for k in members]
        sub = state if slots == list(range(state.batch_size)) else state.select(slots)
        ids = host_to_device(torch.tensor([token_lists[k] for k in members]), model.device)
        start = sub.counters["next_pos"]
        pos = start[:, None] + torch.arange(length, device=model.device)[None]
        out = forward_tokens(model, model.embed_tokens(ids), pos[None].expand(3, -1, -1), sub)
        sub.counters["next_pos"].add_(length)
        if sub is not state:
            state.assign(slots, sub)
        if len(groups) == 1:
            return out  # members are all of index, in order
        logits[members] = out
    return logits


def generate(model, branch: StreamState, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """Greedy tokens after each stream's prompt, up to its end-of-turn token or max_new_tokens.
    `branch` has one stream per prompt and is changed."""
    eos = model.config.eos_token_id
    logits = prefill(model, branch, list(range(len(prompts))), prompts)
    out: list[list[int]] = [[] for _ in prompts]
    done = [False] * len(prompts)
    step = None

    def advance(ids):  # queue one decode step; (next tokens, their reader)
        nonlocal step
        step = step or decoder_for(model, branch)
        following = step(ids).argmax(-1)
        return following, _to_host(following)

    nxt = logits.argmax(-1)
    read = _to_host(nxt)
    for k in range(max_new_tokens):
        final = k + 1 == max_new_tokens
        # On a GPU the next step is queued before this token is read back, so the GPU does not
        # wait for the host between steps. A step queued after the last token is wasted, not
        # wrong: it runs on the branch.
        ahead = advance(nxt) if nxt.is_cuda and not final else None
        for i, t in enumerate(read()):
            done[i] = done[i] or t == eos
            if not done[i]:
                out[i].append(t)
        if all(done) or final:
            break
        nxt, read = ahead or advance(nxt)
    return out


def _to_host(t: torch.Tensor):
    """Start copying t to the host; returns a function that waits for the copy alone (not for
    work queued after it) and gives t as a list."""
    if not t.is_cuda:
        return t.tolist
    buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    buf.copy_(t, non_blocking=True)
    copied = torch.cuda.Event()
    copied.record()

    def wait():
        copied.synchronize()
        return buf.tolist()

    return wait

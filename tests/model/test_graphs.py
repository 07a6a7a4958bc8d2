"""The chunked forward the CUDA graphs run (graphs.py): the split and the arithmetic are those of
one eager forward. The capture itself needs a GPU: tests/gpu/test_model_4b_cuda.py compares
graphed and eager feeds there."""

import pytest
import torch

from vidindex.model.graphs import CHUNK_FRAMES, CHUNK_TOKENS, chunk_sizes, forward_in_chunks
from vidindex.model.layers import mrope_cos_sin
from vidindex.model.stream import warm_up_stream

from .conftest import make_frames


@pytest.mark.parametrize("total", [0, 1, 7, 8, 31, 32, 33, 299])
def test_chunk_sizes_cover_the_total_largest_first(total):
    sizes = chunk_sizes(total, CHUNK_FRAMES)
    assert sum(sizes) == total
    assert sizes == sorted(sizes, reverse=True)
    assert set(sizes) <= set(CHUNK_FRAMES)
    assert len(sizes) == total // 32 + (total % 32) // 8 + total % 8  # as few chunks as the sizes allow


def test_chunked_forward_equals_one_forward(tiny_model):
    """Frames then a question's tokens, forwarded whole or in the graphs' chunks, leave the same
    state and the same last logits."""
    m = tiny_model
    stream = m.new_stream()
    stream.feed(make_frames(2)[None], [[0.0, 0.5]])  # a state with history, vision span open
    frames = torch.as_tensor(make_frames(11, seed=4))
    embeds = m.embed_frames(frames).reshape(1, -1, m.config.hidden_size)
    positions = stream._frame_positions(torch.arange(1.0, 6.5, 0.5, dtype=torch.float64)[None])
    text = torch.tensor([[5, 9, 2, 7, 7, 3]])
    start = positions.amax() + 1
    embeds = torch.cat((embeds, m.embed_tokens(text)), 1)
    positions = torch.cat((positions, (start + torch.arange(6))[None, None].expand(3, 1, 6)), 2)

    whole = stream.state.clone()
    logits_whole = m.forward_embeds(embeds, positions, whole)
    per_frame = m.tokens_per_frame
    sizes = [n * per_frame for n in chunk_sizes(11, CHUNK_FRAMES)] + chunk_sizes(6, CHUNK_TOKENS)
    assert len(sizes) == 1 + 3 + 1 + 2 and sum(sizes) == embeds.shape[1]
    chunked = stream.state.clone()
    logits_chunked = forward_in_chunks(lambda e, p: m.forward_embeds(e, p, chunked), embeds, positions, sizes)

    torch.testing.assert_close(logits_chunked, logits_whole, atol=1e-4, rtol=0)
    a, b = whole.tensors(), chunked.tensors()
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-4, rtol=0, msg=lambda msg: f"{name}: {msg}")
    assert int(chunked.counters["tokens_seen"][0]) == int(stream.state.counters["tokens_seen"][0]) + embeds.shape[1]
    recurrent = next(name for name in a if name.endswith("recurrent"))
    assert not torch.equal(a[recurrent], stream.state.tensors()[recurrent])  # the forward did change it


def test_last_layer_mlp_on_the_last_token_only(tiny_model):
    """forward_embeds runs the last layer's MLP on the last position only; logits and state are
    those of running every layer on every token."""
    m = tiny_model
    stream = m.new_stream()
    stream.feed(make_frames(2)[None], [[0.0, 0.5]])
    embeds = m.embed_frames(torch.as_tensor(make_frames(3, seed=2))).reshape(1, -1, m.config.hidden_size)
    positions = stream._frame_positions(torch.tensor([[1.0, 1.5, 2.0]], dtype=torch.float64))

    state = stream.state.clone()
    logits = m.forward_embeds(embeds, positions, state)

    full = stream.state.clone()
    cos, sin = mrope_cos_sin(positions, m.config, embeds.dtype)
    plan = m.kernels.window_plan(full.counters["kv_len"], m.config.kv_capacity, embeds.shape[1], m.config.head_dim,
                                 embeds.dtype)
    x, delta = embeds, None
    for layer, layer_state in zip(m.model.layers, full.layers):
        x, delta = layer(x, delta, cos, sin, layer_state, plan, m.kernels)
    assert x.shape[1] == delta.shape[1] == embeds.shape[1]
    expected = (m.model.norm((x + delta)[:, -1], m.kernels) @ m.model.embed_tokens.weight.T).float()

    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    a, b = state.tensors(), full.tensors()
    for name in b:
        if "layers." in name:
            torch.testing.assert_close(a[name], b[name], atol=0, rtol=0, msg=lambda msg: f"{name}: {msg}")


def test_warm_up_runs_each_captured_size(tiny_model):
    """warm_up's scratch feed and prefill split into exactly one of each frame chunk and of each
    text chunk: on a GPU, every graph a replay and an ask use is captured before the first ask."""
    frames, text = sum(CHUNK_FRAMES), sum(CHUNK_TOKENS)
    assert chunk_sizes(frames, CHUNK_FRAMES) == sorted(CHUNK_FRAMES, reverse=True)
    assert chunk_sizes(text, CHUNK_TOKENS) == sorted(CHUNK_TOKENS, reverse=True)
    stream = warm_up_stream(tiny_model)
    assert stream.frames_seen == [frames]
    vision_start = 1
    assert stream.state.counters["tokens_seen"].item() == vision_start + frames * tiny_model.tokens_per_frame + text

"""The chunked forward the CUDA graphs run (graphs.py): the split and the arithmetic are those of
one eager forward. The capture itself needs a GPU: bench/gpu_model_check.py compares graphed
and eager feeds there."""

import pytest
import torch

from vidindex.model.graphs import CHUNK_FRAMES, CHUNK_TOKENS, chunk_sizes, forward_in_chunks

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
    stream.feed(make_frames(2), [0.0, 0.5])  # a state with history, vision span open
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

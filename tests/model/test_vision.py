"""The batched vision forward equals the vision tower's own forward (same weights)."""

import pytest
import torch

from vidindex.model.config import VisionConfig
from vidindex.model.vision import (build_vision_tower, encode_uniform_windows, encode_with_tower, pad_mlp_width,
                                   preprocess, windows_are_uniform)


def random_tower(vc):
    torch.manual_seed(0)
    tower = build_vision_tower(vc).eval()
    with torch.no_grad():
        for p in tower.parameters():
            p.normal_(0, 0.3)
    return tower


@pytest.mark.parametrize("size,fullatt", [(224, (1, 3)), (56, (1,)), (112, (0,)), (448, (2,))])
def test_batched_windows_match_the_tower(size, fullatt):
    vc = VisionConfig(depth=4, hidden_size=32, num_heads=2, intermediate_size=48, fullatt_block_indexes=fullatt,
                      out_hidden_size=24)
    tower = random_tower(vc)
    frames = torch.randint(0, 256, (3, size, size, 3), dtype=torch.uint8)
    pixels = preprocess(frames, size, vc, "cpu", torch.float32)
    assert windows_are_uniform(size, vc)
    with torch.no_grad():
        ref = encode_with_tower(tower, pixels, 3, size, vc)
        got = encode_uniform_windows(tower, pixels, 3, size, vc)
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=2e-5)


def test_padded_mlp_width_leaves_the_output_unchanged():
    """A 3420-wide MLP (the 4B tower's) padded to 3424: both forwards give what they gave."""
    vc = VisionConfig(depth=2, hidden_size=32, num_heads=2, intermediate_size=42, fullatt_block_indexes=(1,),
                      out_hidden_size=24)
    tower = random_tower(vc)
    pixels = preprocess(torch.randint(0, 256, (2, 56, 56, 3), dtype=torch.uint8), 56, vc, "cpu", torch.float32)
    with torch.no_grad():
        before = encode_with_tower(tower, pixels, 2, 56, vc), encode_uniform_windows(tower, pixels, 2, 56, vc)
        pad_mlp_width(tower)
        after = encode_with_tower(tower, pixels, 2, 56, vc), encode_uniform_windows(tower, pixels, 2, 56, vc)
    mlp = tower.blocks[0].mlp
    assert mlp.gate_proj.weight.shape == (48, 32) and mlp.up_proj.bias.shape == (48,)
    assert mlp.down_proj.weight.shape == (32, 48)
    for a, b in zip(after, before):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_sizes_with_ragged_windows_use_the_tower():
    vc = VisionConfig()
    assert windows_are_uniform(448, vc) and windows_are_uniform(896, vc)
    assert not windows_are_uniform(168, vc)  # 6 units a side: windows of 4 and 2


def test_compiled_block_serves_every_block():
    """The compiled vision forward compiles one block function for all blocks, per frame count
    of its calls, not one graph per block or per feed size: a 32-block tower fed 3, 5 and 40
    frames stays within a few compiles (dynamo would fall back to eager past its recompile
    limit), and padding a call to its frame count leaves every real frame's tokens as the
    eager forward gives them."""
    from torch._dynamo.testing import CompileCounter

    from vidindex.model import vision

    vc = VisionConfig(depth=32, hidden_size=32, num_heads=2, intermediate_size=48,
                      fullatt_block_indexes=(7, 15, 23, 31), out_hidden_size=24)
    torch.manual_seed(0)
    tower = build_vision_tower(vc).eval()
    counter = CompileCounter()
    compiled, vision._compiled_block = vision._compiled_block, torch.compile(vision._block, backend=counter,
                                                                              dynamic=False)
    try:
        with torch.inference_mode():  # as Stream.feed runs it
            for n in (3, 5, 40):
                pixels = preprocess(torch.randint(0, 256, (n, 112, 112, 3), dtype=torch.uint8), 112, vc, "cpu",
                                    torch.float32)
                ref = encode_uniform_windows(tower, pixels, n, 112, vc)
                got = vision.encode_frames(tower, pixels, n, 112, vc, compiled=True)
                assert got.shape == ref.shape
                torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    finally:
        vision._compiled_block = compiled
    # two frame counts (32 and 8) x two attention shapes (windows, whole frames)
    assert 2 <= counter.frame_count <= 2 * len(vision.COMPILED_FRAME_COUNTS)

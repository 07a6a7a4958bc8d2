"""The batched vision forward equals the vision tower's own forward (same weights)."""

import pytest
import torch

from vidindex.model.config import VisionConfig
from vidindex.model.vision import (build_vision_tower, encode_uniform_windows, encode_with_tower, preprocess,
                                   windows_are_uniform)


@pytest.mark.parametrize("size,fullatt", [(224, (1, 3)), (56, (1,)), (112, (0,)), (448, (2,))])
def test_batched_windows_match_the_tower(size, fullatt):
    vc = VisionConfig(depth=4, hidden_size=32, num_heads=2, intermediate_size=48, fullatt_block_indexes=fullatt,
                      out_hidden_size=24)
    torch.manual_seed(0)
    tower = build_vision_tower(vc).eval()
    with torch.no_grad():
        for p in tower.parameters():
            p.normal_(0, 0.3)
    frames = torch.randint(0, 256, (3, size, size, 3), dtype=torch.uint8)
    pixels = preprocess(frames, size, vc, "cpu", torch.float32)
    assert windows_are_uniform(size, vc)
    with torch.no_grad():
        ref = encode_with_tower(tower, pixels, 3, size, vc)
        got = encode_uniform_windows(tower, pixels, 3, size, vc)
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=2e-5)


def test_sizes_with_ragged_windows_use_the_tower():
    vc = VisionConfig()
    assert windows_are_uniform(448, vc) and windows_are_uniform(896, vc)
    assert not windows_are_uniform(168, vc)  # 6 units a side: windows of 4 and 2

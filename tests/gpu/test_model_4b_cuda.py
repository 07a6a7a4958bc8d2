"""The 4B-shaped model (ModelConfig(), seeded random weights, 448x448 frames) on a GPU: the bf16
fast path against an fp32 run of the same weights, graphed feeds against eager ones, and constant
state and memory over a long stream. Heavy (a 4B model in bf16 and one in fp32): select these
with `-k 4b`, leave them out with `-k "not 4b"`."""

import sys

import numpy as np
import pytest
import torch

from vidindex.model import ModelConfig, Stream
from vidindex.model.tiny import random_model

from .conftest import counters_differing, random_frames, rel_err, state_nbytes, worst_state_err

# bf16 through 36 layers of random weights is far from fp32; the fast path is right when it is as
# far as bf16 itself (the reference kernels in bf16). 2x the worst of the records:
# vision tower: compiled 0.01851, eager 0.02285 (gpu_model_check-2026-11-22-h100.json)
VISION_TOL = {"fast": 2 * 0.01851, "reference": 2 * 0.02285}
# fast: logits 0.1328, state 0.2066 (4b_bf16_fast_vs_fp32_reference, gpu_model_check-2026-11-21-h100.json);
# reference: logits 0.1471, state 0.2370 (4b_bf16_reference_vs_fp32_reference, gpu_model_check-2026-11-22-h100.json)
LOGITS_TOL = {"fast": 2 * 0.1328, "reference": 2 * 0.1471}
STATE_TOL = {"fast": 2 * 0.2066, "reference": 2 * 0.2370}

# 4b_long_run in every gpu_model_check record: 133,880,880 state bytes at frame 72 and at the end
# (120-1000 frames), peak memory unchanged; the highest peak 10,224,928,256 B (gpu_model_check-2026-11-22-h100.json).
STATE_BYTES = 133_880_880
PEAK_GROWTH_TOL = 16 << 20  # a stream that kept every frame's window keys would grow 2.4 MB a frame
PEAK_TOL = 2 * 10_224_928_256


def random_4b(dtype: torch.dtype, kernels: str):
    return random_model(ModelConfig(), "cuda", dtype=dtype, seed=0, kernels=kernels)  # same weights before rounding


@pytest.fixture(scope="module")
def model_4b():
    model = random_4b(torch.bfloat16, "fast")
    yield model
    del model
    torch.cuda.empty_cache()


def feed_one_then_rest(model, frames, times):
    """A new stream fed one frame (after the vision-start token), then the rest: (each feed's logits, state)."""
    stream = model.new_stream()
    logits = [stream.feed(frames[None, :1], times[None, :1]), stream.feed(frames[None, 1:], times[None, 1:])]
    return logits, stream.state_tensors()


def test_4b_bf16_fast_path_is_as_close_to_fp32_as_bf16_is(model_4b):
    frames, times = random_frames(8, seed=2), np.arange(8, dtype=np.float64)
    truth = random_4b(torch.float32, "reference")
    truth_logits, truth_state = feed_one_then_rest(truth, frames, times)
    with torch.inference_mode():
        truth_vision = truth.embed_frames(torch.as_tensor(frames))
    del truth
    torch.cuda.empty_cache()

    for kernels in ("fast", "reference"):
        model = model_4b if kernels == "fast" else random_4b(torch.bfloat16, "reference")
        with torch.inference_mode():
            vision = model.embed_frames(torch.as_tensor(frames))  # fast: the compiled tower
        assert rel_err(vision, truth_vision) <= VISION_TOL[kernels], kernels
        logits, state = feed_one_then_rest(model, frames, times)
        assert max(rel_err(x, y) for x, y in zip(logits, truth_logits)) <= LOGITS_TOL[kernels], kernels
        err, name = worst_state_err(state, truth_state)
        assert err <= STATE_TOL[kernels], (kernels, name)
        assert counters_differing(state, truth_state) == [], kernels
        del model
    torch.cuda.empty_cache()


def test_4b_graphed_feed_equals_eager(model_4b, monkeypatch):
    """40 frames fed from the decoder's CUDA graphs (chunks of 32 and 8 frames) leave the same
    logits and state, bit for bit, as one eager forward over them. graph_feed_logits_rel and
    graph_feed_state_max_rel are 0.0 in every ask_latency record (e.g. ask_latency-2026-12-01-h200.json)."""
    start = model_4b.new_stream()
    start.feed(random_frames(32, seed=3)[None], np.arange(32, dtype=np.float64)[None])
    data = start.to_bytes(0)
    frames, times = random_frames(40, seed=4)[None], (32 + np.arange(40, dtype=np.float64))[None]

    graphed = Stream.from_bytes(model_4b, data)
    graphed_logits = graphed.feed(frames, times)

    eager_calls = []

    def eager_forward(model, embeds, positions, state):
        eager_calls.append(embeds.shape[1])
        return model.forward_embeds(embeds, positions, state)

    # private: the decoder's forward as Stream.feed calls it (graphs on the fast path)
    monkeypatch.setattr(sys.modules[Stream.__module__], "forward_tokens", eager_forward)
    eager = Stream.from_bytes(model_4b, data)
    eager_logits = eager.feed(frames, times)
    monkeypatch.undo()
    assert eager_calls == [40 * model_4b.tokens_per_frame]  # one eager forward did run

    assert torch.equal(graphed_logits, eager_logits)
    a, b = graphed.state_tensors(), eager.state_tensors()
    assert [name for name in a if not torch.equal(a[name], b[name])] == []


def test_4b_state_and_peak_memory_stay_constant(model_4b):
    """Past the window (32 frames of 256 tokens) and every compile and capture, 8 frames a feed:
    the state's size and the peak GPU memory do not grow with the length of the stream."""
    stream = model_4b.new_stream()
    per_feed = 8
    chunk = random_frames(per_feed, seed=3)[None]
    fed = 0

    def feed_to(total):
        nonlocal fed
        while fed < total:
            stream.feed(chunk, (fed + np.arange(per_feed, dtype=np.float64))[None])
            fed += per_feed
        torch.cuda.synchronize()

    feed_to(72)
    torch.cuda.reset_peak_memory_stats()
    early_bytes = state_nbytes(stream.state_tensors())
    feed_to(136)
    early_peak = torch.cuda.max_memory_allocated()
    feed_to(264)
    end_peak = torch.cuda.max_memory_allocated()

    state = stream.state_tensors()
    assert early_bytes == state_nbytes(state) == STATE_BYTES
    assert int(state["frames_seen"][0]) == 264
    assert int(state["kv_len"][0]) == model_4b.config.kv_capacity  # the window is full
    assert end_peak - early_peak <= PEAK_GROWTH_TOL
    assert end_peak <= PEAK_TOL

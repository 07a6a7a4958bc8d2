"""The tiny checkpoint on a GPU with the fast path (fla, compiled passes, the decoder from CUDA
graphs, float8 Triton passes) against the CPU fp32 reference path, fed in any chunking; and the
stream invariants on the GPU: a snapshot resumes bit for bit, asking changes nothing.
Tolerances: the tiny_* entries of gpu_model_check-2026-11-22-h100-tiny-float8.json, which fed
these frames (20 frames, seed 1, 3 then 17)."""

import numpy as np
import pytest
import torch

from vidindex.model import TINY_FRAME_SIZE, Stream, load_model

from .conftest import counters_differing, random_frames, rel_err, worst_state_err

FRAMES = random_frames(20, seed=1, size=TINY_FRAME_SIZE)
TIMES = np.arange(20) * 0.5
QUESTION = "What is happening?"

# fp32: 4x logits 4.33e-6 and state 4.14e-6 (tiny_float32)
FP32_LOGITS_TOL = 4 * 4.33e-6
FP32_STATE_TOL = 4 * 4.14e-6
# The tiny model's random weights amplify rounding: bf16 is 0.058 / 0.065 off fp32 (tiny_bfloat16),
# float8 0.3206 / 0.58 (tiny_float8). bf16: 4x; float8: 2x the logits, 1.5x the state (which keeps the
# bound under 1, the error of a state that is all zeros).
LOW_PRECISION = {
    "bfloat16": (4 * 0.058, 4 * 0.065),
    "float8": (2 * 0.3206, 1.5 * 0.58),
}

SPLITS = {"3+17": (3, 17), "one-pass": (20,), "frame-by-frame": (1,) * 20}


@pytest.fixture(scope="module")
def cpu_model(tiny_dir):
    return load_model(tiny_dir, device="cpu", dtype="float32", frame_size=TINY_FRAME_SIZE, kernels="reference")


@pytest.fixture(scope="module")
def cuda_model(tiny_dir):
    """dtype -> the tiny model on CUDA with the fast kernels, loaded once per module."""
    loaded = {}

    def get(dtype: str):
        if dtype not in loaded:
            loaded[dtype] = load_model(tiny_dir, device="cuda", dtype=dtype, frame_size=TINY_FRAME_SIZE, kernels="fast")
        return loaded[dtype]

    yield get
    loaded.clear()


def feed_in_parts(model, split) -> tuple[Stream, list[torch.Tensor]]:
    """A new stream fed the first sum(split) frames, len(split) feeds; (stream, each feed's logits)."""
    stream, logits, start = model.new_stream(), [], 0
    for n in split:
        logits.append(stream.feed(FRAMES[None, start:start + n], TIMES[None, start:start + n]))
        start += n
    return stream, logits


def copy_state(stream: Stream) -> dict[str, torch.Tensor]:
    return {name: t.clone() for name, t in stream.state_tensors().items()}


@pytest.mark.parametrize("split", SPLITS.values(), ids=SPLITS.keys())
def test_tiny_fp32_fast_path_matches_cpu_reference_in_any_chunking(cpu_model, cuda_model, split):
    ref, ref_logits = feed_in_parts(cpu_model, split)
    got, logits = feed_in_parts(cuda_model("float32"), split)
    assert all(x.shape == (1, cpu_model.config.vocab_size) for x in logits)
    assert max(rel_err(x, y) for x, y in zip(logits, ref_logits)) <= FP32_LOGITS_TOL
    err, name = worst_state_err(got.state_tensors(), ref.state_tensors())
    assert err <= FP32_STATE_TOL, name
    assert counters_differing(got.state_tensors(), ref.state_tensors()) == []
    answer = got.ask([QUESTION], max_new_tokens=8)
    assert answer == ref.ask([QUESTION], max_new_tokens=8)  # same greedy tokens (the decode step's CUDA graph)
    assert len(answer) == 1


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_tiny_low_precision_fast_path_stays_near_cpu_fp32(cpu_model, cuda_model, dtype):
    logits_tol, state_tol = LOW_PRECISION[dtype]
    model = cuda_model(dtype)
    assert model.precision == dtype
    ref, ref_logits = feed_in_parts(cpu_model, SPLITS["3+17"])
    got, logits = feed_in_parts(model, SPLITS["3+17"])
    assert max(rel_err(x, y) for x, y in zip(logits, ref_logits)) <= logits_tol
    err, name = worst_state_err(got.state_tensors(), ref.state_tensors())
    assert err <= state_tol, name
    assert counters_differing(got.state_tensors(), ref.state_tensors()) == []
    answers = got.ask([QUESTION], max_new_tokens=8)  # the answers may differ from fp32's (records)
    assert isinstance(answers, list) and len(answers) == 1 and isinstance(answers[0], str)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float8"])
def test_tiny_snapshot_resumes_exactly_and_asking_changes_nothing(cuda_model, dtype):
    """Save at frame 12, load, continue == never stopped, bit for bit on the same GPU and dtype;
    an answer runs on a branch and leaves the stream's state as it was."""
    model = cuda_model(dtype)
    stream, _ = feed_in_parts(model, (12,))
    data = stream.to_bytes(0)
    resumed = Stream.from_bytes(model, data)
    assert resumed.to_bytes(0) == data

    before = copy_state(stream)
    answers = stream.ask([QUESTION], max_new_tokens=6)
    after = stream.state_tensors()
    assert [name for name in before if not torch.equal(after[name], before[name])] == []
    assert resumed.ask([QUESTION], max_new_tokens=6) == answers

    rest = FRAMES[None, 12:], TIMES[None, 12:]
    assert torch.equal(stream.feed(*rest), resumed.feed(*rest))
    a, b = stream.state_tensors(), resumed.state_tensors()
    assert [name for name in a if not torch.equal(a[name], b[name])] == []

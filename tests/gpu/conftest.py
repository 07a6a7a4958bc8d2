"""GPU correctness checks: the CUDA paths (fla, FlexAttention, Triton float8 passes, compiled
passes, CUDA graphs) against the plain PyTorch references, at real shapes.

    python -m pytest tests/gpu -m gpu -q                    # on a machine with a CUDA GPU
    python -m pytest tests/gpu -m gpu -q -k "not 4b"        # without the 4B-shaped model

Every test here is marked `gpu` and skipped without CUDA. They import only vidindex.model
(torch, fla, transformers, safetensors, numpy, fsspec): no Ray, no LanceDB; but for
test_nvdec_cuda.py, which needs vidindex.video (PyAV) and, for its engine run, the store.
Tolerances come from the records of the former bench/gpu_model_check.py and
bench/float8_check.py (bench/results/), named by file where each is set.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from vidindex.model import write_tiny_checkpoint

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before `-m gpu` deselects by marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.gpu)
            if not torch.cuda.is_available():
                item.add_marker(pytest.mark.skip(reason="needs CUDA"))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A complete tiny checkpoint in the official format (random weights, seed 0)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-gpu"), seed=0)


def random_frames(n: int, seed: int, size: int = 448) -> np.ndarray:
    """uint8 RGB frames [n, size, size, 3] of uniform noise."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """||got - ref|| / ||ref|| in float64, on ref's device."""
    got = got.detach().to(device=ref.device, dtype=torch.float64)
    ref = ref.detach().double()
    return ((got - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def worst_state_err(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> tuple[float, str]:
    """The largest rel_err over the layer tensors of two states (state_tensors()), and its name."""
    return max((rel_err(got[name], ref[name]), name) for name in ref if name.startswith("layers."))


def counters_differing(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> list[str]:
    """Names of the non-layer state tensors (positions, counts, timestamps) that are not equal."""
    counters = [name for name in ref if not name.startswith("layers.")]
    return [name for name in counters if not torch.equal(got[name].cpu(), ref[name].cpu())]


def state_nbytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())

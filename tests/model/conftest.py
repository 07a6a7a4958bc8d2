import numpy as np
import pytest

from vidindex.model import TINY_FRAME_SIZE, load_model, write_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_dir):
    return load_model(tiny_dir, device="cpu", dtype="float32", frame_size=TINY_FRAME_SIZE)


def make_frames(n, seed=0, h=60, w=90):
    """Random RGB frames (not the model's frame size, so resizing is exercised too)."""
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)

import pytest

from vidindex.model import TINY_FRAME_SIZE, load_model, write_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A complete tiny checkpoint in the official format (random weights, seed 0)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    return load_model(tiny_checkpoint, device="cpu", dtype="float32", frame_size=TINY_FRAME_SIZE)

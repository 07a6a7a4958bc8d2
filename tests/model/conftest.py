import numpy as np


def make_frames(n, seed=0, h=60, w=90):
    """Random RGB frames (not the model's frame size, so resizing is exercised too)."""
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)

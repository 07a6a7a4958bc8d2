"""Turn a decoded frame into what the model eats: upright RGB uint8, resized to size x size.

Only sampled frames get here. The square resize is bicubic with Pillow, the same resampling the
model's reference preprocessing uses (448 x 448 BICUBIC), so frames match it exactly.
"""

from __future__ import annotations

import av
import numpy as np
from PIL import Image


def to_model_rgb(image, size: int | None, rotation: int = 0) -> np.ndarray:
    """image: av.VideoFrame or [H, W, 3] uint8 RGB (coded orientation).
    rotation: counter-clockwise degrees that make the frame upright (display matrix).
    Returns [size, size, 3] uint8 RGB, or the upright native size when size is None."""
    if isinstance(image, av.VideoFrame):
        rgb = image.to_ndarray(format="rgb24")
    else:
        rgb = np.asarray(image)
    if rotation % 360:
        rgb = np.rot90(rgb, k=(rotation % 360) // 90)
    if size is not None and rgb.shape[:2] != (size, size):
        rgb = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize(
            (size, size), Image.BICUBIC))
    return np.ascontiguousarray(rgb)

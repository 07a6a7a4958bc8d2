"""InfiniteVL for vidindex: the network, its fixed-size stream state, loading and snapshots."""

from .config import ModelConfig, VisionConfig
from .errors import CheckpointError, FrameError, ModelError, SnapshotError
from .infinitevl import InfiniteVL
from .loading import load_model
from .state import StreamState
from .stream import Stream, read_snapshot_metadata, warm_up
from .tiny import TINY_FRAME_SIZE, write_tiny_checkpoint

__all__ = [
    "CheckpointError", "FrameError", "InfiniteVL", "ModelConfig", "ModelError", "SnapshotError",
    "Stream", "StreamState", "TINY_FRAME_SIZE", "VisionConfig", "load_model", "read_snapshot_metadata",
    "warm_up", "write_tiny_checkpoint",
]

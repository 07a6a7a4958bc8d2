"""InfiniteVL for vidindex: the network, its fixed-size stream state, loading and snapshots.

    model = load_model("hustvl/InfiniteVL")          # or a checkpoint directory
    stream = model.new_stream()                      # batch=B for B streams fed together
    stream.feed(frames[None], [timestamps])          # uint8 [B, N, H, W, 3], seconds [B, N]
    [answer] = stream.ask(["What is happening?"])    # one question per stream, a list back
"""

from .config import ModelConfig, VisionConfig
from .errors import CheckpointError, FrameError, ModelError, SnapshotError
from .infinitevl import InfiniteVL
from .loading import load_model
from .snapshot import read_snapshot_metadata
from .state import StreamState
from .stream import Stream, warm_up
from .tiny import TINY_FRAME_SIZE, write_tiny_checkpoint

__all__ = [
    "CheckpointError", "FrameError", "InfiniteVL", "ModelConfig", "ModelError", "SnapshotError",
    "Stream", "StreamState", "TINY_FRAME_SIZE", "VisionConfig", "load_model", "read_snapshot_metadata",
    "warm_up", "write_tiny_checkpoint",
]

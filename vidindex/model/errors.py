"""Errors raised by the model layer. Each names the input it is about."""


class ModelError(Exception):
    """Base class for model-layer errors."""


class CheckpointError(ModelError):
    """A checkpoint cannot be read or does not match the model's parameters."""


class SnapshotError(ModelError):
    """A stream snapshot cannot be read, or belongs to another model or config."""


class FrameError(ModelError, ValueError):
    """Frames or timestamps handed to a stream are malformed."""

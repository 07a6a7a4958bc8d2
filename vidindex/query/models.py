"""Loaded models, one per (checkpoint, dtype, frame size, device) per process: loading a 4B
checkpoint takes seconds to minutes, a question should take well under one."""

from __future__ import annotations

import threading

import torch

from vidindex.config import IndexConfig
from vidindex.model import load_model

_models: dict[tuple, object] = {}
_lock = threading.Lock()


def pick_device(device: str | None = None) -> str:
    """"auto"/None: the GPU when there is one, else the CPU."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def model_key(config: IndexConfig, device: str | None = None) -> tuple:
    return (config.model, config.model_revision, config.dtype, config.frame_size, pick_device(device))


def model_for(config: IndexConfig, device: str | None = None, checkpoint: str | None = None):
    """The model a stream of `config` was indexed with, loaded once per process; from
    `checkpoint` instead of config.model when given (the same weights kept elsewhere, e.g. a
    local copy of a hub checkpoint: `vidindex serve --model`). Snapshots check that they fit it."""
    key = model_key(config, device)
    with _lock:
        if key not in _models:
            name, revision, dtype, frame_size, where = key
            _models[key] = load_model(checkpoint or name, device=where, dtype=dtype, frame_size=frame_size,
                                      revision=None if checkpoint else revision)
        return _models[key]


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


def model_key(config: IndexConfig, device: str | None = None) -> tuple[str, str, int, str]:
    return (config.model, config.dtype, config.frame_size, pick_device(device))


def model_for(config: IndexConfig, device: str | None = None):
    """The model a stream of `config` was indexed with, loaded once per process."""
    key = model_key(config, device)
    with _lock:
        if key not in _models:
            name, dtype, frame_size, where = key
            _models[key] = load_model(name, device=where, dtype=dtype, frame_size=frame_size,
                                      revision=config.model_revision)
        return _models[key]


def loaded_model_keys() -> list[tuple]:
    with _lock:
        return list(_models)

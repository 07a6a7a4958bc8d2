"""Timing of GPU work for the bench scripts, and the results they print and save."""

import time

import torch
from records import save


def cuda_time(fn, reps: int = 5) -> float:
    """Seconds per call of fn, synchronising the GPU around the timed runs."""
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps


def synced(fn):
    """(fn(), seconds) for one call, synchronising the GPU around it (first calls: compiles)."""
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t


class Results(dict):
    """Figures as they come: each printed with the time since start and saved to `path` at once,
    so a run stopped at its time limit keeps what it measured."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.t0 = time.perf_counter()
        if path:
            print(f"record: {path}", flush=True)

    def put(self, key, value):
        self[key] = value
        print(f"[{time.perf_counter() - self.t0:7.1f}s] {key} = {value}", flush=True)
        if self.path:
            save(self.path, self)

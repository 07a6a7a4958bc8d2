"""Timing of GPU work for the bench scripts: warm up once, then the mean of `reps` runs."""

import time

import torch


def cuda_time(fn, reps: int = 5) -> float:
    """Seconds per call of fn, synchronising the GPU around the timed runs."""
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps

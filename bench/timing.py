"""The benchmarks' timer: the median of ``reps`` calls after ``warmup`` untimed ones."""
from __future__ import annotations

import statistics
import time


def timed(fn, *args, reps: int = 7, warmup: int = 1):
    """``(median seconds, the last result)`` of ``fn(*args)``."""
    for _ in range(warmup):
        res = fn(*args)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        res = fn(*args)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), res

"""Worker jobs for the pool's own tests (importable by spawned workers)."""

from __future__ import annotations

import os
import time

import numpy as np

_KEPT: list[np.ndarray] = []


def pid() -> int:
    return os.getpid()


def sleep_forever() -> None:
    time.sleep(3600)  # a C-level sleep: no Python code runs that could notice anything


def die() -> None:
    os.kill(os.getpid(), 9)


def allocate(megabytes: int, keep: bool) -> int:
    """Touch ``megabytes`` in many small arrays (heap, not mmap); keep them or not."""
    blocks = [np.ones(16 * 1024, dtype=np.float64) for _ in range(megabytes * 8)]
    if keep:
        _KEPT.extend(blocks)
    return os.getpid()


def leave_a_cycle(megabytes: int) -> int:
    """Leave ``megabytes`` of large arrays in a reference cycle, as astropy's and
    photutils' objects do; only the cyclic collector frees them."""
    holder: dict = {"arrays": [np.ones(8 << 17) for _ in range(megabytes // 8)]}
    holder["self"] = holder
    return os.getpid()


def cooperative(job=None) -> str:
    """Checks its cancel flag every 10 ms, for at most an hour."""
    for _ in range(360_000):
        if job is not None:
            job.check()
        time.sleep(0.01)
    return "finished"

"""The bounded pool of worker processes that does the engine's heavy work.

Why processes: decoding FITS, stretching and encoding hold the GIL for long
stretches, so threads would stall the event loop and ``/health``. The pool is
created in the app's lifespan with ``ENGINE_WORKERS`` processes (``spawn``
start method: no forked copy of the server's threads or sockets).

Admission control (DESIGN.md principle 2): every job states an estimate of the
bytes it will need. A job larger than the whole budget gets 413 at once; a job
that fits the budget but not beside the jobs already running, or that would
queue behind too many others, gets 429 with ``Retry-After``. A worker that
dies (killed by the OS, a crash in a C library) breaks the pool: it is rebuilt
and the request answers 503 instead of taking the server down.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, Callable

from app.errors import Busy, PayloadTooLarge, ServiceUnavailable, TimeLimitExceeded

logger = logging.getLogger(__name__)
MB = 1024 * 1024


def _warm_up() -> int:
    """Import the heavy modules once so that the first real job is fast."""
    import astropy.stats  # noqa: F401
    import astropy.wcs  # noqa: F401

    import app.composite.composite_engine  # noqa: F401
    import app.processing.enhancement  # noqa: F401
    import app.processing.fits_io  # noqa: F401
    import app.processing.render  # noqa: F401

    return os.getpid()


def _worker_init() -> None:
    # Leave numerical libraries one thread each: the pool is the parallelism.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def peak_rss_bytes() -> int:
    """Peak resident memory of the calling process (Linux ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class WorkerPool:
    """A process pool with a memory budget and a bounded queue."""

    def __init__(self, workers: int, memory_budget: int, max_queued: int = 32) -> None:
        self.workers = max(1, int(workers))
        self.memory_budget = int(memory_budget)
        self.max_queued = int(max_queued)
        self._executor: ProcessPoolExecutor | None = None
        self._reserved = 0
        self._active = 0
        self._lock = asyncio.Lock()

    # -- life cycle -------------------------------------------------------------------
    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers,
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init)

    async def start(self) -> None:
        self._executor = self._new_executor()
        loop = asyncio.get_running_loop()
        # Start every worker now and import the science in each, so the first
        # request does not pay for it.
        await asyncio.gather(*(loop.run_in_executor(self._executor, _warm_up)
                               for _ in range(self.workers)))

    async def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def worker_pids(self) -> list[int]:
        if self._executor is None:
            return []
        return [p.pid for p in (self._executor._processes or {}).values()]

    # -- admission ----------------------------------------------------------------------
    @property
    def reserved_bytes(self) -> int:
        return self._reserved

    def _admit(self, estimate: int) -> None:
        if estimate > self.memory_budget:
            factor = estimate / self.memory_budget
            raise PayloadTooLarge(
                f"This request needs about {math.ceil(estimate / MB):,} MB, "
                f"{factor:.1f}x the engine's memory budget of "
                f"{self.memory_budget // MB:,} MB; ask for a smaller output or fewer inputs")
        if self._active >= self.workers + self.max_queued:
            raise Busy("The engine is busy with other requests; try again shortly",
                       retry_after=2)
        if self._reserved + estimate > self.memory_budget:
            raise Busy("The engine's memory is committed to other requests; try again shortly",
                       retry_after=3)

    async def run(self, fn: Callable[..., Any], *args: Any, estimate_bytes: int = 0,
                  **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` in a worker process after admission."""
        if self._executor is None:
            raise ServiceUnavailable("The processing pool is not running")
        estimate = max(0, int(estimate_bytes))
        self._admit(estimate)
        self._reserved += estimate
        self._active += 1
        loop = asyncio.get_running_loop()
        executor = self._executor
        try:
            return await loop.run_in_executor(executor, partial(fn, *args, **kwargs))
        except BrokenProcessPool:
            logger.error("A worker process died; rebuilding the pool")
            async with self._lock:
                if self._executor is executor:
                    executor.shutdown(wait=False, cancel_futures=True)
                    self._executor = self._new_executor()
            raise ServiceUnavailable(
                "A worker process died while handling this request (out of memory?)") from None
        finally:
            self._reserved -= estimate
            self._active -= 1


@contextmanager
def time_limit(seconds: float, what: str = "This computation"):
    """Inside a worker job: raise :class:`TimeLimitExceeded` after ``seconds``.

    Uses SIGALRM (jobs run on the worker process's main thread), so Python code
    is interrupted between operations; the worker stays alive for the next job.
    """
    def on_alarm(signum, frame):
        raise TimeLimitExceeded(f"{what} took longer than its limit of {seconds:g} s and was "
                                "stopped; try a higher threshold or a smaller image")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

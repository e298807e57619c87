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
import contextlib
import logging
import math
import multiprocessing
import os
import signal
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from app.errors import Busy, PayloadTooLarge, ServiceUnavailable, TimeLimitExceeded
from app.progress import END, EventHub, JobHandle, install_in_worker, run_job

T = TypeVar("T")

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


def _worker_init(events: Any = None, flags: Any = None) -> None:
    # Leave numerical libraries one thread each: the pool is the parallelism.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    install_in_worker(events, flags)


def peak_rss_bytes() -> int:
    """Peak resident memory of the calling process (Linux ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class WorkerPool:
    """A process pool with a memory budget, two admission lanes and job events.

    *Interactive* jobs (the default) are admitted at once or refused: 413 when
    larger than the whole budget, 429 when the memory or the queue is full now.
    *Queued* jobs (``queued=True``: the composite stream, observation mosaics)
    are never shed: they wait, first come first served, until a worker is free
    and their memory fits, calling ``on_wait`` every ``wait_tick`` seconds
    meanwhile. While queued jobs wait, interactive ones only start on a free
    worker, so the queue cannot be starved.

    A job's memory stays reserved until the worker has really finished it, even
    when the request awaiting it was cancelled (a client that went away).
    """

    def __init__(self, workers: int, memory_budget: int, max_queued: int = 32) -> None:
        self.workers = max(1, int(workers))
        self.memory_budget = int(memory_budget)
        self.max_queued = int(max_queued)
        self._executor: ProcessPoolExecutor | None = None
        self.events: EventHub | None = None
        self._reserved = 0
        self._active = 0
        self._waiters: deque[object] = deque()
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()

    # -- life cycle -------------------------------------------------------------------
    def _new_executor(self) -> ProcessPoolExecutor:
        assert self.events is not None
        return ProcessPoolExecutor(max_workers=self.workers,
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init, initargs=self.events.worker_args)

    async def start(self) -> None:
        self.events = EventHub()
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
        if self.events is not None:
            self.events.stop()
            self.events = None

    def worker_pids(self) -> list[int]:
        if self._executor is None:
            return []
        return [p.pid for p in (self._executor._processes or {}).values()]

    # -- admission ----------------------------------------------------------------------
    @property
    def reserved_bytes(self) -> int:
        return self._reserved

    def _check_size(self, estimate: int) -> None:
        if estimate > self.memory_budget:
            factor = estimate / self.memory_budget
            raise PayloadTooLarge(
                f"This request needs about {math.ceil(estimate / MB):,} MB, "
                f"{factor:.1f}x the engine's memory budget of "
                f"{self.memory_budget // MB:,} MB; ask for a smaller output or fewer inputs")

    def _admit(self, estimate: int) -> None:
        self._check_size(estimate)
        if self._active >= self.workers + self.max_queued or \
                (self._waiters and self._active >= self.workers):
            raise Busy("The engine is busy with other requests; try again shortly",
                       retry_after=2)
        if self._reserved + estimate > self.memory_budget:
            raise Busy("The engine's memory is committed to other requests; try again shortly",
                       retry_after=3)

    def _room_for(self, estimate: int) -> bool:
        return self._active < self.workers and self._reserved + estimate <= self.memory_budget

    async def _wait_for_room(self, estimate: int, on_wait, wait_tick: float) -> None:
        """Queued lane: wait for a free worker and memory, in arrival order."""
        self._check_size(estimate)
        ticket = object()
        self._waiters.append(ticket)
        try:
            while not (self._waiters[0] is ticket and self._room_for(estimate)):
                if on_wait is not None:
                    await on_wait(self._waiters.index(ticket) + 1)
                changed = self._changed
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(changed.wait(), wait_tick)
        finally:
            self._waiters.remove(ticket)
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _release(self, estimate: int) -> None:
        self._reserved -= estimate
        self._active -= 1
        self._notify()

    async def run(self, fn: Callable[..., T], *args: Any, estimate_bytes: int = 0,
                  queued: bool = False, on_wait: Callable[[int], Awaitable[None]] | None = None,
                  wait_tick: float = 2.0, job: JobHandle | None = None, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in a worker process after admission.

        ``job``: the job's handle (from ``pool.events.open()``); it is passed to
        ``fn`` as ``job=`` and cancelled if this call is cancelled.
        """
        if self._executor is None:
            raise ServiceUnavailable("The processing pool is not running")
        estimate = max(0, int(estimate_bytes))
        events = self.events
        try:
            if queued:
                await self._wait_for_room(estimate, on_wait, wait_tick)
            else:
                self._admit(estimate)
            executor = self._executor
            if executor is None:
                raise ServiceUnavailable("The processing pool is not running")
        except BaseException:
            if job is not None and events is not None:
                events.finish(job)  # it will never run: no END would come
            raise
        loop = asyncio.get_running_loop()
        self._reserved += estimate
        self._active += 1
        try:
            if job is None:
                future = executor.submit(fn, *args, **kwargs)
            else:
                future = executor.submit(run_job, fn, job, args, kwargs)
        except BaseException:
            self._release(estimate)
            raise

        def ended(f: Future) -> None:
            loop.call_soon_threadsafe(self._release, estimate)
            # A job that never ran, or whose worker died, sends no END itself.
            if job is not None and events is not None and (
                    f.cancelled() or isinstance(f.exception(), BrokenProcessPool)):
                events.finish(job)

        future.add_done_callback(ended)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            # The worker goes on until the job's next stage boundary; the memory
            # stays reserved until then (the done callback above).
            if job is not None and self.events is not None:
                self.events.cancel(job)
            raise
        except BrokenProcessPool:
            logger.error("A worker process died; rebuilding the pool")
            if job is not None and events is not None:
                events.finish(job)
            async with self._lock:
                if self._executor is executor:
                    executor.shutdown(wait=False, cancel_futures=True)
                    self._executor = self._new_executor()
            raise ServiceUnavailable(
                "A worker process died while handling this request (out of memory?)") from None

    async def stream(self, fn: Callable[..., T], *args: Any, estimate_bytes: int = 0,
                     queued: bool = True,
                     waiting: Callable[[int], dict[str, Any]] | None = None,
                     wait_tick: float = 2.0, time_limit: float | None = None,
                     disconnected: Callable[[], Awaitable[bool]] | None = None,
                     poll: float = 0.5, **kwargs: Any) -> AsyncIterator[tuple[str, Any]]:
        """Run a long job and follow it: yields ``("event", dict)`` as the worker
        reports (and ``waiting(position)`` events while it waits for room), then
        one ``("result", value)``; the job's error is raised.

        Every ``poll`` seconds it asks ``disconnected()``: when the client has
        gone, the job is cancelled and the generator ends quietly. After
        ``time_limit`` seconds in all, the job is cancelled and
        :class:`TimeLimitExceeded` is raised. Closing the generator cancels the
        job too; the worker stops at its next :meth:`JobHandle.check`.
        """
        if self.events is None:
            raise ServiceUnavailable("The processing pool is not running")
        loop = asyncio.get_running_loop()
        handle, queue = self.events.open()

        async def on_wait(position: int) -> None:
            if waiting is not None:
                queue.put_nowait(waiting(position))

        task = asyncio.ensure_future(self.run(
            fn, *args, estimate_bytes=estimate_bytes, queued=queued, on_wait=on_wait,
            wait_tick=wait_tick, job=handle, **kwargs))
        deadline = None if time_limit is None else loop.time() + time_limit
        ended = False
        try:
            while not ended:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, timeout=poll,
                                   return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    event = getter.result()
                    if event == END:
                        ended = True
                    else:
                        yield "event", event
                    continue
                getter.cancel()
                if task.done():
                    # The result can overtake the last events: wait for END (the
                    # worker wrote it before returning; a dead worker's comes from
                    # the pool), with a bound in case the pipe was broken.
                    with contextlib.suppress(asyncio.TimeoutError):
                        while True:
                            event = await asyncio.wait_for(queue.get(), 5.0)
                            if event == END:
                                break
                            yield "event", event
                    break
                if disconnected is not None and await disconnected():
                    return
                if deadline is not None and loop.time() > deadline:
                    raise TimeLimitExceeded(
                        f"The job did not finish within its time limit of {time_limit:g} s "
                        "and was stopped; try again when the engine is less busy, or ask "
                        "for a smaller output")
            yield "result", await task
        finally:
            if not task.done():
                task.cancel()


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

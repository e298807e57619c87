"""The bounded pool of worker processes that does the engine's heavy work.

Why processes: decoding FITS, stretching and encoding hold the GIL for long
stretches, so threads would stall the event loop and ``/health``. The pool owns
``ENGINE_WORKERS`` processes (``spawn``: no forked copy of the server's threads
or sockets), each with its own pipe (:mod:`app.worker_process`), so one worker can
be stopped and replaced without touching the others.

Admission (DESIGN.md principles 2, 8 and 9): every job states the bytes it will
need. Larger than the whole budget: 413 at once. *Interactive* jobs that do not
fit now (memory reserved by running jobs, plus what idle workers still hold) or
that would queue behind too many others get 429 with ``Retry-After``. *Queued*
jobs (the composite stream, observation mosaics) are never shed: they wait, first
come first served, for a free worker and memory.

Every job runs under a deadline enforced from outside it: past its time limit,
or when its client has gone, the job is asked to stop (its cancel flag), and a
worker that has not stopped after a short grace is killed and replaced. A
worker that dies (killed by the OS, a crash in a C library) fails only its own
job (503). A job's memory stays reserved until its worker has really stopped.
After each job the worker gives freed memory back; a worker that still holds
more than ``recycle_bytes`` above its fresh size is replaced. Stopping the pool
ends every worker within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import multiprocessing
import threading
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from app.errors import Busy, PayloadTooLarge, ServiceUnavailable, TimeLimitExceeded
from app.progress import END, EventHub, JobHandle, run_job
from app.worker_process import worker_main

T = TypeVar("T")

logger = logging.getLogger(__name__)
MB = 1024 * 1024
#: Seconds a job asked to stop (deadline, client gone) gets before its worker is killed.
STOP_GRACE_SECONDS = 3.0
#: Seconds the whole pool gets to stop before its workers are killed.
SHUTDOWN_GRACE_SECONDS = 3.0
#: The admitted cost of a job that only reads headers (planning, footprints, cube info):
#: headers are parsed in a worker, never in the server process.
HEADER_JOB_BYTES = 128 * MB


@dataclass(eq=False)
class _Job:
    id: int
    message: tuple[Any, ...]
    estimate: int
    future: asyncio.Future[Any]
    handle: JobHandle | None = None
    worker: _Worker | None = None
    stopping: bool = False


@dataclass(eq=False)
class _Worker:
    process: Any
    conn: Any
    ready: asyncio.Future[_Worker]
    fresh_rss: int = 0
    rss: int = 0
    job: _Job | None = None
    #: Answered its job, giving memory back before it is free again.
    trimming: bool = False
    retiring: bool = False
    reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return int(self.process.pid)


class WorkerPool:
    """Worker processes with a memory budget, two admission lanes, deadlines and events."""

    def __init__(
        self,
        workers: int,
        memory_budget: int,
        max_queued: int = 32,
        time_limit: float = 600.0,
        recycle_bytes: int = 512 * MB,
    ) -> None:
        self.workers = max(1, int(workers))
        self.memory_budget = int(memory_budget)
        self.max_queued = int(max_queued)
        self.time_limit = float(time_limit)
        self.recycle_bytes = int(recycle_bytes)
        self.events: EventHub | None = None
        self._ctx = multiprocessing.get_context("spawn")
        self._all: list[_Worker] = []
        self._idle: deque[_Worker] = deque()
        self._pending: deque[_Job] = deque()  # admitted, waiting for an idle worker
        self._reserved = 0
        self._active = 0
        self._waiters: deque[object] = deque()
        self._changed = asyncio.Event()
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sender = ThreadPoolExecutor(max_workers=2, thread_name_prefix="pool-send")
        self._stopping = False

    # -- life cycle -------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.events = EventHub(self._ctx)
        workers = [self._spawn() for _ in range(self.workers)]
        await asyncio.gather(*(w.ready for w in workers))

    def _spawn(self) -> _Worker:
        assert self._loop is not None and self.events is not None
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker_main,
            name="engine-worker",
            args=(child, *self.events.worker_args),
            daemon=True,
        )
        process.start()
        child.close()
        worker = _Worker(process=process, conn=parent, ready=self._loop.create_future())
        worker.reader = threading.Thread(
            target=self._read, args=(worker,), daemon=True, name=f"pool-reader-{process.pid}"
        )
        self._all.append(worker)
        worker.reader.start()
        return worker

    def _read(self, worker: _Worker) -> None:
        """Reader thread of one worker: every message goes to the event loop."""
        loop = self._loop
        assert loop is not None
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            except Exception:  # an unpicklable reply: the job failed, the worker lives
                logger.exception("Unreadable message from worker %s", worker.pid)
                continue
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_message, worker, message)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._on_exit, worker)

    async def stop(self) -> None:
        """Stop every worker: idle ones at once, busy ones asked to stop, then killed
        after a grace period; nothing is left running."""
        self._stopping = True
        for job in list(self._pending):
            self._pending.remove(job)
            self._fail(job, ServiceUnavailable("The engine is shutting down"))
        for worker in list(self._all):
            if worker.job is not None and worker.job.handle is not None and self.events:
                self.events.cancel(worker.job.handle)
            with contextlib.suppress(OSError, ValueError):
                worker.conn.send(None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_GRACE_SECONDS
        for worker in list(self._all):
            remaining = max(0.0, deadline - loop.time())
            await loop.run_in_executor(None, worker.process.join, remaining)
            if worker.process.is_alive():
                worker.process.kill()
                await loop.run_in_executor(None, worker.process.join, 2.0)
            with contextlib.suppress(OSError):
                worker.conn.close()
        self._all.clear()
        self._idle.clear()
        self._sender.shutdown(wait=False, cancel_futures=True)
        if self.events is not None:
            self.events.stop()
            self.events = None

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._all if w.process.is_alive()]

    # -- messages from workers ----------------------------------------------------------
    def _on_message(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        if message[0] == "ready":
            worker.fresh_rss = worker.rss = int(message[2])
            if not worker.ready.done():
                worker.ready.set_result(worker)
            self._make_idle(worker)
            return
        if message[0] != "idle":  # the job's answer; the worker is still trimming
            job_id, status, value = message
            job = worker.job
            if job is not None and job.id == job_id:
                worker.job = None
                worker.trimming = True
                if status == "ok":
                    if not job.future.done():
                        job.future.set_result(value)
                else:
                    self._fail(job, value)
                self._finish(job)
            return
        worker.trimming = False
        worker.rss = int(message[1])
        if worker.rss - worker.fresh_rss > self.recycle_bytes and not self._stopping:
            logger.info(
                "Replacing worker %s: it holds %d MB after its job",
                worker.pid,
                (worker.rss - worker.fresh_rss) // MB,
            )
            self._retire(worker)
        else:
            self._make_idle(worker)

    def _on_exit(self, worker: _Worker) -> None:
        """A worker's pipe closed: it stopped, was killed, or died."""
        if worker in self._all:
            self._all.remove(worker)
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)
        with contextlib.suppress(OSError):
            worker.conn.close()
        if not worker.ready.done():
            worker.ready.set_exception(ServiceUnavailable("A worker process failed to start"))
        job = worker.job
        worker.job = None
        if job is not None:
            if job.handle is not None and self.events is not None:
                self.events.finish(job.handle)  # it never sends END now
            self._fail(
                job,
                ServiceUnavailable(
                    "A worker process died while handling this request (out of memory?)"
                ),
            )
            self._finish(job)
        if not self._stopping and not worker.retiring:
            logger.error("Worker %s ended unexpectedly; starting another", worker.pid)
        if not self._stopping and len(self._all) < self.workers:
            self._spawn()

    # -- dispatch ----------------------------------------------------------------------
    def _make_idle(self, worker: _Worker) -> None:
        if self._stopping or worker.retiring or worker not in self._all:
            return
        if self._pending:
            self._send(worker, self._pending.popleft())
        else:
            self._idle.append(worker)
            self._notify()

    def _send(self, worker: _Worker, job: _Job) -> None:
        worker.job = job
        job.worker = worker
        future = asyncio.get_running_loop().run_in_executor(
            self._sender, worker.conn.send, job.message
        )
        future.add_done_callback(lambda f: self._sent(worker, job, f))

    def _sent(self, worker: _Worker, job: _Job, future: asyncio.Future[None]) -> None:
        if future.cancelled() or future.exception() is None:
            return
        exc = future.exception()
        logger.error("Could not send a job to worker %s: %s", worker.pid, exc)
        if worker.job is job:  # e.g. arguments that cannot be pickled
            worker.job = None
            self._fail(job, ServiceUnavailable("The job could not be handed to a worker"))
            self._finish(job)
            self._make_idle(worker)

    def _retire(self, worker: _Worker) -> None:
        worker.retiring = True
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)
        with contextlib.suppress(OSError, ValueError):
            worker.conn.send(None)
        self._spawn()
        if worker in self._all:
            self._all.remove(worker)

    def _kill(self, worker: _Worker) -> None:
        """Stop a worker now; its reader thread reports the exit and a new one starts."""
        with contextlib.suppress(Exception):
            worker.process.kill()

    def _fail(self, job: _Job, exc: BaseException) -> None:
        if not job.future.done():
            job.future.set_exception(exc)

    def _finish(self, job: _Job) -> None:
        self._reserved -= job.estimate
        self._active -= 1
        self._notify()

    # -- admission ----------------------------------------------------------------------
    @property
    def reserved_bytes(self) -> int:
        return self._reserved

    @property
    def held_bytes(self) -> int:
        """Memory idle workers still hold above their fresh size (counted as used)."""
        return sum(max(0, w.rss - w.fresh_rss) for w in self._idle)

    def _check_size(self, estimate: int) -> None:
        if estimate > self.memory_budget:
            factor = estimate / self.memory_budget
            raise PayloadTooLarge(
                f"This request needs about {math.ceil(estimate / MB):,} MB, "
                f"{factor:.1f}x the engine's memory budget of "
                f"{self.memory_budget // MB:,} MB; ask for a smaller output or fewer inputs"
            )

    def _memory_fits(self, estimate: int) -> bool:
        return self._reserved + self.held_bytes + estimate <= self.memory_budget

    def _admit(self, estimate: int) -> None:
        self._check_size(estimate)
        if self._active >= self.workers + self.max_queued or (
            self._waiters and self._active >= self.workers
        ):
            raise Busy("The engine is busy with other requests; try again shortly", retry_after=2)
        if not self._memory_fits(estimate):
            raise Busy(
                "The engine's memory is committed to other requests; try again shortly",
                retry_after=3,
            )

    def _room_for(self, estimate: int) -> bool:
        return self._active < self.workers and self._memory_fits(estimate)

    async def _wait_for_room(
        self, estimate: int, on_wait: Callable[[int], Awaitable[None]] | None, wait_tick: float
    ) -> None:
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

    # -- running jobs -------------------------------------------------------------------
    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        estimate_bytes: int = 0,
        queued: bool = False,
        on_wait: Callable[[int], Awaitable[None]] | None = None,
        wait_tick: float = 2.0,
        job: JobHandle | None = None,
        time_limit: float | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` in a worker process after admission.

        ``job``: the job's handle (from ``pool.events.open()``); it is passed to
        ``fn`` as ``job=`` and cancelled if this call is cancelled. ``time_limit``:
        seconds (default: the pool's; ``math.inf`` for none) before the job is
        stopped with 504.
        """
        if self._stopping or self.events is None:
            raise ServiceUnavailable("The processing pool is not running")
        events = self.events
        estimate = max(0, int(estimate_bytes))
        try:
            if queued:
                await self._wait_for_room(estimate, on_wait, wait_tick)
            else:
                self._admit(estimate)
            if self._stopping:
                raise ServiceUnavailable("The processing pool is not running")
        except BaseException:
            if job is not None:
                events.finish(job)  # it will never run: no END would come
            raise
        message = (
            (next(self._ids), run_job, (fn, job, args, kwargs), {})
            if job is not None
            else (next(self._ids), fn, args, kwargs)
        )
        work = _Job(
            id=message[0],
            message=message,
            estimate=estimate,
            future=asyncio.get_running_loop().create_future(),
            handle=job,
        )
        self._reserved += estimate
        self._active += 1
        if self._idle:
            self._send(self._idle.popleft(), work)
        else:
            self._pending.append(work)
        limit = self.time_limit if time_limit is None else float(time_limit)
        try:
            return await asyncio.wait_for(
                asyncio.shield(work.future), None if math.isinf(limit) else limit
            )
        except TimeoutError:
            self._stop_job(work)
            raise TimeLimitExceeded(
                f"This computation took longer than its limit of {limit:g} s and was "
                "stopped; try a smaller image or output"
            ) from None
        except asyncio.CancelledError:
            self._stop_job(work)
            raise

    def _stop_job(self, work: _Job) -> None:
        """Ask a job to stop (its cancel flag); kill its worker if it has not stopped
        after the grace period. A job still waiting for a worker is dropped at once."""
        if work.worker is None:
            if work in self._pending:
                self._pending.remove(work)
                if work.handle is not None and self.events is not None:
                    self.events.finish(work.handle)
                self._fail(work, ServiceUnavailable("cancelled"))
                self._finish(work)
            return
        if work.stopping:
            return
        work.stopping = True
        if work.handle is not None and self.events is not None:
            self.events.cancel(work.handle)
        worker = work.worker
        loop = asyncio.get_running_loop()

        def overdue() -> None:
            if worker.job is work:
                logger.warning(
                    "Worker %s did not stop job %s in time: replacing it", worker.pid, work.id
                )
                self._kill(worker)

        loop.call_later(STOP_GRACE_SECONDS, overdue)
        # Nobody awaits the result any more.
        work.future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)

    async def stream(
        self,
        fn: Callable[..., T],
        *args: Any,
        estimate_bytes: int = 0,
        queued: bool = True,
        waiting: Callable[[int], dict[str, Any]] | None = None,
        wait_tick: float = 2.0,
        time_limit: float | None = None,
        disconnected: Callable[[], Awaitable[bool]] | None = None,
        poll: float = 0.5,
        **kwargs: Any,
    ) -> AsyncGenerator[tuple[str, Any], None]:
        """Run a long job and follow it: yields ``("event", dict)`` as the worker
        reports (and ``waiting(position)`` events while it waits for room), then
        one ``("result", value)``; the job's error is raised.

        Every ``poll`` seconds it asks ``disconnected()``: when the client has
        gone, the job is cancelled and the generator ends quietly. After
        ``time_limit`` seconds in all (waiting included), the job is cancelled and
        :class:`TimeLimitExceeded` is raised. Closing the generator cancels the
        job too; the worker stops at its next :meth:`JobHandle.check`, or is
        replaced after a grace period.
        """
        if self.events is None:
            raise ServiceUnavailable("The processing pool is not running")
        loop = asyncio.get_running_loop()
        handle, queue = self.events.open()

        async def on_wait(position: int) -> None:
            if waiting is not None:
                queue.put_nowait(waiting(position))

        limit = math.inf if time_limit is None else float(time_limit)
        task = asyncio.ensure_future(
            self.run(
                fn,
                *args,
                estimate_bytes=estimate_bytes,
                queued=queued,
                on_wait=None if waiting is None else on_wait,
                wait_tick=wait_tick,
                job=handle,
                time_limit=limit,
                **kwargs,
            )
        )
        deadline = loop.time() + limit
        ended = False
        try:
            while not ended:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait(
                    {getter, task}, timeout=poll, return_when=asyncio.FIRST_COMPLETED
                )
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
                if loop.time() > deadline:
                    raise TimeLimitExceeded(
                        f"The job did not finish within its time limit of {limit:g} s "
                        "and was stopped; try again when the engine is less busy, or ask "
                        "for a smaller output"
                    )
            yield "result", await task
        finally:
            if not task.done():
                task.cancel()

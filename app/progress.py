"""Progress events and cancellation between a pool job and the event loop.

One mechanism for every long job (DESIGN.md principle 9). The worker pool owns
an :class:`EventHub`: one ``multiprocessing`` queue that every worker process
writes events into, and one shared array of cancel flags. Both are handed to
the workers when they start (inheritance, the only way multiprocessing lets
them cross), so a job needs nothing but a small picklable :class:`JobHandle`:

* in the worker, ``job.emit({...})`` sends an event (any JSON-like dict) and
  ``job.check()`` raises :class:`JobCancelled` once the server cancelled the job;
  long jobs call it at their stage boundaries;
* in the server, :meth:`EventHub.open` gives the handle and an asyncio queue
  that receives the job's events in order; :meth:`EventHub.cancel` raises the
  job's flag (a client went away, a time limit passed).

A reader thread in the server takes events off the multiprocessing queue and
hands them to the event loop with ``call_soon_threadsafe``; the loop itself
never blocks on the queue. The queue is a ``SimpleQueue``, whose ``put`` has
written the event into the pipe when it returns, and the pool runs every job
with a handle through :func:`run_job`, which sends :data:`END` last: so a
consumer that sees the job's result can wait for ``END`` and knows it has
every event. The handle's slot is freed when ``END`` arrives (or, for a worker
that died, when the pool says so), never while the job may still look at its
cancel flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from app.errors import Busy, ServiceError

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Jobs with a handle that can be open at once (one cancel flag each).
MAX_OPEN_JOBS = 1024
#: The last event of every job (added by :func:`run_job` or by the pool).
END: dict[str, Any] = {"event": "_end"}

# Set in each worker process by :func:`install_in_worker` (the pool's initializer).
_worker_events: Any = None
_worker_flags: Any = None


class JobCancelled(ServiceError):
    """The job was cancelled from outside (its client left, or its time ran out)."""

    status_code = 499


@dataclass(frozen=True)
class JobHandle:
    """What a job gets to report progress and to learn it was cancelled (picklable)."""

    job_id: int
    slot: int

    def emit(self, event: dict[str, Any]) -> None:
        """Send ``event`` to the server (returns at once; delivered in order)."""
        if _worker_events is not None:
            _worker_events.put((self.job_id, self.slot, event))

    def cancelled(self) -> bool:
        return _worker_flags is not None and _worker_flags[self.slot] == self.job_id

    def check(self) -> None:
        """Raise :class:`JobCancelled` if the server cancelled this job."""
        if self.cancelled():
            raise JobCancelled("The job was cancelled")


def run_job(fn: Callable[..., T], job: JobHandle, args: tuple, kwargs: dict) -> T:
    """Worker side: ``fn(*args, job=job, **kwargs)``, then :data:`END`, whatever happens."""
    try:
        return fn(*args, job=job, **kwargs)
    finally:
        job.emit(END)


def install_in_worker(events: Any, flags: Any) -> None:
    """Pool initializer part: remember the hub's queue and flags in this process."""
    global _worker_events, _worker_flags
    _worker_events, _worker_flags = events, flags


class EventHub:
    """The server side: hands out job handles and routes their events to asyncio queues."""

    def __init__(self, context: multiprocessing.context.BaseContext | None = None) -> None:
        ctx = context or multiprocessing.get_context("spawn")
        self.events = ctx.SimpleQueue()
        # Cancel flags: slot i holds the id of the cancelled job using it (0 = none).
        self.flags = ctx.Array("q", MAX_OPEN_JOBS, lock=False)
        self._free = list(range(MAX_OPEN_JOBS - 1, -1, -1))
        self._next_id = 1
        self._open: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="job-events", daemon=True)
        self._reader.start()

    @property
    def worker_args(self) -> tuple[Any, Any]:
        """What the pool passes to :func:`install_in_worker` in each worker."""
        return self.events, self.flags

    def open(self) -> tuple[JobHandle, asyncio.Queue]:
        """A handle for a new job and the queue its events will arrive on."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._free:
                raise Busy("Too many long jobs are open at once; try again shortly", retry_after=5)
            slot = self._free.pop()
            job_id = self._next_id
            self._next_id += 1
            self.flags[slot] = 0
            queue: asyncio.Queue = asyncio.Queue()
            self._open[job_id] = (loop, queue)
        return JobHandle(job_id=job_id, slot=slot), queue

    def cancel(self, handle: JobHandle) -> None:
        self.flags[handle.slot] = handle.job_id

    def finish(self, handle: JobHandle) -> None:
        """The job ended without sending :data:`END` (its worker died, or it never
        started): tell its consumer, and free its slot."""
        with self._lock:
            target = self._open.get(handle.job_id)
        if target is not None:
            loop, queue = target
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, END)
        self._close(handle.job_id, handle.slot)

    def _close(self, job_id: int, slot: int) -> None:
        with self._lock:
            if self._open.pop(job_id, None) is not None:
                self.flags[slot] = 0
                self._free.append(slot)

    def _read(self) -> None:
        while True:
            try:
                item = self.events.get()
            except (EOFError, OSError, ValueError):
                return
            if item is None:
                return
            job_id, slot, event = item
            with self._lock:
                target = self._open.get(job_id)
            if target is None:
                continue  # already finished (its worker was declared dead)
            loop, queue = target
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # the loop is closed: the server is stopping
                return
            if event is END or event == END:
                self._close(job_id, slot)

    def stop(self) -> None:
        try:
            self.events.put(None)
        except (OSError, ValueError):
            pass
        self._reader.join(timeout=5)
        self.events.close()

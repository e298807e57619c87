"""What runs inside each worker process of :class:`app.workers.WorkerPool`.

A worker imports the heavy science once, says it is ready, then loops: receive
``(job_id, fn, args, kwargs)`` on its pipe, run it, send back
``(job_id, "ok" | "error", value)``, then give the memory it freed back to the
system (``malloc_trim``: glibc keeps freed heap memory otherwise, and a worker
would hold its high-water mark for ever) and send ``("idle", rss_bytes)``.
``None`` means stop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os
import pickle
import signal
from typing import Any

from app.errors import ServiceError
from app.progress import install_in_worker

logger = logging.getLogger(__name__)


def warm_up() -> None:
    """Import the heavy modules once so that the first real job is fast."""
    import astropy.stats  # noqa: F401
    import astropy.wcs  # noqa: F401

    import app.composite.compositor  # noqa: F401
    import app.processing.enhancement  # noqa: F401
    import app.processing.fits_io  # noqa: F401
    import app.processing.render  # noqa: F401

    # Everything loaded so far lives as long as the worker: keep it out of the
    # collections that follow some jobs (see MemoryRelease).
    gc.collect()
    gc.freeze()


def current_rss() -> int:
    """Resident memory of this process now (bytes), from /proc."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


_libc: Any = None


def _c_library() -> Any:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    return _libc


def trim_memory() -> None:
    """Return freed heap memory to the system (glibc's malloc_trim; no-op elsewhere)."""
    libc = _c_library()
    if libc and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


#: Trimming left the worker this much above where it settled after the last
#: collection: the job probably left arrays in reference cycles, so collect them.
COLLECT_ABOVE = 32 * 1024 * 1024


class MemoryRelease:
    """Gives back what a finished job leaves behind; ``release()`` returns the RSS.

    ``malloc_trim`` returns freed heap pages. Objects in reference cycles are freed
    only by the cyclic collector, which otherwise runs at some later allocation, and
    astropy's and photutils' objects keep whole images in cycles (a segmentation
    leaves four 4096^2 float32 arrays). A full collection costs tens of milliseconds
    once photutils is loaded, more than a small job, so it runs only when trimming
    leaves the worker :data:`COLLECT_ABOVE` above where it settled; what the worker
    holds for good was frozen at start-up (:func:`warm_up`), out of its reach."""

    def __init__(self) -> None:
        self.settled = current_rss()

    def release(self) -> int:
        trim_memory()
        rss = current_rss()
        if rss - self.settled > COLLECT_ABOVE:
            gc.collect()
            trim_memory()
            rss = self.settled = current_rss()
        else:
            self.settled = min(self.settled, rss)
        return rss


def _portable(exc: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a plain stand-in."""
    if isinstance(exc, ServiceError):
        return exc
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def worker_main(conn: Any, events: Any, flags: Any) -> None:
    """The worker's whole life (the target of its ``multiprocessing.Process``)."""
    # Leave numerical libraries one thread each: the pool is the parallelism.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # Ctrl-C in a terminal reaches the whole process group: the server stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    install_in_worker(events, flags)
    warm_up()
    memory = MemoryRelease()
    conn.send(("ready", os.getpid(), memory.settled))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        job_id, fn, args, kwargs = message
        try:
            reply: tuple[str, Any] = ("ok", fn(*args, **kwargs))
        except BaseException as exc:  # everything goes back to the request
            reply = ("error", _portable(exc))
        del message
        try:
            conn.send((job_id, *reply))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            conn.send((job_id, "error", RuntimeError(f"unsendable result: {exc}")))
        except (EOFError, OSError):
            return
        # The answer is on its way; now give memory back, then say we are free.
        del reply, fn, args, kwargs
        rss = memory.release()
        try:
            conn.send(("idle", rss))
        except (EOFError, OSError):
            return

"""Whole-image work in cache-sized pieces, on a few threads.

numpy releases the GIL inside its ufuncs, so pieces of one big image run on all
the cores a worker process has; and a piece small enough to stay in the CPU's
cache makes a chain of element-wise steps several times faster than the same
steps over whole images, each of which streams the image through memory.

Two shapes of piece: :func:`map_chunks` cuts a 1-D array into chunks and maps a
function over them (statistics); :func:`each_row_block` hands a function the row
slices of a picture, and the function writes its rows of an output (the colour
pipeline).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar, cast, overload

import numpy as np

R = TypeVar("R")
P = TypeVar("P")
A = TypeVar("A")

#: Elements per 1-D chunk (1 MiB of float32).
CHUNK = 1 << 18
#: Pixels per row block (an RGB float32 block and its temporaries stay in a core's cache).
BLOCK_PIXELS = 1 << 16
#: Work smaller than this many elements is not worth splitting across threads.
PARALLEL_MIN = 1 << 20
THREADS = max(
    1,
    min(
        4,
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
    ),
)
_pool: ThreadPoolExecutor | None = None
_here = threading.local()


def _threads() -> ThreadPoolExecutor:
    # Made on first use, in the process that uses it (never inherited across a fork).
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="pieces")
    return _pool


@overload
def map_chunks(values: np.ndarray, fn: Callable[[np.ndarray], R]) -> list[R]: ...


@overload
def map_chunks(
    values: np.ndarray, fn: Callable[[np.ndarray], R], reduce: Callable[[A, R], A], initial: A
) -> A: ...


def map_chunks(
    values: np.ndarray,
    fn: Callable[[np.ndarray], R],
    reduce: Callable[[A, R], A] | None = None,
    initial: A | None = None,
) -> list[R] | A | None:
    """``fn`` over cache-sized chunks of a 1-D array, on a few threads when large.

    Without ``reduce`` the results come back as a list in chunk order; with it
    they are folded as they arrive (``acc = reduce(acc, result)`` starting from
    ``initial``), so per-chunk results never pile up in memory.
    """
    chunks = (values[start : start + CHUNK] for start in range(0, values.size, CHUNK))
    results: Iterator[R]
    if values.size < PARALLEL_MIN or THREADS == 1 or _nested():
        results = map(fn, chunks)
    else:
        results = _threads().map(_inside(fn), chunks)
    if reduce is None:
        return list(results)
    acc = cast(A, initial)
    for result in results:
        acc = reduce(acc, result)
    return acc


def row_blocks(height: int, width: int, pixels: int = BLOCK_PIXELS) -> list[slice]:
    """Consecutive row slices of a ``height`` x ``width`` picture, about ``pixels`` each."""
    rows = max(1, pixels // max(1, width))
    return [slice(start, min(height, start + rows)) for start in range(0, height, rows)]


def each_row_block(height: int, width: int, work: Callable[[slice], None]) -> None:
    """``work(rows)`` for every row block of the picture, on a few threads when it is
    large. Each call must write only its own rows; an exception in any is raised here
    (after every block has finished)."""
    _run_all(row_blocks(height, width), work, height * width)


def each_chunk(size: int, work: Callable[[slice], None]) -> None:
    """``work(part)`` for every cache-sized slice of a flat array of ``size`` elements,
    as :func:`each_row_block` does for rows."""
    parts = [slice(start, min(size, start + CHUNK)) for start in range(0, size, CHUNK)]
    _run_all(parts, work, size)


def _nested() -> bool:
    """Whether this thread is running a piece already (a piece that itself asks for
    pieces runs them in its own thread: waiting on the pool from inside the pool could
    leave every thread waiting)."""
    return bool(getattr(_here, "inside", False))


@contextmanager
def _running_pieces() -> Iterator[None]:
    """This thread marked, for the block, as running pieces (see :func:`_nested`)."""
    _here.inside = True
    try:
        yield
    finally:
        _here.inside = False


def _inside(fn: Callable[[P], R]) -> Callable[[P], R]:
    """``fn`` marked, while it runs, as running on the pool."""

    def run(arg: P) -> R:
        with _running_pieces():
            return fn(arg)

    return run


def _run_all(pieces: list[slice], work: Callable[[slice], None], elements: int) -> None:
    if elements < PARALLEL_MIN or THREADS == 1 or len(pieces) <= 1 or _nested():
        for piece in pieces:
            work(piece)
        return
    # The caller and THREADS - 1 pool threads take pieces from one queue until it is
    # empty: two wake-ups a step rather than one a piece (each costs a context switch).
    queue = iter(pieces)
    lock = threading.Lock()

    def drain() -> None:
        with _running_pieces():
            while True:
                with lock:
                    piece = next(queue, None)
                if piece is None:
                    return
                work(piece)

    helpers = [_threads().submit(drain) for _ in range(THREADS - 1)]
    try:
        drain()
    finally:
        wait(helpers)  # none still writes when the caller sees an error
    for helper in helpers:
        helper.result()

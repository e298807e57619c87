"""The worker pool: deadlines that hold, one dead worker fails one job, memory given
back, cancellation, and nothing left running after a stop. Deterministic: the jobs that
must be stopped would otherwise run for an hour."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import psutil
import pytest

from app.errors import ServiceUnavailable, TimeLimitExceeded
from app.workers import STOP_GRACE_SECONDS, WorkerPool
from tests.support import jobs
from tests.support.servers import local_env, run_service

MB = 1024 * 1024


def run(coro):
    return asyncio.run(coro)


async def started(workers=2, **kwargs) -> WorkerPool:
    pool = WorkerPool(workers, 4 << 30, **kwargs)
    await pool.start()
    return pool


def gone(pids, limit=20.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_a_job_past_its_deadline_is_stopped_and_its_worker_replaced():
    async def scenario():
        pool = await started()
        try:
            before = set(pool.worker_pids())
            with pytest.raises(TimeLimitExceeded):
                await pool.run(jobs.sleep_forever, time_limit=0.3)

            # The stuck worker is killed after the grace period and replaced (the
            # replacement starts a moment after the old one is gone: wait for both).
            def replaced() -> bool:
                after = set(pool.worker_pids())
                return len(before - after) == 1 and len(after) == 2

            deadline = time.monotonic() + STOP_GRACE_SECONDS + 30
            while not replaced() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            after = set(pool.worker_pids())
            assert len(before - after) == 1 and len(after) == 2, (before, after)
            while pool.reserved_bytes or len(pool.worker_pids()) < 2:
                await asyncio.sleep(0.05)
            assert await pool.run(jobs.pid) in pool.worker_pids()
        finally:
            await pool.stop()

    run(scenario())


def test_a_dying_worker_fails_only_its_own_job():
    async def scenario():
        pool = await started()
        try:
            slow = asyncio.ensure_future(pool.run(jobs.allocate, 50, False))
            with pytest.raises(ServiceUnavailable):
                await pool.run(jobs.die)
            assert await slow in pool.worker_pids()
            deadline = time.monotonic() + 30
            while len(pool.worker_pids()) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert len(pool.worker_pids()) == 2
        finally:
            await pool.stop()

    run(scenario())


def test_a_cancelled_job_stops_cooperatively_or_its_worker_is_replaced():
    async def scenario():
        pool = await started(workers=1)
        try:
            first = pool.worker_pids()[0]
            handle, _ = pool.events.open()
            task = asyncio.ensure_future(pool.run(jobs.cooperative, job=handle, estimate_bytes=MB))
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The job saw its flag at its next check: the same worker is free again.
            assert await pool.run(jobs.pid) == first
            assert pool.reserved_bytes == 0
            stuck = asyncio.ensure_future(pool.run(jobs.sleep_forever, estimate_bytes=MB))
            await asyncio.sleep(0.5)
            stuck.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stuck
            # This one cannot notice: its worker is replaced and the next job runs.
            assert await pool.run(jobs.pid) != first
        finally:
            await pool.stop()

    run(scenario())


def test_memory_is_given_back_or_the_worker_replaced():
    async def scenario():
        pool = await started(workers=1, recycle_bytes=300 * MB)
        try:
            worker = pool._all[0]
            first = worker.pid
            assert await pool.run(jobs.allocate, 400, False) == first
            while worker.trimming:  # the worker answers first, then gives memory back
                await asyncio.sleep(0.01)
            # Freed small-array memory is returned (malloc_trim): no recycling needed.
            assert worker.rss > 0 and worker.rss - worker.fresh_rss < 150 * MB
            assert worker in pool._idle
            assert pool.worker_pids() == [first]
            assert await pool.run(jobs.allocate, 400, True) == first
            deadline = time.monotonic() + 30
            while pool.worker_pids() in ([first], []) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert pool.worker_pids() and first not in pool.worker_pids()
        finally:
            await pool.stop()

    run(scenario())


def test_what_a_job_leaves_in_reference_cycles_is_freed_after_it():
    async def scenario():
        pool = await started(workers=1, recycle_bytes=4 << 30)
        try:
            worker = pool._all[0]
            assert await pool.run(jobs.leave_a_cycle, 400) == worker.pid
            while worker.trimming:
                await asyncio.sleep(0.01)
            # 400 MB of 8 MB arrays in a cycle: freed at once, not at some later collection.
            assert worker.rss > 0 and worker.rss - worker.fresh_rss < 100 * MB
            assert psutil.Process(worker.pid).memory_info().rss - worker.fresh_rss < 100 * MB
        finally:
            await pool.stop()

    run(scenario())


def test_the_collector_runs_only_when_a_job_leaves_memory_held(monkeypatch):
    import gc

    import numpy as np

    from app import worker_process

    collections = []
    collect = gc.collect
    monkeypatch.setattr(gc, "collect", lambda *a: collections.append(1) or collect(*a))
    memory = worker_process.MemoryRelease()
    small = {"data": np.ones(1 << 14)}
    small["self"] = small  # a small cycle: trimming is enough, no collection
    del small
    memory.release()
    assert collections == []
    big = {"data": [np.ones(1 << 20) for _ in range(12)]}  # 96 MB in a cycle
    big["self"] = big
    del big
    held = worker_process.current_rss()  # the cycle is garbage, but still resident
    rss = memory.release()
    assert collections == [1]
    assert held - rss > 80 * MB and memory.settled == rss


def test_stop_ends_every_worker():
    async def scenario():
        pool = await started()
        pids = pool.worker_pids()
        busy = asyncio.ensure_future(pool.run(jobs.sleep_forever))
        await asyncio.sleep(0.3)
        await pool.stop()
        with pytest.raises(ServiceUnavailable):
            await busy
        return pids

    pids = run(scenario())
    assert gone(pids, 5)


def test_sigterm_of_the_engine_leaves_no_process_behind(data_root, tmp_path):
    env = local_env(data_root, ENGINE_WORKERS=2)
    with run_service("main", env, tmp_path / "engine.log") as (base, proc):
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2
        os.kill(proc.pid, signal.SIGTERM)  # the server only, as an orchestrator does
        proc.wait(timeout=30)
        assert gone([c.pid for c in children], 10), [
            c.pid for c in children if psutil.pid_exists(c.pid)
        ]

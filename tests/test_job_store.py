"""The download job state machine (``app.mast.job_store``), without servers.

Every named transition from every state: the legal ones move the job and give up
or keep ownership as they should; the illegal ones change nothing and say so.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.mast.job_store import (
    ACTIVE,
    FileRow,
    FileStatus,
    JobStatus,
    JobStore,
)

ME = f"{os.getpid()}@{os.uname().nodename}#me"
DEAD = "999999999@" + os.uname().nodename + "#gone"  # no such pid
S = JobStatus

# transition name -> (states it may leave, state it enters)
TRANSITIONS = {
    "begin_fetching": ({S.QUEUED}, S.FETCHING_PRODUCTS),
    "begin_downloading": ({S.QUEUED, S.FETCHING_PRODUCTS}, S.DOWNLOADING),
    "complete": ({S.DOWNLOADING}, S.COMPLETE),
    "fail": (set(ACTIVE), S.FAILED),
    "pause": (set(ACTIVE), S.PAUSED),
    "cancel": (set(ACTIVE) | {S.PAUSED, S.FAILED}, S.CANCELLED),
}


def call(store: JobStore, name: str, job_id: str) -> bool:
    method = getattr(store, name)
    if name in ("begin_downloading", "complete", "fail"):
        return method(job_id, "a message")
    return method(job_id)


def job_in(store: JobStore, status: JobStatus, job_id: str = "j1") -> str:
    """A job brought to ``status`` through legal transitions only."""
    store.create_job(job_id, "obs", "http", "SCIENCE", None, "/tmp/x", "now", ME)
    path = {
        S.QUEUED: [],
        S.FETCHING_PRODUCTS: ["begin_fetching"],
        S.DOWNLOADING: ["begin_fetching", "begin_downloading"],
        S.COMPLETE: ["begin_downloading", "complete"],
        S.FAILED: ["fail"],
        S.PAUSED: ["pause"],
        S.CANCELLED: ["cancel"],
    }[status]
    for step in path:
        assert call(store, step, job_id), step
    assert store.get(job_id).status == status
    return job_id


@pytest.fixture()
def store(tmp_path) -> JobStore:
    return JobStore(tmp_path)


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
@pytest.mark.parametrize("start", list(JobStatus))
def test_every_transition_from_every_state(store, name, start):
    job_id = job_in(store, start)
    before = store.get(job_id)
    sources, target = TRANSITIONS[name]
    moved = call(store, name, job_id)
    after = store.get(job_id)
    assert moved == (start in sources)
    if not moved:  # illegal: nothing changed at all
        assert after == before
        return
    assert after.status == target
    if target in ACTIVE:
        assert after.owner == ME  # the running process keeps its job
    else:
        assert after.owner is None and after.heartbeat is None and after.control is None
        assert after.speed == 0
        assert (after.completed_at is None) == (target == S.PAUSED)
    assert (after.error == "a message") == (target == S.FAILED)


@pytest.mark.parametrize("start", list(JobStatus))
def test_claim_takes_stopped_jobs_and_refuses_live_or_finished_ones(store, start):
    job_id = job_in(store, start)
    store.request_control(job_id, "pause")
    won = store.claim(job_id, "other@host#1", stale_after=60)
    job = store.get(job_id)
    # A live owner (fresh heartbeat, this very process) keeps an active job.
    assert won == (start in (S.PAUSED, S.FAILED))
    if won:
        assert (job.status, job.owner, job.control, job.error, job.completed_at) == (
            S.QUEUED,
            "other@host#1",
            None,
            None,
            None,
        )
        assert job.message == "Resuming download"
    else:
        assert job.status == start


def test_an_active_job_of_a_dead_or_silent_owner_can_be_claimed(store):
    job_in(store, S.DOWNLOADING)
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE jobs SET owner = ?", (DEAD,))
    assert store.claim("j1", ME, stale_after=60)  # dead pid: free at once
    job_in(store, S.DOWNLOADING, "j2")
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE jobs SET heartbeat = ? WHERE job_id = 'j2'", (time.time() - 100,))
    assert store.claim("j2", "someone@else#2", stale_after=10)  # stale heartbeat


def test_claims_are_exclusive(store):
    """Of many concurrent resumes of one paused job, exactly one takes it."""
    job_in(store, S.PAUSED)
    with ThreadPoolExecutor(8) as pool:
        wins = list(pool.map(lambda i: store.claim("j1", f"{os.getpid()}@x#{i}", 60), range(8)))
    assert sum(wins) == 1
    assert store.get("j1").status == S.QUEUED


def test_fail_only_when_owned_by_the_caller(store):
    job_in(store, S.DOWNLOADING)
    assert not store.fail("j1", "not yours", owner="another@h#3")
    assert store.get("j1").status == S.DOWNLOADING
    assert store.fail("j1", "ended early", owner=ME)
    assert store.get("j1").error == "ended early"


def test_fail_orphans_in_one_transaction(store):
    job_in(store, S.DOWNLOADING, "dead")
    job_in(store, S.DOWNLOADING, "live")
    job_in(store, S.PAUSED, "paused")
    store.set_files("dead", [FileRow("a.fits", "mast:a", status=FileStatus.DOWNLOADING)])
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE jobs SET owner = ? WHERE job_id = 'dead'", (DEAD,))
    # While another connection holds the write lock, the sweep waits rather than
    # reading a state that could change before it writes.
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    done = []
    thread = threading.Thread(target=lambda: done.append(store.fail_orphans(10, "gone")))
    thread.start()
    thread.join(0.5)
    assert not done  # blocked behind the writer
    blocker.execute("UPDATE jobs SET status = 'paused', owner = NULL WHERE job_id = 'dead'")
    blocker.execute("COMMIT")
    blocker.close()
    thread.join(30)
    assert done == [[]]  # it saw the committed state: nothing orphaned any more
    with sqlite3.connect(store.path) as db:
        db.execute(
            "UPDATE jobs SET status = 'downloading', owner = ? WHERE job_id = 'dead'", (DEAD,)
        )
    assert store.fail_orphans(10, "gone") == ["dead"]
    dead = store.get("dead")
    assert (dead.status, dead.error, dead.owner) == (S.FAILED, "gone", None)
    assert dead.files[0].status == FileStatus.PAUSED
    assert store.get("live").status == S.DOWNLOADING
    assert store.get("paused").status == S.PAUSED


def test_progress_writes_do_not_change_state(store):
    job_in(store, S.DOWNLOADING)
    store.set_files("j1", [FileRow("a.fits", "mast:a", total_bytes=10)])
    row = store.get("j1").files[0]
    row.downloaded_bytes, row.status = 4, FileStatus.DOWNLOADING
    store.save_files("j1", [row])
    store.record_speed("j1", 123.0, "a.fits")
    job = store.get("j1")
    assert (job.status, job.speed, job.current_file) == (S.DOWNLOADING, 123.0, "a.fits")
    assert (job.files[0].downloaded_bytes, job.files[0].status) == (4, FileStatus.DOWNLOADING)
    assert store.pause("j1")
    store.record_speed("j1", 999.0, "b.fits")  # a late flush after the stop: ignored
    store.request_control("j1", "cancel")  # a stopped job takes no control requests
    job = store.get("j1")
    assert (job.speed, job.current_file, job.control) == (0, None, None)

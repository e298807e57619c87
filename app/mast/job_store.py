"""Durable download-job state shared by every worker process: one SQLite database.

The database lives at ``<MAST_DOWNLOAD_DIR>/.download_state/jobs.sqlite3`` in WAL
mode, so any uvicorn worker answers progress, pause and resume for any job, and
a restart loses nothing. A job is owned by one process at a time (``owner`` +
``heartbeat``).

The life of a job is a small state machine (:class:`JobStatus`). Every change of
state is a named method of :class:`JobStore` (``begin_fetching``,
``begin_downloading``, ``complete``, ``fail``, ``pause``, ``cancel``, ``claim``,
``fail_orphans``), one conditional UPDATE naming the states it may leave: it
returns False, changing nothing, when the job is in none of them. So of two
concurrent resumes exactly one wins (the loser gets 409), and a job cancelled by
one process cannot be marked complete by another::

    queued -> fetching_products -> downloading -> complete
    queued | fetching_products | downloading -> paused | failed | cancelled
    paused | failed (or active with a dead owner) --claim--> queued
    paused | failed --cancel--> cancelled
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence, Set
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from app.errors import ServiceError

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    obs_id TEXT NOT NULL,
    source TEXT NOT NULL,
    product_type TEXT NOT NULL,
    calib_level TEXT,
    status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    error TEXT,
    download_dir TEXT,
    started_at TEXT,
    completed_at TEXT,
    updated_at REAL NOT NULL,
    owner TEXT,
    heartbeat REAL,
    control TEXT,
    speed REAL NOT NULL DEFAULT 0,
    current_file TEXT
);
CREATE TABLE IF NOT EXISTS files (
    job_id TEXT NOT NULL REFERENCES jobs(job_id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    filename TEXT NOT NULL,
    uri TEXT NOT NULL,
    archive_key TEXT,
    total_bytes INTEGER NOT NULL DEFAULT 0,
    downloaded_bytes INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL DEFAULT 'pending',
    error TEXT,
    local_path TEXT,
    PRIMARY KEY (job_id, filename)
);
"""


class JobStatus(StrEnum):
    """A download job's state (the ``stage`` of its progress)."""

    QUEUED = "queued"
    FETCHING_PRODUCTS = "fetching_products"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPLETE = "complete"


class FileStatus(StrEnum):
    """One file's state inside a job."""

    PENDING = "pending"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    FAILED = "failed"
    COMPLETE = "complete"


# A process is working on these (its heartbeat says whether it still lives).
ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.FETCHING_PRODUCTS, JobStatus.DOWNLOADING})
# These may be taken up again: stopped ones, and active ones whose owner is gone.
RESUMABLE = ACTIVE | {JobStatus.PAUSED, JobStatus.FAILED}
# These end a job's progress (``is_complete``).
FINISHED = frozenset({JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELLED})
CANCELLABLE = ACTIVE | {JobStatus.PAUSED, JobStatus.FAILED}


@dataclass
class FileRow:
    filename: str
    uri: str
    archive_key: str | None = None
    total_bytes: int = 0
    downloaded_bytes: int = 0
    status: FileStatus = FileStatus.PENDING
    error: str | None = None
    local_path: str | None = None
    position: int = 0


@dataclass
class JobRow:
    job_id: str
    obs_id: str
    source: str
    product_type: str
    calib_level: list[int] | None
    status: JobStatus
    message: str
    error: str | None
    download_dir: str | None
    started_at: str | None
    completed_at: str | None
    updated_at: float
    owner: str | None
    heartbeat: float | None
    control: str | None
    speed: float
    current_file: str | None
    files: list[FileRow] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.total_bytes for f in self.files)

    @property
    def downloaded_bytes(self) -> int:
        return sum(
            min(f.downloaded_bytes, f.total_bytes) if f.total_bytes else f.downloaded_bytes
            for f in self.files
        )


class JobStore:
    """The job database. Each thread keeps one open connection.

    Long-lived connections matter for latency, not just for the cost of opening:
    when the *last* connection to a WAL database closes, SQLite checkpoints and
    fsyncs on the spot, which takes long while downloads keep the disk busy. With
    connections kept open, checkpoints happen only in the writer that crosses the
    WAL size limit (a background thread), never in a progress read on the event loop.
    """

    def __init__(self, download_dir: str | os.PathLike[str]) -> None:
        self.state_dir = Path(download_dir) / ".download_state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.state_dir / "jobs.sqlite3"
        self._local = threading.local()
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error:
            db.close()
            raise
        db.row_factory = sqlite3.Row
        return db

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = getattr(self._local, "db", None)
        try:
            if db is None:
                db = self._local.db = self._open()
        except sqlite3.Error as exc:
            raise _storage_error(exc) from None
        try:
            yield db
        except sqlite3.Error as exc:
            # Never leave this thread's connection inside a failed transaction, and
            # reopen after errors (the file may have been replaced or become readable).
            self._local.db = None
            try:
                if db.in_transaction:
                    db.rollback()
            finally:
                db.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise _storage_error(exc) from None
            raise

    # -- writes ---------------------------------------------------------------------------
    def create_job(
        self,
        job_id: str,
        obs_id: str,
        source: str,
        product_type: str,
        calib_level: list[int] | None,
        download_dir: str,
        started_at: str,
        owner: str,
    ) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO jobs (job_id, obs_id, source, product_type, calib_level, status, "
                "message, download_dir, started_at, updated_at, owner, heartbeat) "
                "VALUES (?, ?, ?, ?, ?, 'queued', 'Queued', ?, ?, ?, ?, ?)",
                (
                    job_id,
                    obs_id,
                    source,
                    product_type,
                    json.dumps(calib_level) if calib_level is not None else None,
                    download_dir,
                    started_at,
                    time.time(),
                    owner,
                    time.time(),
                ),
            )

    def set_files(self, job_id: str, files: Sequence[FileRow]) -> None:
        """The job's file list (replacing any earlier one)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM files WHERE job_id = ?", (job_id,))
            db.executemany(
                "INSERT INTO files (job_id, position, filename, uri, archive_key, total_bytes, "
                "downloaded_bytes, status, error, local_path) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        job_id,
                        i,
                        f.filename,
                        f.uri,
                        f.archive_key,
                        f.total_bytes,
                        f.downloaded_bytes,
                        str(f.status),
                        f.error,
                        f.local_path,
                    )
                    for i, f in enumerate(files)
                ],
            )
            db.execute("COMMIT")

    def save_files(self, job_id: str, files: Sequence[FileRow]) -> None:
        """Write the progress columns of these files (sizes, status, error, path)."""
        if not files:
            return
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "UPDATE files SET total_bytes = ?, downloaded_bytes = ?, status = ?, error = ?, "
                "local_path = ? WHERE job_id = ? AND filename = ?",
                [
                    (
                        f.total_bytes,
                        f.downloaded_bytes,
                        str(f.status),
                        f.error,
                        f.local_path,
                        job_id,
                        f.filename,
                    )
                    for f in files
                ],
            )
            db.execute("UPDATE jobs SET updated_at = ? WHERE job_id = ?", (time.time(), job_id))
            db.execute("COMMIT")

    def record_speed(self, job_id: str, speed: float, current_file: str | None) -> None:
        """The running job's transfer figures (no change of state)."""
        with self._connect() as db:
            db.execute(
                f"UPDATE jobs SET speed = ?, current_file = ?, updated_at = ? "
                f"WHERE job_id = ? AND status IN ({_marks(ACTIVE)})",
                (speed, current_file, time.time(), job_id, *ACTIVE),
            )

    def request_control(self, job_id: str, reason: str) -> None:
        """Ask the job's owner (another process) to pause or cancel it."""
        with self._connect() as db:
            db.execute(
                f"UPDATE jobs SET control = ?, updated_at = ? WHERE job_id = ? AND "
                f"status IN ({_marks(ACTIVE)})",
                (reason, time.time(), job_id, *ACTIVE),
            )

    # -- transitions: each one conditional UPDATE; False when the job is elsewhere --------------
    def begin_fetching(self, job_id: str) -> bool:
        return self._advance(
            job_id,
            JobStatus.FETCHING_PRODUCTS,
            {JobStatus.QUEUED},
            "Fetching the product list from MAST",
        )

    def begin_downloading(self, job_id: str, message: str) -> bool:
        return self._advance(
            job_id, JobStatus.DOWNLOADING, {JobStatus.QUEUED, JobStatus.FETCHING_PRODUCTS}, message
        )

    def complete(self, job_id: str, message: str) -> bool:
        return self._settle(job_id, JobStatus.COMPLETE, {JobStatus.DOWNLOADING}, message)

    def fail(self, job_id: str, message: str, owner: str | None = None) -> bool:
        """An active job failed (resumable); with ``owner``, only if that process owns it."""
        return self._settle(job_id, JobStatus.FAILED, ACTIVE, message, error=message, owner=owner)

    def pause(self, job_id: str) -> bool:
        return self._settle(
            job_id, JobStatus.PAUSED, ACTIVE, "Job paused - can be resumed", finished=False
        )

    def cancel(self, job_id: str) -> bool:
        return self._settle(job_id, JobStatus.CANCELLED, CANCELLABLE, "Download cancelled")

    def claim(self, job_id: str, owner: str, stale_after: float) -> bool:
        """Take a job up again (resume); False if it is not resumable or someone live runs it.

        A job in a stopped state (paused, failed) runs nowhere; an active one is free
        when its owner's heartbeat is stale or its process no longer exists. The claim
        sets the job back to ``queued`` in the same statement, so of two concurrent
        claims exactly one wins.
        """
        job = self.get(job_id)
        dead = job.owner if job and job.owner and not owner_alive(job.owner) else None
        now = time.time()
        with self._connect() as db:
            cur = db.execute(
                f"UPDATE jobs SET status = ?, owner = ?, heartbeat = ?, control = NULL, "
                f"error = NULL, message = 'Resuming download', completed_at = NULL, "
                f"updated_at = ? WHERE job_id = ? AND status IN ({_marks(RESUMABLE)}) AND "
                f"(status NOT IN ({_marks(ACTIVE)}) OR owner IS NULL OR heartbeat IS NULL "
                f"OR heartbeat < ? OR owner = ?)",
                (
                    JobStatus.QUEUED,
                    owner,
                    now,
                    now,
                    job_id,
                    *RESUMABLE,
                    *ACTIVE,
                    now - stale_after,
                    dead,
                ),
            )
            return cur.rowcount == 1

    def fail_orphans(self, stale_after: float, message: str) -> list[str]:
        """Jobs left active by a dead process become failed (and resumable).

        One ``BEGIN IMMEDIATE`` transaction: no other process can claim or update a
        job between the read that finds it orphaned and the write that fails it.
        """
        now = time.time()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(
                f"SELECT job_id, owner, heartbeat FROM jobs WHERE status IN ({_marks(ACTIVE)})",
                tuple(ACTIVE),
            ).fetchall()
            ids = [
                r["job_id"]
                for r in rows
                if not r["owner"]
                or r["heartbeat"] is None
                or r["heartbeat"] < now - stale_after
                or not owner_alive(r["owner"])
            ]
            for job_id in ids:
                db.execute(
                    "UPDATE jobs SET status = ?, error = ?, message = ?, owner = NULL, "
                    "heartbeat = NULL, speed = 0, updated_at = ? WHERE job_id = ?",
                    (JobStatus.FAILED, message, message, now, job_id),
                )
                db.execute(
                    "UPDATE files SET status = ? WHERE job_id = ? AND status = ?",
                    (FileStatus.PAUSED, job_id, FileStatus.DOWNLOADING),
                )
            db.execute("COMMIT")
        return ids

    def _advance(self, job_id: str, to: JobStatus, sources: Set[JobStatus], message: str) -> bool:
        """Into an active state: the owner keeps the job."""
        with self._connect() as db:
            cur = db.execute(
                f"UPDATE jobs SET status = ?, message = ?, updated_at = ? "
                f"WHERE job_id = ? AND status IN ({_marks(sources)})",
                (to, message, time.time(), job_id, *sources),
            )
            return cur.rowcount == 1

    def _settle(
        self,
        job_id: str,
        to: JobStatus,
        sources: Set[JobStatus],
        message: str,
        *,
        error: str | None = None,
        owner: str | None = None,
        finished: bool = True,
    ) -> bool:
        """Into a stopped state: ownership, control flag and speed are given up with it."""
        owned = " AND owner = ?" if owner is not None else ""
        completed = utc_now_iso() if finished else None
        with self._connect() as db:
            cur = db.execute(
                f"UPDATE jobs SET status = ?, message = ?, error = ?, speed = 0, control = NULL, "
                f"owner = NULL, heartbeat = NULL, current_file = NULL, completed_at = ?, "
                f"updated_at = ? WHERE job_id = ? AND status IN ({_marks(sources)}){owned}",
                (
                    to,
                    message,
                    error,
                    completed,
                    time.time(),
                    job_id,
                    *sources,
                    *((owner,) if owner is not None else ()),
                ),
            )
            return cur.rowcount == 1

    def heartbeat(self, owner: str) -> None:
        with self._connect() as db:
            db.execute(
                f"UPDATE jobs SET heartbeat = ? WHERE owner = ? AND status IN ({_marks(ACTIVE)})",
                (time.time(), owner, *ACTIVE),
            )

    def delete_job(self, job_id: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def purge_finished(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds
        with self._connect() as db:
            cur = db.execute(
                "DELETE FROM jobs WHERE status IN (?, ?) AND updated_at < ?",
                (JobStatus.COMPLETE, JobStatus.CANCELLED, cutoff),
            )
            return cur.rowcount

    # -- reads ------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRow | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            files = db.execute(
                "SELECT * FROM files WHERE job_id = ? ORDER BY position", (job_id,)
            ).fetchall()
        return _job(row, files)

    def all_jobs(self) -> list[JobRow]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY started_at").fetchall()
            files = db.execute("SELECT * FROM files ORDER BY job_id, position").fetchall()
        by_job: dict[str, list[sqlite3.Row]] = {}
        for f in files:
            by_job.setdefault(f["job_id"], []).append(f)
        return [_job(r, by_job.get(r["job_id"], [])) for r in rows]


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _marks(values: Set[object]) -> str:
    return ",".join("?" for _ in values)


def owner_token() -> str:
    """``<pid>@<host>#<random>``: who runs a job, for liveness checks."""
    import socket
    import uuid

    return f"{os.getpid()}@{socket.gethostname()}#{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool:
    """Whether the process named in an owner token still runs.

    Only a process on this host can be checked; one on another host (containers
    sharing the volume) is judged by its heartbeat alone.
    """
    import socket

    try:
        pid_text, rest = owner.split("@", 1)
        pid = int(pid_text)
    except ValueError:
        return False
    if rest.split("#", 1)[0] != socket.gethostname():
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _storage_error(exc: sqlite3.Error) -> ServiceError:
    text = str(exc).lower()
    if "full" in text:
        return ServiceError(
            "The download directory is full: cannot record download jobs", status_code=507
        )
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return ServiceError(
            "The download directory is not writable: cannot record download jobs", status_code=507
        )
    return ServiceError(f"Download job store error: {exc}", status_code=503)


def _job(row: sqlite3.Row, files: Sequence[sqlite3.Row]) -> JobRow:
    return JobRow(
        job_id=row["job_id"],
        obs_id=row["obs_id"],
        source=row["source"],
        product_type=row["product_type"],
        calib_level=json.loads(row["calib_level"]) if row["calib_level"] else None,
        status=JobStatus(row["status"]),
        message=row["message"],
        error=row["error"],
        download_dir=row["download_dir"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        updated_at=row["updated_at"],
        owner=row["owner"],
        heartbeat=row["heartbeat"],
        control=row["control"],
        speed=row["speed"] or 0.0,
        current_file=row["current_file"],
        files=[
            FileRow(
                filename=f["filename"],
                uri=f["uri"],
                archive_key=f["archive_key"],
                total_bytes=f["total_bytes"],
                downloaded_bytes=f["downloaded_bytes"],
                status=FileStatus(f["status"]),
                error=f["error"],
                local_path=f["local_path"],
                position=f["position"],
            )
            for f in files
        ],
    )

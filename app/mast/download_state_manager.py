"""Durable download-job state shared by every worker process: one SQLite database.

The database lives at ``<MAST_DOWNLOAD_DIR>/.download_state/jobs.sqlite3`` in WAL
mode, so any uvicorn worker answers progress, pause and resume for any job, and
a restart loses nothing. Each statement is its own short transaction; a job is
owned by one process at a time (``owner`` + ``heartbeat``), and ownership is
taken with a single conditional UPDATE, which makes a concurrent resume of the
same job impossible (the loser gets 409).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

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

ACTIVE = ("queued", "fetching_products", "downloading")
RESUMABLE = ("paused", "failed", "downloading", "fetching_products", "queued")
FINISHED = ("complete", "failed", "cancelled")


@dataclass
class FileRow:
    filename: str
    uri: str
    archive_key: str | None = None
    total_bytes: int = 0
    downloaded_bytes: int = 0
    status: str = "pending"
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
    status: str
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
        return sum(min(f.downloaded_bytes, f.total_bytes) if f.total_bytes else f.downloaded_bytes
                   for f in self.files)


class JobStore:
    """The job database. Each thread keeps one open connection.

    Long-lived connections matter for latency, not just for the cost of opening:
    when the *last* connection to a WAL database closes, SQLite checkpoints and
    fsyncs on the spot, which takes long while downloads keep the disk busy. With
    connections kept open, checkpoints happen only in the writer that crosses the
    WAL size limit (a background thread), never in a progress read on the event loop.
    """

    def __init__(self, download_dir: str | os.PathLike) -> None:
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
    def create_job(self, job_id: str, obs_id: str, source: str, product_type: str,
                   calib_level: list[int] | None, download_dir: str, started_at: str,
                   owner: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO jobs (job_id, obs_id, source, product_type, calib_level, status, "
                "message, download_dir, started_at, updated_at, owner, heartbeat) "
                "VALUES (?, ?, ?, ?, ?, 'queued', 'Queued', ?, ?, ?, ?, ?)",
                (job_id, obs_id, source, product_type,
                 json.dumps(calib_level) if calib_level is not None else None,
                 download_dir, started_at, time.time(), owner, time.time()))

    def update_job(self, job_id: str, **fields) -> None:
        """Update columns of a job. Leaving the active states also gives up ownership,
        in the same statement, so a resume never sees a stopped job still owned."""
        if not fields:
            return
        if "status" in fields and fields["status"] not in ACTIVE:
            fields["owner"] = None
            fields["heartbeat"] = None
        fields["updated_at"] = time.time()
        columns = ", ".join(f"{k} = ?" for k in fields)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {columns} WHERE job_id = ?", (*fields.values(), job_id))

    def set_files(self, job_id: str, files: list[FileRow]) -> None:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM files WHERE job_id = ?", (job_id,))
            db.executemany(
                "INSERT INTO files (job_id, position, filename, uri, archive_key, total_bytes, "
                "downloaded_bytes, status, error, local_path) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(job_id, i, f.filename, f.uri, f.archive_key, f.total_bytes, f.downloaded_bytes,
                  f.status, f.error, f.local_path) for i, f in enumerate(files)])
            db.execute("COMMIT")

    def update_files(self, job_id: str, updates: dict[str, dict]) -> None:
        """Several file rows at once: ``{filename: {column: value}}``."""
        if not updates:
            return
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            for filename, values in updates.items():
                columns = ", ".join(f"{k} = ?" for k in values)
                db.execute(f"UPDATE files SET {columns} WHERE job_id = ? AND filename = ?",
                           (*values.values(), job_id, filename))
            db.execute("UPDATE jobs SET updated_at = ? WHERE job_id = ?", (time.time(), job_id))
            db.execute("COMMIT")

    def request_control(self, job_id: str, action: str | None) -> None:
        self.update_job(job_id, control=action)

    def claim(self, job_id: str, owner: str, stale_after: float,
              allowed: tuple[str, ...] = RESUMABLE) -> bool:
        """Take ownership of a job that nobody live runs; False if someone does.

        A job in a stopped state (paused, failed) runs nowhere; an active one is free
        when its owner's heartbeat is stale or its process no longer exists. The claim
        sets the job back to ``queued`` in the same statement, so of two concurrent
        claims exactly one wins.
        """
        job = self.get(job_id)
        dead = job.owner if job and job.owner and not owner_alive(job.owner) else None
        now = time.time()
        marks = ",".join("?" for _ in allowed)
        active = ",".join("?" for _ in ACTIVE)
        with self._connect() as db:
            cur = db.execute(
                f"UPDATE jobs SET status = 'queued', owner = ?, heartbeat = ?, control = NULL, "
                f"updated_at = ? "
                f"WHERE job_id = ? AND status IN ({marks}) AND "
                f"(status NOT IN ({active}) OR owner IS NULL OR heartbeat IS NULL "
                f"OR heartbeat < ? OR owner = ?)",
                (owner, now, now, job_id, *allowed, *ACTIVE, now - stale_after, dead))
            return cur.rowcount == 1

    def fail_if_active(self, job_id: str, owner: str, message: str) -> None:
        """Mark failed a job this owner left in an active state (its task ended early)."""
        marks = ",".join("?" for _ in ACTIVE)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET status = 'failed', error = ?, message = ?, owner = NULL,"
                       f" heartbeat = NULL, speed = 0, updated_at = ? WHERE job_id = ? AND "
                       f"owner = ? AND status IN ({marks})",
                       (message, message, time.time(), job_id, owner, *ACTIVE))

    def heartbeat(self, owner: str) -> None:
        marks = ",".join("?" for _ in ACTIVE)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET heartbeat = ? WHERE owner = ? AND status IN ({marks})",
                       (time.time(), owner, *ACTIVE))

    def delete_job(self, job_id: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def fail_orphans(self, stale_after: float, message: str) -> list[str]:
        """Jobs left running by a dead process become failed (and resumable)."""
        now = time.time()
        marks = ",".join("?" for _ in ACTIVE)
        with self._connect() as db:
            rows = db.execute(f"SELECT job_id, owner, heartbeat FROM jobs WHERE status IN "
                              f"({marks})", ACTIVE).fetchall()
            ids = [r["job_id"] for r in rows
                   if not r["owner"] or r["heartbeat"] is None
                   or r["heartbeat"] < now - stale_after or not owner_alive(r["owner"])]
            for job_id in ids:
                db.execute("UPDATE jobs SET status = 'failed', error = ?, message = ?, owner = NULL,"
                           " heartbeat = NULL, speed = 0, updated_at = ? WHERE job_id = ?",
                           (message, message, now, job_id))
                db.execute("UPDATE files SET status = 'paused' WHERE job_id = ? AND status = "
                           "'downloading'", (job_id,))
        return ids

    def purge_finished(self, older_than_seconds: float) -> int:
        cutoff = time.time() - older_than_seconds
        with self._connect() as db:
            cur = db.execute("DELETE FROM jobs WHERE status IN ('complete', 'cancelled') AND "
                             "updated_at < ?", (cutoff,))
            return cur.rowcount

    # -- reads ------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRow | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            files = db.execute("SELECT * FROM files WHERE job_id = ? ORDER BY position",
                               (job_id,)).fetchall()
        return _job(row, files)

    def all_jobs(self) -> list[JobRow]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY started_at").fetchall()
            files = db.execute("SELECT * FROM files ORDER BY job_id, position").fetchall()
        by_job: dict[str, list] = {}
        for f in files:
            by_job.setdefault(f["job_id"], []).append(f)
        return [_job(r, by_job.get(r["job_id"], [])) for r in rows]

    def referenced_paths(self) -> set[str]:
        with self._connect() as db:
            rows = db.execute("SELECT local_path FROM files WHERE local_path IS NOT NULL").fetchall()
        return {r["local_path"] for r in rows}


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
        return ServiceError("The download directory is full: cannot record download jobs",
                            status_code=507)
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return ServiceError("The download directory is not writable: cannot record download "
                            "jobs", status_code=507)
    return ServiceError(f"Download job store error: {exc}", status_code=503)


def _job(row: sqlite3.Row, files) -> JobRow:
    return JobRow(
        job_id=row["job_id"], obs_id=row["obs_id"], source=row["source"],
        product_type=row["product_type"],
        calib_level=json.loads(row["calib_level"]) if row["calib_level"] else None,
        status=row["status"], message=row["message"], error=row["error"],
        download_dir=row["download_dir"], started_at=row["started_at"],
        completed_at=row["completed_at"], updated_at=row["updated_at"], owner=row["owner"],
        heartbeat=row["heartbeat"], control=row["control"], speed=row["speed"] or 0.0,
        current_file=row["current_file"],
        files=[FileRow(filename=f["filename"], uri=f["uri"], archive_key=f["archive_key"],
                       total_bytes=f["total_bytes"], downloaded_bytes=f["downloaded_bytes"],
                       status=f["status"], error=f["error"], local_path=f["local_path"],
                       position=f["position"]) for f in files])

"""Byte-level progress: speed over a sliding window, ETA, and the progress body.

The running job keeps a :class:`ProgressMeter` in memory and writes its
figures to the job store a few times a second; :func:`progress_body` turns a
stored job into the response of ``GET /mast/download/progress-chunked`` (any
worker process can answer it).
"""

from __future__ import annotations

import time
from collections import deque

from app.mast.job_store import ACTIVE, FINISHED, RESUMABLE, FileStatus, JobRow, JobStatus
from app.mast.models import ProgressResponse, ResumableJob


class ProgressMeter:
    """Bytes per second over the last ``window`` seconds."""

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, total_bytes: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.samples.append((now, total_bytes))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()

    def speed(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        if t1 <= t0:
            return 0.0
        return max(0.0, (b1 - b0) / (t1 - t0))


def _percent(done: int, total: int) -> float:
    if total <= 0:
        return 0.0
    return round(min(100.0, 100.0 * done / total), 1)


def progress_body(job: JobRow) -> ProgressResponse:
    """The §2.10 progress object of a stored job (integers stay integers)."""
    total = int(job.total_bytes)
    done = int(min(job.downloaded_bytes, total) if total else job.downloaded_bytes)
    complete_files = [f for f in job.files if f.status == FileStatus.COMPLETE]
    stage = job.status
    if stage == JobStatus.COMPLETE:
        progress = 100
    elif total > 0:
        progress = int(100 * done / total)
        progress = min(progress, 99)
    else:
        progress = 0
    running = stage in ACTIVE
    speed = float(job.speed) if running else 0.0
    eta = None
    if running and speed > 0 and total > 0:
        eta = round(max(0.0, (total - done) / speed), 1)
    resumable = job.source == "http" and stage in RESUMABLE
    return ProgressResponse.model_validate(
        {
            "job_id": job.job_id,
            "obs_id": job.obs_id,
            "stage": stage,
            "message": job.message,
            "progress": int(progress),
            "total_files": len(job.files),
            "downloaded_files": len(complete_files),
            "current_file": job.current_file if running else None,
            "files": [f.local_path for f in complete_files if f.local_path],
            "error": job.error,
            "started_at": job.started_at,
            "completed_at": job.completed_at,
            "download_dir": job.download_dir,
            "is_complete": stage in FINISHED,
            "total_bytes": total,
            "downloaded_bytes": done,
            "download_progress_percent": _percent(done, total),
            "speed_bytes_per_sec": round(speed, 1),
            "eta_seconds": eta,
            "file_progress": [
                {
                    "filename": f.filename,
                    "total_bytes": int(f.total_bytes),
                    "downloaded_bytes": int(
                        min(f.downloaded_bytes, f.total_bytes)
                        if f.total_bytes
                        else f.downloaded_bytes
                    ),
                    "progress_percent": 100.0
                    if f.status == FileStatus.COMPLETE
                    else _percent(f.downloaded_bytes, f.total_bytes),
                    "status": f.status,
                }
                for f in job.files
            ],
            "is_resumable": bool(resumable),
        }
    )


def resumable_summary(job: JobRow) -> ResumableJob:
    total = int(job.total_bytes)
    done = int(job.downloaded_bytes)
    return ResumableJob.model_validate(
        {
            "job_id": job.job_id,
            "obs_id": job.obs_id,
            "total_bytes": total,
            "downloaded_bytes": min(done, total) if total else done,
            "progress_percent": _percent(done, total),
            "status": job.status,
            "total_files": len(job.files),
            "completed_files": sum(1 for f in job.files if f.status == FileStatus.COMPLETE),
            "started_at": job.started_at,
        }
    )

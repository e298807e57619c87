"""Download jobs: start, run, pause, resume, cancel, dismiss; durable and shared.

Every job lives in the SQLite job store, so any worker process answers for any
job. The process that runs a job *owns* it (``owner`` + a heartbeat every
second); requests that reach another process act through the store: a pause or
cancel is written as a control flag that the owner polls twice a second, and a
resume takes ownership with one conditional UPDATE (a second concurrent resume
finds the job owned and gets 409). A job whose owner stopped beating (the
process died or restarted) is marked failed and resumable at the next start-up,
and any process may resume it: partial files continue from their byte offset.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from app.config import Settings
from app.errors import BadRequest, Conflict, NotFound, UpstreamError
from app.mast.chunked_downloader import FileTarget, download_file, fetch_size
from app.mast.download_state_manager import (
    ACTIVE,
    RESUMABLE,
    FileRow,
    JobRow,
    JobStore,
    owner_alive,
    owner_token,
)
from app.mast.download_tracker import ProgressMeter, progress_body, resumable_summary
from app.mast.mast_service import MastService, ProductFile, utc_now_iso
from app.mast.part_file import (
    DownloadFailed,
    DownloadStopped,
    describe_os_error,
    exclusive_folder,
    part_path,
)
from app.storage.helpers import is_within, safe_join
from app.storage.local_storage import LocalStorage
from app.storage.provider import StorageProvider

logger = logging.getLogger(__name__)

NO_PRODUCTS = "NO_PRODUCTS: No downloadable FITS products found for this observation"
STALE_AFTER = 10.0
HEARTBEAT_EVERY = 1.0
CONTROL_POLL = 0.5
FLUSH_EVERY = 0.25
KEEP_FINISHED = 7 * 24 * 3600
PARALLEL_FILES = 3


def _background_priority(nice: int) -> None:
    """Transfers are bulk work: on a busy machine, let requests be scheduled first.

    On Linux a thread has its own nice value; raising it needs no privilege.
    """
    if not nice:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):
        pass


class Recorder:
    """In-memory progress of one running job, flushed to the store a few times a second."""

    def __init__(self, store: JobStore, job_id: str, files: list[FileRow]) -> None:
        self.store = store
        self.job_id = job_id
        self.lock = threading.Lock()
        self.bytes = {f.filename: f.downloaded_bytes for f in files}
        self.sizes = {f.filename: f.total_bytes for f in files}
        self.changes: dict[str, dict] = {}
        self.meter = ProgressMeter()
        self.current: str | None = None

    def total_downloaded(self) -> int:
        return sum(self.bytes.values())

    def add(self, filename: str, n: int) -> None:
        with self.lock:
            self.bytes[filename] = max(0, self.bytes.get(filename, 0) + n)
            self.current = filename
            change = self.changes.setdefault(filename, {})
            change["downloaded_bytes"] = self.bytes[filename]
            change.setdefault("status", "downloading")

    def set(self, filename: str, **values) -> None:
        with self.lock:
            if "downloaded_bytes" in values:
                self.bytes[filename] = values["downloaded_bytes"]
            if "total_bytes" in values:
                self.sizes[filename] = values["total_bytes"]
            self.changes.setdefault(filename, {}).update(values)

    def flush(self) -> None:
        with self.lock:
            changes, self.changes = self.changes, {}
            total = self.total_downloaded()
            current = self.current
        self.meter.add(total)
        self.store.update_files(self.job_id, changes)
        self.store.update_job(self.job_id, speed=self.meter.speed(), current_file=current)

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await asyncio.to_thread(self.flush)


@dataclass
class Outcome:
    complete: list[str]
    failed: dict[str, str]
    stopped: bool

    def fail(self, recorder: Recorder, filename: str, exc: Exception) -> None:
        """Record a file's failure; an unexpected error is logged with its traceback."""
        if isinstance(exc, DownloadFailed):
            message = str(exc)
        else:
            logger.error("download of %s failed", filename, exc_info=exc)
            message = f"{filename}: {type(exc).__name__}: {exc}"
        self.failed[filename] = message
        recorder.set(filename, status="failed", error=message)


class DownloadManager:
    def __init__(self, settings: Settings, storage: StorageProvider, mast: MastService) -> None:
        self.settings = settings
        self.storage = storage
        self.mast = mast
        self.root = Path(os.path.realpath(settings.MAST_DOWNLOAD_DIR))
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(self.root)
        self.owner = owner_token()
        self.tasks: dict[str, asyncio.Task] = {}
        self.stops: dict[str, str] = {}
        self._background: list[asyncio.Task] = []
        # Every file transfer (HTTP or S3) is blocking code in a thread of its own, so
        # a fast download never delays the server's loop (progress polls, /health),
        # and store reads and writes (default executor) never queue behind transfers.
        self.transfers = ThreadPoolExecutor(max_workers=16, thread_name_prefix="transfer",
                                            initializer=_background_priority,
                                            initargs=(settings.MAST_TRANSFER_NICE,))

    # -- life cycle -------------------------------------------------------------------------
    async def startup(self) -> None:
        await asyncio.to_thread(self.cleanup)
        self._background = [asyncio.create_task(self._heartbeat_loop()),
                            asyncio.create_task(self._control_loop())]

    async def shutdown(self) -> None:
        for job_id in list(self.tasks):
            self.stops[job_id] = "interrupt"
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=10)
        for task in self._background:
            task.cancel()
        self.transfers.shutdown(wait=False, cancel_futures=True)

    def cleanup(self) -> None:
        """Start-up hygiene: orphaned jobs become resumable failures, old finished jobs
        and ``.part`` files that no resumable job owns are removed."""
        orphans = self.store.fail_orphans(
            STALE_AFTER, "Interrupted: the download service stopped; resume to continue")
        if orphans:
            logger.info("Marked %d interrupted download job(s) resumable", len(orphans))
        self.store.purge_finished(KEEP_FINISHED)
        keep: set[Path] = set()
        for job in self.store.all_jobs():
            if job.status in RESUMABLE:
                for f in job.files:
                    keep.add(part_path(self.root / job.obs_id / f.filename))
        for part in self.root.glob("*/*.part"):
            if part not in keep:
                try:
                    part.unlink()
                    logger.info("Removed orphaned partial file %s", part.name)
                except OSError:
                    pass

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.store.heartbeat, self.owner)
            except Exception:  # keep beating even if one write fails
                logger.exception("heartbeat failed")
            await asyncio.sleep(HEARTBEAT_EVERY)

    async def _control_loop(self) -> None:
        """Pick up pause/cancel requests that other worker processes wrote."""
        while True:
            await asyncio.sleep(CONTROL_POLL)
            if not self.tasks:
                continue
            try:
                jobs = await asyncio.to_thread(
                    lambda: [self.store.get(j) for j in list(self.tasks)])
            except Exception:
                logger.exception("control poll failed")
                continue
            for job in jobs:
                if job is not None and job.control in ("pause", "cancel"):
                    self.stops.setdefault(job.job_id, job.control)

    # -- paths ----------------------------------------------------------------------------------
    def obs_dir(self, obs_id: str) -> Path:
        path = safe_join(self.root, obs_id)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DownloadFailed(describe_os_error(exc, path)) from None
        return path

    # -- starting ---------------------------------------------------------------------------------
    async def start(self, obs_id: str, product_type: str, calib_level: list[int] | None,
                    source: str) -> str:
        job_id = uuid.uuid4().hex[:12]
        await asyncio.to_thread(self.store.create_job, job_id, obs_id, source, product_type,
                                calib_level, str(self.root / obs_id), utc_now_iso(), self.owner)
        self._launch(job_id, resume=False)
        return job_id

    def _launch(self, job_id: str, resume: bool) -> None:
        self.stops.pop(job_id, None)
        task = asyncio.create_task(self._run(job_id, resume))
        self.tasks[job_id] = task

        def forget(done: asyncio.Task) -> None:
            if self.tasks.get(job_id) is done:  # a resumed job may already have a new task
                del self.tasks[job_id]

        task.add_done_callback(forget)

    async def resume(self, job_id: str) -> None:
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None:
            raise NotFound(f"No resumable state found for job {job_id}")
        if job.status not in RESUMABLE:
            raise BadRequest(f"Job {job_id} is not resumable (status: {job.status})")
        if not await asyncio.to_thread(self.store.claim, job_id, self.owner, STALE_AFTER):
            raise Conflict(f"Job {job_id} is already being resumed")
        updates = {}
        for f in job.files:
            if f.status == "complete":
                continue
            part = part_path(self.root / job.obs_id / f.filename)
            size = part.stat().st_size if part.exists() else 0
            updates[f.filename] = {"downloaded_bytes": size, "status": "pending", "error": None}
        await asyncio.to_thread(self.store.update_files, job_id, updates)
        await asyncio.to_thread(self.store.update_job, job_id, status="queued", error=None,
                                message="Resuming download", completed_at=None)
        self._launch(job_id, resume=True)

    # -- running -------------------------------------------------------------------------------------
    async def _run(self, job_id: str, resume: bool) -> None:
        store = self.store
        try:
            job = await asyncio.to_thread(store.get, job_id)
            obs_dir = self.obs_dir(job.obs_id)
            with exclusive_folder(obs_dir, job.obs_id):
                await self._run_locked(job_id, job, obs_dir, resume)
        except asyncio.TimeoutError:
            await self._fail(job_id, "Timed out while asking MAST for the product list")
        except UpstreamError as exc:
            await self._fail(job_id, exc.detail)
        except DownloadFailed as exc:
            await self._fail(job_id, str(exc))
        except Exception as exc:  # never leave a job 'downloading' behind an error
            logger.exception("download job %s crashed", job_id)
            await self._fail(job_id, f"Download failed: {exc}")
        finally:
            # Normally the final status update already gave the job up; this catches a
            # task that ended without one (e.g. the store refused the write).
            if self.tasks.get(job_id) is asyncio.current_task():
                try:
                    await asyncio.to_thread(store.fail_if_active, job_id, self.owner,
                                            "Download stopped unexpectedly; resume to continue")
                except Exception:
                    logger.exception("could not close job %s", job_id)

    async def _run_locked(self, job_id: str, job: JobRow, obs_dir: Path, resume: bool) -> None:
        """The job's work, while it alone writes into ``obs_dir``."""
        store = self.store
        if not resume or not job.files:
            await asyncio.to_thread(store.update_job, job_id, status="fetching_products",
                                    message="Fetching the product list from MAST")
            products = await asyncio.wait_for(asyncio.to_thread(
                self.mast.files_to_download, job.obs_id, job.product_type, job.calib_level),
                self.settings.MAST_SEARCH_TIMEOUT)
            if not products:
                await asyncio.to_thread(store.update_job, job_id, status="failed",
                                        error=NO_PRODUCTS, message=NO_PRODUCTS,
                                        completed_at=utc_now_iso())
                return
            keys = {}
            if job.source == "s3":
                keys = await asyncio.to_thread(self.mast.archive_keys, products, job.obs_id)
            rows = [FileRow(filename=p.filename, uri=p.uri, archive_key=keys.get(p.filename),
                            total_bytes=p.size) for p in products]
            for row in rows:
                part = part_path(obs_dir / row.filename)
                if job.source == "http" and part.exists():
                    row.downloaded_bytes = part.stat().st_size
            await asyncio.to_thread(store.set_files, job_id, rows)
            job = await asyncio.to_thread(store.get, job_id)
        total = sum(f.total_bytes for f in job.files)
        pending = [f for f in job.files if f.status != "complete"]
        self._check_space(obs_dir, pending)
        await asyncio.to_thread(
            store.update_job, job_id, status="downloading",
            message=f"Downloading {len(job.files)} files ({total / 1e6:.1f} MB)...")
        recorder = Recorder(store, job_id, job.files)
        flusher = asyncio.create_task(recorder.flush_forever())
        try:
            if job.source == "s3":
                outcome = await self._download_s3(job_id, job.obs_id, obs_dir, pending,
                                                  recorder)
            else:
                outcome = await self._download_http(job_id, obs_dir, pending, recorder)
        finally:
            flusher.cancel()
            await asyncio.to_thread(recorder.flush)
        await self._finish(job_id, job.obs_id, obs_dir, outcome)

    def _check_space(self, obs_dir: Path, files: list[FileRow]) -> None:
        """Refuse to start when the files cannot fit (instead of filling the disk)."""
        import shutil

        needed = sum(max(0, f.total_bytes - f.downloaded_bytes) for f in files)
        free = shutil.disk_usage(obs_dir).free
        if needed + self.settings.MAST_MIN_FREE_BYTES > free:
            raise DownloadFailed(
                f"Disk full: the files need {needed / 1e6:.1f} MB (plus "
                f"{self.settings.MAST_MIN_FREE_BYTES / 1e6:.0f} MB kept free) and only "
                f"{free / 1e6:.1f} MB are free")

    async def _fail(self, job_id: str, message: str) -> None:
        await asyncio.to_thread(self.store.update_job, job_id, status="failed", error=message,
                                message=message, speed=0, completed_at=utc_now_iso())

    async def _finish(self, job_id: str, obs_id: str, obs_dir: Path, outcome: Outcome) -> None:
        stop = self.stops.pop(job_id, None)
        store = self.store
        if stop == "cancel":
            for part in obs_dir.glob("*.part"):
                part.unlink(missing_ok=True)
            await asyncio.to_thread(store.update_job, job_id, status="cancelled",
                                    message="Download cancelled", speed=0, control=None,
                                    completed_at=utc_now_iso())
            return
        if stop in ("pause", "interrupt") and outcome.stopped:
            if stop == "pause":
                await asyncio.to_thread(store.update_job, job_id, status="paused",
                                        message="Job paused - can be resumed", speed=0,
                                        control=None)
            else:
                await self._fail(job_id, "Interrupted: the download service stopped; "
                                         "resume to continue")
            return
        if outcome.failed:
            first = next(iter(outcome.failed.values()))
            message = f"{len(outcome.failed)} file(s) failed to download: {first}"
            await self._fail(job_id, message)
            return
        job = await asyncio.to_thread(store.get, job_id)
        try:
            await asyncio.to_thread(self._persist, obs_id, job.files)
        except Exception as exc:
            await self._fail(job_id, f"Downloaded, but could not store the files: {exc}")
            return
        await asyncio.to_thread(store.update_job, job_id, status="complete", speed=0,
                                message=f"Downloaded {len(job.files)} files", error=None,
                                current_file=None, completed_at=utc_now_iso(), control=None)

    def _persist(self, obs_id: str, files: list[FileRow]) -> None:
        """Completed files into storage: in place locally, uploaded for S3."""
        for f in files:
            if not f.local_path:
                continue
            if isinstance(self.storage, LocalStorage) and is_within(f.local_path,
                                                                    self.storage.root):
                continue
            self.storage.put_file(f"mast/{obs_id}/{f.filename}", Path(f.local_path))

    def _stopping(self, job_id: str) -> bool:
        return job_id in self.stops

    async def _download_http(self, job_id: str, obs_dir: Path, files: list[FileRow],
                             recorder: Recorder) -> Outcome:
        """Up to three files at once, each in a transfer thread."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(PARALLEL_FILES)
        outcome = Outcome(complete=[], failed={}, stopped=False)

        def transfer(f: FileRow, target: FileTarget) -> int:
            stopping = partial(self._stopping, job_id)
            if not target.expected_size:
                target.expected_size = fetch_size(target.url, should_stop=stopping)
                recorder.set(f.filename, total_bytes=target.expected_size)
            recorder.set(f.filename, status="downloading")
            return download_file(target, on_bytes=lambda n: recorder.add(f.filename, n),
                                 should_stop=stopping)

        async def one(f: FileRow) -> None:
            async with gate:
                if self._stopping(job_id):
                    outcome.stopped = True
                    recorder.set(f.filename, status="paused")
                    return
                final = obs_dir / f.filename
                target = FileTarget(url=self.mast.download_url(f.uri), final_path=final,
                                    expected_size=f.total_bytes)
                try:
                    size = await loop.run_in_executor(self.transfers, transfer, f, target)
                except DownloadStopped:
                    outcome.stopped = True
                    recorder.set(f.filename, status="paused")
                    return
                except Exception as exc:  # fails this file; the others go on
                    outcome.fail(recorder, f.filename, exc)
                    return
                recorder.set(f.filename, status="complete", total_bytes=size,
                             downloaded_bytes=size, local_path=str(final), error=None)
                outcome.complete.append(str(final))

        try:
            await asyncio.gather(*(one(f) for f in files))
        except asyncio.CancelledError:  # e.g. the synchronous download's time limit
            self.stops[job_id] = "cancel"  # the transfer threads stop at their next read
            raise
        return outcome

    async def _download_s3(self, job_id: str, obs_id: str, obs_dir: Path, files: list[FileRow],
                           recorder: Recorder) -> Outcome:
        from app.mast.mast_service import default_archive_key
        from app.mast.s3_downloader import download_object, make_archive_client, object_size

        loop = asyncio.get_running_loop()
        client = make_archive_client(self.settings.MAST_S3_ENDPOINT, self.settings.MAST_S3_REGION)
        bucket = self.settings.MAST_S3_BUCKET
        gate = asyncio.Semaphore(2)
        outcome = Outcome(complete=[], failed={}, stopped=False)

        async def one(f: FileRow) -> None:
            async with gate:
                final = obs_dir / f.filename
                key = f.archive_key or default_archive_key(obs_id, f.filename)
                try:
                    size = await loop.run_in_executor(self.transfers, object_size, client,
                                                      bucket, key)
                    recorder.set(f.filename, total_bytes=size, downloaded_bytes=0,
                                 status="downloading")
                    await loop.run_in_executor(self.transfers, partial(
                        download_object, client, bucket, key, final, size,
                        on_bytes=lambda n: recorder.add(f.filename, n),
                        should_stop=lambda: self._stopping(job_id)))
                except DownloadStopped:
                    outcome.stopped = True
                    part_path(final).unlink(missing_ok=True)
                    recorder.set(f.filename, status="paused", downloaded_bytes=0)
                    return
                except Exception as exc:  # fails this file; the others go on
                    part_path(final).unlink(missing_ok=True)
                    outcome.fail(recorder, f.filename, exc)
                    return
                recorder.set(f.filename, status="complete", downloaded_bytes=size,
                             local_path=str(final), error=None)
                outcome.complete.append(str(final))

        await asyncio.gather(*(one(f) for f in files))
        return outcome

    # -- control -----------------------------------------------------------------------------------
    async def _stop(self, job_id: str, action: str, wait: float = 10.0) -> None:
        """Ask the owner (this process or another) to stop, and wait until it has."""
        if job_id in self.tasks:
            self.stops[job_id] = action
            await asyncio.wait([self.tasks[job_id]], timeout=wait)
            return
        await asyncio.to_thread(self.store.request_control, job_id, action)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            job = await asyncio.to_thread(self.store.get, job_id)
            if job is None or job.status not in ACTIVE:
                return
            if job.heartbeat is None or time.time() - job.heartbeat > STALE_AFTER:
                # Nobody is running it any more: record the stop ourselves.
                status = "paused" if action == "pause" else "cancelled"
                await asyncio.to_thread(self.store.update_job, job_id, status=status,
                                        control=None, speed=0,
                                        message="Job paused - can be resumed"
                                        if action == "pause" else "Download cancelled")
                return
            await asyncio.sleep(0.1)

    async def pause(self, job_id: str) -> dict:
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None or job.status not in ACTIVE:
            raise NotFound(f"No active download for job {job_id}")
        await self._stop(job_id, "pause")
        message = "S3 download paused" if job.source == "s3" else "Download paused"
        return {"job_id": job_id, "status": "paused", "message": message}

    async def cancel(self, job_id: str) -> dict:
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None:
            raise NotFound(f"No download found for job {job_id}")
        if job.status in ACTIVE:
            await self._stop(job_id, "cancel")
        else:
            await asyncio.to_thread(self.store.update_job, job_id, status="cancelled",
                                    message="Download cancelled")
        return {"job_id": job_id, "status": "cancelled", "message": "Download cancelled"}

    async def dismiss(self, job_id: str, delete_files: bool) -> dict:
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None:
            raise NotFound(f"Job {job_id} not found")
        if job.status in ACTIVE and job.owner:
            await self._stop(job_id, "cancel")
        deleted = 0
        if delete_files:
            obs_dir = self.root / job.obs_id
            for f in job.files:
                for candidate in (f.local_path, str(part_path(obs_dir / f.filename))):
                    if not candidate:
                        continue
                    real = os.path.realpath(candidate)
                    if is_within(real, self.root) and os.path.isfile(real):
                        os.unlink(real)
                        deleted += 1 if not real.endswith(".part") else 0
        await asyncio.to_thread(self.store.delete_job, job_id)
        return {"job_id": job_id, "dismissed": True, "deleted_files": deleted}

    # -- reading --------------------------------------------------------------------------------------
    async def progress(self, job_id: str) -> dict:
        # A primary-key read of a few rows (well under a millisecond): done inline, as
        # handing it to a thread costs more than it saves while transfers hold the GIL.
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(f"Job {job_id} not found")
        if job.status in ACTIVE and job_id not in self.tasks and (
                (job.heartbeat is not None and time.time() - job.heartbeat > STALE_AFTER)
                or (job.owner and not owner_alive(job.owner))):
            # Its owner stopped beating (crashed, or cannot write): say so rather than
            # letting clients poll a frozen job forever.
            job.status = "failed"
            job.error = job.message = ("Interrupted: the download stopped unexpectedly; "
                                       "resume to continue")
        return progress_body(job)

    async def resumable(self) -> list[dict]:
        jobs = await asyncio.to_thread(self.store.all_jobs)
        best: dict[str, dict] = {}
        for job in jobs:
            if job.source != "http" or job.status not in ("paused", "failed", "downloading"):
                continue
            if not any(f.status != "complete" for f in job.files):
                continue
            for f in job.files:
                if f.status != "complete":
                    part = part_path(self.root / job.obs_id / f.filename)
                    f.downloaded_bytes = part.stat().st_size if part.exists() else 0
            summary = resumable_summary(job)
            current = best.get(job.obs_id)
            if current is None or summary["downloaded_bytes"] > current["downloaded_bytes"]:
                best[job.obs_id] = summary
        return sorted(best.values(), key=lambda s: s["started_at"] or "")

    # -- synchronous download (M8) -------------------------------------------------------------------
    async def download_now(self, obs_id: str, product_type: str, product_id: str | None) -> dict:
        obs_dir = self.obs_dir(obs_id)

        def answer(files: list[str], error: str | None) -> dict:
            return {"status": "failed" if error else "completed", "obs_id": obs_id,
                    "files": sorted(files), "file_count": len(files),
                    "download_dir": str(obs_dir), "error": error, "timestamp": utc_now_iso()}

        products: list[ProductFile] = await asyncio.to_thread(
            self.mast.files_to_download, obs_id, product_type, None, False, product_id)
        if not products:
            return answer([], NO_PRODUCTS)
        rows = [FileRow(filename=p.filename, uri=p.uri, total_bytes=p.size) for p in products]

        class _Quiet(Recorder):
            def flush(self) -> None:  # no job row to write to
                return None

        recorder = _Quiet(self.store, "", rows)
        job_id = "sync-" + obs_id
        self.stops.pop(job_id, None)
        try:
            with exclusive_folder(obs_dir, obs_id):
                outcome = await self._download_http(job_id, obs_dir, rows, recorder)
        except DownloadFailed as exc:
            return answer([], str(exc))
        if outcome.failed:
            first = next(iter(outcome.failed.values()))
            return answer(outcome.complete,
                          f"{len(outcome.failed)} file(s) failed to download: {first}")
        await asyncio.to_thread(self._persist, obs_id,
                                [FileRow(filename=Path(p).name, uri="", local_path=p)
                                 for p in outcome.complete])
        return answer(outcome.complete, None)

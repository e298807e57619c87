"""Download jobs: start, run, pause, resume, cancel, dismiss; durable and shared.

Every job lives in the SQLite job store (:mod:`app.mast.job_store`), so any
worker process answers for any job. The process that runs a job *owns* it
(``owner`` + a heartbeat every second); requests that reach another process act
through the store: a pause or cancel is written as a control flag that the owner
polls twice a second, and a resume takes ownership with one conditional UPDATE
(a second concurrent resume finds the job owned and gets 409). A job whose owner
stopped beating (the process died or restarted) is marked failed and resumable
at the next start-up, and any process may resume it: partial files continue
from their byte offset.

Where the bytes come from is a :class:`~app.mast.transfers.TransferStrategy`
(HTTP or S3); this module only runs files through it and records the outcome.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.config import Settings
from app.errors import BadRequest, Conflict, NotFound, UpstreamError
from app.mast.job_store import (
    ACTIVE,
    RESUMABLE,
    FileRow,
    FileStatus,
    JobRow,
    JobStatus,
    JobStore,
    owner_alive,
    owner_token,
    utc_now_iso,
)
from app.mast.mast_service import MastService
from app.mast.models import ProgressResponse, ResumableJob
from app.mast.part_file import (
    DownloadFailed,
    DownloadStopped,
    describe_os_error,
    exclusive_folder,
    part_path,
    size_or_zero,
)
from app.mast.progress_report import ProgressMeter, progress_body, resumable_summary
from app.mast.s3_transfer import make_archive_client
from app.mast.stopping import StopReason, StopSignal
from app.mast.transfers import FileTransfer, HttpTransfers, S3Transfers, TransferStrategy
from app.mast.transport import RedirectPolicy
from app.storage.helpers import is_within, safe_join
from app.storage.provider import StorageProvider

logger = logging.getLogger(__name__)

NO_PRODUCTS = "NO_PRODUCTS: No downloadable FITS products found for this observation"
INTERRUPTED = "Interrupted: the download service stopped; resume to continue"
STALE_AFTER = 10.0
HEARTBEAT_EVERY = 1.0
CONTROL_POLL = 0.5
FLUSH_EVERY = 0.25
KEEP_FINISHED = 7 * 24 * 3600


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
    """In-memory progress of one running job, flushed to the store a few times a second.

    ``job_id`` None records nothing durable (the synchronous download has no job row).
    """

    def __init__(self, store: JobStore, job_id: str | None, files: Sequence[FileRow]) -> None:
        self.store = store
        self.job_id = job_id
        self.lock = threading.Lock()
        self.rows = {f.filename: replace(f) for f in files}
        self.dirty: set[str] = set()
        self.meter = ProgressMeter()
        self.current: str | None = None

    def _change(self, filename: str, **values: Any) -> None:
        with self.lock:
            row = self.rows[filename]
            for name, value in values.items():
                setattr(row, name, value)
            self.dirty.add(filename)

    def add(self, filename: str, n: int) -> None:
        with self.lock:
            row = self.rows[filename]
            row.downloaded_bytes = max(0, row.downloaded_bytes + n)
            row.status = FileStatus.DOWNLOADING
            self.current = filename
            self.dirty.add(filename)

    def started(self, filename: str, total: int, from_zero: bool) -> None:
        values: dict[str, Any] = {"status": FileStatus.DOWNLOADING}
        if total:
            values["total_bytes"] = total
        if from_zero:
            values["downloaded_bytes"] = 0
        self._change(filename, **values)

    def finished(self, filename: str, size: int, path: Path) -> None:
        self._change(
            filename,
            status=FileStatus.COMPLETE,
            total_bytes=size,
            downloaded_bytes=size,
            local_path=str(path),
            error=None,
        )

    def failed(self, filename: str, message: str) -> None:
        self._change(filename, status=FileStatus.FAILED, error=message)

    def paused(self, filename: str, keeps_bytes: bool) -> None:
        values: dict[str, Any] = {"status": FileStatus.PAUSED}
        if not keeps_bytes:
            values["downloaded_bytes"] = 0
        self._change(filename, **values)

    def flush(self) -> None:
        with self.lock:
            changed = [replace(self.rows[name]) for name in self.dirty]
            self.dirty.clear()
            total = sum(row.downloaded_bytes for row in self.rows.values())
            current = self.current
        self.meter.add(total)
        if self.job_id is None:
            return
        self.store.save_files(self.job_id, changed)
        self.store.record_speed(self.job_id, self.meter.speed(), current)

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await asyncio.to_thread(self.flush)


@dataclass
class Outcome:
    complete: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    stopped: bool = False

    def fail(self, recorder: Recorder, filename: str, exc: Exception) -> None:
        """Record a file's failure; an unexpected error is logged with its traceback."""
        if isinstance(exc, DownloadFailed):
            message = str(exc)
        else:
            logger.error("download of %s failed", filename, exc_info=exc)
            message = f"{filename}: {type(exc).__name__}: {exc}"
        self.failed[filename] = message
        recorder.failed(filename, message)

    def failure_message(self) -> str | None:
        if not self.failed:
            return None
        first = next(iter(self.failed.values()))
        return f"{len(self.failed)} file(s) failed to download: {first}"


class DownloadManager:
    def __init__(self, settings: Settings, storage: StorageProvider, mast: MastService) -> None:
        self.settings = settings
        self.storage = storage
        self.mast = mast
        assert settings.MAST_DOWNLOAD_DIR is not None
        self.root = Path(os.path.realpath(settings.MAST_DOWNLOAD_DIR))
        self.root.mkdir(parents=True, exist_ok=True)
        self.store = JobStore(self.root)
        self.owner = owner_token()
        self.policy = RedirectPolicy.for_archive(
            settings.MAST_BASE_URL, settings.MAST_DOWNLOAD_HOSTS
        )
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.signals: dict[str, StopSignal] = {}
        self._background: list[asyncio.Task[None]] = []
        # Every file transfer (HTTP or S3) is blocking code in a thread of its own, so
        # a fast download never delays the server's loop (progress polls, /health),
        # and store reads and writes (default executor) never queue behind transfers.
        self.transfers = concurrent.futures.ThreadPoolExecutor(
            max_workers=16,
            thread_name_prefix="transfer",
            initializer=_background_priority,
            initargs=(settings.MAST_TRANSFER_NICE,),
        )

    # -- life cycle ---------------------------------------------------------------------------
    async def startup(self) -> None:
        await asyncio.to_thread(self.cleanup)
        self._background = [
            asyncio.create_task(self._heartbeat_loop()),
            asyncio.create_task(self._control_loop()),
        ]

    async def shutdown(self) -> None:
        for signal in list(self.signals.values()):
            signal.stop(StopReason.INTERRUPT)
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=10)
        for task in self._background:
            task.cancel()
        self.transfers.shutdown(wait=False, cancel_futures=True)

    def cleanup(self) -> None:
        """Start-up hygiene: orphaned jobs become resumable failures, old finished jobs
        and ``.part`` files that no resumable job owns are removed."""
        orphans = self.store.fail_orphans(STALE_AFTER, INTERRUPTED)
        if orphans:
            logger.info("Marked %d interrupted download job(s) resumable", len(orphans))
        self.store.purge_finished(KEEP_FINISHED)
        keep: set[Path] = set()
        for job in self.store.all_jobs():
            if job.status in RESUMABLE:
                keep.update(self._part_files(job.obs_id, job.files))
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
                    lambda: [self.store.get(j) for j in list(self.tasks)]
                )
            except Exception:
                logger.exception("control poll failed")
                continue
            for job in jobs:
                if job is not None and job.control in (StopReason.PAUSE, StopReason.CANCEL):
                    signal = self.signals.get(job.job_id)
                    if signal is not None:
                        signal.stop(StopReason(job.control))

    # -- paths --------------------------------------------------------------------------------
    def obs_path(self, obs_id: str) -> Path:
        """The observation's folder (400 for a name that is not one, e.g. the store's)."""
        path = safe_join(self.root, obs_id)
        if path == self.root or path.parent != self.root or path == self.store.state_dir:
            raise BadRequest(f"{obs_id!r} is not an observation id")
        return path

    def obs_dir(self, obs_id: str) -> Path:
        """:meth:`obs_path`, created if needed."""
        path = self.obs_path(obs_id)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DownloadFailed(describe_os_error(exc, path)) from None
        return path

    def _part_files(self, obs_id: str, files: Sequence[FileRow]) -> list[Path]:
        return [part_path(self.root / obs_id / f.filename) for f in files]

    def strategy(self, source: str, obs_id: str) -> TransferStrategy:
        if source == "s3":
            client = make_archive_client(
                self.settings.MAST_S3_ENDPOINT, self.settings.MAST_S3_REGION
            )
            return S3Transfers(client, self.settings.MAST_S3_BUCKET, obs_id)
        return HttpTransfers(self.mast, self.policy)

    # -- starting -----------------------------------------------------------------------------
    async def start(
        self, obs_id: str, product_type: str, calib_level: list[int] | None, source: str
    ) -> str:
        self.obs_path(obs_id)  # refuses names that are not a folder of the download root
        job_id = uuid.uuid4().hex[:12]
        await asyncio.to_thread(
            self.store.create_job,
            job_id,
            obs_id,
            source,
            product_type,
            calib_level,
            str(self.root / obs_id),
            utc_now_iso(),
            self.owner,
        )
        self._launch(job_id, resume=False)
        return job_id

    def _launch(self, job_id: str, resume: bool) -> None:
        self.signals[job_id] = StopSignal()
        task = asyncio.create_task(self._run(job_id, resume))
        self.tasks[job_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self.tasks.get(job_id) is done:  # a resumed job may already have a new task
                del self.tasks[job_id]
                self.signals.pop(job_id, None)

        task.add_done_callback(forget)

    async def resume(self, job_id: str) -> None:
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None:
            raise NotFound(f"No resumable state found for job {job_id}")
        if job.status not in RESUMABLE:
            raise BadRequest(f"Job {job_id} is not resumable (status: {job.status})")
        if not await asyncio.to_thread(self.store.claim, job_id, self.owner, STALE_AFTER):
            raise Conflict(f"Job {job_id} is already being resumed")
        pending = [
            replace(f, downloaded_bytes=size_or_zero(part), status=FileStatus.PENDING, error=None)
            for f, part in zip(job.files, self._part_files(job.obs_id, job.files), strict=True)
            if f.status != FileStatus.COMPLETE
        ]
        await asyncio.to_thread(self.store.save_files, job_id, pending)
        self._launch(job_id, resume=True)

    # -- running ------------------------------------------------------------------------------
    async def _run(self, job_id: str, resume: bool) -> None:
        store = self.store
        try:
            job = await asyncio.to_thread(store.get, job_id)
            if job is None:
                return
            obs_dir = self.obs_dir(job.obs_id)
            with exclusive_folder(obs_dir, job.obs_id):
                await self._run_locked(job, obs_dir, resume)
        except TimeoutError:
            await self._fail(job_id, "Timed out while asking MAST for the product list")
        except (UpstreamError, BadRequest) as exc:
            await self._fail(job_id, exc.detail)
        except DownloadFailed as exc:
            await self._fail(job_id, str(exc))
        except Exception as exc:  # never leave a job 'downloading' behind an error
            logger.exception("download job %s crashed", job_id)
            await self._fail(job_id, f"Download failed: {exc}")
        finally:
            # Normally the final transition already gave the job up; this catches a
            # task that ended without one (e.g. the store refused the write).
            if self.tasks.get(job_id) is asyncio.current_task():
                try:
                    await asyncio.to_thread(
                        store.fail,
                        job_id,
                        "Download stopped unexpectedly; resume to continue",
                        self.owner,
                    )
                except Exception:
                    logger.exception("could not close job %s", job_id)

    async def _run_locked(self, job: JobRow, obs_dir: Path, resume: bool) -> None:
        """The job's work, while it alone writes into ``obs_dir``."""
        store, job_id = self.store, job.job_id
        strategy = self.strategy(job.source, job.obs_id)
        if not resume or not job.files:
            await asyncio.to_thread(store.begin_fetching, job_id)
            rows = await self._list_files(job, strategy, obs_dir)
            if not rows:
                await self._fail(job_id, NO_PRODUCTS)
                return
            await asyncio.to_thread(store.set_files, job_id, rows)
            refreshed = await asyncio.to_thread(store.get, job_id)
            assert refreshed is not None
            job = refreshed
        total = sum(f.total_bytes for f in job.files)
        pending = [f for f in job.files if f.status != FileStatus.COMPLETE]
        self._check_space(obs_dir, pending)
        await asyncio.to_thread(
            store.begin_downloading,
            job_id,
            f"Downloading {len(job.files)} files ({total / 1e6:.1f} MB)...",
        )
        recorder = Recorder(store, job_id, job.files)
        flusher = asyncio.create_task(recorder.flush_forever())
        try:
            outcome = await self._transfer_all(
                strategy, obs_dir, pending, recorder, self.signals[job_id]
            )
        finally:
            flusher.cancel()
            await asyncio.to_thread(recorder.flush)
        await self._finish(job, obs_dir, outcome)

    async def _list_files(
        self, job: JobRow, strategy: TransferStrategy, obs_dir: Path
    ) -> list[FileRow]:
        loop = asyncio.get_running_loop()
        products = await asyncio.wait_for(
            loop.run_in_executor(
                self.mast.executor,
                self.mast.files_to_download,
                job.obs_id,
                job.product_type,
                job.calib_level,
            ),
            self.settings.MAST_SEARCH_TIMEOUT,
        )
        keys: dict[str, str] = {}
        if products and job.source == "s3":
            keys = await asyncio.to_thread(self.mast.archive_keys, products, job.obs_id)
        rows = [
            FileRow(
                filename=p.filename, uri=p.uri, archive_key=keys.get(p.filename), total_bytes=p.size
            )
            for p in products
        ]
        if strategy.keeps_partial_files:
            for row in rows:
                row.downloaded_bytes = size_or_zero(part_path(obs_dir / row.filename))
        return rows

    def _check_space(self, obs_dir: Path, files: list[FileRow]) -> None:
        """Refuse to start when the files cannot fit (instead of filling the disk)."""
        needed = sum(max(0, f.total_bytes - f.downloaded_bytes) for f in files)
        free = shutil.disk_usage(obs_dir).free
        if needed + self.settings.MAST_MIN_FREE_BYTES > free:
            raise DownloadFailed(
                f"Disk full: the files need {needed / 1e6:.1f} MB (plus "
                f"{self.settings.MAST_MIN_FREE_BYTES / 1e6:.0f} MB kept free) and only "
                f"{free / 1e6:.1f} MB are free"
            )

    async def _fail(self, job_id: str, message: str) -> None:
        await asyncio.to_thread(self.store.fail, job_id, message)

    async def _finish(self, job: JobRow, obs_dir: Path, outcome: Outcome) -> None:
        store, job_id = self.store, job.job_id
        reason = self.signals[job_id].reason
        if reason == StopReason.CANCEL:
            for part in self._part_files(job.obs_id, job.files):  # this job's, nobody else's
                part.unlink(missing_ok=True)
            await asyncio.to_thread(store.cancel, job_id)
            return
        if reason is not None and outcome.stopped:
            if reason == StopReason.PAUSE:
                await asyncio.to_thread(store.pause, job_id)
            else:
                await self._fail(job_id, INTERRUPTED)
            return
        failure = outcome.failure_message()
        if failure:
            await self._fail(job_id, failure)
            return
        try:
            await asyncio.to_thread(self._persist, job.obs_id, outcome.complete)
        except Exception as exc:
            await self._fail(job_id, f"Downloaded, but could not store the files: {exc}")
            return
        await asyncio.to_thread(store.complete, job_id, f"Downloaded {len(job.files)} files")

    def _persist(self, obs_id: str, paths: Sequence[str]) -> None:
        """Completed files into storage under ``mast/<obs_id>/`` (a file already in its
        place, as with local storage over the download folder, is left alone)."""
        for path in paths:
            self.storage.put_file(f"mast/{obs_id}/{Path(path).name}", Path(path))

    async def _transfer_all(
        self,
        strategy: TransferStrategy,
        obs_dir: Path,
        files: Sequence[FileRow],
        recorder: Recorder,
        signal: StopSignal,
    ) -> Outcome:
        """Every file through ``strategy``, a few at once, each in a transfer thread.

        If this coroutine is cancelled (the synchronous download's time limit), the
        transfers are stopped and waited for before it ends, so the caller never
        releases the observation's folder while a thread still writes into it.
        """
        gate = asyncio.Semaphore(strategy.parallel_files)
        outcome = Outcome()
        running: list[concurrent.futures.Future[int]] = []

        async def one(row: FileRow) -> None:
            async with gate:
                if signal():
                    outcome.stopped = True
                    recorder.paused(row.filename, strategy.keeps_partial_files)
                    return
                final = obs_dir / row.filename
                future = self.transfers.submit(
                    strategy.transfer,
                    FileTransfer(
                        row,
                        final,
                        on_size=lambda total, zero: recorder.started(row.filename, total, zero),
                        on_bytes=lambda n: recorder.add(row.filename, n),
                        stop=signal,
                    ),
                )
                running.append(future)
                try:
                    size = await asyncio.wrap_future(future)
                except DownloadStopped:
                    outcome.stopped = True
                    if not strategy.keeps_partial_files:
                        part_path(final).unlink(missing_ok=True)
                    recorder.paused(row.filename, strategy.keeps_partial_files)
                    return
                except Exception as exc:  # fails this file; the others go on
                    if not strategy.keeps_partial_files:
                        part_path(final).unlink(missing_ok=True)
                    outcome.fail(recorder, row.filename, exc)
                    return
                recorder.finished(row.filename, size, final)
                outcome.complete.append(str(final))

        try:
            await asyncio.gather(*(one(f) for f in files))
        except asyncio.CancelledError:
            signal.stop(StopReason.CANCEL)  # wakes blocked reads at once
            await asyncio.to_thread(concurrent.futures.wait, list(running))
            raise
        return outcome

    # -- control ------------------------------------------------------------------------------
    async def _stop(self, job: JobRow, reason: StopReason, wait: float = 10.0) -> None:
        """Ask the owner (this process or another) to stop, and wait until it has."""
        job_id = job.job_id
        task, signal = self.tasks.get(job_id), self.signals.get(job_id)
        if task is not None and signal is not None:
            signal.stop(reason)
            await asyncio.wait([task], timeout=wait)
            return
        await asyncio.to_thread(self.store.request_control, job_id, reason)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            current = await asyncio.to_thread(self.store.get, job_id)
            if current is None or current.status not in ACTIVE:
                return
            if current.heartbeat is None or time.time() - current.heartbeat > STALE_AFTER:
                # Nobody is running it any more: record the stop ourselves.
                settle = self.store.pause if reason == StopReason.PAUSE else self.store.cancel
                await asyncio.to_thread(settle, job_id)
                return
            await asyncio.sleep(0.1)

    async def pause(self, job_id: str) -> dict[str, str]:
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None or job.status not in ACTIVE:
            raise NotFound(f"No active download for job {job_id}")
        await self._stop(job, StopReason.PAUSE)
        message = "S3 download paused" if job.source == "s3" else "Download paused"
        return {"job_id": job_id, "status": "paused", "message": message}

    async def cancel(self, job_id: str) -> dict[str, str]:
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None:
            raise NotFound(f"No download found for job {job_id}")
        if job.status in ACTIVE:
            await self._stop(job, StopReason.CANCEL)
        elif not await asyncio.to_thread(self.store.cancel, job_id):
            # Complete or already cancelled: nothing to stop, and nothing is undone.
            now = await asyncio.to_thread(self.store.get, job_id)
            status = now.status if now is not None else job.status
            return {
                "job_id": job_id,
                "status": str(status),
                "message": f"Download already {status}; nothing to cancel",
            }
        return {"job_id": job_id, "status": "cancelled", "message": "Download cancelled"}

    async def dismiss(self, job_id: str, delete_files: bool) -> dict[str, Any]:
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None:
            raise NotFound(f"Job {job_id} not found")
        if job.status in ACTIVE and job.owner:
            await self._stop(job, StopReason.CANCEL)
        deleted = 0
        if delete_files:
            for f, part in zip(job.files, self._part_files(job.obs_id, job.files), strict=True):
                for candidate in (f.local_path, str(part)):
                    if not candidate:
                        continue
                    real = os.path.realpath(candidate)
                    if is_within(real, self.root) and os.path.isfile(real):
                        os.unlink(real)
                        deleted += 1 if not real.endswith(".part") else 0
        await asyncio.to_thread(self.store.delete_job, job_id)
        return {"job_id": job_id, "dismissed": True, "deleted_files": deleted}

    # -- reading ------------------------------------------------------------------------------
    async def progress(self, job_id: str) -> ProgressResponse:
        # A primary-key read of a few rows (well under a millisecond): done inline, as
        # handing it to a thread costs more than it saves while transfers hold the GIL.
        job = self.store.get(job_id)
        if job is None:
            raise NotFound(f"Job {job_id} not found")
        if (
            job.status in ACTIVE
            and job_id not in self.tasks
            and (
                (job.heartbeat is not None and time.time() - job.heartbeat > STALE_AFTER)
                or (job.owner and not owner_alive(job.owner))
            )
        ):
            # Its owner stopped beating (crashed, or cannot write): say so rather than
            # letting clients poll a frozen job forever.
            job.status = JobStatus.FAILED
            job.error = job.message = (
                "Interrupted: the download stopped unexpectedly; resume to continue"
            )
        return progress_body(job)

    async def resumable(self) -> list[ResumableJob]:
        jobs = await asyncio.to_thread(self.store.all_jobs)
        best: dict[str, ResumableJob] = {}
        listed = {JobStatus.PAUSED, JobStatus.FAILED, JobStatus.DOWNLOADING}
        for job in jobs:
            if job.source != "http" or job.status not in listed:
                continue
            if not any(f.status != FileStatus.COMPLETE for f in job.files):
                continue
            for f, part in zip(job.files, self._part_files(job.obs_id, job.files), strict=True):
                if f.status != FileStatus.COMPLETE:
                    f.downloaded_bytes = size_or_zero(part)
            summary = resumable_summary(job)
            current = best.get(job.obs_id)
            if current is None or summary.downloaded_bytes > current.downloaded_bytes:
                best[job.obs_id] = summary
        return sorted(best.values(), key=lambda s: s.started_at or "")

    # -- synchronous download (M8) ------------------------------------------------------------
    async def download_now(
        self, obs_id: str, product_type: str, product_id: str | None
    ) -> dict[str, Any]:
        obs_dir = self.obs_dir(obs_id)

        def answer(files: list[str], error: str | None) -> dict[str, Any]:
            return {
                "status": "failed" if error else "completed",
                "obs_id": obs_id,
                "files": sorted(files),
                "file_count": len(files),
                "download_dir": str(obs_dir),
                "error": error,
                "timestamp": utc_now_iso(),
            }

        products = await asyncio.get_running_loop().run_in_executor(
            self.mast.executor,
            self.mast.files_to_download,
            obs_id,
            product_type,
            None,
            False,
            product_id,
        )
        if not products:
            return answer([], NO_PRODUCTS)
        rows = [FileRow(filename=p.filename, uri=p.uri, total_bytes=p.size) for p in products]
        key = f"sync-{uuid.uuid4().hex[:8]}"
        signal = self.signals[key] = StopSignal()  # a shutdown interrupts it too
        try:
            with exclusive_folder(obs_dir, obs_id):
                outcome = await self._transfer_all(
                    HttpTransfers(self.mast, self.policy),
                    obs_dir,
                    rows,
                    Recorder(self.store, None, rows),
                    signal,
                )
        except DownloadFailed as exc:
            return answer([], str(exc))
        finally:
            self.signals.pop(key, None)
        failure = outcome.failure_message()
        if failure:
            return answer(outcome.complete, failure)
        if outcome.stopped:
            return answer(outcome.complete, INTERRUPTED)
        await asyncio.to_thread(self._persist, obs_id, outcome.complete)
        return answer(outcome.complete, None)

"""MAST proxy routes (CONTRACT.md §2, M2-M15): parse, call, shape."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from cachetools import TTLCache
from fastapi import APIRouter, Path, Query

from app.deps import DownloadsDep, MastDep, SettingsDep
from app.errors import UpstreamTimeout
from app.http_errors import Handler, error_responses, route
from app.mast import models
from app.mast.job_store import RESUMABLE, utc_now_iso
from app.mast.mast_service import MastService, Row

T = TypeVar("T")

router = APIRouter(prefix="/mast", tags=["MAST"])

SEARCH_ERRORS = error_responses(
    404,
    422,
    502,
    504,
    e404="Target name could not be resolved",
    e502="MAST or the name resolver failed or is unreachable",
    e504="MAST did not answer in time",
)
JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Download job id")]


def _search_route(path: str, model: type = models.SearchResponse) -> Callable[[Handler], Handler]:
    """A POST route that asks MAST: its answer's model and MAST's error statuses."""
    return route(router.post, path, model, SEARCH_ERRORS)


def _job_route(
    method: Callable[..., Callable[[Handler], Handler]],
    path: str,
    model: type,
    **errors: str,
) -> Callable[[Handler], Handler]:
    """A route on one download job: 404 when the job is unknown, and the statuses
    ``errors`` describes (``e409="..."``)."""
    described = {"e404": "Unknown job", **errors}
    codes = sorted(int(key[1:]) for key in described)
    return route(method, path, model, error_responses(*codes, **described))


# Short-lived caches of search results (per process; MAST is the source of truth).
_target_cache: TTLCache[str, list[Row]] = TTLCache(maxsize=100, ttl=300)
_recent_cache: TTLCache[str, list[Row]] = TTLCache(maxsize=100, ttl=300)


def _response(search_type: str, params: dict[str, Any], rows: list[Row]) -> dict[str, Any]:
    return {
        "search_type": search_type,
        "query_params": params,
        "results": rows,
        "result_count": len(rows),
        "timestamp": utc_now_iso(),
    }


async def with_timeout(coro: Awaitable[T], seconds: float, message: str) -> T:
    """Await ``coro``; 504 with ``message`` when it takes longer than ``seconds``."""
    try:
        return await asyncio.wait_for(coro, seconds)
    except TimeoutError:
        raise UpstreamTimeout(message) from None


async def _search(
    mast: MastService,
    fn: Callable[..., list[Row]],
    *args: Any,
    hint: str = "",
    what: str = "MAST search",
) -> list[Row]:
    """Run a blocking MAST call in a search thread under ``MAST_SEARCH_TIMEOUT``
    (``mast.timeout``; 504 after it, and the call itself gives up at the same limit)."""
    message = f"{what} timed out after {mast.timeout:g} seconds.{hint}"
    loop = asyncio.get_running_loop()
    return await with_timeout(loop.run_in_executor(mast.executor, fn, *args), mast.timeout, message)


async def _cached(
    cache: TTLCache[str, list[Row]], key: str, fetch: Callable[[], Awaitable[list[Row]]]
) -> list[Row]:
    """A short-lived cached result, or ``await fetch()`` stored under ``key``."""
    rows: list[Row] | None = cache.get(key)
    if rows is None:
        rows = await fetch()
        cache[key] = rows
    return rows


@_search_route("/search/target")
async def search_target(body: models.TargetSearchRequest, mast: MastDep) -> dict[str, Any]:
    """Observations around a named target.

    Resolve the name with Sesame (trying spelling variants such as `NGC-3132` ->
    `NGC 3132`), then list public JWST observations within `radius` degrees (a true
    cone) at the requested calibration levels."""
    name = " ".join(body.target_name.split())
    levels = sorted(body.calib_level) if body.calib_level else None
    key = f"{name.lower()}:{body.radius}:{levels if levels else 'default'}"
    rows = await _cached(
        _target_cache,
        key,
        lambda: _search(
            mast,
            mast.search_target,
            name,
            body.radius,
            body.calib_level,
            hint=" Try a smaller search radius or more specific target name.",
        ),
    )
    return _response(
        "target",
        {"target_name": body.target_name, "radius": body.radius, "calib_level": body.calib_level},
        rows,
    )


@_search_route("/search/coordinates")
async def search_coordinates(body: models.CoordinateSearchRequest, mast: MastDep) -> dict[str, Any]:
    """Observations in a cone around a sky position.

    Public JWST observations whose position lies within `radius` degrees of
    (`ra`, `dec`); `ra` may be given in [-360, 360] and is normalised to [0, 360)."""
    ra = body.ra % 360.0
    rows = await _search(
        mast,
        mast.search_position,
        ra,
        body.dec,
        body.radius,
        body.calib_level,
        hint=" Try a smaller search radius.",
    )
    return _response(
        "coordinates",
        {"ra": ra, "dec": body.dec, "radius": body.radius, "calib_level": body.calib_level},
        rows,
    )


@_search_route("/search/observation")
async def search_observation(
    body: models.ObservationSearchRequest, mast: MastDep
) -> dict[str, Any]:
    """One observation by its MAST obs_id.

    The public observation(s) whose MAST `obs_id` is given, e.g.
    `jw02733-o001_t001_nircam_clear-f090w`, at the requested calibration levels."""
    found = _search(mast, mast.search_observation, body.obs_id.strip(), body.calib_level)
    return _response("observation_id", body.model_dump(), await found)


@_search_route("/search/program")
async def search_program(body: models.ProgramSearchRequest, mast: MastDep) -> dict[str, Any]:
    """Observations of a JWST program.

    Every public JWST observation of a program (proposal) id such as `2733`."""
    found = _search(mast, mast.search_program, body.program_id.strip(), body.calib_level)
    return _response("program_id", body.model_dump(), await found)


@_search_route("/search/recent")
async def search_recent(body: models.RecentReleasesRequest, mast: MastDep) -> dict[str, Any]:
    """Recently released JWST observations.

    Observations released in the last `days_back` days, newest first, paged with
    `limit` and `offset`; optionally one instrument."""
    key = f"{body.days_back}:{body.instrument or 'all'}:{body.limit}:{body.offset}"
    rows = await _cached(
        _recent_cache,
        key,
        lambda: _search(
            mast,
            mast.search_recent,
            body.days_back,
            body.instrument,
            body.limit,
            body.offset,
        ),
    )
    return _response("recent_releases", body.model_dump(), rows)


@_search_route("/products", models.ProductsResponse)
async def products(body: models.ProductsRequest, mast: MastDep) -> dict[str, Any]:
    """Science FITS products of an observation.

    The FITS science products (uncal, rate, cal, i2d, x1d, s3d...) MAST lists for an
    observation, with sizes, calibration levels and download URLs."""
    rows = await _search(mast, mast.product_rows, body.obs_id.strip(), what="Request")
    return {"obs_id": body.obs_id, "products": rows, "product_count": len(rows)}


@_search_route("/download", models.DownloadResponse)
async def download(
    body: models.DownloadRequest, settings: SettingsDep, downloads: DownloadsDep
) -> dict[str, Any]:
    """Download an observation's files and wait for them.

    Synchronous download into `<MAST_DOWNLOAD_DIR>/<obs_id>/`. File-level failures
    answer 200 with `status: "failed"` and an `error`, as the .NET client expects."""
    return await with_timeout(
        downloads.download_now(body.obs_id, body.product_type, body.product_id),
        settings.MAST_DOWNLOAD_TIMEOUT,
        f"Download timed out after {settings.MAST_DOWNLOAD_TIMEOUT:g} seconds. "
        "The files may be very large.",
    )


@route(
    router.post,
    "/download/start-chunked",
    models.JobStarted,
    error_responses(409, 422, e409="Already being resumed"),
    response_model_exclude_none=True,
)
async def start_chunked(
    body: models.ChunkedDownloadRequest, downloads: DownloadsDep
) -> dict[str, Any]:
    """Start (or resume) a background HTTP download.

    Files are fetched with byte ranges, three at a time, into `.part` files renamed
    only when complete. Poll `/mast/download/progress-chunked/{job_id}`."""
    if body.resume_job_id:
        job = await asyncio.to_thread(downloads.store.get, body.resume_job_id)
        # Any job not finished is this one's to take up, or 409 while it runs: a job
        # between its claim and its first byte (queued, fetching products) must not
        # start a second job writing into the same folder.
        if job is not None and job.status in RESUMABLE:
            await downloads.resume(body.resume_job_id)  # 409 when someone else is on it
            return {
                "job_id": body.resume_job_id,
                "obs_id": job.obs_id,
                "message": "Download resumed",
                "is_resume": True,
            }
    job_id = await downloads.start(body.obs_id, body.product_type, body.calib_level, "http")
    return {
        "job_id": job_id,
        "obs_id": body.obs_id,
        "message": "Chunked download started",
        "is_resume": False,
    }


@route(
    router.post,
    "/download/start-s3",
    models.JobStarted,
    error_responses(422),
    response_model_exclude_none=True,
)
async def start_s3(body: models.S3DownloadRequest, downloads: DownloadsDep) -> dict[str, Any]:
    """Start a background download from the public S3 bucket.

    Files come from the archive's public bucket (anonymous), located through MAST's
    path lookup, in ranged parts fetched in parallel."""
    job_id = await downloads.start(body.obs_id, body.product_type, body.calib_level, "s3")
    return {
        "job_id": job_id,
        "obs_id": body.obs_id,
        "message": "S3 download started",
        "download_source": "s3",
        "is_resume": False,
    }


@_job_route(router.get, "/download/progress-chunked/{job_id}", models.ProgressResponse)
async def progress(job_id: JobId, downloads: DownloadsDep) -> models.ProgressResponse:
    """Byte-level progress of a download job.

    Bytes done and total, speed, ETA and per-file progress of a download job, read
    from the durable job store (any worker process answers for any job)."""
    return await downloads.progress(job_id)


@_job_route(
    router.post, "/download/pause/{job_id}", models.PauseResumeResponse, e404="No active download"
)
async def pause(job_id: JobId, downloads: DownloadsDep) -> dict[str, Any]:
    """Pause a running download (partial files are kept).

    Stop a running download; its `.part` files stay, so a resume continues each file
    from the byte it reached."""
    return await downloads.pause(job_id)


@_job_route(
    router.post,
    "/download/resume/{job_id}",
    models.PauseResumeResponse,
    e400="Job not resumable",
    e409="Already being resumed",
)
async def resume(job_id: JobId, downloads: DownloadsDep) -> dict[str, Any]:
    """Resume a paused or failed download from its byte offsets.

    Continue a paused, failed or interrupted download from each file's byte offset
    (HTTP Range); 409 when another request is already resuming it."""
    await downloads.resume(job_id)
    return {"job_id": job_id, "status": "resuming", "message": "Download resumed"}


@_job_route(router.post, "/download/cancel/{job_id}", models.PauseResumeResponse)
async def cancel(job_id: JobId, downloads: DownloadsDep) -> dict[str, Any]:
    """Cancel a download (partial files are removed).

    Stop a download for good and remove its partial files; finished files stay."""
    return await downloads.cancel(job_id)


@route(router.get, "/download/resumable", models.ResumableJobsResponse)
async def resumable(downloads: DownloadsDep) -> dict[str, Any]:
    """Downloads that can be resumed.

    Paused, failed or interrupted HTTP downloads with files still to fetch, one per
    observation (the one with the most bytes). Reading this list changes nothing."""
    jobs = await downloads.resumable()
    return {"jobs": jobs, "count": len(jobs)}


@_job_route(router.delete, "/download/resumable/{job_id}", models.DismissResponse)
async def dismiss(
    *,
    job_id: JobId,
    delete_files: Annotated[
        bool, Query(description="Also delete the job's files (only inside the download directory)")
    ] = False,
    downloads: DownloadsDep,
) -> dict[str, Any]:
    """Forget a resumable download, optionally deleting its files.

    Remove a job from the resumable list; with `delete_files=true` its files are
    deleted too (never anything outside the download directory)."""
    return await downloads.dismiss(job_id, delete_files)

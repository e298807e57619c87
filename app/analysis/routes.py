"""Analysis routes (CONTRACT.md §3.11-3.15): parse, check, run in a worker, shape."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Query

from app.analysis import detection_jobs, tables
from app.analysis.models import (
    RegionStatisticsRequest,
    RegionStatisticsResponse,
    SourceDetectionRequest,
    SourceDetectionResponse,
    SpectralDataResponse,
    TableDataResponse,
    TableInfoResponse,
)
from app.analysis.region_statistics import region_statistics
from app.deps import PoolDep, SettingsDep, StorageDep, resolve_file
from app.errors import BadRequest
from app.http_errors import error_responses, route
from app.processing.detection import METHODS
from app.workers import HEADER_JOB_BYTES, WorkerPool

router = APIRouter(prefix="/analysis", tags=["Analysis"])

#: What a route reading one file may answer besides its result.
FILE_ERRORS = error_responses(400, 403, 404, 413, 422, 429)

MB = 1024 * 1024
FilePath = Annotated[
    str,
    Query(
        min_length=1,
        description="Storage key of the FITS file",
        examples=["mast/jw02733-o001_t001_nircam_clear-f090w/jw02733o001_x1d.fits"],
    ),
]


def _file_job_bytes(path, factor: float = 2.0) -> int:
    """A job reading (part of) one file: its size times ``factor``, plus a margin."""
    return int(os.path.getsize(path) * factor + 64 * MB)


async def _table_job_bytes(pool: WorkerPool, path, factor: float) -> int:
    """A job on a file's tables: :func:`_file_job_bytes` plus astropy's objects for
    every header card of the file (counted in a worker, without parsing), which a file
    of many wide or long headers makes the larger part."""
    cards = await pool.run(tables.header_cards, str(path), estimate_bytes=HEADER_JOB_BYTES)
    return _file_job_bytes(path, factor) + tables.header_objects_bytes(cards)


@route(router.post, "/region-statistics", RegionStatisticsResponse, FILE_ERRORS)
async def region_stats(
    body: RegionStatisticsRequest, settings: SettingsDep, storage: StorageDep, pool: PoolDep
):
    """Statistics of a region's pixels.

    Mean, median, standard deviation, min, max, sum and count of the finite pixels
    whose centres lie in a rectangle, ellipse, circle or polygon (0-based pixel
    coordinates). Cubes use the middle slice unless ``slice_index`` says otherwise."""
    region = getattr(body, body.region_type)
    if region is None:
        raise BadRequest(
            f"'{body.region_type}' is required when region_type is '{body.region_type}'"
        )
    path = await resolve_file(storage, body.file_path)
    return await pool.run(
        region_statistics,
        str(path),
        body.region_type,
        region.model_dump(),
        body.hdu_index,
        body.slice_index,
        settings.MAX_FITS_ARRAY_ELEMENTS,
        estimate_bytes=_file_job_bytes(path, 1.0),
    )


@route(
    router.post,
    "/detect-sources",
    SourceDetectionResponse,
    error_responses(
        400, 403, 404, 413, 422, 429, 503, e413="The image has more pixels than detection allows"
    ),
)
async def detect(
    body: SourceDetectionRequest, settings: SettingsDep, storage: StorageDep, pool: PoolDep
):
    """Find stars and galaxies.

    Detect sources on the background-subtracted image (2-D background and RMS model,
    NaN regions masked): ``daofind`` and ``iraf`` find point sources, ``segmentation``
    finds extended ones (with deblending), ``auto`` picks daofind when the noise is flat
    and segmentation otherwise. The threshold is ``threshold_sigma`` x the background RMS.
    Answers 504 when detection runs past its time limit."""
    if body.method not in METHODS:
        raise BadRequest(f"Invalid method '{body.method}'. Valid options: {', '.join(METHODS)}")
    path = await resolve_file(storage, body.file_path)
    pixels = await pool.run(
        detection_jobs.detection_pixels, str(path), body.hdu_index, estimate_bytes=HEADER_JOB_BYTES
    )
    detection_jobs.check_detection_size(pixels, settings.DETECTION_MAX_PIXELS)
    return await pool.run(
        detection_jobs.detect_in_file,
        str(path),
        body.hdu_index,
        body.method,
        body.threshold_sigma,
        body.fwhm,
        body.npixels,
        body.deblend,
        settings.DETECTION_MAX_PIXELS,
        estimate_bytes=detection_jobs.estimate_detection_bytes(pixels),
        time_limit=settings.DETECTION_TIME_LIMIT_SECONDS,
    )


@route(router.get, "/table-info", TableInfoResponse, FILE_ERRORS)
async def table_info(file_path: FilePath, storage: StorageDep, pool: PoolDep):
    """Tables in a FITS file.

    Every table HDU of the file with its columns (FITS TFORM, unit, TDISP, array
    shapes); no row is read. The headers are parsed in a worker, admitted for what
    their card count costs (a file of thousands of wide tables is 413 on a small
    engine)."""
    path = await resolve_file(storage, file_path)
    estimate = await _table_job_bytes(pool, path, 0.0)  # no row is read
    return await pool.run(tables.table_info, str(path), estimate_bytes=estimate)


@route(router.get, "/table-data", TableDataResponse, FILE_ERRORS)
async def table_data(
    *,
    file_path: FilePath,
    hdu_index: Annotated[int, Query(description="Index of the table HDU")] = 0,
    page: Annotated[int, Query(description="0-based page; past the end gives the last")] = 0,
    page_size: Annotated[int, Query(description="Rows per page, 1-500")] = 100,
    sort_column: Annotated[str | None, Query(description="Column to sort by")] = None,
    sort_direction: Annotated[str | None, Query(description="asc or desc")] = None,
    search: Annotated[
        str | None, Query(max_length=500, description="Case-insensitive text to find in any cell")
    ] = None,
    storage: StorageDep,
    pool: PoolDep,
):
    """A page of table rows.

    Rows of one page after the search filter and the sort. Cells: text for bytes,
    text (at most 100 characters) for array cells, null for NaN, Inf and masked
    values. A column that cannot be sorted (array cells, unknown name) leaves the
    order as it is and ``sort_column`` null."""
    path = await resolve_file(storage, file_path)
    return await pool.run(
        tables.table_page,
        str(path),
        hdu_index,
        page,
        page_size,
        sort_column,
        sort_direction,
        search,
        estimate_bytes=await _table_job_bytes(pool, path, 1.5),
    )


@route(router.get, "/spectral-data", SpectralDataResponse, FILE_ERRORS)
async def spectral(
    *,
    file_path: FilePath,
    hdu_index: Annotated[int, Query(description="Table HDU (x1d: 1)")] = 1,
    storage: StorageDep,
    pool: PoolDep,
):
    """A spectrum from a table HDU.

    The wavelength column first, then FLUX, FLUX_ERROR, SURF_BRIGHT, DQ and the other
    spectral columns of a JWST x1d table that are present; non-finite values are null."""
    path = await resolve_file(storage, file_path)
    estimate = await _table_job_bytes(pool, path, 3.0)
    return await pool.run(tables.spectral_data, str(path), hdu_index, estimate_bytes=estimate)

"""Mosaic and footprint routes (CONTRACT.md §3.8-3.10, CONTRACT-HEAD §10.5-10.6): thin; the
work is in mosaic_engine, observation and overlap."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.deps import PoolDep, SettingsDep, StorageDep, resolve_files
from app.errors import BadRequest
from app.http_errors import error_responses, route
from app.mosaic import footprints, mosaic_engine
from app.mosaic.models import (
    FootprintRequest,
    FootprintResponse,
    MosaicRequest,
    ObservationMosaicRequest,
)
from app.mosaic.observation import build_observation_mosaic, estimate_observation_bytes
from app.mosaic.rendering import render_mosaic_picture
from app.processing.fits_io import data_size_bound
from app.processing.pipeline import levels_of
from app.processing.render import COLORMAPS
from app.storage.helpers import check_file_size
from app.workers import HEADER_JOB_BYTES

#: Headers read in the pool (429 busy, 503 a worker lost); no pixel, so no 413.
FOOTPRINT_ERRORS = error_responses(400, 403, 404, 422, 429, 503)

router = APIRouter(prefix="/mosaic", tags=["Mosaic"])
logger = logging.getLogger(__name__)

MEDIA = {"png": "image/png", "jpeg": "image/jpeg", "fits": "application/fits"}
#: Where FITS mosaics are written before they are streamed (under STORAGE_TEMP_CACHE_DIR).
MOSAIC_OUTPUT_DIR = "mosaic-output"


def sweep_stale_outputs(directory) -> int:
    """At start-up: remove mosaic files left by a worker killed mid-write (nothing else
    writes there, and no response is streaming before the engine starts)."""
    removed = 0
    for stale in sorted(Path(directory).glob("mosaic-*.fits")):
        with contextlib.suppress(OSError):
            stale.unlink()
            removed += 1
    if removed:
        logger.info("Removed %d unfinished mosaic file(s) from %s", removed, directory)
    return removed


def dask_target(settings: Settings) -> mosaic_engine.DaskTarget | None:
    """The Dask cluster of DASK_SCHEDULER_ADDRESS (with its TLS files), or None."""
    if not settings.DASK_SCHEDULER_ADDRESS:
        return None
    return mosaic_engine.DaskTarget(
        settings.DASK_SCHEDULER_ADDRESS,
        ca_file=settings.DASK_TLS_CA_FILE,
        cert_file=settings.DASK_TLS_CERT_FILE,
        key_file=settings.DASK_TLS_KEY_FILE,
    )


def _build_fits(plan, directory: str, dask_address: mosaic_engine.DaskTarget | None) -> str:
    """Worker job: write the FITS mosaic to a new file in ``directory``; its path."""
    os.makedirs(directory, exist_ok=True)
    fd, path = tempfile.mkstemp(suffix="_i2d.fits", prefix="mosaic-", dir=directory)
    os.close(fd)
    try:
        mosaic_engine.write_mosaic_fits(plan, path, dask_address)
    except BaseException:
        os.unlink(path)
        raise
    return path


@route(
    router.post,
    "/generate",
    None,
    {
        200: {
            "content": {"image/png": {}, "image/jpeg": {}, "application/fits": {}},
            "description": "PNG/JPEG picture, or the FITS mosaic (primary "
            "float32 image with WCS and provenance, SRCMETA "
            "table of the source headers), streamed",
        },
        **error_responses(400, 403, 404, 413, 422, 429, 503),
    },
    response_class=Response,
)
async def generate_mosaic(
    body: MosaicRequest, settings: SettingsDep, storage: StorageDep, pool: PoolDep
):
    """Stitch exposures into one mosaic (picture or FITS).

    Resample every file onto one north-up gnomonic grid (bilinear, WCS honoured, SIP
    included) and combine overlaps with ``combine_method``. FITS: at the finest input pixel
    scale, NaN where nothing covers, built tile by tile on disk and streamed. Pictures:
    ``files[0]``'s stretch over the whole mosaic, the colormap, no coverage black; with both
    ``width`` and ``height`` exactly that size (square sky pixels, the mosaic centred)."""
    fmt = body.output_format
    if body.cmap not in COLORMAPS:
        raise BadRequest(f"Invalid colormap '{body.cmap}'. Valid options: {', '.join(COLORMAPS)}")
    if fmt == "fits" and (body.width is not None or body.height is not None):
        raise BadRequest(
            "width and height cannot be used with output_format 'fits': the FITS "
            "mosaic is always at the inputs' native resolution"
        )
    paths = [str(p) for p in await resolve_files(storage, [f.file_path for f in body.files])]
    plan = await pool.run(
        mosaic_engine.plan_mosaic,
        paths,
        body.combine_method,
        max_output_pixels=settings.MAX_MOSAIC_OUTPUT_PIXELS,
        width=body.width,
        height=body.height,
        max_file_bytes=settings.max_fits_file_bytes,
        max_elements=settings.MAX_FITS_ARRAY_ELEMENTS,
        estimate_bytes=HEADER_JOB_BYTES,
    )
    estimate = mosaic_engine.estimate_mosaic_bytes(plan, in_memory=fmt != "fits")
    dask = dask_target(settings)
    if fmt == "fits":
        directory = str(settings.STORAGE_TEMP_CACHE_DIR / MOSAIC_OUTPUT_DIR)
        path = await pool.run(_build_fits, plan, directory, dask, estimate_bytes=estimate)
        return FileResponse(
            path,
            media_type=MEDIA["fits"],
            filename="mosaic.fits",
            background=BackgroundTask(os.unlink, path),
        )
    display = levels_of(body.files[0])
    content = await pool.run(
        render_mosaic_picture,
        plan,
        display,
        body.cmap,
        fmt,
        body.quality,
        dask,
        estimate_bytes=estimate,
    )
    return Response(content=content, media_type=MEDIA[fmt])


#: Bytes sent per piece while an observation mosaic streams.
STREAM_PIECE = 1 << 20


async def _follow_file(
    steps: AsyncGenerator[tuple[str, Any], None], path: str, size: int
) -> AsyncIterator[bytes]:
    """The file's bytes as the worker declares them final; the file is removed after.

    If the job fails mid-way the exception ends the response early (shorter than its
    Content-Length), so the client knows it did not get the whole file.
    """
    sent = 0
    try:
        with open(path, "rb") as handle:
            async for kind, value in steps:
                if kind == "result":
                    upto = size
                elif value.get("event") == "rows":
                    upto = int(value["upto"])
                else:
                    continue
                while sent < upto:
                    piece = os.pread(handle.fileno(), min(STREAM_PIECE, upto - sent), sent)
                    if not piece:
                        raise OSError(f"{path} is shorter than announced")
                    sent += len(piece)
                    yield piece
    finally:
        await steps.aclose()
        with contextlib.suppress(OSError):
            os.unlink(path)


@route(
    router.post,
    "/generate-observation",
    None,
    {
        200: {
            "content": {"application/fits": {}},
            "description": "The mosaic: a primary float32 image with its "
            "WCS, provenance keywords and 0 where nothing "
            "covers, then the SRCMETA table of the source "
            "headers; streamed as it is written",
        },
        **error_responses(400, 403, 404, 413, 422, 503, 504),
    },
    response_class=StreamingResponse,
)
async def generate_observation(
    body: ObservationMosaicRequest,
    request: Request,
    settings: SettingsDep,
    storage: StorageDep,
    pool: PoolDep,
):
    """One FITS mosaic of an observation's detector files (queued work).

    Resample 2-500 files onto one north-up TAN grid at the finest input pixel scale
    (bilinear, WCS and SIP honoured) and combine overlaps with ``combine_method``. A grid
    larger than ``max_output_pixels`` is made coarser to fit (inputs block-averaged to it)
    instead of being refused. Built tile by tile in a worker (memory follows the tile
    size, not the number of files; on ``DASK_SCHEDULER_ADDRESS``'s cluster when set) and
    streamed while it is written. This is queued work: when the engine is busy it waits,
    up to ``QUEUED_JOB_TIME_LIMIT_SECONDS``, instead of answering 429."""

    def resolve() -> tuple[list[str], list[int]]:
        paths, sizes = [], []
        for key in body.file_paths:
            path = storage.local_path(key)
            check_file_size(path, settings.max_fits_file_bytes)
            paths.append(str(path))
            sizes.append(data_size_bound(path))
        return paths, sizes

    paths, sizes = await run_in_threadpool(resolve)
    dask = dask_target(settings)
    directory = str(settings.STORAGE_TEMP_CACHE_DIR / MOSAIC_OUTPUT_DIR)
    steps = pool.stream(
        build_observation_mosaic,
        paths,
        body.combine_method,
        body.max_output_pixels,
        directory,
        dask,
        max_elements=settings.MAX_FITS_ARRAY_ELEMENTS,
        estimate_bytes=estimate_observation_bytes(sizes, on_dask=bool(dask)),
        queued=True,
        time_limit=settings.QUEUED_JOB_TIME_LIMIT_SECONDS,
        disconnected=request.is_disconnected,
    )
    started: dict[str, Any] | None = None
    try:
        async for kind, value in steps:
            if kind == "event" and value.get("event") == "file":
                started = value
                break
    except BaseException:
        await steps.aclose()
        raise
    if started is None:  # the client went away while the job waited or planned
        await steps.aclose()
        return Response(status_code=499)
    return StreamingResponse(
        _follow_file(steps, started["path"], int(started["size"])),
        media_type=MEDIA["fits"],
        headers={
            "Content-Disposition": "attachment; filename=observation-mosaic.fits",
            "Content-Length": str(int(started["size"])),
        },
    )


@route(router.post, "/footprint", FootprintResponse, FOOTPRINT_ERRORS)
async def footprint(body: FootprintRequest, storage: StorageDep, pool: PoolDep):
    """Sky footprints of FITS files.

    Corners (pixel centres of the four corner pixels) and centre of each file on the sky,
    from its WCS alone (astropy: PC, CD and SIP honoured; no pixel is read), and the
    bounding box of all of them, which handles RA wrap-around at 0/360. ``overlap_warning``
    lists the groups when the files form several that do not overlap on the sky."""
    paths = [str(p) for p in await resolve_files(storage, body.file_paths)]
    return await pool.run(
        footprints.footprints, paths, body.file_paths, estimate_bytes=HEADER_JOB_BYTES
    )

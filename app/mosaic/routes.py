"""Mosaic and footprint routes (CONTRACT.md §3.8-3.10): thin; the work is in mosaic_engine."""

from __future__ import annotations

import os
import tempfile

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.deps import get_pool, get_settings, get_storage, resolve_files
from app.errors import BadRequest
from app.http_errors import error_responses
from app.mosaic import mosaic_engine
from app.mosaic.models import FootprintRequest, FootprintResponse, MosaicRequest
from app.mosaic.rendering import render_mosaic_picture
from app.processing.pipeline import DisplayParams
from app.processing.render import COLORMAPS
from app.storage.provider import StorageProvider
from app.workers import WorkerPool

router = APIRouter(prefix="/mosaic", tags=["Mosaic"])

MEDIA = {"png": "image/png", "jpeg": "image/jpeg", "fits": "application/fits"}


def _build_fits(plan, directory: str, dask_address: str | None) -> str:
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


@router.post("/generate", response_class=Response,
             summary="Stitch exposures into one mosaic (picture or FITS)",
             responses={200: {"content": {"image/png": {}, "image/jpeg": {},
                                          "application/fits": {}},
                              "description": "PNG/JPEG picture, or the FITS mosaic (primary "
                                             "float32 image with WCS and provenance, SRCMETA "
                                             "table of the source headers), streamed"},
                        **error_responses(400, 403, 404, 413, 422, 429, 503)})
async def generate_mosaic(body: MosaicRequest, settings: Settings = Depends(get_settings),
                          storage: StorageProvider = Depends(get_storage),
                          pool: WorkerPool = Depends(get_pool)):
    """Resample every file onto one north-up gnomonic grid (bilinear, WCS honoured, SIP
    included) and combine overlaps with ``combine_method``. FITS: at the finest input pixel
    scale, NaN where nothing covers, built tile by tile on disk and streamed. Pictures:
    ``files[0]``'s stretch over the whole mosaic, the colormap, no coverage black; with both
    ``width`` and ``height`` exactly that size (square sky pixels, the mosaic centred)."""
    fmt = body.output_format
    if body.cmap not in COLORMAPS:
        raise BadRequest(f"Invalid colormap '{body.cmap}'. Valid options: {', '.join(COLORMAPS)}")
    if fmt == "fits" and (body.width is not None or body.height is not None):
        raise BadRequest("width and height cannot be used with output_format 'fits': the FITS "
                         "mosaic is always at the inputs' native resolution")
    paths = [str(p) for p in await resolve_files(storage, [f.file_path for f in body.files])]
    plan = await run_in_threadpool(
        mosaic_engine.plan_mosaic, paths, body.combine_method,
        max_output_pixels=settings.MAX_MOSAIC_OUTPUT_PIXELS, width=body.width,
        height=body.height, max_file_bytes=settings.max_fits_file_bytes)
    estimate = mosaic_engine.estimate_mosaic_bytes(plan, in_memory=fmt != "fits")
    dask = settings.DASK_SCHEDULER_ADDRESS
    if fmt == "fits":
        directory = str(settings.STORAGE_TEMP_CACHE_DIR / "mosaic-output")
        path = await pool.run(_build_fits, plan, directory, dask, estimate_bytes=estimate)
        return FileResponse(path, media_type=MEDIA["fits"], filename="mosaic.fits",
                            background=BackgroundTask(os.unlink, path))
    first = body.files[0]
    display = DisplayParams(stretch=first.stretch, gamma=first.gamma,
                            black_point=first.black_point, white_point=first.white_point,
                            asinh_a=first.asinh_a)
    content = await pool.run(render_mosaic_picture, plan, display, body.cmap, fmt, body.quality,
                             dask, estimate_bytes=estimate)
    return Response(content=content, media_type=MEDIA[fmt])


@router.post("/footprint", response_model=FootprintResponse,
             summary="Sky footprints of FITS files, from their headers",
             responses=error_responses(400, 403, 404, 422))
async def footprint(body: FootprintRequest, storage: StorageProvider = Depends(get_storage)):
    """Corners (pixel centres of the four corner pixels) and centre of each file on the sky,
    from its WCS alone (astropy: PC, CD and SIP honoured; no pixel is read), and the
    bounding box of all of them, which handles RA wrap-around at 0/360."""
    paths = [str(p) for p in await resolve_files(storage, body.file_paths)]
    result = await run_in_threadpool(mosaic_engine.footprints, paths)
    for item, key in zip(result["footprints"], body.file_paths):
        item["file_path"] = key
    return result

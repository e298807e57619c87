"""Viewer routes (CONTRACT.md §3.2-3.6): parse, check, hand to a worker, shape."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse, Response

from app.deps import PoolDep, SettingsDep, StorageDep, resolve_file
from app.errors import BadRequest
from app.http_errors import error_responses, route
from app.processing.enhancement import STRETCHES, DisplayParams
from app.processing.fits_io import ImageInfo
from app.processing.render import COLORMAPS
from app.processing.smoothing import SMOOTH_METHODS
from app.storage.provider import StorageProvider
from app.viewer import viewer_engine
from app.viewer.models import (
    CubeInfoResponse,
    HistogramResponse,
    PixelDataResponse,
    ThumbnailRequest,
    ThumbnailResponse,
)
from app.workers import HEADER_JOB_BYTES, WorkerPool

T = TypeVar("T")

router = APIRouter(tags=["Viewer"])

ERRORS = error_responses(
    400,
    403,
    404,
    413,
    429,
    e400="Bad parameter, or a file that is not a usable FITS image (truncated, empty, all NaN...)",
    e413="The image holds more pixels than allowed",
)

DataId = Annotated[
    str, Path(description="Record id of the .NET side (a 24-hex ObjectId); only echoed")
]
FilePath = Annotated[
    str,
    Query(
        description="Storage key of the FITS file",
        examples=[
            "mast/jw02733-o001_t001_nircam_clear-f090w/"
            "jw02733-o001_t001_nircam_clear-f090w_i2d.fits"
        ],
    ),
]
SliceIndex = Annotated[
    int,
    Query(description="Cube slice along the first axis; -1 = middle; clamped to the last slice"),
]


def _range(name: str, value: float, low: float, high: float, label: str | None = None) -> None:
    if not (low <= value <= high):
        raise BadRequest(f"{label or name} must be between {low:g} and {high:g} (got {value:g})")


def display_params(
    stretch: Annotated[str, Query(description="Stretch: " + ", ".join(STRETCHES))] = "zscale",
    gamma: Annotated[float, Query(description="Gamma 0.1-5; output = x^(1/gamma)")] = 1.0,
    black_point: Annotated[
        float, Query(description="Black point as a percentile fraction, 0-1, below white_point")
    ] = 0.0,
    white_point: Annotated[
        float, Query(description="White point as a percentile fraction, 0-1")
    ] = 1.0,
    asinh_a: Annotated[float, Query(description="Asinh softening, 0.001-1")] = 0.1,
    smooth_method: Annotated[
        str, Query(description="Empty, or: " + ", ".join(SMOOTH_METHODS))
    ] = "",
    smooth_sigma: Annotated[float, Query(description="Gaussian sigma in pixels, 0.1-10")] = 1.0,
    smooth_size: Annotated[int, Query(description="Median/box kernel size, odd, 1-25")] = 3,
) -> DisplayParams:
    """The display parameters preview and histogram share, validated (400 with the
    reason, as the contract says): a FastAPI dependency, so both declare them once."""
    if stretch not in STRETCHES:
        raise BadRequest(f"Invalid stretch '{stretch}'. Valid options: {', '.join(STRETCHES)}")
    _range("gamma", gamma, 0.1, 5.0, "Gamma")
    _range("black_point", black_point, 0.0, 1.0, "Black point")
    _range("white_point", white_point, 0.0, 1.0, "White point")
    if black_point >= white_point:
        raise BadRequest("Black point must be less than white point")
    _range("asinh_a", asinh_a, 0.001, 1.0, "Asinh softening parameter")
    if smooth_method and smooth_method not in SMOOTH_METHODS:
        raise BadRequest(
            f"Invalid smooth_method '{smooth_method}'. Must be empty or one of: "
            f"{', '.join(SMOOTH_METHODS)}"
        )
    _range("smooth_sigma", smooth_sigma, 0.1, 10.0)
    _range("smooth_size", smooth_size, 1, 25)
    if smooth_size % 2 == 0:
        raise BadRequest("smooth_size must be odd")
    # The parameters are DisplayParams' fields, in its order (checked by a test).
    return DisplayParams(
        stretch, gamma, black_point, white_point, asinh_a, smooth_method, smooth_sigma, smooth_size
    )


#: The shared display parameters of a request, validated.
DisplayDep = Annotated[DisplayParams, Depends(display_params)]


def parse_avm_metadata(text: str) -> dict:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"avm_metadata is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise BadRequest("avm_metadata must be a JSON object of strings")
    return {str(k): str(v) for k, v in value.items() if v is not None}


@dataclass(frozen=True)
class ImageJobs:
    """What a viewer route needs to work on one image: the storage that resolves its
    key, the pool whose workers read it, and the pixel limit every read runs under."""

    storage: StorageProvider
    pool: WorkerPool
    max_elements: int

    async def open(self, file_path: str, slice_index: int) -> tuple[pathlib.Path, ImageInfo, bool]:
        """The file's local path, its image's shape and whether the file is
        compressed, read in a worker (never in the server)."""
        if slice_index < -1:
            raise BadRequest("Slice index must be -1 or greater")
        path = await resolve_file(self.storage, file_path)
        info, compressed = await self.run(
            viewer_engine.inspect, path, slice_index, estimate_bytes=HEADER_JOB_BYTES
        )
        return path, info, compressed

    async def run(
        self, fn: Callable[..., T], path: pathlib.Path, *args: Any, estimate_bytes: int
    ) -> T:
        """``fn(path, *args, max_elements)`` in a worker, admitted for ``estimate_bytes``."""
        return await self.pool.run(
            fn, str(path), *args, self.max_elements, estimate_bytes=estimate_bytes
        )


def image_jobs(settings: SettingsDep, storage: StorageDep, pool: PoolDep) -> ImageJobs:
    return ImageJobs(storage, pool, settings.MAX_FITS_ARRAY_ELEMENTS)


ImageJobsDep = Annotated[ImageJobs, Depends(image_jobs)]


@route(router.post, "/thumbnail", ThumbnailResponse, ERRORS)
async def thumbnail(body: ThumbnailRequest, jobs: ImageJobsDep):
    """256 px PNG thumbnail of a FITS image.

    A quick-look thumbnail: the first image HDU (middle slice of a cube), zscale
    stretch, grey, 256 px on its long side with the aspect kept, row 0 at the bottom.
    Returned as base64 PNG inside JSON."""
    path, info, compressed = await jobs.open(body.file_path, -1)
    w, h = viewer_engine.long_side_size(
        info.choice.width, info.choice.height, viewer_engine.THUMBNAIL_SIZE
    )
    estimate = viewer_engine.estimate_picture_bytes(info, w, h, compressed)
    encoded = await jobs.run(viewer_engine.render_thumbnail, path, estimate_bytes=estimate)
    return {"thumbnail_base64": encoded}


@route(
    router.get,
    "/preview/{data_id}",
    None,
    {
        **ERRORS,
        200: {
            "content": {"image/png": {}, "image/jpeg": {}},
            "description": "The rendered picture; headers X-Cube-Slices and X-Cube-Current",
        },
    },
    response_class=Response,
)
async def preview(
    *,
    data_id: DataId,
    file_path: FilePath,
    cmap: Annotated[str, Query(description="Colormap: " + ", ".join(COLORMAPS))] = "grayscale",
    width: Annotated[int, Query(description="Box width in pixels, 10-8000")] = 1000,
    height: Annotated[int, Query(description="Box height in pixels, 10-8000")] = 1000,
    display: DisplayDep,
    slice_index: SliceIndex = -1,
    format: Annotated[str, Query(description="png or jpeg")] = "png",
    quality: Annotated[int, Query(description="JPEG quality 1-100")] = 90,
    embed_avm: Annotated[
        bool, Query(description="Embed AVM XMP (sky position, target, instrument) in the picture")
    ] = False,
    avm_metadata: Annotated[
        str,
        Query(
            description="JSON object: target_name, instrument, "
            "filter, description, facility, "
            "spectral_band, publisher"
        ),
    ] = "",
    jobs: ImageJobsDep,
):
    """Rendered PNG/JPEG preview of a FITS image.

    Render one image plane with a stretch and a colormap, scaled to fit the
    ``width`` x ``height`` box with its aspect kept (one side equals the box side).
    Non-finite pixels take the colormap's lowest colour."""
    if cmap not in COLORMAPS:
        raise BadRequest(f"Invalid colormap '{cmap}'. Valid options: {', '.join(COLORMAPS)}")
    _range("width", width, 10, 8000, "Width")
    _range("height", height, 10, 8000, "Height")
    if format not in ("png", "jpeg"):
        raise BadRequest("Format must be 'png' or 'jpeg'")
    _range("quality", quality, 1, 100, "Quality")
    avm = parse_avm_metadata(avm_metadata) if embed_avm else None
    params = viewer_engine.PreviewParams(
        display=display,
        cmap=cmap,
        box=(width, height),
        slice_index=slice_index,
        fmt=format,
        quality=quality,
        avm_metadata=avm,
    )
    path, info, compressed = await jobs.open(file_path, slice_index)
    out_w, out_h = viewer_engine.fit_within(info.choice.width, info.choice.height, width, height)
    estimate = viewer_engine.estimate_picture_bytes(
        info, out_w, out_h, compressed, smoothing=bool(display.smooth_method)
    )
    content, n_slices, current = await jobs.run(
        viewer_engine.render_preview, path, params, estimate_bytes=estimate
    )
    return Response(
        content=content,
        media_type="image/jpeg" if format == "jpeg" else "image/png",
        headers={"X-Cube-Slices": str(n_slices), "X-Cube-Current": str(current)},
    )


@route(router.get, "/histogram/{data_id}", HistogramResponse, ERRORS)
async def histogram(
    *,
    data_id: DataId,
    file_path: FilePath,
    bins: Annotated[int, Query(description="Number of bins, 10-10000")] = 256,
    slice_index: SliceIndex = -1,
    display: DisplayDep,
    jobs: ImageJobsDep,
):
    """Histogram and percentiles of a stretched FITS image.

    Histograms of the display values (after stretch, levels and gamma) and of the
    raw values (min-max normalised), percentiles and statistics of the display values.
    Every pixel counts for images up to 4096 px on a side; larger ones are sampled on
    a regular grid (every n-th row and column)."""
    _range("bins", bins, 10, 10000, "Bins")
    path, info, compressed = await jobs.open(file_path, slice_index)
    estimate = viewer_engine.estimate_histogram_bytes(info, compressed, bool(display.smooth_method))
    result = await jobs.run(
        viewer_engine.compute_histogram, path, bins, slice_index, display, estimate_bytes=estimate
    )
    # Built by the worker in the declared shape; skip re-validating thousands of numbers.
    return JSONResponse({"data_id": data_id, **result})


@route(router.get, "/pixeldata/{data_id}", PixelDataResponse, ERRORS)
async def pixeldata(
    *,
    data_id: DataId,
    file_path: FilePath,
    max_size: Annotated[
        int, Query(description="Longest side of the returned grid, 100-8000")
    ] = 1200,
    slice_index: SliceIndex = -1,
    jobs: ImageJobsDep,
):
    """Downsampled float32 pixels and WCS for hover read-outs.

    Pixel values reduced by an integer block mean so that the long side is at most
    ``max_size``, with the celestial WCS of the original pixels (astropy: PC, CD, SIP
    honoured) and the data unit."""
    _range("max_size", max_size, 100, 8000, "Max size")
    path, info, compressed = await jobs.open(file_path, slice_index)
    estimate = viewer_engine.estimate_pixeldata_bytes(info, max_size, compressed)
    body = await jobs.run(
        viewer_engine.pixeldata_json, path, data_id, max_size, slice_index, estimate_bytes=estimate
    )
    # A multi-megabyte base64 string: the worker built the JSON bytes already.
    return Response(content=body, media_type="application/json")


@route(router.get, "/cubeinfo/{data_id}", CubeInfoResponse, ERRORS)
async def cubeinfo(data_id: DataId, file_path: FilePath, jobs: ImageJobsDep):
    """Slice count and spectral axis of a data cube.

    Whether the file holds a cube (an image HDU with 3 or more axes), how many
    slices it has and what its third axis measures (from CTYPE3/CUNIT3/CRVAL3...)."""
    path = await resolve_file(jobs.storage, file_path)
    result = await jobs.pool.run(
        viewer_engine.compute_cubeinfo, str(path), estimate_bytes=HEADER_JOB_BYTES
    )
    return CubeInfoResponse(data_id=data_id, **result.model_dump())

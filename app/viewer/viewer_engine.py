"""The viewer's work, as plain functions run in worker processes.

Each function takes a local file path and plain parameters and returns plain data
(bytes, and the typed dicts below: the JSON bodies the routes send), so it pickles
across the process pool and runs in tests without a server. Sizes: a picture is
reduced early, at read time, by an integer block mean that keeps at least the
output's resolution; the final exact size is reached by resampling the 8-bit picture.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import TypedDict

import numpy as np

from app.processing import statistics
from app.processing.avm import build_xmp, spatial_tags
from app.processing.enhancement import DisplayParams, fit_display
from app.processing.fits_io import (
    ImageInfo,
    celestial_wcs,
    find_image_hdu,
    hdu_shape,
    inspect_image,
    is_image_hdu,
    is_whole_file_compressed,
    iter_hdus,
    open_fits,
    open_plane,
    require_finite,
    scale_and_rotation,
)
from app.processing.pipeline import display_values, smoothed
from app.processing.render import encode, fit_within, indices_to_image, long_side_size, to_indices
from app.viewer.models import Axis3, CubeInfo, PixelData, WcsParams

THUMBNAIL_SIZE = 256
HISTOGRAM_MAX_SIDE = 4096
MB = 1024 * 1024


@dataclass(frozen=True)
class PreviewParams:
    display: DisplayParams = field(default_factory=DisplayParams)
    cmap: str = "grayscale"
    box: tuple[int, int] = (1000, 1000)  # width, height: the picture fits inside
    slice_index: int = -1
    fmt: str = "png"
    quality: int = 90
    avm_metadata: dict | None = None  # None: no AVM; a dict (maybe empty): embed AVM


class CubeSlice(TypedDict):
    n_slices: int
    current_slice: int


class HistogramBody(TypedDict):
    """``GET /histogram``'s body without ``data_id``."""

    histogram: statistics.Histogram
    raw_histogram: statistics.Histogram
    percentiles: dict[str, float | None]
    stats: statistics.Summary
    cube_info: CubeSlice


# --------------------------------------------------------------------------------------
# Sizing and memory estimates (used by the routes before admitting a job)
# --------------------------------------------------------------------------------------


def picture_factor(height: int, width: int, out_w: int, out_h: int) -> int:
    """Integer reduction that keeps the reduced image at least as large as the output."""
    return max(1, min(width // max(1, out_w), height // max(1, out_h)))


def _reduced_pixels(height: int, width: int, factor: int) -> int:
    return -(-height // factor) * -(-width // factor)


def _read_overhead(info: ImageInfo, path_is_compressed: bool) -> int:
    """Bytes for reading: a few 8 MB blocks, or the whole data when astropy must decompress.

    A whole-file compressed input is held twice at its own width (the decompressed
    bytes, then the array made from them) before the float32 copy: 2 x 8 + 4 = 20
    bytes per element for float64 (measured: 17.4), 8 for int16.
    """
    overhead = 48 * MB
    if path_is_compressed:
        bitpix = info.header.get("BITPIX", -64)
        width = abs(int(bitpix)) // 8 if isinstance(bitpix, int) and bitpix else 8
        overhead += math.prod(info.shape) * (2 * width + 4)
    return overhead


def estimate_picture_bytes(
    info: ImageInfo, out_w: int, out_h: int, compressed: bool, smoothing: bool = False
) -> int:
    choice = info.choice
    factor = picture_factor(choice.height, choice.width, out_w, out_h)
    reduced = _reduced_pixels(choice.height, choice.width, factor)
    per_pixel = 4 * (10 if smoothing else 6)
    return _read_overhead(info, compressed) + reduced * per_pixel + out_w * out_h * 8


def histogram_step(height: int, width: int) -> int:
    long_side = max(height, width)
    return 1 if long_side <= HISTOGRAM_MAX_SIDE else math.ceil(long_side / HISTOGRAM_MAX_SIDE)


def estimate_histogram_bytes(info: ImageInfo, compressed: bool, smoothing: bool = False) -> int:
    choice = info.choice
    step = histogram_step(choice.height, choice.width)
    pixels = _reduced_pixels(choice.height, choice.width, step)
    # One float32 copy of the finite values plus selection scratch; smoothing
    # works on 2-D images and needs several more.
    per_pixel = 4 * (12 if smoothing else 3)
    return _read_overhead(info, compressed) + pixels * per_pixel


def pixeldata_factor(height: int, width: int, max_size: int) -> int:
    long_side = max(height, width)
    return 1 if long_side <= max_size else math.ceil(long_side / max_size)


def estimate_pixeldata_bytes(info: ImageInfo, max_size: int, compressed: bool) -> int:
    choice = info.choice
    factor = pixeldata_factor(choice.height, choice.width, max_size)
    return (
        _read_overhead(info, compressed)
        + _reduced_pixels(choice.height, choice.width, factor) * 4 * 6
    )


# --------------------------------------------------------------------------------------
# Work
# --------------------------------------------------------------------------------------


def render_thumbnail(path: str, max_elements: int) -> str:
    """Base64 PNG, 256 px on its long side, zscale, grey (CONTRACT.md §3.2)."""
    with open_plane(path, -1, max_elements) as (reader, info):
        choice = info.choice
        out_w, out_h = long_side_size(choice.width, choice.height, THUMBNAIL_SIZE)
        data = reader.read_reduced(picture_factor(choice.height, choice.width, out_w, out_h))
    require_finite(data)
    values = display_values(data, DisplayParams(stretch="zscale"))
    image = indices_to_image(to_indices(values), (out_w, out_h), "gray")
    return base64.b64encode(encode(image, "png")).decode("ascii")


def render_preview(path: str, params: PreviewParams, max_elements: int) -> tuple[bytes, int, int]:
    """(image bytes, number of slices, slice used) for ``GET /preview``."""
    with open_plane(path, params.slice_index, max_elements) as (reader, info):
        choice = info.choice
        out_w, out_h = fit_within(choice.width, choice.height, *params.box)
        factor = picture_factor(choice.height, choice.width, out_w, out_h)
        data = reader.read_reduced(factor)
        header = info.header
    require_finite(data)
    values = display_values(data, params.display)
    image = indices_to_image(to_indices(values), (out_w, out_h), params.cmap)
    xmp = None
    if params.avm_metadata is not None:
        wcs = celestial_wcs(header)
        spatial = None
        if wcs is not None:
            # The picture spans the reduced grid, which covers factor x its size.
            spatial = spatial_tags(
                wcs, out_w, out_h, data.shape[1] * factor, data.shape[0] * factor
            )
        xmp = build_xmp(params.avm_metadata, spatial)
    return encode(image, params.fmt, params.quality, xmp), choice.n_slices, choice.slice_index


def _percentile_keys(values: list[float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    clean = [None if not math.isfinite(v) else float(v) for v in values]
    # Old keys: "p" + int(p); 0.5 -> p0 and 99.5 overwrites p99, as before.
    for p, v in zip(statistics.REPORTED_PERCENTILES, clean, strict=True):
        out[f"p{int(p)}"] = v
    for p, v in zip(statistics.REPORTED_PERCENTILES, clean, strict=True):
        out["p_" + f"{p:g}".replace(".", "_")] = v
    return out


def compute_histogram(
    path: str, bins: int, slice_index: int, display: DisplayParams, max_elements: int
) -> HistogramBody:
    """The body of ``GET /histogram`` without ``data_id``.

    Works on the 1-D array of finite values: the display transform is fitted once
    and applied chunk by chunk while binning; percentiles of display values come
    from order statistics of the raw values (the transform is monotone).
    """
    with open_plane(path, slice_index, max_elements) as (reader, info):
        choice = info.choice
        step = histogram_step(choice.height, choice.width)
        if display.smooth_method:  # smoothing needs the 2-D image
            values = statistics.finite_values(smoothed(reader.read_strided(step), display))
        else:
            values = reader.finite_values(step)
    if values.size == 0:
        require_finite(values)
    transform = fit_display(values, display)
    display_hist, display_stats = statistics.display_histogram(values, bins, transform)
    # One bucketing pass serves the raw histogram and the percentile selection.
    buckets = statistics.Buckets(values)
    raw_counts = buckets.histogram_counts(bins)
    if raw_counts is not None:
        raw_hist = statistics.histogram_from_counts(raw_counts, (0.0, 1.0))
    else:
        raw_hist = statistics.histogram(
            values, bins, (buckets.low, buckets.high), label_range=(0.0, 1.0)
        )
    percentiles = statistics.percentiles(
        values, statistics.REPORTED_PERCENTILES, transform=transform, buckets=buckets
    )
    return HistogramBody(
        histogram=display_hist,
        raw_histogram=raw_hist,
        percentiles=_percentile_keys(percentiles),
        stats=display_stats,
        cube_info=CubeSlice(n_slices=choice.n_slices, current_slice=choice.slice_index),
    )


def wcs_params(header) -> WcsParams | None:
    """The ``wcs`` object of ``/pixeldata`` from astropy's WCS, or None."""
    wcs = celestial_wcs(header)
    if wcs is None:
        return None
    cd = np.array(wcs.pixel_scale_matrix, dtype=float)
    cdelt1, cdelt2, _ = scale_and_rotation(cd)
    ctype = list(wcs.wcs.ctype)
    values = WcsParams(
        crpix1=float(wcs.wcs.crpix[0]),
        crpix2=float(wcs.wcs.crpix[1]),
        crval1=float(wcs.wcs.crval[0]),
        crval2=float(wcs.wcs.crval[1]),
        cdelt1=cdelt1,
        cdelt2=cdelt2,
        cd1_1=float(cd[0, 0]),
        cd1_2=float(cd[0, 1]),
        cd2_1=float(cd[1, 0]),
        cd2_2=float(cd[1, 1]),
        ctype1=str(ctype[0]),
        ctype2=str(ctype[1]),
    )
    if not all(math.isfinite(v) for v in values.model_dump().values() if isinstance(v, float)):
        return None
    return values


def compute_pixeldata(path: str, max_size: int, slice_index: int, max_elements: int) -> PixelData:
    """The body of ``GET /pixeldata`` without ``data_id``."""
    with open_plane(path, slice_index, max_elements) as (reader, info):
        choice = info.choice
        factor = pixeldata_factor(choice.height, choice.width, max_size)
        data = reader.read_reduced(factor)
        header = info.header
        wcs = wcs_params(header)
        units = str(header.get("BUNIT", "") or "").strip()
    require_finite(data)
    clean = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0).astype("<f4", copy=False)
    return PixelData(
        original_shape=[int(choice.height), int(choice.width)],
        preview_shape=[int(clean.shape[0]), int(clean.shape[1])],
        scale_factor=float(factor),
        wcs=wcs,
        units=units,
        pixels=base64.b64encode(clean.tobytes()).decode("ascii"),
    )


def pixeldata_json(
    path: str, data_id: str, max_size: int, slice_index: int, max_elements: int
) -> bytes:
    """``GET /pixeldata``'s JSON body as bytes, built in the worker.

    The base64 payload is ASCII and needs no escaping, so it is spliced in
    rather than passed through a JSON encoder (megabytes for a large grid).
    """
    body = compute_pixeldata(path, max_size, slice_index, max_elements)
    head = json.dumps({"data_id": data_id, **body.model_dump(exclude={"pixels"})}, allow_nan=False)
    pixels = body.pixels
    return (head[:-1] + ', "pixels": "').encode("utf-8") + pixels.encode("ascii") + b'"}'


_SLICE_UNITS = {
    "m": "m",
    "meter": "m",
    "meters": "m",
    "um": "um",
    "micron": "um",
    "microns": "um",
    "micrometer": "um",
    "µm": "um",
    "nm": "nm",
    "nanometer": "nm",
    "a": "A",
    "angstrom": "A",
    "angstroms": "A",
    "aa": "A",
    "hz": "Hz",
}


def slice_label(ctype3: str) -> str:
    upper = ctype3.upper()
    if not upper:
        return "Frame"
    if "WAVE" in upper or "LAMB" in upper:
        return "Wavelength"
    if "FREQ" in upper:
        return "Frequency"
    if "VELO" in upper or "VRAD" in upper or "VOPT" in upper:
        return "Velocity"
    if "TIME" in upper or "MJD" in upper:
        return "Time"
    return ctype3


def compute_cubeinfo(path: str) -> CubeInfo:
    """The body of ``GET /cubeinfo`` without ``data_id``."""
    with open_fits(path) as hdul:
        find_image_hdu(hdul, min_ndim=2)  # 400 when there is no image at all
        for _, hdu in iter_hdus(hdul):
            if not is_image_hdu(hdu):
                continue
            shape = hdu_shape(hdu)
            if len(shape) >= 3 and 0 not in shape:
                header = hdu.header
                break
        else:
            return CubeInfo(
                is_cube=False, n_slices=1, axis3=None, slice_unit="", slice_label="Frame"
            )
    ctype3 = str(header.get("CTYPE3", "") or "").strip()
    cunit3 = str(header.get("CUNIT3", "") or "").strip()
    crval3 = header.get("CRVAL3")
    cdelt3 = header.get("CDELT3", header.get("CD3_3"))
    axis3: Axis3 | None = None
    if isinstance(crval3, (int, float)) and isinstance(cdelt3, (int, float)):
        crpix3 = header.get("CRPIX3", 1.0)
        axis3 = Axis3(
            crval3=float(crval3),
            cdelt3=float(cdelt3),
            crpix3=float(crpix3) if isinstance(crpix3, (int, float)) else 1.0,
            cunit3=cunit3,
            ctype3=ctype3,
        )
        if not all(math.isfinite(v) for v in (axis3.crval3, axis3.cdelt3, axis3.crpix3)):
            axis3 = None
    return CubeInfo(
        is_cube=True,
        n_slices=int(shape[0]),
        axis3=axis3,
        slice_unit=_SLICE_UNITS.get(cunit3.lower(), cunit3),
        slice_label=slice_label(ctype3),
    )


def inspect(path: str, slice_index: int, max_elements: int) -> tuple[ImageInfo, bool]:
    """Header-only check run before admission: (info, whole-file compressed?)."""
    info = inspect_image(path, slice_index, max_elements)
    return info, is_whole_file_compressed(path)

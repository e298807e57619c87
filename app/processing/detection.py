"""Source detection: DAOFIND, IRAF starfind and image segmentation (photutils).

All methods work on the background-subtracted image (a 2-D background and RMS
model from :func:`background.background_model`) with non-finite pixels masked.
Thresholds are ``threshold_sigma`` x the background RMS (the median RMS for
the star finders, the RMS map for segmentation). ``auto`` picks ``daofind``
when the RMS map is nearly flat (std/mean < 0.1) and ``segmentation``
otherwise. Sources centred on pixels that were not finite are dropped.
Pixel coordinates are 0-based.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from app.errors import BadRequest
from app.processing.background import background_model

if TYPE_CHECKING:
    from astropy.table import Table


class Source(TypedDict, total=False):
    """One detected source: the fields of CONTRACT.md §3.12 (``id`` given last to
    point sources)."""

    id: int
    xcentroid: float
    ycentroid: float
    flux: float | None
    sharpness: float | None
    roundness: float | None
    fwhm: float | None
    peak: float | None


class Detection(TypedDict):
    """What a detection answers (CONTRACT.md §3.12)."""

    sources: list[Source]
    n_sources: int
    method: str
    threshold_sigma: float
    threshold_value: float
    estimated_fwhm: float | None


METHODS = ("auto", "daofind", "iraf", "segmentation")


def _number(value: object) -> float | None:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _column(table: Table, *names: str) -> np.ndarray | None:
    """The first of ``names`` that the table has (photutils 3 renamed xcentroid to
    x_centroid)."""
    for name in names:
        if name in table.colnames:
            return np.asarray(table[name])
    return None


def _required(table: Table, *names: str) -> np.ndarray:
    column = _column(table, *names)
    if column is None:
        raise KeyError(f"the source table has none of the columns {names}")
    return column


def _star_finder(method: str, threshold: float, fwhm: float) -> Any:
    from photutils.detection import DAOStarFinder, IRAFStarFinder

    # min_separation=0: peaks are local maxima within the kernel's own footprint (the
    # classic DAOFIND rule), which spares photutils a per-pixel Python loop over ring
    # candidates that costs seconds on a noisy 2k image.
    if method == "daofind":
        return DAOStarFinder(threshold=threshold, fwhm=fwhm, exclude_border=True, min_separation=0)
    return IRAFStarFinder(threshold=threshold, fwhm=fwhm, exclude_border=True, min_separation=0)


def _point_sources(
    residual: np.ndarray, invalid: np.ndarray, method: str, threshold: float, fwhm: float
) -> list[Source]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = _star_finder(method, threshold, fwhm).find_stars(residual, mask=invalid)
    if table is None:
        return []
    x = _required(table, "x_centroid", "xcentroid")
    y = _required(table, "y_centroid", "ycentroid")
    flux, peak = _required(table, "flux"), _required(table, "peak")
    sharp = _required(table, "sharpness")
    rnd = _required(table, "roundness1", "roundness")
    width = _column(table, "fwhm")
    return [
        {
            "xcentroid": float(x[i]),
            "ycentroid": float(y[i]),
            "flux": _number(flux[i]),
            "sharpness": _number(sharp[i]),
            "roundness": _number(rnd[i]),
            "fwhm": _number(width[i]) if width is not None else None,
            "peak": _number(peak[i]),
        }
        for i in range(len(table))
    ]


def _segments(
    residual: np.ndarray,
    invalid: np.ndarray,
    rms: np.ndarray,
    threshold_sigma: float,
    fwhm: float,
    npixels: int,
    deblend: bool,
) -> list[Source]:
    from photutils.segmentation import (
        SourceCatalog,
        deblend_sources,
        detect_sources,
        make_2dgaussian_kernel,
    )
    from scipy.ndimage import convolve

    size = int(2 * math.ceil(1.5 * fwhm) + 1)
    kernel = np.asarray(make_2dgaussian_kernel(fwhm, size=size).array, dtype=np.float32)
    kernel /= kernel.sum()
    # ``residual`` is already 0 where the input was not finite; float32 throughout.
    convolved = convolve(residual, kernel, mode="nearest")
    threshold = rms
    threshold *= np.float32(threshold_sigma)  # in place: the RMS map is not needed after
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segm = detect_sources(convolved, threshold, n_pixels=npixels, mask=invalid)
        if segm is None:
            return []
        if deblend and segm.nlabels > 0:
            segm = deblend_sources(convolved, segm, n_pixels=npixels, progress_bar=False)
        catalog = SourceCatalog(residual, segm, convolved_data=convolved)
        # photutils 3 renamed xcentroid to x_centroid.
        new_names = hasattr(catalog, "x_centroid")
        x = np.asarray(catalog.x_centroid if new_names else catalog.xcentroid)
        y = np.asarray(catalog.y_centroid if new_names else catalog.ycentroid)
        radius = np.asarray(
            getattr(catalog.equivalent_radius, "value", catalog.equivalent_radius), dtype=float
        )
        flux = np.asarray(catalog.segment_flux, dtype=float)
        peak = np.asarray(catalog.max_value, dtype=float)
        labels = np.asarray(catalog.label)
    return [
        {
            "id": int(labels[i]),
            "xcentroid": float(x[i]),
            "ycentroid": float(y[i]),
            "flux": _number(flux[i]),
            "sharpness": None,
            "roundness": None,
            "fwhm": _number(2.0 * radius[i]),
            "peak": _number(peak[i]),
        }
        for i in range(labels.size)
    ]


#: Sources one detection returns at most (the brightest).
MAX_SOURCES = 10_000


def detect_sources(
    data: np.ndarray,
    method: str = "auto",
    threshold_sigma: float = 5.0,
    fwhm: float = 3.0,
    npixels: int = 10,
    deblend: bool = True,
    max_sources: int = MAX_SOURCES,
) -> Detection:
    """Detect sources in a 2-D image; returns the response fields of CONTRACT.md §3.12
    (at most ``max_sources``, the brightest by flux)."""
    if method not in METHODS:
        raise BadRequest(f"Invalid method '{method}'. Valid options: {', '.join(METHODS)}")
    data = np.asarray(data, dtype=np.float32)
    invalid = ~np.isfinite(data)
    if invalid.all():
        raise BadRequest("Image contains no finite pixel values (all NaN or Inf)")
    level, rms = background_model(data)
    residual = np.subtract(data, level, out=level)  # the background map's memory, reused
    residual[invalid] = 0.0
    del data, level  # the caller passes the only reference: the raw image is freed
    valid_rms = rms[~invalid]
    median_rms = float(np.median(valid_rms)) if valid_rms.size else 0.0
    if not median_rms > 0:
        raise BadRequest(
            "The image has no measurable noise (a constant image?): no threshold can be set"
        )
    used = method
    if method == "auto":
        spread = float(np.std(valid_rms)) / float(np.mean(valid_rms))
        used = "daofind" if spread < 0.1 else "segmentation"
    threshold_value = threshold_sigma * median_rms
    if used == "segmentation":
        sources = _segments(residual, invalid, rms, threshold_sigma, fwhm, npixels, deblend)
    else:
        sources = _point_sources(residual, invalid, used, threshold_value, fwhm)
    height, width = invalid.shape
    kept = []
    for s in sources:
        col, row = int(round(s["xcentroid"])), int(round(s["ycentroid"]))
        if not (0 <= col < width and 0 <= row < height) or invalid[row, col]:
            continue
        kept.append(s)
    if len(kept) > max_sources:
        # The brightest ones, in their order: noise at a low threshold can give tens of
        # thousands of "sources" and megabytes of JSON.
        brightest = sorted(range(len(kept)), key=lambda i: -(kept[i].get("flux") or 0.0))
        chosen = set(brightest[:max_sources])
        kept = [s for i, s in enumerate(kept) if i in chosen]
    for number, s in enumerate(kept, start=1):
        s.setdefault("id", number)
        if used != "segmentation":
            s["id"] = number
    return {
        "sources": kept,
        "n_sources": len(kept),
        "method": used,
        "threshold_sigma": float(threshold_sigma),
        "threshold_value": float(threshold_value),
        "estimated_fwhm": None,
    }

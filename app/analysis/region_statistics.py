"""Statistics of the pixels inside a region (rectangle, ellipse, circle, polygon).

A pixel belongs to a region when its centre does (0-based pixel centres on
integers); the rectangle is the pixel block ``[y, y+height) x [x, x+width)``.
Regions are clamped to the image; only the rows of the region's bounding box
are read; non-finite pixels are left out.
"""

from __future__ import annotations

import math
import os

import numpy as np

from app.analysis.models import RegionStatisticsResponse
from app.errors import BadRequest
from app.processing.fits_io import open_plane


def _bbox(c0: float, c1: float, r0: float, r1: float, height: int, width: int):
    """Integer pixel box [r0, r1) x [c0, c1) of centres in the closed ranges, clamped."""
    return (
        max(0, math.ceil(r0)),
        min(height, math.floor(r1) + 1),
        max(0, math.ceil(c0)),
        min(width, math.floor(c1) + 1),
    )


def _even_odd(points: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Points (xs, ys) inside the polygon by the even-odd rule."""
    inside = np.zeros(xs.shape, dtype=bool)
    px, py = points[:, 0], points[:, 1]
    for i in range(len(points)):
        x1, y1, x2, y2 = px[i - 1], py[i - 1], px[i], py[i]
        if y1 == y2:
            continue
        crosses = (ys >= min(y1, y2)) & (ys < max(y1, y2))
        x_at = x1 + (ys - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (xs < x_at)
    return inside


def region_window(region_type: str, region: dict, height: int, width: int):
    """(r0, r1, c0, c1, mask) of the region on an image of the given size.

    ``mask`` is None when the whole box is the region (a rectangle).
    """
    if region_type == "rectangle":
        x, y, w, h = region["x"], region["y"], region["width"], region["height"]
        return max(0, y), min(height, y + h), max(0, x), min(width, x + w), None
    if region_type in ("ellipse", "circle"):
        cx, cy = region["cx"], region["cy"]
        rx, ry = (
            (region["r"], region["r"]) if region_type == "circle" else (region["rx"], region["ry"])
        )
        r0, r1, c0, c1 = _bbox(cx - rx, cx + rx, cy - ry, cy + ry, height, width)
        rows = np.arange(r0, r1, dtype=np.float64)[:, None]
        cols = np.arange(c0, c1, dtype=np.float64)[None, :]
        mask = ((cols - cx) / rx) ** 2 + ((rows - cy) / ry) ** 2 <= 1.0
        return r0, r1, c0, c1, mask
    if region_type == "polygon":
        points = np.asarray(region["points"], dtype=np.float64)
        r0, r1, c0, c1 = _bbox(
            points[:, 0].min(),
            points[:, 0].max(),
            points[:, 1].min(),
            points[:, 1].max(),
            height,
            width,
        )
        rows, cols = np.mgrid[r0:r1, c0:c1]
        return r0, r1, c0, c1, _even_odd(points, cols.astype(float), rows.astype(float))
    raise BadRequest(f"Unknown region type '{region_type}'")


def region_statistics(
    path: str | os.PathLike[str],
    region_type: str,
    region: dict,
    hdu_index: int = -1,
    slice_index: int = -1,
    max_elements: int | None = None,
) -> RegionStatisticsResponse:
    """mean, median, std (ddof=0), min, max, sum and pixel_count of the region's finite
    pixels (float64 arithmetic)."""
    with open_plane(
        path, slice_index, max_elements, hdu_index=None if hdu_index < 0 else hdu_index
    ) as (reader, info):
        height, width = info.choice.height, info.choice.width
        r0, r1, c0, c1, mask = region_window(region_type, region, height, width)
        if r0 >= r1 or c0 >= c1:
            raise BadRequest(
                "No valid pixels in selected region (it lies outside the image "
                f"of {width} x {height} pixels)"
            )
        block = reader.rows(r0, r1)[:, c0:c1]
    values = block[mask] if mask is not None else block.ravel()
    values = values[np.isfinite(values)].astype(np.float64)
    if values.size == 0:
        raise BadRequest("No valid pixels in selected region")
    return RegionStatisticsResponse(
        mean=float(values.mean()),
        median=float(np.median(values)),
        std=float(values.std()),
        min=float(values.min()),
        max=float(values.max()),
        sum=float(values.sum()),
        pixel_count=int(values.size),
    )

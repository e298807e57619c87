"""Source detection on a file, as a worker job (size limit; the pool enforces its time)."""

from __future__ import annotations

import os

from app.errors import PayloadTooLarge
from app.processing.detection import Detection, detect_sources
from app.processing.fits_io import inspect_image, open_plane


def detection_pixels(path: str | os.PathLike[str], hdu_index: int = -1) -> int:
    info = inspect_image(path, hdu_index=None if hdu_index < 0 else hdu_index)
    return info.choice.height * info.choice.width


def check_detection_size(pixels: int, max_pixels: int) -> None:
    if pixels > max_pixels:
        raise PayloadTooLarge(
            f"Image too large for source detection: {pixels:,} pixels "
            f"exceeds the maximum of {max_pixels:,}"
        )


def estimate_detection_bytes(pixels: int) -> int:
    """About 60 bytes per pixel at the peak of segmentation with deblending
    (image, masks, background and RMS maps, convolved image, segment map, catalog)."""
    return int(pixels * 60 + 64 * 1024 * 1024)


def detect_in_file(
    path: str,
    hdu_index: int,
    method: str,
    threshold_sigma: float,
    fwhm: float,
    npixels: int,
    deblend: bool,
    max_pixels: int,
) -> Detection:
    """Worker job: the middle plane of the image HDU (its time limit is the pool's)."""
    with open_plane(path, -1, hdu_index=None if hdu_index < 0 else hdu_index) as (r, info):
        check_detection_size(info.choice.height * info.choice.width, max_pixels)
        # No name kept for the image: detect_sources frees it once subtracted.
        return detect_sources(r.read(), method, threshold_sigma, fwhm, npixels, deblend)

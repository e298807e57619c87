"""Resolution matching between instruments and sharpening (CONTRACT-HEAD §10.1 steps 5, 13).

Both are Gaussian filters. scipy's separable ``gaussian_filter`` (truncated at
4 sigma, zeros beyond the border) gives the same numbers as astropy's
``convolve`` with a ``Gaussian2DKernel`` of 8 sigma + 1 pixels and
``boundary="fill"`` (the tests check it) at a fraction of the cost.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from app.composite.color_mapping import PixelStep, apply_step
from app.processing.parallel import each_row_block

#: Kernels end at this many sigma (scipy's default).
TRUNCATE = 4.0
#: A channel coarser than this many times the finest channel is blurred to match.
MATCH_RATIO = 1.5
#: Blurs narrower than this (grid pixels) would change nothing visible: skipped.
MIN_SIGMA = 0.5


def gaussian_blur(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a 2-D float32 array, zeros outside the border (float32).

    scipy's separable filter, run by row blocks on a few threads: each block filters
    its rows plus ``4 sigma`` rows either side down the columns, then along its own
    rows, which gives exactly the whole-image result (scipy too filters axis 0 first)
    at about half the time (the column pass works on a block that stays in cache)."""
    values = np.asarray(values, dtype=np.float32)
    height, width = values.shape
    halo = int(TRUNCATE * sigma + 0.5)  # scipy's kernel radius
    out = np.empty((height, width), dtype=np.float32)

    def blur(rows: slice) -> None:
        lo, hi = max(0, rows.start - halo), min(height, rows.stop + halo)
        down = gaussian_filter1d(values[lo:hi], sigma, axis=0, mode="constant", truncate=TRUNCATE)
        out[rows] = gaussian_filter1d(
            down[rows.start - lo : rows.stop - lo],
            sigma,
            axis=1,
            mode="constant",
            truncate=TRUNCATE,
        )

    each_row_block(height, width, blur)
    return out


def match_sigma(scale_arcsec: float | None, finest_arcsec: float, grid_arcsec: float) -> float:
    """Blur (grid pixels) that brings a channel's resolution to the coarsest, or 0.

    The engine before us blurred by the ratio of native pixel scales on a grid at
    the finest scale. Our grid's pixel may be larger than the native pixels, so the
    same blur on the sky is that channel's pixel scale in grid pixels; a channel
    less than 1.5 x coarser than the finest one is left alone.
    """
    if scale_arcsec is None or finest_arcsec <= 0 or scale_arcsec <= MATCH_RATIO * finest_arcsec:
        return 0.0
    sigma = scale_arcsec / grid_arcsec
    return sigma if sigma >= MIN_SIGMA else 0.0


def blur_keeping_coverage(plane: np.ndarray, sigma: float) -> np.ndarray:
    """Blur the covered pixels (finite, NaN elsewhere) with a normalised Gaussian, so the
    footprint's edge does not darken; uncovered pixels stay uncovered."""
    covered = np.isfinite(plane)
    values = np.where(covered, plane, np.float32(0.0)).astype(np.float32)
    blurred = gaussian_blur(values, sigma)
    weight = gaussian_blur(covered.astype(np.float32), sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        blurred /= weight
    blurred[~covered] = np.nan
    return blurred


def sharpen(
    rgb: np.ndarray,
    radius: float,
    amount: float,
    threshold: float,
    coverage: np.ndarray,
    out: np.ndarray | None = None,
    then: PixelStep | None = None,
) -> np.ndarray:
    """Unsharp mask on luma (§10.1 step 13): delta = Y - blur(Y), small deltas (below
    ``threshold``) and those outside ``coverage`` dropped, ``amount`` x delta added to
    R, G and B, clipped to [0, 1]. The element-wise steps run by row blocks, on a few
    threads, into ``out`` when given (``rgb`` itself may be it). ``then``, a step on
    each pixel alone (the saturation step), is applied to each block as it is made,
    while the block is still in the CPU's cache."""
    if amount <= 0:
        return rgb if then is None else apply_step(rgb, then, out)
    height, width = rgb.shape[:2]
    luma = np.empty((height, width), dtype=np.float32)

    def weigh(rows: slice) -> None:
        block = rgb[rows]
        luma[rows] = (
            np.float32(0.2126) * block[..., 0]
            + np.float32(0.7152) * block[..., 1]
            + np.float32(0.0722) * block[..., 2]
        )

    each_row_block(height, width, weigh)
    blurred = gaussian_blur(luma, radius)
    if out is None:
        out = np.empty(rgb.shape, dtype=np.float32)
    target = out

    def add_detail(rows: slice) -> None:
        delta = luma[rows] - blurred[rows]
        # Dropped by products with 0/1 rather than by masks (mispredicted branches).
        if threshold > 0:
            delta *= np.abs(delta) >= np.float32(threshold)
        delta *= coverage[rows]
        delta *= np.float32(amount)
        block = rgb[rows] + delta[..., None]
        np.clip(block, 0.0, 1.0, out=block)
        target[rows] = block if then is None else then(block)

    each_row_block(height, width, add_detail)
    return out

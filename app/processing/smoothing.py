"""The five smoothing methods (applied before the stretch).

Every method is NaN-aware: non-finite pixels do not bleed into their
neighbours and stay non-finite in the output.

* ``gaussian`` - scipy Gaussian filter, ``sigma`` in pixels (normalised convolution).
* ``box`` - scipy uniform filter of ``size`` x ``size`` pixels (normalised convolution).
* ``median`` - scipy median filter of ``size`` x ``size`` (NaN filled with the image median).
* ``astropy_gaussian`` / ``astropy_box`` - astropy convolution with a Gaussian2DKernel /
  Box2DKernel, NaN interpolated from neighbours and preserved.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SMOOTH_METHODS = ("gaussian", "median", "box", "astropy_gaussian", "astropy_box")


def _normalized(data: np.ndarray, filt: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    finite = np.isfinite(data)
    if finite.all():
        smoothed: np.ndarray = filt(data).astype(np.float32)
        return smoothed
    values = np.where(finite, data, np.float32(0))
    weights = filt(finite.astype(np.float32))
    with np.errstate(invalid="ignore", divide="ignore"):
        out: np.ndarray = (filt(values) / weights).astype(np.float32)
    out[~finite] = np.nan
    return out


def smooth(data: np.ndarray, method: str, sigma: float = 1.0, size: int = 3) -> np.ndarray:
    """Smooth ``data`` with ``method`` (one of :data:`SMOOTH_METHODS`); "" is a no-op."""
    if not method:
        return data
    data = np.asarray(data, dtype=np.float32)
    if method == "gaussian":
        from scipy import ndimage

        return _normalized(data, lambda a: ndimage.gaussian_filter(a, sigma=sigma, mode="nearest"))
    if method == "box":
        from scipy import ndimage

        return _normalized(data, lambda a: ndimage.uniform_filter(a, size=size, mode="nearest"))
    if method == "median":
        from scipy import ndimage

        finite = np.isfinite(data)
        if finite.all():
            return np.asarray(ndimage.median_filter(data, size=size, mode="nearest"))
        fill = np.float32(np.median(data[finite])) if finite.any() else np.float32(0)
        out: np.ndarray = ndimage.median_filter(
            np.where(finite, data, fill), size=size, mode="nearest"
        )
        out[~finite] = np.nan
        return out
    if method in ("astropy_gaussian", "astropy_box"):
        from astropy.convolution import Box2DKernel, Gaussian2DKernel, convolve

        kernel = Gaussian2DKernel(sigma) if method == "astropy_gaussian" else Box2DKernel(size)
        smoothed: np.ndarray = convolve(
            data, kernel, boundary="extend", nan_treatment="interpolate", preserve_nan=True
        )
        return smoothed.astype(np.float32)
    raise ValueError(f"unknown smoothing method {method!r}")

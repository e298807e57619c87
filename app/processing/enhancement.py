"""The seven stretches, black/white points and gamma (CONTRACT.md Appendix A).

All functions take float arrays that may hold NaN/Inf and return float32 arrays
in [0, 1] in which non-finite input pixels stay NaN; statistics (min, max,
percentiles, zscale limits, equalisation) use only finite pixels.
"""

from __future__ import annotations

import math

import numpy as np

from app.processing.statistics import finite_values, percentiles

STRETCHES = ("zscale", "asinh", "log", "sqrt", "power", "histeq", "linear")
ZSCALE_CONTRAST = 0.25


def _as_float32(data: np.ndarray) -> np.ndarray:
    return np.asarray(data, dtype=np.float32)


def rescale(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """(data - low) / (high - low), clipped to [0, 1]; zeros when high <= low."""
    data = _as_float32(data)
    out = np.empty_like(data)
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        out[...] = 0.0
        out[~np.isfinite(data)] = np.nan
        return out
    np.subtract(data, np.float32(low), out=out)
    out *= np.float32(1.0 / (high - low))
    np.clip(out, 0.0, 1.0, out=out)  # NaN passes through clip unchanged
    out[np.isinf(data)] = np.nan
    return out


def minmax_limits(data: np.ndarray) -> tuple[float, float]:
    values = finite_values(data)
    if values.size == 0:
        return math.nan, math.nan
    return float(values.min()), float(values.max())


def normalize(data: np.ndarray) -> np.ndarray:
    """Min-max normalisation of the finite pixels to [0, 1] (the ``linear`` stretch)."""
    low, high = minmax_limits(data)
    return rescale(data, low, high)


def zscale_limits(data: np.ndarray, contrast: float = ZSCALE_CONTRAST) -> tuple[float, float]:
    """IRAF zscale limits via astropy's ZScaleInterval, over the finite pixels."""
    from astropy.visualization import ZScaleInterval

    values = finite_values(data)
    if values.size == 0:
        return math.nan, math.nan
    low, high = ZScaleInterval(contrast=contrast).get_limits(values)
    return float(low), float(high)


def zscale(data: np.ndarray) -> np.ndarray:
    low, high = zscale_limits(data)
    if not high > low:  # flat data: fall back to min-max
        return normalize(data)
    return rescale(data, low, high)


def asinh(data: np.ndarray, a: float = 0.1) -> np.ndarray:
    x = normalize(data)
    np.divide(x, np.float32(a), out=x)
    np.arcsinh(x, out=x)
    x *= np.float32(1.0 / math.asinh(1.0 / a))
    return x


def log(data: np.ndarray) -> np.ndarray:
    x = normalize(data)
    x *= np.float32(1000.0)
    np.log1p(x, out=x)
    x *= np.float32(1.0 / math.log(1001.0))
    return x


def sqrt(data: np.ndarray) -> np.ndarray:
    x = normalize(data)
    np.sqrt(x, out=x)
    return x


def power(data: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """x ** (1/gamma) of the normalised data (``gamma`` is the preview's gamma)."""
    x = normalize(data)
    if gamma != 1.0:
        np.power(x, np.float32(1.0 / gamma), out=x)
    return x


def histeq(data: np.ndarray) -> np.ndarray:
    """Histogram equalisation of the finite pixels, as astropy's HistEqStretch.

    Each pixel maps to the (interpolated) fraction of finite pixels below it.
    """
    x = normalize(data)
    values = np.sort(finite_values(x))
    out = np.full(x.shape, np.nan, dtype=np.float32)
    if values.size == 0:
        return out
    if values.size == 1 or values[0] == values[-1]:
        out[np.isfinite(x)] = 0.0
        return out
    ranks = np.linspace(0.0, 1.0, values.size, dtype=np.float64)
    finite = np.isfinite(x)
    out[finite] = np.interp(x[finite], values, ranks).astype(np.float32)
    return out


def apply_stretch(data: np.ndarray, stretch: str, *, gamma: float = 1.0, asinh_a: float = 0.1,
                  black_point: float = 0.0, white_point: float = 1.0) -> np.ndarray:
    """The full single-image pipeline: stretch, black/white points, gamma.

    ``black_point`` and ``white_point`` are fractions (0-1) turned into
    percentiles of the stretched finite pixels; gamma is x ** (1/gamma) for
    every stretch but ``power``, which already used it.
    """
    if stretch == "zscale":
        x = zscale(data)
    elif stretch == "asinh":
        x = asinh(data, asinh_a)
    elif stretch == "log":
        x = log(data)
    elif stretch == "sqrt":
        x = sqrt(data)
    elif stretch == "power":
        x = power(data, gamma)
    elif stretch == "histeq":
        x = histeq(data)
    elif stretch == "linear":
        x = normalize(data)
    else:
        raise ValueError(f"unknown stretch {stretch!r}")
    x = apply_levels(x, black_point, white_point)
    if stretch != "power" and gamma != 1.0:
        np.power(x, np.float32(1.0 / gamma), out=x)
    return x


def apply_levels(x: np.ndarray, black_point: float, white_point: float) -> np.ndarray:
    """Rescale between the black/white percentiles of ``x`` (fractions 0-1)."""
    if black_point <= 0.0 and white_point >= 1.0:
        return x
    low, high = percentiles(x, [black_point * 100.0, white_point * 100.0])
    if not high > low:
        return x
    return rescale(x, low, high)

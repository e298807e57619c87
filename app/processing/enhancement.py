"""The seven stretches, black/white points and gamma (CONTRACT.md Appendix A).

A display transform is *fitted* once on the finite pixel values (it needs
their minimum and maximum, zscale limits, or their distribution for histogram
equalisation) and then applied element-wise, so the same transform can render
a picture, bin a histogram chunk by chunk, or map a few order statistics.

Every step is monotone non-decreasing in the pixel value, which lets
percentiles of display values be computed from percentiles of raw values.

Pipeline, for finite values x:

1. stretch: ``linear`` t = (x - min)/(max - min); ``zscale`` the same between
   astropy's ZScaleInterval limits (contrast 0.25), clipped; the others first
   normalise min-max and then apply ``asinh`` asinh(t/a)/asinh(1/a), ``log``
   log(1000 t + 1)/log(1001), ``sqrt`` sqrt(t), ``power`` t^(1/gamma),
   ``histeq`` the fraction of finite pixels below t (astropy's HistEqStretch);
2. levels: if black_point > 0 or white_point < 1, rescale between those
   percentiles (x 100) of the stretched values and clip to [0, 1];
3. gamma (all but ``power``): y = y^(1/gamma).

Non-finite inputs give NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from app.processing.statistics import finite_values, percentiles

# The one definition of the stretches: models and docs use these names.
Stretch = Literal["zscale", "asinh", "log", "sqrt", "power", "histeq", "linear"]
STRETCHES: tuple[str, ...] = get_args(Stretch)
ZSCALE_CONTRAST = 0.25


def minmax_limits(values: np.ndarray, assume_finite: bool = False) -> tuple[float, float]:
    values = values.ravel() if assume_finite else finite_values(values)
    if values.size == 0:
        return math.nan, math.nan
    return float(values.min()), float(values.max())


def zscale_limits(
    values: np.ndarray, contrast: float = ZSCALE_CONTRAST, assume_finite: bool = False
) -> tuple[float, float]:
    """IRAF zscale limits via astropy's ZScaleInterval, over the finite values.

    astropy samples ``n_samples`` values at a regular stride of the finite
    values; that same sample is taken here first, so astropy does not copy the
    whole array (the result is identical).
    """
    from astropy.visualization import ZScaleInterval

    values = values.ravel() if assume_finite else finite_values(values)
    if values.size == 0:
        return math.nan, math.nan
    interval = ZScaleInterval(contrast=contrast)
    stride = int(max(1.0, values.size / interval.n_samples))
    sample = np.array(values[::stride][: interval.n_samples])
    low, high = interval.get_limits(sample)
    return float(low), float(high)


def rescale(data: np.ndarray, low: float, high: float) -> np.ndarray:
    """(data - low) / (high - low) clipped to [0, 1] as float32; zeros when high <= low."""
    data = np.asarray(data, dtype=np.float32)
    out = np.empty(data.shape, dtype=np.float32)
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        out[...] = 0.0
    else:
        np.subtract(data, np.float32(low), out=out)
        out *= np.float32(1.0 / (high - low))
        np.clip(out, 0.0, 1.0, out=out)  # NaN passes through clip unchanged
    bad = ~np.isfinite(data)
    if bad.any():
        out[bad] = np.nan
    return out


@dataclass
class DisplayTransform:
    """A fitted display transform: call it on any array of raw values."""

    stretch: str
    low: float
    high: float
    asinh_a: float = 0.1
    gamma: float = 1.0
    eq_values: np.ndarray | None = None  # sorted normalised values, for histeq
    level_low: float = 0.0
    level_high: float = 1.0

    def base(self, data: np.ndarray) -> np.ndarray:
        """Step 1, the stretch alone."""
        t = rescale(data, self.low, self.high)
        if self.stretch == "asinh":
            t *= np.float32(1.0 / self.asinh_a)
            np.arcsinh(t, out=t)
            t *= np.float32(1.0 / math.asinh(1.0 / self.asinh_a))
        elif self.stretch == "log":
            t *= np.float32(1000.0)
            np.log1p(t, out=t)
            t *= np.float32(1.0 / math.log(1001.0))
        elif self.stretch == "sqrt":
            np.sqrt(t, out=t)
        elif self.stretch == "power":
            if self.gamma != 1.0:
                np.power(t, np.float32(1.0 / self.gamma), out=t)
        elif self.stretch == "histeq":
            t = self._equalize(t)
        return t

    def _equalize(self, t: np.ndarray) -> np.ndarray:
        ref = self.eq_values
        out = np.full(t.shape, np.nan, dtype=np.float32)
        finite = np.isfinite(t)
        if ref is None or ref.size == 0:
            return out
        if ref.size == 1 or ref[0] == ref[-1]:
            out[finite] = 0.0
            return out
        ranks = np.linspace(0.0, 1.0, ref.size)
        out[finite] = np.interp(t[finite], ref, ranks).astype(np.float32)
        return out

    def __call__(self, data: np.ndarray) -> np.ndarray:
        t = self.base(data)
        if self.level_low > 0.0 or self.level_high < 1.0:
            t = rescale(t, self.level_low, self.level_high)
        if self.stretch != "power" and self.gamma != 1.0:
            np.power(t, np.float32(1.0 / self.gamma), out=t)
        return t


#: Stretches that compress the range non-linearly (CONTRACT-HEAD §10.1 step 10).
NONLINEAR_STRETCHES = ("asinh", "log", "sqrt", "power", "histeq")
#: The percentiles that bound a non-linear stretch of a composite channel.
COMPOSITE_PERCENTILES = (0.1, 99.9)


def percentile_limits(values: np.ndarray, q_low: float, q_high: float) -> tuple[float, float]:
    """(low, high) percentiles of finite ``values``; (0, 1) without any, and high is
    low + 1 when it is not above low."""
    if values.size == 0:
        return 0.0, 1.0
    low, high = percentiles(values, [q_low, q_high])
    if not high > low:
        high = low + 1.0
    return low, high


@dataclass(frozen=True)
class DisplayParams:
    """How to turn pixel values into display values in [0, 1]."""

    stretch: str = "zscale"
    gamma: float = 1.0
    black_point: float = 0.0
    white_point: float = 1.0
    asinh_a: float = 0.1
    smooth_method: str = ""
    smooth_sigma: float = 1.0
    smooth_size: int = 3


def fit_display(
    data: np.ndarray, params: DisplayParams, nonlinear_range: tuple[float, float] | None = None
) -> DisplayTransform:
    """Fit the display transform of Appendix A on the finite values of ``data`` (already
    smoothed: ``params``' smoothing is :func:`app.processing.pipeline.smoothed`'s).

    ``nonlinear_range`` = (q_low, q_high): the non-linear stretches normalise between
    those percentiles instead of the minimum and maximum (composites, §10.1).
    """
    stretch, black_point, white_point = params.stretch, params.black_point, params.white_point
    if stretch not in STRETCHES:
        raise ValueError(f"unknown stretch {stretch!r}")
    values = finite_values(data)
    if nonlinear_range is not None and stretch in NONLINEAR_STRETCHES:
        low, high = percentile_limits(values, *nonlinear_range)
    else:
        low, high = minmax_limits(values, assume_finite=True)
    if stretch == "zscale":
        z_low, z_high = zscale_limits(values, assume_finite=True)
        if z_high > z_low:  # flat data: keep min-max
            low, high = z_low, z_high
    transform = DisplayTransform(
        stretch=stretch, low=low, high=high, asinh_a=params.asinh_a, gamma=params.gamma
    )
    if stretch == "histeq":
        transform.eq_values = np.sort(rescale(values, low, high))
    if (black_point > 0.0 or white_point < 1.0) and values.size:
        lv_low, lv_high = percentiles(
            values, [black_point * 100.0, white_point * 100.0], transform=transform.base
        )
        if lv_high > lv_low:
            transform.level_low, transform.level_high = lv_low, lv_high
    return transform


def apply_stretch(data: np.ndarray, params: DisplayParams) -> np.ndarray:
    """Fit on ``data`` and apply: display values in [0, 1], NaN where data is not finite."""
    return fit_display(data, params)(data)


def normalize(data: np.ndarray) -> np.ndarray:
    """Min-max normalisation of the finite pixels to [0, 1] (the ``linear`` stretch)."""
    low, high = minmax_limits(data)
    return rescale(data, low, high)

"""The single-image display pipeline: smoothing, then the fitted display transform."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.processing.enhancement import DisplayTransform, fit_display
from app.processing.smoothing import smooth


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


def smoothed(data: np.ndarray, params: DisplayParams) -> np.ndarray:
    if not params.smooth_method:
        return data
    return smooth(data, params.smooth_method, sigma=params.smooth_sigma, size=params.smooth_size)


def fit(
    data: np.ndarray,
    params: DisplayParams,
    nonlinear_range: tuple[float, float] | None = None,
) -> DisplayTransform:
    """The display transform for (already smoothed) ``data`` (``nonlinear_range``: see
    :func:`fit_display`)."""
    return fit_display(
        data,
        params.stretch,
        gamma=params.gamma,
        asinh_a=params.asinh_a,
        black_point=params.black_point,
        white_point=params.white_point,
        nonlinear_range=nonlinear_range,
    )


def display_values(data: np.ndarray, params: DisplayParams) -> np.ndarray:
    """Smooth (if asked), then stretch: float32 in [0, 1], NaN where data is not finite."""
    data = smoothed(data, params)
    return fit(data, params)(data)

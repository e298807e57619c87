"""The single-image display pipeline: smoothing, then the fitted display transform."""

from __future__ import annotations

import numpy as np

from app.processing.enhancement import DisplayParams, fit_display
from app.processing.smoothing import smooth

#: The display fields a request (or auto-stretch) sets: the stretch and its levels.
LEVELS = ("stretch", "gamma", "black_point", "white_point", "asinh_a")


def levels_of(source: object) -> DisplayParams:
    """The display parameters named by the :data:`LEVELS` attributes of ``source`` (a
    request's channel or file, auto-stretch's choice), without smoothing."""
    return DisplayParams(**{name: getattr(source, name) for name in LEVELS})


def smoothed(data: np.ndarray, params: DisplayParams) -> np.ndarray:
    if not params.smooth_method:
        return data
    return smooth(data, params.smooth_method, sigma=params.smooth_sigma, size=params.smooth_size)


def display_values(data: np.ndarray, params: DisplayParams) -> np.ndarray:
    """Smooth (if asked), then stretch: float32 in [0, 1], NaN where data is not finite."""
    data = smoothed(data, params)
    return fit_display(data, params)(data)

"""Sky background: a sigma-clipped level for a whole image, and a 2-D model.

``sky_level`` is what composites subtract (background neutralisation);
``background_model`` is what detection works on (photutils' Background2D with
a sigma-clipped median per box, NaN regions masked).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

#: Sigma-clipping statistics are taken on at most this many pixels (a regular
#: subsample); the clipped median of 200,000 sky pixels is stable to far
#: below the noise.
MAX_SAMPLE = 200_000


def regular_sample(values: np.ndarray, max_size: int = MAX_SAMPLE) -> np.ndarray:
    """The finite values of ``values``, thinned by a regular stride to <= max_size."""
    flat = values.ravel()
    if flat.size > max_size * 2:
        flat = flat[:: flat.size // max_size]
    flat = flat[np.isfinite(flat)]
    if flat.size > max_size:
        flat = flat[:: int(math.ceil(flat.size / max_size))]
    return flat


def sky_level(data: np.ndarray, sigma: float = 3.0, maxiters: int = 10) -> float:
    """Sigma-clipped (``sigma``) median of the finite pixels (astropy), NaN if none."""
    from astropy.stats import sigma_clipped_stats

    sample = regular_sample(data)
    if sample.size == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, median, _ = sigma_clipped_stats(sample, sigma=sigma, maxiters=maxiters)
    return float(median)


def subtract_sky(data: np.ndarray, sigma: float = 3.0) -> np.ndarray:
    """``data`` minus its sky level, clipped at 0 (a new float32 array; NaN kept)."""
    level = sky_level(data, sigma)
    out = np.array(data, dtype=np.float32, copy=True)
    if math.isfinite(level):
        out -= np.float32(level)
        np.maximum(out, 0.0, out=out)  # NaN stays NaN
    return out

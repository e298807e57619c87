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
    return np.asarray(flat)


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


def background_model(
    data: np.ndarray, box_size: int = 64, filter_size: int = 3, sigma: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """2-D background and RMS maps (photutils Background2D, sigma-clipped medians per
    box, median-filtered), non-finite pixels masked. Falls back to a flat sigma-clipped
    level and standard deviation when the image is too small or too empty for boxes.

    The low-resolution meshes are interpolated bilinearly between box centres
    (photutils' own cubic-spline zoom costs several times more and is no better a
    model of the sky). Returns float32 maps of ``data``'s shape.
    """
    from astropy.stats import SigmaClip, sigma_clipped_stats
    from photutils.background import Background2D, MedianBackground, StdBackgroundRMS

    invalid = ~np.isfinite(data)
    box = int(max(8, min(box_size, min(data.shape) // 4)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bkg = Background2D(
                data,
                box,
                mask=invalid,
                filter_size=filter_size,
                sigma_clip=SigmaClip(sigma=sigma, maxiters=5),
                bkg_estimator=MedianBackground(),
                bkg_rms_estimator=StdBackgroundRMS(),
                exclude_percentile=50.0,
            )
        level = upsample_mesh(bkg.background_mesh, box, data.shape)
        rms = upsample_mesh(bkg.background_rms_mesh, box, data.shape)
    except ValueError:
        sample = regular_sample(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, median, std = sigma_clipped_stats(sample, sigma=sigma)
        level = np.full(data.shape, median, dtype=np.float32)
        rms = np.full(data.shape, std, dtype=np.float32)
    return level, rms


def upsample_mesh(mesh: np.ndarray, box: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear interpolation of a per-box mesh to full resolution (edges held flat).

    Box (i, j) is centred on pixel ((i + 0.5) box - 0.5, (j + 0.5) box - 0.5).
    """
    mesh = np.asarray(mesh, dtype=np.float32)
    height, width = shape
    centres_y = (np.arange(mesh.shape[0]) + 0.5) * box - 0.5
    centres_x = (np.arange(mesh.shape[1]) + 0.5) * box - 0.5
    cols = np.arange(width, dtype=np.float64)
    rows_first = np.stack([np.interp(cols, centres_x, row) for row in mesh]).astype(np.float32)
    if mesh.shape[0] == 1:
        return np.repeat(rows_first, height, axis=0)
    rows = np.arange(height, dtype=np.float64)
    i = np.clip(np.searchsorted(centres_y, rows, side="right") - 1, 0, mesh.shape[0] - 2)
    t = np.clip((rows - centres_y[i]) / (centres_y[i + 1] - centres_y[i]), 0.0, 1.0)
    weight = t.astype(np.float32)[:, None]
    low: np.ndarray = rows_first[i]
    out: np.ndarray = rows_first[i + 1] - low
    out *= weight
    out += low
    return out

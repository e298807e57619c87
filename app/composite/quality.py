"""Image quality metrics of a composite (CONTRACT-HEAD §10.1 "Quality metrics").

Computed on the cropped, unrotated float picture (values in [0, 1]); sent as the
``X-Quality-*`` headers, each rounded to 2 decimals.
"""

from __future__ import annotations

import warnings

import numpy as np

from app.composite.framing import DATA_LEVEL

MIN_PIXELS = 100
#: Statistics of a larger picture are taken on a regular sample of this many pixels
#: (the metrics are rounded to 2 decimals; a 200 000-pixel sample moves none of them
#: by more than about 0.01, and makes them ~20x cheaper on a 2048^2 picture).
MAX_SAMPLE = 200_000


def sample_pixels(rgb: np.ndarray, max_pixels: int = MAX_SAMPLE) -> np.ndarray:
    """(n, 3) pixels of the picture: all of them, or a regular sample of ~max_pixels."""
    flat = rgb.reshape(-1, 3)
    step = max(1, flat.shape[0] // max_pixels)
    return flat[::step]


def _plane_stats(plane: np.ndarray) -> tuple[float, float]:
    """(SNR, median) of the plane's pixels above the data level (0, 0 if < 100)."""
    values = plane[plane > DATA_LEVEL]
    if values.size < MIN_PIXELS:
        return 0.0, 0.0
    from astropy.stats import sigma_clipped_stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mean, median, std = sigma_clipped_stats(values, sigma=3.0, maxiters=5)
    return float(mean) / max(float(std), 1e-10), float(median)


def quality_metrics(rgb: np.ndarray) -> dict[str, float]:
    """score (1-5), snr, balance, spread and coverage of a float RGB picture (its pixels,
    or a regular sample of a large one)."""
    pixels = sample_pixels(rgb)
    coverage = float((pixels > DATA_LEVEL).any(axis=-1).mean()) if pixels.size else 0.0
    if coverage < 0.001:
        return {
            "score": 1.0,
            "snr": 0.0,
            "balance": 0.0,
            "spread": 0.0,
            "coverage": round(coverage, 2),
        }
    stats = [_plane_stats(np.ascontiguousarray(pixels[:, k])) for k in range(3)]
    snr = float(np.mean([s for s, _ in stats]))
    medians = [m for _, m in stats if m > DATA_LEVEL]
    balance = min(medians) / max(medians) if len(medians) >= 2 else 0.0
    p1, p99 = np.percentile(pixels, [1, 99])
    spread = min(float(p99 - p1), 1.0)
    score = 1 + 4 * (0.30 * min(snr / 20, 1) + 0.25 * balance + 0.25 * spread + 0.20 * coverage)
    score = float(np.clip(score, 1, 5))
    return {
        "score": round(score, 2),
        "snr": round(snr, 2),
        "balance": round(balance, 2),
        "spread": round(spread, 2),
        "coverage": round(coverage, 2),
    }


def quality_headers(metrics: dict[str, float]) -> dict[str, str]:
    """The five headers, each the shortest decimal form of its rounded value."""
    names = {
        "score": "X-Quality-Score",
        "snr": "X-Quality-SNR",
        "balance": "X-Quality-Balance",
        "spread": "X-Quality-Spread",
        "coverage": "X-Quality-Coverage",
    }
    return {header: repr(float(metrics[key])) for key, header in names.items()}

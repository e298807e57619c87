"""Histograms, percentiles and summary statistics over the finite pixels."""

from __future__ import annotations

import math

import numpy as np

# Percentiles the histogram endpoint reports (CONTRACT.md §3.4).
REPORTED_PERCENTILES = (0.5, 1, 5, 25, 50, 75, 95, 99, 99.5)


def finite_values(data: np.ndarray) -> np.ndarray:
    """The finite pixels of ``data`` as a 1-D array (no copy when all are finite)."""
    flat = np.asarray(data).ravel()
    finite = np.isfinite(flat)
    if finite.all():
        return flat
    return flat[finite]


def percentiles(data: np.ndarray, qs) -> list[float]:
    """Percentiles (0-100) of the finite pixels, numpy's linear method.

    Returns NaN for each when there is no finite pixel.
    """
    values = finite_values(data)
    qs = [float(q) for q in qs]
    if values.size == 0:
        return [math.nan for _ in qs]
    n = values.size
    # Partition once around every order statistic needed (k and k+1 per q).
    positions = [q / 100.0 * (n - 1) for q in qs]
    kth = sorted({min(n - 1, int(math.floor(p))) for p in positions}
                 | {min(n - 1, int(math.floor(p)) + 1) for p in positions})
    part = np.partition(values, kth)
    out = []
    for p in positions:
        lo = min(n - 1, int(math.floor(p)))
        hi = min(n - 1, lo + 1)
        frac = p - lo
        a, b = float(part[lo]), float(part[hi])
        out.append(a + (b - a) * frac if frac else a)
    return out


def histogram(data: np.ndarray, bins: int, value_range: tuple[float, float] = (0.0, 1.0)) -> dict:
    """Counts over ``bins`` equal bins spanning ``value_range`` (finite pixels only).

    Returns ``{counts, bin_centers, bin_edges, n_bins}`` with integer counts and
    ``bins + 1`` edges. Values equal to the upper edge fall in the last bin, as
    in :func:`numpy.histogram`.
    """
    low, high = float(value_range[0]), float(value_range[1])
    edges = np.linspace(low, high, bins + 1)
    values = finite_values(data)
    if values.size == 0 or not high > low:
        counts = np.zeros(bins, dtype=np.int64)
    else:
        inside = (values >= low) & (values <= high)
        if not inside.all():
            values = values[inside]
        # numpy.histogram's own method: a fast index, then a fix-up against the
        # edges so that results agree with it to the last count.
        scaled = (values.astype(np.float64) - low) * (bins / (high - low))
        idx = scaled.astype(np.int64)
        np.clip(idx, 0, bins - 1, out=idx)
        idx[values < edges[idx]] -= 1
        idx[(values >= edges[idx + 1]) & (idx != bins - 1)] += 1
        counts = np.bincount(idx, minlength=bins)
    centers = (edges[:-1] + edges[1:]) / 2.0
    return {
        "counts": [int(c) for c in counts],
        "bin_centers": [float(c) for c in centers],
        "bin_edges": [float(e) for e in edges],
        "n_bins": int(bins),
    }


def summary(data: np.ndarray) -> dict:
    """``{min, max, mean, std}`` of the finite pixels (None when there is none)."""
    values = finite_values(data)
    if values.size == 0:
        return {"min": None, "max": None, "mean": None, "std": None}
    mean = float(values.mean(dtype=np.float64))
    std = float(values.std(dtype=np.float64))
    return {"min": float(values.min()), "max": float(values.max()), "mean": mean, "std": std}

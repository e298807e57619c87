"""Histograms, order statistics, percentiles and summaries over finite pixels.

Speed notes: these run on whole JWST images (16-67 million pixels), so they
avoid sorting. Order statistics are found exactly by histogram selection
(bucket the values, keep only the buckets that hold the wanted ranks, repeat),
which is linear in the number of pixels; percentiles follow numpy's default
("linear") definition exactly. Histograms bin in float32 chunks that stay in
the CPU cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TypedDict

import numpy as np
from numpy.typing import ArrayLike

from app.processing.parallel import CHUNK, map_chunks

Range = tuple[float, float]
# (n, shifted sum, shifted sum of squares, min, max) of one chunk.
Moments = tuple[int, float, float, float, float]

# Percentiles the histogram endpoint reports (CONTRACT.md §3.4).
REPORTED_PERCENTILES = (0.5, 1, 5, 25, 50, 75, 95, 99, 99.5)
_SELECT_BINS = 1 << 16
_SELECT_DIRECT = 1 << 18  # below this many values, numpy's partition is faster


class Histogram(TypedDict):
    """A histogram as the endpoints send it."""

    counts: list[int]
    bin_centers: list[float]
    bin_edges: list[float]
    n_bins: int


class Summary(TypedDict):
    """min, max, mean and std of the finite values (None each when there are none)."""

    min: float | None
    max: float | None
    mean: float | None
    std: float | None


def _add_into(acc: np.ndarray, counts: np.ndarray) -> np.ndarray:
    acc += counts
    return acc


def finite_values(data: np.ndarray) -> np.ndarray:
    """The finite pixels of ``data`` as a 1-D array (no copy when all are finite)."""
    flat: np.ndarray = np.asarray(data).ravel()
    # A float64 sum is finite only if every element is: no mask needed then.
    if flat.size == 0 or math.isfinite(float(flat.sum(dtype=np.float64))):
        return flat
    finite: np.ndarray = flat[np.isfinite(flat)]
    return finite


def order_statistics(
    values: np.ndarray, ranks: ArrayLike, buckets: Buckets | None = None
) -> dict[int, float]:
    """Exact k-th smallest values (0-based ranks) of a 1-D finite array.

    ``buckets`` may carry the first bucketing pass if it was already made.
    """
    unique_ranks = np.unique(np.asarray(ranks, dtype=np.int64))
    out: dict[int, float] = {}
    if values.size == 0 or unique_ranks.size == 0:
        return out
    if unique_ranks[0] < 0 or unique_ranks[-1] >= values.size:
        raise ValueError("rank out of range")
    _select(values, unique_ranks, 0, out, 0, buckets)
    return out


def _bucket_index(chunk: np.ndarray, low: np.float32, scale: np.float32) -> np.ndarray:
    tmp = chunk - low
    tmp *= scale
    np.minimum(tmp, np.float32(_SELECT_BINS - 1), out=tmp)
    index: np.ndarray = tmp.astype(np.intp)
    return index  # intp: bincount and take use it without a copy


class Buckets:
    """Counts of values in 65536 equal buckets over [low, high]: the first pass of
    the selection, reusable for a raw histogram whose bin count divides 65536."""

    def __init__(self, values: np.ndarray) -> None:
        self.size = int(values.size)
        self.low, self.high = float(values.min()), float(values.max())
        self.counts = np.zeros(_SELECT_BINS, dtype=np.int64)
        self.scale: np.float32 | None = None
        if self.high > self.low:
            self.scale = np.float32(_SELECT_BINS / (self.high - self.low))
            low32, scale = np.float32(self.low), self.scale
            self.counts = map_chunks(
                values,
                lambda c: np.bincount(_bucket_index(c, low32, scale), minlength=_SELECT_BINS),
                reduce=_add_into,
                initial=np.zeros(_SELECT_BINS, dtype=np.int64),
            )
        else:
            self.counts[0] = self.size

    def histogram_counts(self, bins: int) -> np.ndarray | None:
        """Counts in ``bins`` equal bins over [low, high]; None unless bins divides 65536."""
        if _SELECT_BINS % bins:
            return None
        folded: np.ndarray = self.counts.reshape(bins, _SELECT_BINS // bins).sum(axis=1)
        return folded


def _select(
    values: np.ndarray,
    ranks: np.ndarray,
    offset: int,
    out: dict[int, float],
    depth: int,
    buckets: Buckets | None = None,
) -> None:
    n = values.size
    if n <= _SELECT_DIRECT or depth >= 4:
        part = np.partition(values, ranks)
        for r in ranks:
            out[int(r) + offset] = float(part[r])
        return
    # Pass 1: bucket counts. The bucket index is monotone in the value, so the
    # values of one bucket hold a contiguous range of ranks.
    if buckets is None or buckets.size != n:
        buckets = Buckets(values)
    if buckets.scale is None:
        for r in ranks:
            out[int(r) + offset] = buckets.low
        return
    counts, scale, lo32 = buckets.counts, buckets.scale, np.float32(buckets.low)
    ends = np.cumsum(counts)
    bucket_of_rank = np.searchsorted(ends, ranks, side="right")
    wanted = np.unique(bucket_of_rank)
    lookup = np.zeros(_SELECT_BINS, dtype=bool)
    lookup[wanted] = True

    # Pass 2: keep only the values of the wanted buckets.
    def keep_wanted(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = _bucket_index(chunk, lo32, scale)
        keep = np.take(lookup, idx)
        return chunk[keep], idx[keep]

    kept = map_chunks(values, keep_wanted)
    all_values = np.concatenate([v for v, _ in kept])
    all_idx = np.concatenate([i for _, i in kept])
    for bucket in wanted:
        bucket_values = all_values[all_idx == bucket] if wanted.size > 1 else all_values
        first = int(ends[bucket] - counts[bucket])
        local = ranks[bucket_of_rank == bucket] - first
        _select(bucket_values, local, offset + first, out, depth + 1)


def percentile_ranks(n: int, qs: Iterable[float]) -> list[tuple[int, int, float]]:
    """numpy's linear percentile as (lower rank, upper rank, fraction) per q."""
    out: list[tuple[int, int, float]] = []
    for q in qs:
        pos = float(q) / 100.0 * (n - 1)
        lo = min(n - 1, int(math.floor(pos)))
        hi = min(n - 1, lo + 1)
        out.append((lo, hi, pos - lo))
    return out


def percentiles(
    values: np.ndarray,
    qs: Iterable[float],
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    buckets: Buckets | None = None,
) -> list[float]:
    """Percentiles (0-100) of the finite values, numpy's linear method, exactly.

    With ``transform`` (a monotone non-decreasing function), these are the
    percentiles of ``transform(values)``: order statistics commute with monotone
    functions, so only a handful of values are transformed. NaN for each q when
    there is no finite value.
    """
    values = finite_values(values)
    qs = list(qs)
    if values.size == 0:
        return [math.nan for _ in qs]
    plan = percentile_ranks(values.size, qs)
    stats = order_statistics(values, [r for lo, hi, _ in plan for r in (lo, hi)], buckets)
    keys = sorted(stats)
    points = np.array([stats[k] for k in keys], dtype=np.float64)
    if transform is not None:
        points = np.asarray(transform(points.astype(np.float32)), dtype=np.float64)
    lookup = dict(zip(keys, points, strict=True))
    out = []
    for lo, hi, frac in plan:
        a, b = lookup[lo], lookup[hi]
        out.append(float(a + (b - a) * frac) if frac else float(a))
    return out


def _edges(bins: int, value_range: Range) -> tuple[np.ndarray, np.ndarray]:
    edges = np.linspace(float(value_range[0]), float(value_range[1]), bins + 1)
    return edges, (edges[:-1] + edges[1:]) / 2.0


def _bin_chunk(
    chunk: np.ndarray,
    low32: np.float32,
    high32: np.float32,
    scale: np.float32,
    bins: int,
    in_range: bool = False,
) -> np.ndarray:
    if not in_range:
        inside = (chunk >= low32) & (chunk <= high32)
        if not inside.all():
            chunk = chunk[inside]
    tmp = chunk - low32 if low32 else chunk * np.float32(1.0)
    tmp *= scale
    idx = tmp.astype(np.intp)
    np.minimum(idx, bins - 1, out=idx)
    counts: np.ndarray = np.bincount(idx, minlength=bins)
    return counts


def _histogram_dict(counts: np.ndarray, bins: int, label_range: Range) -> Histogram:
    edges, centers = _edges(bins, label_range)
    return {
        "counts": [int(c) for c in counts],
        "bin_centers": [float(c) for c in centers],
        "bin_edges": [float(e) for e in edges],
        "n_bins": int(bins),
    }


def histogram_from_counts(counts: np.ndarray, label_range: Range = (0.0, 1.0)) -> Histogram:
    """The histogram dict for precomputed counts over ``label_range``."""
    return _histogram_dict(np.asarray(counts), len(counts), label_range)


def histogram(
    values: np.ndarray,
    bins: int,
    value_range: tuple[float, float] = (0.0, 1.0),
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    label_range: tuple[float, float] | None = None,
) -> Histogram:
    """Counts of the finite values in ``bins`` equal bins spanning ``value_range``.

    Values outside the range are not counted; a value equal to the upper edge
    falls in the last bin (as in :func:`numpy.histogram`). Binning is done in
    float32, so a value within float32 rounding of an edge may land in the
    neighbouring bin where numpy's float64 arithmetic would not.
    With ``transform``, the histogram is of ``transform(values)``. The reported
    edges span ``label_range`` (default: ``value_range``), so that a histogram of
    raw values over [min, max] can be labelled as the normalised [0, 1].
    Returns ``{counts, bin_centers, bin_edges, n_bins}``.
    """
    low, high = float(value_range[0]), float(value_range[1])
    counts = np.zeros(bins, dtype=np.int64)
    values = finite_values(values)
    if values.size and high > low:
        scale = np.float32(bins / (high - low))
        low32, high32 = np.float32(low), np.float32(high)

        def count(chunk: np.ndarray) -> np.ndarray:
            if transform is not None:
                chunk = transform(chunk)
            return _bin_chunk(chunk, low32, high32, scale, bins)

        counts = map_chunks(values, count, reduce=_add_into, initial=counts)
    elif values.size:
        counts[0] = values.size  # a flat image: everything in the first bin
    return _histogram_dict(counts, bins, label_range or (low, high))


def display_histogram(
    values: np.ndarray, bins: int, transform: Callable[[np.ndarray], np.ndarray]
) -> tuple[Histogram, Summary]:
    """Histogram over [0, 1] and summary of ``transform(values)`` in one pass.

    ``values`` must be finite. Returns ``(histogram dict, summary dict)``.
    """
    scale, low32, high32 = np.float32(bins), np.float32(0.0), np.float32(1.0)
    acc = _Moments()
    if values.size:
        acc.shift = float(transform(values[:1024]).astype(np.float64).mean())

    def work(chunk: np.ndarray) -> tuple[np.ndarray, Moments]:
        chunk = transform(chunk)  # display values lie in [0, 1] (NaN only for NaN input)
        if not math.isfinite(float(chunk.sum(dtype=np.float64))):
            chunk = chunk[np.isfinite(chunk)]
        return _bin_chunk(chunk, low32, high32, scale, bins, in_range=True), acc.partial(chunk)

    def fold(counts: np.ndarray, part: tuple[np.ndarray, Moments]) -> np.ndarray:
        counts += part[0]
        acc.merge(part[1])
        return counts

    counts = map_chunks(values, work, reduce=fold, initial=np.zeros(bins, dtype=np.int64))
    return _histogram_dict(counts, bins, (0.0, 1.0)), acc.result()


class _Moments:
    """Running min, max, mean and std; sums shifted by ``shift`` keep the variance
    accurate when the mean is large compared with the spread."""

    def __init__(self) -> None:
        self.shift: float | None = None
        self.n = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.low, self.high = math.inf, -math.inf

    def partial(self, chunk: np.ndarray) -> Moments:
        """(n, shifted sum, shifted sum of squares, min, max) of one chunk."""
        if chunk.size == 0:
            return (0, 0.0, 0.0, math.inf, -math.inf)
        shifted = chunk.astype(np.float64)
        shifted -= self.shift or 0.0
        return (
            shifted.size,
            float(shifted.sum()),
            float(np.dot(shifted, shifted)),
            float(chunk.min()),
            float(chunk.max()),
        )

    def merge(self, part: Moments) -> None:
        n, total, total_sq, low, high = part
        self.n += n
        self.total += total
        self.total_sq += total_sq
        self.low = min(self.low, low)
        self.high = max(self.high, high)

    def add(self, chunk: np.ndarray) -> None:
        if self.shift is None and chunk.size:
            self.shift = float(chunk.astype(np.float64).mean())
        self.merge(self.partial(chunk))

    def result(self) -> Summary:
        if self.n == 0:
            return {"min": None, "max": None, "mean": None, "std": None}
        mean_shifted = self.total / self.n
        var = max(0.0, self.total_sq / self.n - mean_shifted * mean_shifted)
        return {
            "min": self.low,
            "max": self.high,
            "mean": (self.shift or 0.0) + mean_shifted,
            "std": math.sqrt(var),
        }


def summary(
    values: np.ndarray, transform: Callable[[np.ndarray], np.ndarray] | None = None
) -> Summary:
    """``{min, max, mean, std}`` of the finite values (or of ``transform(values)``).

    None for each when there is no finite value.
    """
    values = finite_values(values)
    acc = _Moments()
    for start in range(0, values.size, CHUNK):
        chunk = values[start : start + CHUNK]
        if transform is not None:
            chunk = transform(chunk)
            chunk = chunk[np.isfinite(chunk)]
        acc.add(chunk)
    return acc.result()

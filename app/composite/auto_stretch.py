"""Automatic stretch parameters of a channel (CONTRACT-HEAD §10.4, Decision 14).

One function, :func:`auto_stretch`, serves both ``channels[].auto_stretch`` in a
render and ``POST /composite/analyze-channels``. Its input is one channel on the
grid after optional neutralisation: the sky about 0, uncovered pixels 0 or NaN.

Decision 14: gamma moves the median of the stretched sample *toward* 0.28. The
render brightens with x^(1/gamma), so gamma = ln m / ln 0.28 (the engine before
us used the reciprocal, which pushed the median away).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from app.composite.models import ChannelMeta, StretchParams
from app.processing.instruments import normalise_instrument

#: Fewer valid pixels than this give the safe defaults.
MIN_VALID = 100
#: Values sampled for the gamma estimate (fixed seed, so renders are reproducible).
GAMMA_SAMPLE = 50_000
TARGET_MEDIAN = 0.28
HDR_DYNAMIC_RANGE = 5000.0


@dataclass(frozen=True)
class AutoStretch:
    params: StretchParams
    meta: ChannelMeta


def _meta(
    dynamic_range: float,
    noise: float,
    snr: float,
    hdr: bool,
    reason: str,
    adjusted: bool,
    valid: int,
    zero_frac: float,
) -> ChannelMeta:
    return ChannelMeta(
        dynamic_range=round(dynamic_range, 1),
        noise=round(noise, 6),
        snr=round(snr, 1),
        hdr_detected=bool(hdr),
        curve_reason=reason,
        instrument_adjusted=bool(adjusted),
        valid_pixels=int(valid),
        zero_coverage_frac=round(zero_frac, 4),
    )


def auto_stretch(data: np.ndarray, instrument: str | None = None) -> AutoStretch:
    """Stretch, levels, gamma, asinh softening and tone curve for one channel."""
    flat = np.asarray(data, dtype=np.float32).ravel()
    finite = np.isfinite(flat)
    valid = flat[finite & (flat > 0)]
    n = int(valid.size)
    # Exact zeros and NaN are both "no coverage" here.
    zero_frac = float(np.count_nonzero(~finite | (flat == 0)) / flat.size) if flat.size else 1.0
    if n < MIN_VALID:
        return AutoStretch(
            StretchParams(),
            _meta(0.0, 0.0, 0.0, False, "insufficient_data", False, n, 1.0 - n / max(1, flat.size)),
        )
    from astropy.stats import sigma_clipped_stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, _, sigma = sigma_clipped_stats(valid, sigma=3.0, maxiters=5, cenfunc="median")
    sigma = float(sigma)
    lo, hi = (float(v) for v in np.percentile(valid, [0.1, 99.9]))
    span = hi - lo
    if span < 1e-10 or sigma < 1e-15:
        return AutoStretch(
            StretchParams(), _meta(0.0, sigma, 0.0, False, "constant_data", False, n, zero_frac)
        )
    a = float(np.clip(2.0 * sigma / span, 0.003, 0.5))
    dynamic_range = hi / sigma
    hdr = dynamic_range > HDR_DYNAMIC_RANGE
    if hdr:
        a = float(np.clip(sigma / span, 0.003, 0.02))
    noise_frac = float(np.count_nonzero(valid < 2.0 * sigma) / n)
    black = float(np.clip(zero_frac + (1.0 - zero_frac) * noise_frac * 0.7, 0.0, 0.15))
    p9999 = float(np.percentile(valid, 99.99))
    ratio = p9999 / max(hi, 1e-15)
    white = 0.99 if ratio > 3 else 0.995 if ratio > 1.5 else 1.0
    sample = valid
    if n > GAMMA_SAMPLE:
        sample = np.random.default_rng(42).choice(valid, GAMMA_SAMPLE, replace=False)
    mapped = np.clip(
        np.arcsinh(((sample.astype(np.float64) - lo) / span) / a) / math.asinh(1.0 / a), 0.0, 1.0
    )
    median = float(np.median(mapped))
    if median > 0.01:
        gamma = float(np.clip(math.log(median) / math.log(TARGET_MEDIAN), 0.6, 2.5))
    else:
        gamma = 2.0
    if hdr:
        gamma = float(np.clip(gamma * 1.3, 0.8, 2.5))
    snr = dynamic_range
    if hdr:
        curve, reason = "shadows", "hdr"
    elif snr > 100:
        curve, reason = "s_curve", "high_snr"
    elif snr > 10:
        curve, reason = "shadows", "medium_snr"
    else:
        curve, reason = "linear", "noisy"
    a, black, white, gamma = round(a, 4), round(black, 4), round(white, 4), round(gamma, 2)
    adjusted = normalise_instrument(instrument) == "MIRI"
    if adjusted:
        a = min(a, 0.015)
        gamma = round(min(gamma * 1.15, 2.5), 2)
    return AutoStretch(
        StretchParams(asinh_a=a, black_point=black, white_point=white, gamma=gamma, curve=curve),
        _meta(dynamic_range, sigma, snr, hdr, reason, adjusted, n, zero_frac),
    )

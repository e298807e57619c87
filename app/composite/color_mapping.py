"""From stretched channels to one colour picture (CONTRACT.md Appendix A).

Pure numpy. Channels arrive as display values in [0, 1] with NaN where the
channel has no data; the picture leaves as float32 RGB in [0, 1].
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import replace
from typing import Literal

import numpy as np

from app.processing.enhancement import COMPOSITE_PERCENTILES, STRETCHES, fit_display
from app.processing.pipeline import DisplayParams

# The one definition of the tone curves: the models use this type.
ToneCurve = Literal["linear", "s_curve", "inverse_s", "shadows", "highlights"]


def hue_to_rgb(hue_deg: float) -> tuple[float, float, float]:
    """RGB weights of HSV(hue, 1, 1)."""
    return colorsys.hsv_to_rgb((hue_deg % 360.0) / 360.0, 1.0, 1.0)


def apply_curve(values: np.ndarray, curve: str) -> np.ndarray:
    """The tone curves: linear, s_curve 3x^2-2x^3, inverse_s 0.5+asin(2x-1)/pi,
    shadows x^0.7, highlights x^1.3 (in place where possible)."""
    x = values
    if curve == "linear":
        return x
    if curve == "s_curve":
        return x * x * (np.float32(3.0) - np.float32(2.0) * x)
    if curve == "inverse_s":
        y = np.clip(np.float32(2.0) * x - np.float32(1.0), -1.0, 1.0)
        np.arcsin(y, out=y)
        y *= np.float32(1.0 / math.pi)
        y += np.float32(0.5)
        return y
    if curve == "shadows":
        return np.power(x, np.float32(0.7), out=x)
    if curve == "highlights":
        return np.power(x, np.float32(1.3), out=x)
    raise ValueError(f"unknown tone curve {curve!r}")


def stretch_channel(data: np.ndarray, display: DisplayParams, curve: str = "linear") -> np.ndarray:
    """Stretch, levels, gamma, then tone curve: display values in [0, 1], NaN kept.

    Non-linear stretches normalise between the 0.1 and 99.9 percentiles of the
    channel (CONTRACT-HEAD §10.1 step 10); ``linear`` min-max, ``zscale`` its own
    limits. Unknown stretch names fall back to zscale, as the contract says."""
    if display.stretch not in STRETCHES:
        display = replace(display, stretch="zscale")
    if not np.isfinite(data).any():
        return np.full(data.shape, np.nan, dtype=np.float32)
    transform = fit_display(
        data,
        display.stretch,
        gamma=display.gamma,
        asinh_a=display.asinh_a,
        black_point=display.black_point,
        white_point=display.white_point,
        nonlinear_range=COMPOSITE_PERCENTILES,
    )
    return apply_curve(transform(data), curve)


def add_weighted_plane(
    rgb: np.ndarray, values: np.ndarray, weights: tuple[float, float, float], weight: float = 1.0
) -> None:
    """rgb[..., k] += values * weight * weights[k], treating NaN as no light."""
    v = np.nan_to_num(values, nan=0.0, copy=True)
    if weight != 1.0:
        v *= np.float32(weight)
    for k in range(3):
        if weights[k]:
            rgb[..., k] += v * np.float32(weights[k])


def normalise_common(rgb: np.ndarray) -> np.ndarray:
    """Divide R, G and B by one common maximum (colour balance and white stay)."""
    peak = float(rgb.max()) if rgb.size else 0.0
    if peak > 0:
        rgb *= np.float32(1.0 / peak)
    np.clip(rgb, 0.0, 1.0, out=rgb)
    return rgb


def replace_lightness(rgb: np.ndarray, lum: np.ndarray, weight: float) -> np.ndarray:
    """LRGB: set HSL lightness L' = L (1 - w) + lum w, keeping hue and saturation.

    In HSL the chroma is C = (1 - |2L - 1|) S and each component sits at
    L + (rgb - L); keeping hue and saturation while L becomes L' scales the
    offsets by C'/C, so rgb' = L' + (rgb - L) k with
    k = (1 - |2L' - 1|) / (1 - |2L - 1|) (grey when L is 0 or 1).
    """
    lum = np.nan_to_num(lum, nan=0.0)
    high = rgb.max(axis=-1)
    low = rgb.min(axis=-1)
    light = (high + low) * np.float32(0.5)
    new_light = light * np.float32(1.0 - weight) + lum * np.float32(weight)
    denom = np.float32(1.0) - np.abs(np.float32(2.0) * light - np.float32(1.0))
    numer = np.float32(1.0) - np.abs(np.float32(2.0) * new_light - np.float32(1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(denom > 1e-6, numer / denom, np.float32(0.0))
    out = (rgb - light[..., None]) * k[..., None] + new_light[..., None]
    np.clip(out, 0.0, 1.0, out=out)
    return out.astype(np.float32, copy=False)


def overall_adjust(
    rgb: np.ndarray,
    stretch: str,
    *,
    black_point: float,
    white_point: float,
    gamma: float,
    asinh_a: float,
) -> np.ndarray:
    """One display transform fitted on R, G and B together and applied to each."""
    transform = fit_display(
        rgb, stretch, gamma=gamma, asinh_a=asinh_a, black_point=black_point, white_point=white_point
    )
    out = transform(rgb)
    return np.nan_to_num(out, nan=0.0, copy=False)


#: Below this the sRGB curve is linear (slope 12.92).
SRGB_KNEE = np.float32(0.0031308)


def srgb_transfer(linear: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1) of values in [0, 1] (new float32 array).

    The power is taken of max(x, knee) only, so zeros and tiny values never reach the
    slow subnormal paths of ``pow``; the linear part replaces them afterwards.
    """
    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    out = np.maximum(x, SRGB_KNEE)
    np.power(out, np.float32(1.0 / 2.4), out=out)
    out *= np.float32(1.055)
    out -= np.float32(0.055)
    low = x <= SRGB_KNEE
    np.multiply(x, np.float32(12.92), out=x)
    np.copyto(out, x, where=low)
    return out


def srgb_inverse(encoded: np.ndarray) -> np.ndarray:
    """The inverse of :func:`srgb_transfer` (sRGB to linear), new float32 array."""
    y = np.clip(np.asarray(encoded, dtype=np.float32), 0.0, 1.0)
    out = np.maximum(y, np.float32(0.04045))
    out += np.float32(0.055)
    out *= np.float32(1.0 / 1.055)
    np.power(out, np.float32(2.4), out=out)
    low = y <= np.float32(0.04045)
    np.multiply(y, np.float32(1.0 / 12.92), out=y)
    np.copyto(out, y, where=low)
    return out


def rgb_to_hls(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (0-1), lightness and saturation of RGB in [0, 1] (``colorsys`` formulas).

    Works on contiguous planes (strided access to interleaved RGB is several times
    slower)."""
    r, g, b = (np.ascontiguousarray(rgb[..., k], dtype=np.float32) for k in range(3))
    high = np.maximum(np.maximum(r, g), b)
    low = np.minimum(np.minimum(r, g), b)
    light = high + low
    span = high - low
    denom = np.where(light <= 1.0, light, np.float32(2.0) - light)
    light *= np.float32(0.5)
    grey = span <= 0
    span[grey] = 1.0
    denom[grey] = 1.0
    sat = span / denom
    sat[grey] = 0.0
    # Hue sextant from the largest component (colorsys' rc, gc, bc differences).
    hue = np.float32(4.0) + (r - g) / span
    green = g == high
    hue[green] = (np.float32(2.0) + (b - r) / span)[green]
    red = r == high
    hue[red] = ((g - b) / span)[red]
    hue *= np.float32(1.0 / 6.0)
    hue[hue < 0] += np.float32(1.0)
    hue[grey] = 0.0
    return hue, light, sat


def hls_to_rgb(hue: np.ndarray, light: np.ndarray, sat: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_hls`: float32 (..., 3).

    Per component n (0, 8, 4 for R, G, B), with k = (n + 12 hue) mod 12 and
    a = S min(L, 1 - L): L - a max(-1, min(k - 3, 9 - k, 1)) (the closed form of the
    HSL model; the same numbers as ``colorsys``)."""
    a = sat * np.minimum(light, np.float32(1.0) - light)
    twelfths = hue * np.float32(12.0)
    out = np.empty((*hue.shape, 3), dtype=np.float32)
    for index, n in enumerate((0.0, 8.0, 4.0)):
        k = twelfths + np.float32(n)
        k[k >= 12.0] -= np.float32(12.0)
        m = np.minimum(k - np.float32(3.0), np.float32(9.0) - k)
        np.clip(m, -1.0, 1.0, out=m)
        m *= a
        out[..., index] = light - m
    return out


def adjust_saturation(
    rgb: np.ndarray, saturation: float = 1.0, vibrancy: float = 0.0, hue_rotation: float = 0.0
) -> np.ndarray:
    """One round trip through HSL (§10.1 step 14): hue += rotation/360 (mod 1),
    S = clip(S x saturation), then S = clip(S + vibrancy (1 - S))."""
    hue, light, sat = rgb_to_hls(rgb)
    if hue_rotation:
        hue += np.float32(hue_rotation / 360.0)
        hue[hue >= 1.0] -= np.float32(1.0)
        hue[hue < 0.0] += np.float32(1.0)
    sat = np.clip(sat * np.float32(saturation), 0.0, 1.0)
    if vibrancy:
        sat = np.clip(sat + np.float32(vibrancy) * (np.float32(1.0) - sat), 0.0, 1.0)
    return np.clip(hls_to_rgb(hue, light, sat), 0.0, 1.0)

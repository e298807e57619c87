"""From stretched channels to one colour picture (CONTRACT.md Appendix A).

Pure numpy. Channels arrive as display values in [0, 1] with NaN where the
channel has no data; the picture leaves as float32 RGB in [0, 1].
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from app.processing.enhancement import (
    COMPOSITE_PERCENTILES,
    STRETCHES,
    DisplayParams,
    fit_display,
)
from app.processing.parallel import each_chunk, each_row_block

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
    transform = fit_display(data, display, nonlinear_range=COMPOSITE_PERCENTILES)
    # The fitted transform and the curve act pixel by pixel: by row blocks, on threads.
    out = np.empty(data.shape, dtype=np.float32)
    height = data.shape[0]
    width = int(np.prod(data.shape[1:], dtype=np.int64))

    def stretch(rows: slice) -> None:
        out[rows] = apply_curve(transform(data[rows]), curve)

    each_row_block(height, width, stretch)
    return out


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


@dataclass(frozen=True)
class Layers:
    """Planes (H, W) and the colour (R, G, B weights) each adds to a picture."""

    planes: list[np.ndarray]
    colours: list[tuple[float, float, float]]

    def combined(self) -> Combination:
        return Combination(self.planes, self.colours)


class Combination:
    """The linear colour combine of planes (H, W) with colours, made by row blocks on
    demand: the sum of each plane times its colour (NaN as no light), divided by one
    common maximum (colour balance and white stay) and clipped to [0, 1].

    The maximum is found when it is made (one pass over the planes, nothing stored);
    ``combination(rows, cols)`` then gives any window as float32 (rows, cols, 3), so a
    step that reads the combine block by block (feathering's mix) needs no whole
    picture."""

    def __init__(
        self, planes: Sequence[np.ndarray], colours: Sequence[tuple[float, float, float]]
    ) -> None:
        self.planes, self.colours = list(planes), list(colours)
        self.shape = (*planes[0].shape, 3)
        peaks: list[float] = []

        def peak(rows: slice) -> None:
            peaks.append(float(_sum_of(self.planes, self.colours, rows, slice(None)).max()))

        each_row_block(self.shape[0], self.shape[1], peak)
        self.scale = _scale_of(max(peaks))

    def __call__(self, rows: slice, cols: slice = slice(None)) -> np.ndarray:
        block = _sum_of(self.planes, self.colours, rows, cols)
        block *= self.scale
        return np.clip(block, 0.0, 1.0, out=block)


def _sum_of(
    planes: Sequence[np.ndarray],
    colours: Sequence[tuple[float, float, float]],
    rows: slice,
    cols: slice,
    into: np.ndarray | None = None,
) -> np.ndarray:
    """The colour sum of the planes' window (``into`` += it when given)."""
    if into is None:
        into = np.zeros((*planes[0][rows, cols].shape, 3), dtype=np.float32)
    for plane, colour in zip(planes, colours, strict=True):
        add_weighted_plane(into, plane[rows, cols], colour)
    return into


#: A row block's two pictures: the first (all columns), and a function giving the second
#: for any columns of those rows.
TwoWindows = tuple[np.ndarray, Callable[[slice], np.ndarray]]


class Extension:
    """Two combines of one picture, made together: ``base``'s planes alone, and with
    ``added``'s planes too (feathering's colour without and with a minority
    instrument), each divided by its own common maximum.

    Made as two :class:`Combination` would be, they would sum ``base``'s planes four
    times (two maxima, two windows); here one pass finds both maxima and each row
    block sums them once: ``extension(rows)`` gives the base combine of those rows and
    a function that gives the extended combine for any of their columns."""

    def __init__(self, base: Layers, added: Layers) -> None:
        self.base, self.added = base, added
        height, width = base.planes[0].shape
        peaks: list[tuple[float, float]] = []

        def peak(rows: slice) -> None:
            block = _sum_of(base.planes, base.colours, rows, slice(None))
            alone = float(block.max())
            _sum_of(added.planes, added.colours, rows, slice(None), into=block)
            peaks.append((alone, float(block.max())))

        each_row_block(height, width, peak)
        self.scales = [_scale_of(max(p[k] for p in peaks)) for k in (0, 1)]

    def __call__(self, rows: slice) -> TwoWindows:
        total = _sum_of(self.base.planes, self.base.colours, rows, slice(None))
        first = np.clip(total * self.scales[0], 0.0, 1.0)

        def extended(cols: slice) -> np.ndarray:
            block = total[:, cols] + _sum_of(self.added.planes, self.added.colours, rows, cols)
            block *= self.scales[1]
            return np.clip(block, 0.0, 1.0, out=block)

        return first, extended


def _scale_of(top: float) -> np.float32:
    """1 / the common maximum (1 when the picture is black)."""
    return np.float32(1.0 / top) if top > 0 else np.float32(1.0)


def whole_picture(rows_of: Callable[[slice], np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """A colour picture given by its row blocks, made whole (float32 (H, W, 3)) by row
    blocks on a few threads."""
    out = np.empty((*shape, 3), dtype=np.float32)

    def fill(rows: slice) -> None:
        out[rows] = rows_of(rows)

    each_row_block(shape[0], shape[1], fill)
    return out


def combine(
    planes: Sequence[np.ndarray], colours: Sequence[tuple[float, float, float]]
) -> np.ndarray:
    """The whole linear colour combine (see :class:`Combination`): float32 (H, W, 3)."""
    return whole_picture(Combination(planes, colours), planes[0].shape)


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


def overall_adjust(rgb: np.ndarray, display: DisplayParams) -> np.ndarray:
    """One display transform fitted on R, G and B together and applied to each."""
    out = fit_display(rgb, display)(rgb)
    return np.nan_to_num(out, nan=0.0, copy=False)


#: Below this the sRGB curve is linear (slope 12.92).
SRGB_KNEE = np.float32(0.0031308)


def power_in_place(values: np.ndarray, exponent: float) -> None:
    """values ** exponent in place, for positive float32 values, as exp(exponent x
    log(values)): numpy's float32 exp and log are vectorised, its pow is not (2.5x
    slower); the two differ by < 2e-7 on [0, 1]."""
    np.log(values, out=values)
    values *= np.float32(exponent)
    np.exp(values, out=values)


def _flat_pair(values: np.ndarray, out: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (contiguous float32) and ``out`` (new when None) as flat views."""
    x = np.ascontiguousarray(values, dtype=np.float32)
    if out is None:
        out = np.empty(x.shape, dtype=np.float32)
    elif out.shape != x.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous float32 array of the input's shape")
    return x.reshape(-1), out.reshape(-1)


def srgb_transfer(linear: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1) of values in [0, 1], float32, into
    ``out`` when given (the input itself may be it).

    The power is taken of max(x, knee) only, so zeros and tiny values never reach the
    logarithm. The two pieces are then chosen without a mask: below the knee the power
    piece is stuck at its knee value, above the 12.92 x line, and above the knee the
    line runs above the (concave) power curve that meets it there, so the sRGB value is
    always the smaller of the two (a mask of mixed pixels costs 20x a minimum: the CPU
    mispredicts its branches). Large arrays go by cache-sized chunks on a few threads."""
    flat_in, flat_out = _flat_pair(linear, out)

    def encode(part: slice) -> None:
        v = np.clip(flat_in[part], 0.0, 1.0)
        y = flat_out[part]
        np.maximum(v, SRGB_KNEE, out=y)
        power_in_place(y, 1.0 / 2.4)
        y *= np.float32(1.055)
        y -= np.float32(0.055)
        v *= np.float32(12.92)
        np.minimum(y, v, out=y)

    each_chunk(flat_in.size, encode)
    return flat_out.reshape(np.shape(linear))


def srgb_inverse(encoded: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The inverse of :func:`srgb_transfer` (sRGB to linear), float32, into ``out`` when
    given."""
    flat_in, flat_out = _flat_pair(encoded, out)

    def decode(part: slice) -> None:
        v = np.clip(flat_in[part], 0.0, 1.0)
        y = flat_out[part]
        np.maximum(v, np.float32(0.04045), out=y)
        y += np.float32(0.055)
        y *= np.float32(1.0 / 1.055)
        power_in_place(y, 2.4)
        low = v <= np.float32(0.04045)
        v *= np.float32(1.0 / 12.92)
        np.copyto(y, v, where=low)

    each_chunk(flat_in.size, decode)
    return flat_out.reshape(np.shape(encoded))


#: Divides by a span or denominator that may be 0 (grey, black or white pixels).
_TINY = np.float32(1e-30)


def rgb_to_hls(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue (0-1), lightness and saturation of RGB in [0, 1] (``colorsys`` formulas).

    Works on contiguous planes (strided access to interleaved RGB is several times
    slower) and chooses without masks: every choice is a product with a 0/1 factor, a
    minimum or a floor, because a mask over a picture's mixed pixels makes the CPU
    mispredict its branches (20x the cost of a product)."""
    r, g, b = (np.ascontiguousarray(rgb[..., k], dtype=np.float32) for k in range(3))
    high = np.maximum(np.maximum(r, g), b)
    low = np.minimum(np.minimum(r, g), b)
    total = high + low
    span = high - low
    # S = span / (total, or 2 - total above one half) = span / (1 - |1 - total|); 0 when grey.
    denom = np.float32(1.0) - total
    np.abs(denom, out=denom)
    np.subtract(np.float32(1.0), denom, out=denom)
    np.maximum(denom, _TINY, out=denom)
    sat = span / denom
    # Hue in sextants from the largest component (colorsys' order: red, green, blue):
    # (g - b) / span, 2 + (b - r) / span or 4 + (r - g) / span, then / 6, mod 1.
    is_red = (r == high).astype(np.float32)
    is_green = (g == high).astype(np.float32)
    is_green -= is_red * is_green
    is_blue = np.float32(1.0) - is_red - is_green
    top = (g - b) * is_red
    top += (b - r + np.float32(2.0) * span) * is_green
    top += (r - g + np.float32(4.0) * span) * is_blue
    np.maximum(span, _TINY, out=span)  # grey: every difference above is 0
    top /= span
    top *= np.float32(1.0 / 6.0)
    hue = top - np.floor(top)
    total *= np.float32(0.5)
    return hue, total, sat


def hls_to_rgb(hue: np.ndarray, light: np.ndarray, sat: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_hls` for hue in [0, 1): float32 (..., 3).

    Per component n (0, 8, 4 for R, G, B), with k = (n + 12 hue) mod 12 and
    a = S min(L, 1 - L): L - a max(-1, min(k - 3, 9 - k, 1)) (the closed form of the
    HSL model; the same numbers as ``colorsys``)."""
    a = sat * np.minimum(light, np.float32(1.0) - light)
    twelfths = hue * np.float32(12.0)
    out = np.empty((*hue.shape, 3), dtype=np.float32)
    for index, n in enumerate((0.0, 8.0, 4.0)):
        k = twelfths + np.float32(n)
        k -= (k >= np.float32(12.0)).astype(np.float32) * np.float32(12.0)
        m = np.minimum(k - np.float32(3.0), np.float32(9.0) - k)
        np.clip(m, -1.0, 1.0, out=m)
        m *= a
        out[..., index] = light - m
    return out


#: A step that acts on each pixel alone: a block of pixels (..., 3) -> the new block.
PixelStep = Callable[[np.ndarray], np.ndarray]


def saturation_step(
    saturation: float = 1.0, vibrancy: float = 0.0, hue_rotation: float = 0.0
) -> PixelStep:
    """One round trip through HSL (§10.1 step 14), for a block of pixels: hue +=
    rotation/360 (mod 1), S = clip(S x saturation), then S = clip(S + vibrancy (1 - S))."""

    if not hue_rotation % 360.0:
        return _saturation_only(saturation, vibrancy)

    def adjust(block: np.ndarray) -> np.ndarray:
        hue, light, sat = rgb_to_hls(block)
        hue += np.float32((hue_rotation / 360.0) % 1.0)
        hue -= np.floor(hue)
        rgb = hls_to_rgb(hue, light, _new_saturation(sat, saturation, vibrancy))
        return np.clip(rgb, 0.0, 1.0, out=rgb)

    return adjust


def _new_saturation(sat: np.ndarray, saturation: float, vibrancy: float) -> np.ndarray:
    """S = clip(S x saturation), then S = clip(S + vibrancy (1 - S)), in place."""
    sat *= np.float32(saturation)
    np.clip(sat, 0.0, 1.0, out=sat)
    if vibrancy:
        sat += np.float32(vibrancy) * (np.float32(1.0) - sat)
        np.clip(sat, 0.0, 1.0, out=sat)
    return sat


def _saturation_only(saturation: float, vibrancy: float) -> PixelStep:
    """:func:`saturation_step` without a hue rotation, in half the time: the hue stays,
    so each component keeps its place between the lightness and the extremes, and only
    the span max - min changes (to S' (1 - |2L - 1|), HSL's span at the new S)."""

    def adjust(block: np.ndarray) -> np.ndarray:
        r, g, b = (np.ascontiguousarray(block[..., k], dtype=np.float32) for k in range(3))
        high = np.maximum(np.maximum(r, g), b)
        low = np.minimum(np.minimum(r, g), b)
        span = high - low
        light = high + low
        light *= np.float32(0.5)
        room = light * np.float32(2.0)  # 1 - |2L - 1|: the largest span at lightness L
        room -= np.float32(1.0)
        np.abs(room, out=room)
        np.subtract(np.float32(1.0), room, out=room)
        sat = _new_saturation(span / np.maximum(room, _TINY), saturation, vibrancy)
        sat *= room  # the new span
        if vibrancy:
            # A grey pixel has hue 0 (red) in HSL: vibrancy gives it that colour, the
            # new span split as +1/2 for red and -1/2 for green and blue.
            tint = (span == 0).astype(np.float32)
            tint *= sat
            tint *= np.float32(0.5)
        factor = np.divide(sat, np.maximum(span, _TINY), out=sat)  # grey: 0 / tiny
        out = np.empty(block.shape, dtype=np.float32)
        for index, component in enumerate((r, g, b)):
            component -= light
            component *= factor
            component += light
            if vibrancy:
                component += tint if index == 0 else -tint
            out[..., index] = component
        return np.clip(out, 0.0, 1.0, out=out)

    return adjust


def apply_step(rgb: np.ndarray, step: PixelStep, out: np.ndarray | None = None) -> np.ndarray:
    """A step on each pixel alone over a whole picture, by row blocks on a few threads,
    into ``out`` when given (``rgb`` itself may be it)."""
    if out is None:
        out = np.empty(rgb.shape, dtype=np.float32)
    target = out

    def run(rows: slice) -> None:
        target[rows] = step(rgb[rows])

    each_row_block(rgb.shape[0], rgb.shape[1], run)
    return out


def adjust_saturation(
    rgb: np.ndarray,
    saturation: float = 1.0,
    vibrancy: float = 0.0,
    hue_rotation: float = 0.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`saturation_step` over a whole picture (see :func:`apply_step`)."""
    return apply_step(rgb, saturation_step(saturation, vibrancy, hue_rotation), out)

"""Feathering between instruments (CONTRACT-HEAD §10.1 "Feathering").

When the colour channels come from two or more instruments whose fields
differ (a small MIRI field inside a large NIRCam one, say), the all-channel
colour is only right where every instrument has data. Outside a minority
instrument's field the picture fades smoothly to the colour of the other
instruments: weight = smoothstep(distance to the field's edge / r), mixed in
CIELAB (scikit-image's conversion, D65), so the seam has no visible step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

from app.composite.color_mapping import (
    Extension,
    Layers,
    TwoWindows,
    power_in_place,
    srgb_inverse,
    srgb_transfer,
    whole_picture,
)
from app.processing.parallel import each_row_block

#: A group covering at least this fraction of the grid needs no feathering.
FULL_COVERAGE = 0.95
MIN_RADIUS_PX = 20
MAX_AUTO_STRENGTH = 0.3


@dataclass(frozen=True)
class FeatherChoice:
    strength: float
    auto: bool


def feather_strength(
    requested: float | None,
    instruments: Sequence[str | None],
    scales_arcsec: Sequence[float | None],
) -> FeatherChoice:
    """The effective strength: the request's, or with null and >= 2 known instruments
    min(0.3, 0.05 x coarsest / finest pixel scale) (automatic); else 0."""
    if requested is not None:
        return FeatherChoice(float(requested), False)
    known = {inst for inst in instruments if inst}
    if len(known) < 2:
        return FeatherChoice(0.0, False)
    scales = [s for inst, s in zip(instruments, scales_arcsec, strict=True) if inst and s]
    if not scales:
        return FeatherChoice(0.0, True)
    return FeatherChoice(min(MAX_AUTO_STRENGTH, 0.05 * max(scales) / min(scales)), True)


def smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (np.float32(3.0) - np.float32(2.0) * t)


#: Distances are computed exactly up to this radius; beyond, on a mask reduced by
#: factor = radius // EXACT_RADIUS, and known within that factor (at most 2.5 % of the
#: radius, a weight within 0.04) at 1 / factor^2 of the cost.
EXACT_RADIUS = 40

#: A picture's row block -> that block's values (float32 rows x width).
RowValues = Callable[[slice], np.ndarray]


def edge_weights(coverage: np.ndarray, radius: float) -> RowValues:
    """The feathering weight of any row block (``slice(None)``: the whole picture):
    smoothstep(clip(distance to the nearest uncovered pixel / radius, 0, 1)), 0 where
    ``coverage`` is False.

    The distance transform runs once here; with a large radius on a mask reduced by
    ``radius // EXACT_RADIUS``, whose distances are interpolated (bilinear between the
    reduced pixels' positions) for each block as it is asked for, so no full-size
    distance image is ever made.
    """
    factor = max(1, int(radius // EXACT_RADIUS))
    scale = np.float32(1.0 / radius)
    if factor == 1:
        exact = distance_transform_edt(coverage).astype(np.float32)

        def distance(rows: slice) -> np.ndarray:
            return exact[rows]
    else:
        offset = factor // 2  # the reduced pixel j is the full pixel j x factor + offset
        small = coverage[offset::factor, offset::factor]
        coarse = distance_transform_edt(small).astype(np.float32) * np.float32(factor)
        # Interpolated along each row once (small: reduced rows x full width) ...
        c0, c1, fc = _bracket(coverage.shape[1], small.shape[1], factor, offset)
        across = coarse[:, c0] * (np.float32(1.0) - fc) + coarse[:, c1] * fc
        r0, r1, fr = _bracket(coverage.shape[0], small.shape[0], factor, offset)

        def distance(rows: slice) -> np.ndarray:
            # ... and between two of those rows for each full row of the block.
            w = fr[rows, None]
            out = across[r0[rows]] * (np.float32(1.0) - w) + across[r1[rows]] * w
            out[~coverage[rows]] = 0.0
            return out

    def weights(rows: slice) -> np.ndarray:
        t = distance(rows) * scale
        np.clip(t, 0.0, 1.0, out=t)
        return smoothstep(t)

    return weights


def _bracket(
    full: int, reduced: int, factor: int, offset: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each full-size index: the two reduced samples around it and the fraction of
    the way from the first to the second (clamped at the ends)."""
    position = np.clip((np.arange(full) - offset) / factor, 0, reduced - 1)
    lower = np.floor(position).astype(np.intp)
    upper = np.minimum(lower + 1, reduced - 1)
    return lower, upper, (position - lower).astype(np.float32)


# sRGB primaries to CIE XYZ and the D65 white (2 degree observer): scikit-image's numbers.
XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)
D65 = np.array([0.95047, 1.0, 1.08883])
# Linear RGB to XYZ relative to the white, and back (float32, for row vectors).
_TO_XYZN = (XYZ_FROM_RGB / D65[:, None]).T.astype(np.float32)
_FROM_XYZN = (RGB_FROM_XYZ * D65[None, :]).T.astype(np.float32)
_DELTA = 6.0 / 29.0
_EPS = np.float32(_DELTA**3)


def lab_f(linear: np.ndarray) -> np.ndarray:
    """CIELAB's f(X/Xn), f(Y/Yn), f(Z/Zn) of linear-light RGB pixels (n, 3), float32.

    L*, a* and b* are fixed linear combinations of these three (L* = 116 f(Y) - 16,
    a* = 500 (f(X) - f(Y)), b* = 200 (f(Y) - f(Z))), so a weighted mean of two colours
    in CIELAB is the same weighted mean of their f values: the mix needs neither L*a*b*
    nor its inverse. The formulas and constants are scikit-image's ``rgb2lab`` (the tests
    compare the mixes made with them).

    f is t / (3 delta^2) + 4/29 up to delta^3 and the cube root above. The line is the
    cube root's tangent at delta^3, so it lies above the (concave) root everywhere, and
    the root of max(t, delta^3) is stuck at delta below: f is the smaller of the two, a
    choice without a mask (whose mispredicted branches cost 20x a minimum)."""
    xyz = np.asarray(linear, dtype=np.float32) @ _TO_XYZN
    f = np.maximum(xyz, _EPS)
    power_in_place(f, 1.0 / 3.0)  # the cube root, 3x faster than numpy's cbrt
    xyz *= np.float32(1.0 / (3 * _DELTA**2))
    xyz += np.float32(4.0 / 29.0)
    return np.minimum(f, xyz, out=f)


def lab_f_to_linear(f: np.ndarray) -> np.ndarray:
    """Linear-light RGB in [0, 1] of pixels (n, 3) given by their :func:`lab_f` values
    (``f`` is used up). The inverse of f is 3 delta^2 (f - 4/29) up to delta and the cube
    above; the two are blended by a 0/1 factor rather than a mask (see :func:`lab_f`)."""
    small = (f <= np.float32(_DELTA)).astype(np.float32)
    t = f * f
    t *= f
    f -= np.float32(4.0 / 29.0)
    f *= np.float32(3 * _DELTA**2)
    f -= t
    f *= small
    t += f  # the cube, or (where small) the line
    rgb = t @ _FROM_XYZN
    return np.clip(rgb, 0.0, 1.0, out=rgb)


#: A picture given whole, or by its windows on demand (``picture(rows, cols)``, as
#: :class:`Combination` gives them).
Picture = np.ndarray | Callable[[slice, slice], np.ndarray]
_ALL = slice(None)


def _window_of(picture: Picture) -> Callable[[slice, slice], np.ndarray]:
    if isinstance(picture, np.ndarray):
        return lambda rows, cols: picture[rows, cols]
    return picture


def mix_lab(base: np.ndarray, current: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """base x (1 - w) + current x w in CIELAB, for sRGB images; only pixels with
    0 < w < 1 are converted (elsewhere the result is base or current exactly)."""
    out = np.empty(base.shape, dtype=np.float32)
    return mix_lab_linear(srgb_inverse(base), srgb_inverse(current), weight.__getitem__, out)


def mix_window(below: np.ndarray, above: np.ndarray, w: np.ndarray) -> None:
    """``below`` (linear light, (rows, cols, 3)) becomes its CIELAB mix with ``above``
    in linear light: ``above`` where w >= 1, the mix in the band 0 < w < 1, unchanged
    where w <= 0."""
    pixels = below.reshape(-1, 3)  # a copy when ``below`` is a window of fewer columns
    w, above = w.reshape(-1), above.reshape(-1, 3)
    inside = w >= 1.0
    band = np.flatnonzero((w > 0) & ~inside)
    if band.size:
        wb = np.take(w, band)[:, None]
        f = lab_f(np.take(pixels, band, axis=0))
        f *= np.float32(1.0) - wb
        f += lab_f(np.take(above, band, axis=0)) * wb
        mixed = lab_f_to_linear(f)
    if inside.any():  # a field, not scattered pixels: a mask the CPU predicts well
        np.copyto(pixels, above, where=inside[:, None])
    if band.size:
        pixels[band] = mixed
    if not np.may_share_memory(pixels, below):
        below[...] = pixels.reshape(below.shape)


def mix_lab_linear(
    base: Picture, current: Picture, weights: RowValues, out: np.ndarray
) -> np.ndarray:
    """:func:`mix_lab` of two linear-light pictures (H, W, 3), whole or by row blocks,
    with the weights of each row block from ``weights``; the sRGB result goes into
    ``out`` (which may be ``base`` or ``current``: each block reads its rows before
    writing them). Only the band 0 < w < 1 goes to CIELAB, straight from linear light,
    and ``current`` is asked only for the columns where some weight is above 0 (a
    minority instrument's field is often a part of the picture). Runs by row blocks, on
    a few threads."""
    below_of, above_of = _window_of(base), _window_of(current)
    given = isinstance(base, np.ndarray)

    def pair(rows: slice) -> TwoWindows:
        block = below_of(rows, _ALL)
        if given:  # a view of ``base``; the block is changed by the mix
            block = block.copy()
        return block, lambda cols: above_of(rows, cols)

    return mix_pairs(pair, weights, out)


def mix_pairs(
    pair: Callable[[slice], TwoWindows], weights: RowValues, out: np.ndarray
) -> np.ndarray:
    """:func:`mix_lab_linear` of the two pictures ``pair(rows)`` gives for each row block
    (the base, which it may change, and the current picture by columns, as an
    :class:`Extension` gives them)."""
    target = out

    def mix(rows: slice) -> None:
        w = weights(rows)
        block, above_of = pair(rows)
        # The current picture is read only between the first and last columns with weight.
        lit = np.flatnonzero(w.max(axis=0) > 0)
        if lit.size:
            cols = slice(int(lit[0]), int(lit[-1]) + 1)
            mix_window(block[:, cols], above_of(cols), w[:, cols])
        srgb_transfer(block, out=target[rows])

    each_row_block(out.shape[0], out.shape[1], mix)
    return out


def majority_group(groups: dict[str, list[int]], covered_pixels: list[int]) -> str:
    """The group whose channels have the most covered pixels in total (ties: larger name)."""
    return max(groups, key=lambda name: (sum(covered_pixels[i] for i in groups[name]), name))


def feather(
    colour_channels: list[int],
    instruments: list[str | None],
    coverage: list[np.ndarray],
    strength: float,
    layers: Callable[[list[int]], Layers],
) -> np.ndarray:
    """The blended sRGB picture.

    ``layers(indices)`` are the planes and colours of the given colour channels, whose
    plain colour combine (common maximum, linear light) is :class:`Combination`'s.
    Start from all of them; for each group of channels from one instrument other than
    the majority's, fade toward the combine without that group outside the group's
    field. The first fade makes both combines from one sum (:class:`Extension`).
    """
    groups: dict[str, list[int]] = {}
    for index in colour_channels:
        groups.setdefault(instruments[index] or "", []).append(index)
    covered_pixels = [int(np.count_nonzero(c)) for c in coverage]
    majority = majority_group(groups, covered_pixels)
    height, width = coverage[0].shape
    radius = max(math.floor(min(height, width) * strength), MIN_RADIUS_PX)
    blended: np.ndarray | None = None  # sRGB once blended
    for name in sorted(groups):
        if name == majority:
            continue
        members = groups[name]
        field = np.zeros((height, width), dtype=bool)
        for index in members:
            field |= coverage[index]
        if field.mean() >= FULL_COVERAGE:
            continue
        others = [i for i in colour_channels if i not in members]
        weights = edge_weights(field, radius)
        if blended is None:  # from the all-channel combine
            blended = np.empty((height, width, 3), dtype=np.float32)
            mix_pairs(Extension(layers(others), layers(members)), weights, out=blended)
        else:  # a third instrument: from the picture so far, back in linear light
            below = layers(others).combined()
            mix_lab_linear(below, srgb_inverse(blended), weights, out=blended)
    if blended is not None:
        return blended
    # No field needed feathering.
    whole = whole_picture(layers(colour_channels).combined(), (height, width))
    return srgb_transfer(whole, out=whole)

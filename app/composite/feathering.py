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

from app.composite.color_mapping import srgb_inverse, srgb_transfer

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
#: radius // EXACT_RADIUS (a radius of 178 pixels is then known within ~2 pixels, 1 %,
#: at a sixteenth of the cost).
EXACT_RADIUS = 40


def edge_weight(coverage: np.ndarray, radius: float) -> np.ndarray:
    """smoothstep(clip(distance to the nearest uncovered pixel / radius, 0, 1)); 0 where
    ``coverage`` is False."""
    factor = max(1, int(radius // EXACT_RADIUS))
    if factor == 1:
        distance = distance_transform_edt(coverage).astype(np.float32)
    else:
        from scipy.ndimage import zoom

        small = coverage[factor // 2 :: factor, factor // 2 :: factor]
        coarse = distance_transform_edt(small).astype(np.float32) * np.float32(factor)
        distance = zoom(
            coarse,
            (coverage.shape[0] / small.shape[0], coverage.shape[1] / small.shape[1]),
            order=1,
            grid_mode=True,
            mode="nearest",
        )[: coverage.shape[0], : coverage.shape[1]]
        distance[~coverage] = 0.0
    return smoothstep(np.clip(distance / np.float32(radius), 0.0, 1.0))


# sRGB primaries to CIE XYZ and the D65 white (2 degree observer): scikit-image's numbers.
XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)
D65 = np.array([0.95047, 1.0, 1.08883])
_EPS = (6.0 / 29.0) ** 3


def linear_to_lab(linear: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of linear-light RGB pixels (n, 3), float32.

    The same formulas and constants as ``skimage.color.rgb2lab`` (the tests compare the
    mixes made with them); float32 and without its checks it is about 4x faster, which
    matters for the feathering band of a 2048^2 picture."""
    xyz = np.asarray(linear, dtype=np.float32) @ (XYZ_FROM_RGB / D65[:, None]).T.astype(np.float32)
    small = xyz <= _EPS
    f = np.cbrt(xyz)
    f[small] = xyz[small] * np.float32(1.0 / (3 * (6.0 / 29.0) ** 2)) + np.float32(4.0 / 29.0)
    lab = np.empty_like(f)
    lab[:, 0] = np.float32(116.0) * f[:, 1] - np.float32(16.0)
    lab[:, 1] = np.float32(500.0) * (f[:, 0] - f[:, 1])
    lab[:, 2] = np.float32(200.0) * (f[:, 1] - f[:, 2])
    return lab


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] of CIELAB (D65) pixels (n, 3): the inverse of
    ``linear_to_lab(srgb_inverse(rgb))``."""
    fy = (lab[:, 0] + np.float32(16.0)) * np.float32(1.0 / 116.0)
    f = np.stack(
        [fy + lab[:, 1] * np.float32(1.0 / 500.0), fy, fy - lab[:, 2] * np.float32(1.0 / 200.0)],
        axis=1,
    )
    small = f <= np.float32(6.0 / 29.0)
    t = f * f * f
    t[small] = np.float32(3 * (6.0 / 29.0) ** 2) * (f[small] - np.float32(4.0 / 29.0))
    linear = t @ (RGB_FROM_XYZ * D65[None, :]).T.astype(np.float32)
    return srgb_transfer(np.clip(linear, 0.0, 1.0))


def mix_lab(base: np.ndarray, current: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """base x (1 - w) + current x w in CIELAB, for sRGB images; only pixels with
    0 < w < 1 are converted (elsewhere the result is base or current exactly)."""
    return mix_lab_linear(srgb_inverse(base), srgb_inverse(current), weight)


def mix_lab_linear(base: np.ndarray, current: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """:func:`mix_lab` of two linear-light pictures; the result is sRGB. Only the band
    0 < w < 1 goes to CIELAB, straight from linear light."""
    inside = weight >= 1.0
    out = srgb_transfer(np.where(inside[..., None], current, base))
    band = np.flatnonzero((weight > 0) & ~inside)
    if band.size:
        w = weight.reshape(-1)[band][:, None]
        lab = linear_to_lab(base.reshape(-1, 3)[band]) * (np.float32(1.0) - w)
        lab += linear_to_lab(current.reshape(-1, 3)[band]) * w
        out.reshape(-1, 3)[band] = lab_to_rgb(lab)
    return out


def majority_group(groups: dict[str, list[int]], covered_pixels: list[int]) -> str:
    """The group whose channels have the most covered pixels in total (ties: larger name)."""
    return max(groups, key=lambda name: (sum(covered_pixels[i] for i in groups[name]), name))


def feather(
    colour_channels: list[int],
    instruments: list[str | None],
    coverage: list[np.ndarray],
    strength: float,
    combine: Callable[[list[int]], np.ndarray],
) -> np.ndarray:
    """The blended sRGB picture.

    ``combine(indices)`` is the plain colour combine (common maximum) of the given
    colour channels, in linear light. Start from all of them; for each group of
    channels from one instrument other than the majority's, fade toward the combine
    without that group outside the group's field.
    """
    groups: dict[str, list[int]] = {}
    for index in colour_channels:
        groups.setdefault(instruments[index] or "", []).append(index)
    covered_pixels = [int(np.count_nonzero(c)) for c in coverage]
    majority = majority_group(groups, covered_pixels)
    height, width = coverage[0].shape
    radius = max(math.floor(min(height, width) * strength), MIN_RADIUS_PX)
    current = combine(colour_channels)  # linear light until the first blend
    encoded = False
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
        if encoded:  # a third instrument: back to linear light for the next blend
            current = srgb_inverse(current)
        current = mix_lab_linear(combine(others), current, edge_weight(field, radius))
        encoded = True
    return current if encoded else srgb_transfer(current)

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
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.ndimage import distance_transform_edt

#: A group covering at least this fraction of the grid needs no feathering.
FULL_COVERAGE = 0.95
MIN_RADIUS_PX = 20
MAX_AUTO_STRENGTH = 0.3


@dataclass(frozen=True)
class FeatherChoice:
    strength: float
    auto: bool


def feather_strength(requested: float | None, instruments: list[str | None],
                     scales_arcsec: list[float | None]) -> FeatherChoice:
    """The effective strength: the request's, or with null and >= 2 known instruments
    min(0.3, 0.05 x coarsest / finest pixel scale) (automatic); else 0."""
    if requested is not None:
        return FeatherChoice(float(requested), False)
    known = {inst for inst in instruments if inst}
    if len(known) < 2:
        return FeatherChoice(0.0, False)
    scales = [s for inst, s in zip(instruments, scales_arcsec) if inst and s]
    if not scales:
        return FeatherChoice(0.0, True)
    return FeatherChoice(min(MAX_AUTO_STRENGTH, 0.05 * max(scales) / min(scales)), True)


def smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (np.float32(3.0) - np.float32(2.0) * t)


def edge_weight(coverage: np.ndarray, radius: float) -> np.ndarray:
    """smoothstep(clip(distance to the nearest uncovered pixel / radius, 0, 1))."""
    distance = distance_transform_edt(coverage).astype(np.float32)
    return smoothstep(np.clip(distance / np.float32(radius), 0.0, 1.0))


def mix_lab(base: np.ndarray, current: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """base x (1 - w) + current x w in CIELAB, for sRGB images; only pixels with
    0 < w < 1 are converted (elsewhere the result is base or current exactly)."""
    from skimage.color import lab2rgb, rgb2lab

    out = np.where((weight >= 1.0)[..., None], current, base).astype(np.float32)
    band = (weight > 0) & (weight < 1)
    if band.any():
        w = weight[band][:, None].astype(np.float64)
        lab = rgb2lab(base[band][None].astype(np.float64))[0] * (1.0 - w) \
            + rgb2lab(current[band][None].astype(np.float64))[0] * w
        out[band] = np.clip(lab2rgb(lab[None])[0], 0.0, 1.0)
    return out


def majority_group(groups: dict[str, list[int]], covered_pixels: list[int]) -> str:
    """The group whose channels have the most covered pixels in total (ties: larger name)."""
    return max(groups, key=lambda name: (sum(covered_pixels[i] for i in groups[name]), name))


def feather(colour_channels: list[int], instruments: list[str | None],
            coverage: list[np.ndarray], strength: float,
            combine: Callable[[list[int]], np.ndarray]) -> np.ndarray:
    """The blended sRGB picture.

    ``combine(indices)`` is the plain colour combine (common maximum, sRGB) of the
    given colour channels. Start from all of them; for each group of channels from
    one instrument other than the majority's, fade toward the combine without that
    group outside the group's field.
    """
    groups: dict[str, list[int]] = {}
    for index in colour_channels:
        groups.setdefault(instruments[index] or "", []).append(index)
    covered_pixels = [int(np.count_nonzero(c)) for c in coverage]
    majority = majority_group(groups, covered_pixels)
    height, width = coverage[0].shape
    radius = max(math.floor(min(height, width) * strength), MIN_RADIUS_PX)
    current = combine(colour_channels)
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
        current = mix_lab(combine(others), current, edge_weight(field, radius))
    return current

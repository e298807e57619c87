"""Framing of the finished picture (CONTRACT-HEAD §10.1 step 15).

Auto-crop to the data, 8-bit conversion, rotation (the canvas grows, new corners
black), then scale and place on a black canvas of exactly width x height:
the aspect ratio is kept (letterbox), ``crop_zoom`` enlarges, and when the
enlarged picture is larger than the canvas ``crop_center_x`` / ``crop_center_y``
choose the part shown. Arrays here are display-ordered: row 0 at the top.
"""

from __future__ import annotations

import numpy as np

#: A pixel counts as data when any plane is above this (auto-crop, quality coverage).
DATA_LEVEL = 0.005


def auto_crop(rgb: np.ndarray) -> np.ndarray:
    """The bounding box of pixels where any plane is > 0.005 (the whole image if none)."""
    lit = np.any(rgb > DATA_LEVEL, axis=-1)
    rows = np.flatnonzero(lit.any(axis=1))
    if rows.size == 0:
        return rgb
    cols = np.flatnonzero(lit.any(axis=0))
    return rgb[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def rotate(pixels: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate an 8-bit picture clockwise on screen by ``degrees`` (bilinear, Pillow); the
    canvas grows to hold the whole picture and the new corners are black.
    |degrees| <= 0.01: unchanged. (Rotating the 8-bit picture rather than the float
    one changes values by at most a level and costs a tenth of the time.)"""
    if abs(degrees) <= 0.01:
        return pixels
    from PIL import Image

    turned = Image.fromarray(pixels).rotate(
        -degrees, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=(0, 0, 0)
    )
    return np.asarray(turned)


def to_8bit(rgb: np.ndarray) -> np.ndarray:
    """floor(clip(x) x 255) as uint8."""
    scaled = np.clip(rgb, 0.0, 1.0) * np.float32(255.0)
    return np.floor(scaled).astype(np.uint8)


def _offset(canvas: int, scaled: int, centre: float) -> int:
    if scaled <= canvas:
        return (canvas - scaled) // 2
    return -int(centre * (scaled - canvas))


def place(
    pixels: np.ndarray,
    width: int,
    height: int,
    zoom: float = 1.0,
    centre_x: float = 0.5,
    centre_y: float = 0.5,
) -> np.ndarray:
    """The 8-bit picture scaled by min(width/w, height/h) x zoom (Lanczos) and pasted on
    a black canvas of exactly ``width`` x ``height``."""
    from PIL import Image

    h, w = pixels.shape[:2]
    s = min(width / w, height / h) * zoom
    new_w, new_h = max(1, round(w * s)), max(1, round(h * s))
    image = Image.fromarray(pixels)
    if (new_w, new_h) != (w, h):
        image = image.resize((new_w, new_h), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(image, (_offset(width, new_w, centre_x), _offset(height, new_h, centre_y)))
    return np.asarray(canvas)

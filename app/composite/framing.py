"""Framing of the finished picture (CONTRACT-HEAD §10.1 step 15).

Auto-crop to the data, 8-bit conversion, rotation (the canvas grows, new corners
black), then scale and place on a black canvas of exactly width x height:
the aspect ratio is kept (letterbox), ``crop_zoom`` enlarges, and when the
enlarged picture is larger than the canvas ``crop_center_x`` / ``crop_center_y``
choose the part shown. Arrays here are display-ordered: row 0 at the top.
"""

from __future__ import annotations

import math

import numpy as np

from app.processing.parallel import each_row_block

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
    one changes values by at most a level and costs a tenth of the time.)

    The pixels of Pillow's ``Image.rotate(-degrees, BILINEAR, expand=True)``, made by
    its affine ``transform`` in strips of rows on a few threads (Pillow lets go of the
    GIL while it resamples)."""
    if abs(degrees) <= 0.01:
        return pixels
    from PIL import Image

    source = Image.fromarray(pixels)
    turns = degrees % 360.0
    if turns in (90.0, 180.0, 270.0):  # exact quarter turns: no resampling
        quarter = {
            90.0: Image.Transpose.ROTATE_270,
            180.0: Image.Transpose.ROTATE_180,
            270.0: Image.Transpose.ROTATE_90,
        }
        return np.asarray(source.transpose(quarter[turns]))
    h, w = pixels.shape[:2]
    # Output pixel (x, y) samples the source at (a x + b y + c, d x + e y + f): the
    # inverse rotation about the source's centre, then shifted to the grown canvas
    # (whose size is that of the rotated corners, as Pillow computes it).
    angle = math.radians(degrees)
    cos, sin = round(math.cos(angle), 15), round(math.sin(angle), 15)
    a, b, d, e = cos, sin, -sin, cos
    c = -a * w / 2 - b * h / 2 + w / 2
    f = -d * w / 2 - e * h / 2 + h / 2
    xs = [a * x + b * y + c for x, y in ((0, 0), (w, 0), (w, h), (0, h))]
    ys = [d * x + e * y + f for x, y in ((0, 0), (w, 0), (w, h), (0, h))]
    new_w = math.ceil(max(xs)) - math.floor(min(xs))
    new_h = math.ceil(max(ys)) - math.floor(min(ys))
    c, f = (
        a * -(new_w - w) / 2 + b * -(new_h - h) / 2 + c,
        d * -(new_w - w) / 2 + e * -(new_h - h) / 2 + f,
    )
    out = np.empty((new_h, new_w, 3), dtype=np.uint8)

    def strip(rows: slice) -> None:
        part = source.transform(
            (new_w, rows.stop - rows.start),
            Image.Transform.AFFINE,
            (a, b, c + b * rows.start, d, e, f + e * rows.start),
            Image.Resampling.BILINEAR,
            fillcolor=(0, 0, 0),
        )
        out[rows] = np.asarray(part)

    each_row_block(new_h, new_w, strip)
    return out


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
    a black canvas of exactly ``width`` x ``height``.

    Only the part of the scaled picture that lands on the canvas is computed (Pillow's
    resize of a source box): when zoomed, a fraction of the whole resize's cost. Its
    pixels are those of the whole resize up to the rounding and clipping Pillow does
    between its two passes."""
    from PIL import Image

    h, w = pixels.shape[:2]
    s = min(width / w, height / h) * zoom
    new_w, new_h = max(1, round(w * s)), max(1, round(h * s))
    left, top = _offset(width, new_w, centre_x), _offset(height, new_h, centre_y)
    # The scaled picture's columns and rows that fall on the canvas.
    x0, x1 = max(0, -left), min(new_w, width - left)
    y0, y1 = max(0, -top), min(new_h, height - top)
    image = Image.fromarray(pixels)
    if (new_w, new_h) != (w, h) or (x0, y0, x1, y1) != (0, 0, w, h):
        sx, sy = new_w / w, new_h / h
        box = (x0 / sx, y0 / sy, x1 / sx, y1 / sy)
        image = image.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS, box=box)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(image, (left + x0, top + y0))
    return np.asarray(canvas)

"""Framing of the finished picture (CONTRACT-HEAD §10.1 step 15).

Auto-crop to the data, 8-bit conversion, rotation (the canvas grows, new corners
black), then scale and place on a black canvas of exactly width x height:
the aspect ratio is kept (letterbox), ``crop_zoom`` enlarges, and when the
enlarged picture is larger than the canvas ``crop_center_x`` / ``crop_center_y``
choose the part shown. Arrays here are display-ordered: row 0 at the top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from app.processing.parallel import each_row_block

#: Pillow's Lanczos kernel reaches this many source pixels either side (when enlarging).
LANCZOS_SUPPORT = 3.0
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


#: A window of a picture: (left, top, right, bottom) pixels, right and bottom excluded.
Window = tuple[int, int, int, int]


@dataclass(frozen=True)
class Rotation:
    """A rotation clockwise on screen (:meth:`of` a picture's size and the degrees)
    into a canvas grown to hold it (``canvas_width`` x ``canvas_height``, Pillow's
    ``expand=True`` size): canvas pixel (x, y) samples the picture at
    (a x + b y + c, d x + e y + f)."""

    canvas_width: int
    canvas_height: int
    coefficients: tuple[float, float, float, float, float, float]

    @classmethod
    def of(cls, width: int, height: int, degrees: float) -> Rotation:
        # The inverse rotation about the picture's centre, then shifted to the grown
        # canvas (whose size is that of the rotated corners, as Pillow computes it).
        angle = math.radians(degrees)
        cos, sin = round(math.cos(angle), 15), round(math.sin(angle), 15)
        a, b, d, e = cos, sin, -sin, cos
        c = -a * width / 2 - b * height / 2 + width / 2
        f = -d * width / 2 - e * height / 2 + height / 2
        corners = ((0, 0), (width, 0), (width, height), (0, height))
        xs = [a * x + b * y + c for x, y in corners]
        ys = [d * x + e * y + f for x, y in corners]
        new_w = math.ceil(max(xs)) - math.floor(min(xs))
        new_h = math.ceil(max(ys)) - math.floor(min(ys))
        c, f = (
            a * -(new_w - width) / 2 + b * -(new_h - height) / 2 + c,
            d * -(new_w - width) / 2 + e * -(new_h - height) / 2 + f,
        )
        return cls(new_w, new_h, (a, b, c, d, e, f))


def _is_turned(degrees: float) -> bool:
    return abs(degrees) > 0.01


def _cut(pixels: np.ndarray, window: Window | None) -> np.ndarray:
    """The window of a picture (all of it for None)."""
    if window is None:
        return pixels
    left, top, right, bottom = window
    return pixels[top:bottom, left:right]


def rotate(pixels: np.ndarray, degrees: float, window: Window | None = None) -> np.ndarray:
    """Rotate an 8-bit picture clockwise on screen by ``degrees`` (bilinear, Pillow); the
    canvas grows to hold the whole picture and the new corners are black.
    |degrees| <= 0.01: unchanged. (Rotating the 8-bit picture rather than the float
    one changes values by at most a level and costs a tenth of the time.)

    The pixels of Pillow's ``Image.rotate(-degrees, BILINEAR, expand=True)``, made by
    its affine ``transform`` in strips of rows on a few threads (Pillow lets go of the
    GIL while it resamples). With ``window`` only that part of the rotated canvas is
    made: each canvas pixel depends on its own position only, so the part is exactly
    the same rows and columns of the whole."""
    if not _is_turned(degrees):
        return _cut(pixels, window)
    from PIL import Image

    source = Image.fromarray(pixels)
    turns = degrees % 360.0
    if turns in (90.0, 180.0, 270.0):  # exact quarter turns: no resampling
        quarter = {
            90.0: Image.Transpose.ROTATE_270,
            180.0: Image.Transpose.ROTATE_180,
            270.0: Image.Transpose.ROTATE_90,
        }
        return _cut(np.asarray(source.transpose(quarter[turns])), window)
    h, w = pixels.shape[:2]
    rotation = Rotation.of(w, h, degrees)
    left, top, right, bottom = window or (0, 0, rotation.canvas_width, rotation.canvas_height)
    a, b, c, d, e, f = rotation.coefficients
    c, f = c + a * left, f + d * left  # the window's first column
    out = np.empty((bottom - top, right - left, 3), dtype=np.uint8)

    def strip(rows: slice) -> None:
        y = top + rows.start
        part = source.transform(
            (right - left, rows.stop - rows.start),
            Image.Transform.AFFINE,
            (a, b, c + b * y, d, e, f + e * y),
            Image.Resampling.BILINEAR,
            fillcolor=(0, 0, 0),
        )
        out[rows] = np.asarray(part)

    each_row_block(bottom - top, right - left, strip)
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
    degrees: float = 0.0,
) -> np.ndarray:
    """The 8-bit picture, rotated by ``degrees`` (:func:`rotate`), scaled by
    min(width/w, height/h) x zoom (Lanczos) and pasted on a black canvas of exactly
    ``width`` x ``height``.

    Only the part of the scaled picture that lands on the canvas is computed (Pillow's
    resize of a source box), and of the rotated picture only the part that resize
    reads: when zoomed, a fraction of the whole cost. Its pixels are those of the
    whole resize up to the rounding and clipping Pillow does between its two passes,
    and those of the whole rotation's resize within a level (Pillow's kernel positions
    round a little differently from the window's origin)."""
    from PIL import Image

    h, w = pixels.shape[:2]
    if _is_turned(degrees):  # the rotated canvas is what is scaled and placed
        rotation = Rotation.of(w, h, degrees)
        w, h = rotation.canvas_width, rotation.canvas_height
    s = min(width / w, height / h) * zoom
    new_w, new_h = max(1, round(w * s)), max(1, round(h * s))
    left, top = _offset(width, new_w, centre_x), _offset(height, new_h, centre_y)
    # The scaled picture's columns and rows that fall on the canvas.
    x0, x1 = max(0, -left), min(new_w, width - left)
    y0, y1 = max(0, -top), min(new_h, height - top)
    resized = (new_w, new_h) != (w, h) or (x0, y0, x1, y1) != (0, 0, w, h)
    sx, sy = new_w / w, new_h / h
    box = (x0 / sx, y0 / sy, x1 / sx, y1 / sy)
    window = (0, 0, w, h)
    if _is_turned(degrees) and degrees % 90.0:
        # Rotated with resampling: made only where the resize of ``box`` reads, the box
        # and the Lanczos kernel's reach around it (3 source pixels, more when
        # shrinking) and two pixels more for Pillow's rounding.
        reach_x = math.ceil(LANCZOS_SUPPORT * max(1.0, 1.0 / sx)) + 2
        reach_y = math.ceil(LANCZOS_SUPPORT * max(1.0, 1.0 / sy)) + 2
        window = (
            max(0, math.floor(box[0]) - reach_x),
            max(0, math.floor(box[1]) - reach_y),
            min(w, math.ceil(box[2]) + reach_x),
            min(h, math.ceil(box[3]) + reach_y),
        )
    image = Image.fromarray(rotate(pixels, degrees, window))
    if resized:
        shifted = (box[0] - window[0], box[1] - window[1], box[2] - window[0], box[3] - window[1])
        image = image.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS, box=shifted)
    canvas = Image.new("RGB", (width, height))
    canvas.paste(image, (left + x0, top + y0))
    return np.asarray(canvas)

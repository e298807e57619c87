"""Colormaps and exact-size PNG/JPEG encoding with Pillow (no matplotlib figures).

Images follow the FITS convention: row 0 of the array is the *bottom* row of
the picture. Stretched values in [0, 1] become 8-bit indices into a colormap's
256-entry table; NaN becomes index 0, the colormap's lowest colour.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

COLORMAPS = ("grayscale", "gray", "inferno", "magma", "viridis", "plasma", "hot", "cool",
             "rainbow", "jet")
_ALIASES = {"grayscale": "gray"}
_TABLES = Path(__file__).with_name("colormaps.npz")


@lru_cache(maxsize=None)
def colormap_table(name: str) -> np.ndarray:
    """The (256, 3) uint8 RGB table of a colormap named in :data:`COLORMAPS`."""
    key = _ALIASES.get(name, name)
    with np.load(_TABLES) as tables:
        if key not in tables:
            raise ValueError(f"unknown colormap {name!r}")
        return tables[key].copy()


def to_indices(stretched: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8 indices 0-255 (NaN -> 0)."""
    x = np.nan_to_num(np.asarray(stretched, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    np.clip(x, 0.0, 1.0, out=x)
    x *= np.float32(255.0)
    x += np.float32(0.5)
    return x.astype(np.uint8)


def fit_within(width: int, height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """Size (w, h) of an image scaled to fit the box with its aspect kept.

    One side equals the box side exactly; the other is rounded, at least 1.
    """
    if width * box_height >= height * box_width:  # limited by width
        return box_width, max(1, min(box_height, round(height * box_width / width)))
    return max(1, min(box_width, round(width * box_height / height))), box_height


def long_side_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    """Size with the long side equal to ``long_side`` and the aspect kept."""
    return fit_within(width, height, long_side, long_side)


def indices_to_image(indices: np.ndarray, size: tuple[int, int], cmap: str = "gray") -> Image.Image:
    """Colour an index array and resize it to exactly ``size`` = (width, height).

    The array is flipped so that row 0 ends at the bottom. Resampling happens on
    the index image (box filter when shrinking, bicubic when enlarging), so every
    output colour is a colour of the map.
    """
    flipped = np.ascontiguousarray(indices[::-1])
    image = Image.fromarray(flipped, mode="L")
    if image.size != tuple(size):
        shrinking = size[0] < image.size[0] or size[1] < image.size[1]
        image = image.resize(size, Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC)
    if _ALIASES.get(cmap, cmap) == "gray":
        return image
    table = colormap_table(cmap)
    return Image.fromarray(table[np.asarray(image)], mode="RGB")


def encode(image: Image.Image, fmt: str = "png", quality: int = 90,
           xmp: str | None = None) -> bytes:
    """PNG (fast zlib level) or JPEG at ``quality``; optional XMP packet embedded."""
    from app.processing.avm import embed_xmp_jpeg, png_xmp_info

    buf = io.BytesIO()
    if fmt == "png":
        pnginfo = png_xmp_info(xmp) if xmp else None
        image.save(buf, format="PNG", compress_level=3, pnginfo=pnginfo)
        return buf.getvalue()
    if fmt == "jpeg":
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        image.save(buf, format="JPEG", quality=int(quality))
        data = buf.getvalue()
        return embed_xmp_jpeg(data, xmp) if xmp else data
    raise ValueError(f"unknown image format {fmt!r}")

"""Colormaps and exact-size PNG/JPEG encoding with Pillow (no matplotlib figures).

Images follow the FITS convention: row 0 of the array is the *bottom* row of
the picture. Stretched values in [0, 1] become 8-bit indices into a colormap's
256-entry table; NaN becomes index 0, the colormap's lowest colour.
"""

from __future__ import annotations

import io
import struct
import zlib
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

COLORMAPS = (
    "grayscale",
    "gray",
    "inferno",
    "magma",
    "viridis",
    "plasma",
    "hot",
    "cool",
    "rainbow",
    "jet",
)
_ALIASES = {"grayscale": "gray"}
_TABLES = Path(__file__).with_name("colormaps.npz")


@cache
def colormap_table(name: str) -> np.ndarray:
    """The (256, 3) uint8 RGB table of a colormap named in :data:`COLORMAPS`."""
    key = _ALIASES.get(name, name)
    with np.load(_TABLES) as tables:
        if key not in tables:
            raise ValueError(f"unknown colormap {name!r}")
        return np.array(tables[key])


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


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(pixels: np.ndarray, xmp: str | None = None, level: int = 1) -> bytes:
    """PNG of an 8-bit grey (h, w) or RGB (h, w, 3) array, written directly.

    Pillow's PNG writer tries several row filters per row, which costs more than
    it saves on noisy sky images; here every row uses the "Up" filter (one numpy
    subtraction) and zlib's fastest level. ``xmp`` goes in an uncompressed
    ``iTXt`` chunk with the standard ``XML:com.adobe.xmp`` keyword.
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = pixels.shape[:2]
    color_type = 0 if pixels.ndim == 2 else 2
    rows = pixels.reshape(height, -1)
    filtered = np.empty((height, rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # filter type "Up"
    filtered[0, 0] = 0  # the first row has nothing above it
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    parts = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", header)]
    if xmp:
        parts.append(
            _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp.encode("utf-8"))
        )
    parts.append(_png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), level)))
    parts.append(_png_chunk(b"IEND", b""))
    return b"".join(parts)


def encode(
    image: Image.Image, fmt: str = "png", quality: int = 90, xmp: str | None = None
) -> bytes:
    """PNG (fast, see :func:`encode_png`) or JPEG at ``quality``; optional XMP embedded."""
    from app.processing.avm import embed_xmp_jpeg

    if fmt == "png":
        return encode_png(np.asarray(image), xmp)
    if fmt == "jpeg":
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=int(quality))
        data = buf.getvalue()
        return embed_xmp_jpeg(data, xmp) if xmp else data
    raise ValueError(f"unknown image format {fmt!r}")


def encode_array(pixels: np.ndarray, fmt: str = "png", quality: int = 90) -> bytes:
    """PNG or JPEG of an 8-bit grey (h, w) or RGB (h, w, 3) array, first row at the top."""
    if fmt == "png":
        return encode_png(pixels)
    return encode(Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)), fmt, quality)

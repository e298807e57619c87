"""Safe FITS reading: choose the HDU, check it, read one plane, reduce it early.

Everything here is a plain function on a local path; nothing knows about HTTP.
Problems with the file raise :class:`app.errors.BadRequest` (400) with a message
that says what is wrong, and arrays over the configured element limit raise
:class:`app.errors.PayloadTooLarge` (413) before a single pixel is read.

Reading strategy (why it is fast and small):

* Headers are parsed lazily; data is never loaded through ``hdu.data``.
* For uncompressed images the bytes of just the needed rows are read from the
  file with ``numpy.fromfile`` in blocks of a few megabytes, scaled
  (``BSCALE``/``BZERO``, ``BLANK`` -> NaN) and reduced block by block, so the
  whole image never has to sit in memory.
* Tile-compressed HDUs use astropy's ``section`` (only the needed tiles are
  decompressed); whole-file compressed files (``.fits.gz``) are decompressed by
  astropy.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
from astropy.io import fits
from astropy.io.fits.hdu.base import _BaseHDU
from astropy.wcs import WCS
from numpy.typing import DTypeLike

from app.errors import BadRequest, PayloadTooLarge
from app.processing.header_limits import check_header_cards

# Any HDU astropy reads, and the image HDUs this module reads pixels from.
HDU: TypeAlias = _BaseHDU
ImageHDU: TypeAlias = fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU

_BITPIX_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"PK\x03\x04")
# Target size of one block of raw rows read from disk.
_BLOCK_BYTES = 8 * 1024 * 1024


# --------------------------------------------------------------------------------------
# Opening and choosing an HDU
# --------------------------------------------------------------------------------------


def is_whole_file_compressed(path: str) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(4)
    return any(head.startswith(magic) for magic in _COMPRESSED_MAGIC)


@contextmanager
def open_fits(path: str | os.PathLike[str]) -> Iterator[fits.HDUList]:
    """Open a FITS file lazily; a file that is not FITS raises BadRequest."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(80)
    except OSError as exc:
        raise BadRequest(f"Cannot read file: {exc.strerror or exc}") from None
    if not head:
        raise BadRequest("File is empty, not a FITS file")
    compressed = any(head.startswith(magic) for magic in _COMPRESSED_MAGIC)
    if not compressed and not head.startswith(b"SIMPLE  ="):
        raise BadRequest("Not a valid FITS file: it does not start with a SIMPLE card")
    check_header_cards(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hdul = fits.open(path, memmap=False, lazy_load_hdus=True, ignore_missing_simple=False)
    except (OSError, ValueError, TypeError, EOFError) as exc:
        raise BadRequest(f"Not a valid FITS file: {exc}") from None
    try:
        yield hdul
    finally:
        hdul.close()


def iter_hdus(hdul: fits.HDUList) -> Iterator[tuple[int, fits.hdu.base._BaseHDU]]:
    """Iterate HDUs lazily, turning a damaged file into BadRequest."""
    index = 0
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hdu = hdul[index]
        except IndexError:
            return
        except (OSError, ValueError, TypeError, EOFError, KeyError) as exc:
            if index == 0:
                raise BadRequest(f"Not a valid FITS file: {exc}") from None
            # Trailing junk after valid HDUs: stop, as astropy itself would warn.
            return
        yield index, hdu
        index += 1


def is_image_hdu(hdu: HDU) -> bool:
    return isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU))


def hdu_shape(hdu: HDU) -> tuple[int, ...]:
    """The numpy-order shape of an image HDU, from its header (no data read)."""
    header = hdu.header
    if isinstance(hdu, fits.CompImageHDU):
        return tuple(int(n) for n in hdu.shape)
    naxis = int(header.get("NAXIS", 0))
    return tuple(int(header.get(f"NAXIS{i}", 0)) for i in range(naxis, 0, -1))


def find_image_hdu(hdul: fits.HDUList, min_ndim: int = 2, hdu_index: int | None = None) -> int:
    """Index of the first image HDU with at least ``min_ndim`` non-empty axes."""
    if hdu_index is not None and hdu_index >= 0:
        hdus = dict(iter_hdus(hdul))
        if hdu_index not in hdus:
            raise BadRequest(f"HDU {hdu_index} does not exist (the file has {len(hdus)} HDUs)")
        hdu = hdus[hdu_index]
        shape = hdu_shape(hdu) if is_image_hdu(hdu) else ()
        if len(shape) < min_ndim or 0 in shape:
            raise BadRequest(f"HDU {hdu_index} holds no image with {min_ndim} or more axes")
        return hdu_index
    for index, hdu in iter_hdus(hdul):
        if not is_image_hdu(hdu):
            continue
        shape = hdu_shape(hdu)
        if len(shape) >= min_ndim and 0 not in shape:
            return index
    raise BadRequest("No image data found in FITS file")


# --------------------------------------------------------------------------------------
# Describing the plane to read
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlaneChoice:
    """Which 2-D plane of an N-D image is shown.

    ``leading`` indexes every axis before the last two (numpy order). The first
    leading axis is the cube's slice axis; deeper axes take their middle.
    """

    shape: tuple[int, ...]
    leading: tuple[int, ...]
    n_slices: int
    slice_index: int

    @property
    def height(self) -> int:
        return self.shape[-2]

    @property
    def width(self) -> int:
        return self.shape[-1]


def choose_plane(shape: tuple[int, ...], slice_index: int = -1) -> PlaneChoice:
    """The plane to read for ``slice_index`` (-1 = middle; clamped into range)."""
    if len(shape) < 2:
        raise BadRequest("Image has fewer than two axes")
    if any(n <= 0 for n in shape):
        raise BadRequest(f"Image has an empty axis (shape {list(shape)})")
    if len(shape) == 2:
        return PlaneChoice(shape=shape, leading=(), n_slices=1, slice_index=0)
    n_slices = shape[0]
    used = n_slices // 2 if slice_index < 0 else min(slice_index, n_slices - 1)
    leading = (used,) + tuple(n // 2 for n in shape[1:-2])
    return PlaneChoice(shape=shape, leading=leading, n_slices=n_slices, slice_index=used)


def data_size_bound(path: str | os.PathLike[str]) -> int:
    """Bytes the file holds once decompressed: gzip's own record of the original size
    (its last 4 bytes, modulo 4 GiB) for a whole-file-compressed file, else its size.
    A cheap bound for estimates made before any header is read."""
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        if handle.read(2) != b"\x1f\x8b" or size < 18:
            # Not gzip (bzip2 and zip keep no such record): the size, times the worst
            # ratio astropy's readers see for FITS, when it is compressed at all.
            return size * 20 if is_whole_file_compressed(os.fspath(path)) else size
        handle.seek(-4, os.SEEK_END)
        original = int.from_bytes(handle.read(4), "little")
    return max(size, original)


def check_element_limit(shape: tuple[int, ...], max_elements: int) -> None:
    """413 when the image holds more elements than allowed (before loading)."""
    total = math.prod(shape)
    if total > max_elements:
        raise PayloadTooLarge(f"Image too large: {total:,} pixels exceeds maximum {max_elements:,}")


# --------------------------------------------------------------------------------------
# Raw reading
# --------------------------------------------------------------------------------------


def check_data_present(path: str, hdu: HDU, shape: tuple[int, ...]) -> int:
    """400 when an uncompressed image HDU's file holds fewer data bytes than its header
    declares (a half-written or cut file); returns where its data starts."""
    bitpix = abs(int(hdu.header["BITPIX"]))
    data_offset = int(hdu.fileinfo()["datLoc"])
    total = math.prod(shape) * bitpix // 8
    available = os.path.getsize(path) - data_offset
    if available < total:
        raise BadRequest(
            "FITS file is truncated: the header declares "
            f"{total:,} data bytes but only {max(available, 0):,} are present"
        )
    return data_offset


@dataclass
class PlaneReader:
    """Reads rows of one 2-D plane of an image HDU as native float32.

    Use :func:`plane_reader` to build one; it checks that the file really holds
    the bytes the header announces.
    """

    path: str
    hdu: ImageHDU
    choice: PlaneChoice
    _raw: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        header = self.hdu.header
        self.compressed_file = is_whole_file_compressed(self.path)
        self.tile_compressed = isinstance(self.hdu, fits.CompImageHDU)
        self.direct = not (self.compressed_file or self.tile_compressed)
        if self.direct:
            bitpix = int(header["BITPIX"])
            if bitpix not in _BITPIX_DTYPES:
                raise BadRequest(f"Unsupported BITPIX {bitpix}")
            self.dtype = np.dtype(_BITPIX_DTYPES[bitpix])
            self.bscale = float(header.get("BSCALE", 1.0))
            self.bzero = float(header.get("BZERO", 0.0))
            self.blank = header.get("BLANK") if bitpix > 0 else None
            self.data_offset = check_data_present(self.path, self.hdu, self.choice.shape)
            plane_elems = self.choice.height * self.choice.width
            flat = 0
            stride = 1
            for axis_len, idx in zip(
                reversed(self.choice.shape[:-2]), reversed(self.choice.leading), strict=True
            ):
                flat += idx * stride
                stride *= axis_len
            self.plane_offset = self.data_offset + flat * plane_elems * self.dtype.itemsize

    # ---------------------------------------------------------------------------------
    def _scale(self, raw: np.ndarray) -> np.ndarray:
        out = raw.astype(np.float32)
        if self.blank is not None:
            out[raw == self.blank] = np.nan
        if self.bscale != 1.0:
            out *= np.float32(self.bscale)
        if self.bzero != 0.0:
            out += np.float32(self.bzero)
        return out

    def rows(self, start: int, stop: int, step: int = 1) -> np.ndarray:
        """Rows ``start:stop:step`` of the plane, as native float32 (scaled)."""
        width = self.choice.width
        if self.direct:
            row_bytes = width * self.dtype.itemsize
            with open(self.path, "rb") as handle:
                if step == 1:
                    handle.seek(self.plane_offset + start * row_bytes)
                    count = (stop - start) * width
                    raw = np.fromfile(handle, dtype=self.dtype, count=count)
                    if raw.size != count:
                        raise BadRequest("FITS file is truncated: fewer data bytes than declared")
                    raw = raw.reshape(stop - start, width)
                else:
                    picked = range(start, stop, step)
                    raw = np.empty((len(picked), width), dtype=self.dtype)
                    for i, row in enumerate(picked):
                        handle.seek(self.plane_offset + row * row_bytes)
                        line = np.fromfile(handle, dtype=self.dtype, count=width)
                        if line.size != width:
                            raise BadRequest(
                                "FITS file is truncated: fewer data bytes than declared"
                            )
                        raw[i] = line
            return self._scale(raw)
        return self._rows_via_astropy(start, stop, step)

    def _rows_via_astropy(self, start: int, stop: int, step: int) -> np.ndarray:
        index = self.choice.leading + (slice(start, stop, step), slice(None))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if self.tile_compressed:
                    block = self.hdu.section[index]
                else:
                    block = self.hdu.data[index]
        except (OSError, ValueError, TypeError, EOFError, IndexError) as exc:
            raise BadRequest(f"Cannot read image data: {exc}") from None
        if block is None:
            raise BadRequest("No image data found in FITS file")
        return np.asarray(block, dtype=np.float32)

    def iter_blocks(self, rows_per_block: int) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(start, stop, block)`` over the plane's rows, as native float32.

        For uncompressed files one pair of buffers is reused for every block (no
        fresh pages to fault in, no per-block allocation): a block is only valid
        until the next one is yielded.
        """
        height, width = self.choice.height, self.choice.width
        if not self.direct or self.blank is not None:
            for start in range(0, height, rows_per_block):
                stop = min(height, start + rows_per_block)
                yield start, stop, self.rows(start, stop)
            return
        raw = np.empty((rows_per_block, width), dtype=self.dtype)
        native = np.empty((rows_per_block, width), dtype=np.float32)
        row_bytes = width * self.dtype.itemsize
        with open(self.path, "rb", buffering=0) as handle:
            handle.seek(self.plane_offset)
            for start in range(0, height, rows_per_block):
                stop = min(height, start + rows_per_block)
                n = stop - start
                view = memoryview(raw[:n]).cast("B")  # type: ignore[arg-type]
                got = 0
                while got < n * row_bytes:
                    chunk = handle.readinto(view[got:])
                    if not chunk:
                        raise BadRequest("FITS file is truncated: fewer data bytes than declared")
                    got += chunk
                block = native[:n]
                np.copyto(block, raw[:n], casting="unsafe")
                if self.bscale != 1.0:
                    block *= np.float32(self.bscale)
                if self.bzero != 0.0:
                    block += np.float32(self.bzero)
                yield start, stop, block

    def block_rows(self) -> int:
        """How many rows make one read block of about 8 MB."""
        width = self.choice.width
        itemsize = self.dtype.itemsize if self.direct else 4
        return max(1, _BLOCK_BYTES // max(1, width * itemsize))

    def read(self) -> np.ndarray:
        """The whole plane as float32 (height x width)."""
        return self.rows(0, self.choice.height)

    def read_strided(self, step: int) -> np.ndarray:
        """Every ``step``-th row and column (a statistically fair subsample)."""
        if step <= 1:
            return self.read()
        return np.ascontiguousarray(self.rows(0, self.choice.height, step)[:, ::step])

    def finite_values(self, step: int = 1) -> np.ndarray:
        """The finite pixels of every ``step``-th row and column, as one 1-D array.

        Read block by block and compacted into one buffer, so memory stays near
        one copy of the (sampled) image instead of two.
        """
        height, width = self.choice.height, self.choice.width
        rows = range(0, height, step)
        out = np.empty(len(rows) * len(range(0, width, step)), dtype=np.float32)
        filled = 0
        if step == 1:
            blocks = (block for _, _, block in self.iter_blocks(self.block_rows()))
        else:
            rows_per_block = max(step, (self.block_rows() // step) * step)
            blocks = (
                self.rows(start, min(height, start + rows_per_block), step)[:, ::step]
                for start in range(0, height, rows_per_block)
            )
        for block in blocks:
            kept = block[np.isfinite(block)]
            out[filled : filled + kept.size] = kept
            filled += kept.size
        return out[:filled]

    def read_reduced(self, factor: int) -> np.ndarray:
        """The plane averaged over ``factor`` x ``factor`` blocks, NaN-aware.

        Non-finite pixels are left out of each block's mean; a block with no
        finite pixel is NaN. Edge blocks average the pixels they have. Rows are
        read a block at a time, so memory stays near the size of the output.
        """
        if factor <= 1:
            return self.read()
        height, width = self.choice.height, self.choice.width
        out_h, out_w = -(-height // factor), -(-width // factor)
        out = np.empty((out_h, out_w), dtype=np.float32)
        rows_per_block = max(factor, (self.block_rows() // factor) * factor)
        for start, stop, block in self.iter_blocks(rows_per_block):
            out[start // factor : -(-stop // factor)] = block_mean(block, factor)
        return out


def _sum_blocks(values: np.ndarray, factor: int, dtype: DTypeLike) -> np.ndarray:
    """Sum over factor x factor blocks by adding strided rows, then strided columns."""
    rows = values[0::factor].astype(dtype, copy=True)
    for i in range(1, factor):
        rows += values[i::factor]
    out = rows[:, 0::factor].copy()
    for j in range(1, factor):
        out += rows[:, j::factor]
    return out


def block_mean(block: np.ndarray, factor: int) -> np.ndarray:
    """NaN-aware mean over ``factor`` x ``factor`` blocks (edges padded with NaN).

    Non-finite pixels are left out of each block's mean; a block without any
    finite pixel is NaN. The plain sum handles every block first; only the few
    blocks it leaves non-finite (a NaN border crosses them) are recomputed with
    a mask, so NaN-bordered JWST images cost little more than clean ones.
    """
    h, w = block.shape
    pad_h, pad_w = (-h) % factor, (-w) % factor
    if pad_h or pad_w:
        block = np.pad(block, ((0, pad_h), (0, pad_w)), constant_values=np.nan)
    out = _sum_blocks(block, factor, np.float32)
    out *= np.float32(1.0 / (factor * factor))
    bad = ~np.isfinite(out)
    if not bad.any():
        return out
    finite = np.isfinite(block)
    counts = _sum_blocks(finite.view(np.uint8), factor, np.float32)
    out[bad & (counts == 0)] = np.nan  # no finite pixel at all (Inf-only blocks too)
    partial = bad & (counts > 0)
    n_partial = int(np.count_nonzero(partial))
    if n_partial == 0:
        return out
    if n_partial > out.size // 16:
        # Many blocks mix NaN and data: masked sums of everything are cheaper.
        sums = _sum_blocks(np.where(finite, block, np.float32(0)), factor, np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            sums /= counts
        return sums
    rows, cols = np.nonzero(partial)
    hh, ww = block.shape
    cells = block.reshape(hh // factor, factor, ww // factor, factor)[rows, :, cols, :]
    cells = cells.reshape(n_partial, factor * factor)
    cell_finite = np.isfinite(cells)
    sums = np.where(cell_finite, cells, 0).sum(axis=1, dtype=np.float64)
    out[rows, cols] = sums / counts[rows, cols]
    return out


# --------------------------------------------------------------------------------------
# The entry point the services use
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageInfo:
    """What is known about an image from its header alone."""

    hdu_index: int
    shape: tuple[int, ...]
    choice: PlaneChoice
    header: fits.Header


def inspect_image(
    path: str | os.PathLike[str],
    slice_index: int = -1,
    max_elements: int | None = None,
    hdu_index: int | None = None,
) -> ImageInfo:
    """Header-only look at the image a viewer would show (no pixel is read)."""
    with open_plane(path, slice_index, max_elements, hdu_index) as (_, info):
        return ImageInfo(
            hdu_index=info.hdu_index,
            shape=info.shape,
            choice=info.choice,
            header=info.header.copy(),
        )


@contextmanager
def open_plane(
    path: str | os.PathLike[str],
    slice_index: int = -1,
    max_elements: int | None = None,
    hdu_index: int | None = None,
) -> Iterator[tuple[PlaneReader, ImageInfo]]:
    """Open the image and yield a reader for the chosen plane with its info."""
    path = os.fspath(path)
    with open_fits(path) as hdul:
        index, hdu, choice = choose_image(hdul, slice_index, max_elements, hdu_index)
        info = ImageInfo(hdu_index=index, shape=choice.shape, choice=choice, header=hdu.header)
        yield PlaneReader(path=path, hdu=hdu, choice=choice), info


def choose_image(
    hdul: fits.HDUList,
    slice_index: int = -1,
    max_elements: int | None = None,
    hdu_index: int | None = None,
) -> tuple[int, ImageHDU, PlaneChoice]:
    """The image HDU a reader shows (its index, the HDU, the plane), with the element
    limit applied before any pixel is read."""
    index = find_image_hdu(hdul, hdu_index=hdu_index)
    hdu = hdul[index]
    shape = hdu_shape(hdu)
    if max_elements is not None:
        check_element_limit(shape, max_elements)
    return index, hdu, choose_plane(shape, slice_index)


def require_finite(data: np.ndarray) -> None:
    """400 when an image has no finite pixel at all."""
    if not np.isfinite(data).any():
        raise BadRequest("Image contains no finite pixel values (all NaN or Inf)")


# --------------------------------------------------------------------------------------
# World coordinates (always astropy's WCS: PC, CD, CDELT and SIP honoured)
# --------------------------------------------------------------------------------------


def celestial_wcs(header: fits.Header) -> WCS | None:
    """The celestial part of the header's WCS, or None when there is none."""
    from astropy.wcs import WCS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header)
            if not wcs.has_celestial:
                return None
            celestial = wcs.celestial
            if celestial.naxis != 2:
                return None
            # Exercise the transform once: a header astropy parses but cannot use
            # (singular matrix, unknown projection) counts as no WCS.
            celestial.pixel_to_world_values(0.0, 0.0)
            return celestial
    except Exception:  # astropy raises many types for broken headers
        return None


def scale_and_rotation(cd: np.ndarray) -> tuple[float, float, float]:
    """Split a 2x2 CD-like matrix into (cdelt1, cdelt2, rotation in degrees).

    Uses the CROTA2 convention: CD1_1 = CDELT1 cos r, CD1_2 = -CDELT2 sin r,
    CD2_1 = CDELT1 sin r, CD2_2 = CDELT2 cos r, with CDELT2 > 0, so that a
    normal sky image (east left) has CDELT1 < 0. Exact when there is no skew.
    """
    cd = np.asarray(cd, dtype=float)
    det = float(np.linalg.det(cd))
    cdelt2 = float(math.hypot(cd[0, 1], cd[1, 1]))
    cdelt1 = float(math.copysign(math.hypot(cd[0, 0], cd[1, 0]), det if det != 0 else 1.0))
    rotation = math.degrees(math.atan2(-cd[0, 1], cd[1, 1]))
    return cdelt1, cdelt2, rotation

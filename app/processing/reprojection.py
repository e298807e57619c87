"""Putting images on a common celestial grid: geometry, the grid, and resampling.

Used by the composite and the mosaic engines. Pure numpy/astropy; no I/O
policy beyond reading FITS headers and pixel rows through :mod:`fits_io`.

* :func:`read_geometry` describes an input from its header alone (shape,
  celestial WCS, pixel scale, footprint).
* :func:`fit_grid` and :func:`native_grid` build one north-up, east-left
  gnomonic (TAN) grid that covers a set of inputs: either fitted into a
  ``width`` x ``height`` picture, or at the finest input pixel scale.
* :class:`PixelMapper` gives, for any block of grid pixels, the input pixel
  coordinates that fall there. The exact WCS transforms (astropy, SIP
  included) are evaluated on a coarse lattice of grid points and interpolated
  bilinearly in between; the lattice is refined until the interpolation error,
  checked against exact transforms at the lattice cell centres, is below
  ``tolerance`` pixels (0.01 by default). The transforms are smooth, so a few
  thousand exact evaluations stand for millions.
* :func:`sample_bilinear` resamples an input at those coordinates (bilinear,
  as ``reproject.reproject_interp`` with ``order=1``: NaN when a neighbour is
  NaN, NaN outside the image).

Pixel coordinates are 0-based with pixel centres on integers (astropy's
``pixel_to_world_values`` convention).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from app.errors import BadRequest, PayloadTooLarge
from app.processing.fits_io import (
    PlaneChoice,
    celestial_wcs,
    check_data_present,
    choose_image,
    is_whole_file_compressed,
    open_fits,
)

# Rows and columns, half-open: (row start, row stop, column start, column stop).
Window = tuple[int, int, int, int]

# --------------------------------------------------------------------------------------
# Input geometry, from headers only
# --------------------------------------------------------------------------------------


@dataclass
class InputGeometry:
    """Where an input image lies on the sky, read from its header alone.

    ``wcs`` is the 2-D celestial astropy WCS of the chosen plane; ``scale_deg``
    the mean pixel side in degrees; ``header`` the image HDU's header merged
    over the primary header (so FILTER, INSTRUME... are found in either).
    """

    path: str
    hdu_index: int
    choice: PlaneChoice
    wcs: WCS
    scale_deg: float
    header: fits.Header

    @property
    def height(self) -> int:
        return self.choice.height

    @property
    def compressed_read_bytes(self) -> int:
        """Extra bytes reading this input costs because its file is compressed as a whole
        (.gz): the decompressed data is held twice, then converted to float32. 0 otherwise."""
        if not is_whole_file_compressed(self.path):
            return 0
        raw = math.prod(self.choice.shape) * abs(int(self.header.get("BITPIX", -32))) // 8
        return 2 * raw + 4 * self.height * self.width

    @property
    def width(self) -> int:
        return self.choice.width

    def edge_points(self, per_side: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates along the image's outer edge (pixel-corner border).

        Several points per side, so that distortion (SIP) bending the edges is
        followed when the footprint is projected onto another grid.
        """
        w, h = self.width, self.height
        t = np.linspace(0.0, 1.0, per_side, endpoint=False)
        x0, x1, y0, y1 = -0.5, w - 0.5, -0.5, h - 0.5
        xs = np.concatenate(
            [x0 + (x1 - x0) * t, np.full_like(t, x1), x1 - (x1 - x0) * t, np.full_like(t, x0)]
        )
        ys = np.concatenate(
            [np.full_like(t, y0), y0 + (y1 - y0) * t, np.full_like(t, y1), y1 - (y1 - y0) * t]
        )
        return xs, ys

    def edge_world(self) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = self.edge_points()
        ra, dec = self.wcs.pixel_to_world_values(xs, ys)
        return np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)


def pixel_scale_deg(wcs: WCS) -> float:
    """Mean pixel side in degrees (square root of the pixel area at the reference)."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    scales = proj_plane_pixel_scales(wcs)
    return float(math.sqrt(abs(scales[0] * scales[1])))


def merged_header(hdul: fits.HDUList, index: int) -> fits.Header:
    """The image HDU's header with the primary header's other cards behind it."""
    header = hdul[index].header.copy()
    if index != 0:
        for card in hdul[0].header.cards:
            key = card.keyword
            if (
                key
                and key not in header
                and key not in ("COMMENT", "HISTORY", "")
                and not key.startswith(("NAXIS", "SIMPLE", "BITPIX", "EXTEND"))
            ):
                header.append(card, end=True)
    return header


def read_geometry(
    path: str | os.PathLike[str],
    slice_index: int = -1,
    hdu_index: int | None = None,
    label: str | None = None,
    max_elements: int | None = None,
) -> InputGeometry:
    """Header-only description of an input (no pixel is read).

    400 when the file is not a readable FITS image or has no usable celestial WCS; 413
    when its image holds more than ``max_elements`` elements.
    ``label`` names the input in messages (defaults to the file name).
    """
    path = os.fspath(path)
    name = label or os.path.basename(path)
    try:
        with open_fits(path) as hdul:
            index, hdu, choice = choose_image(hdul, slice_index, max_elements, hdu_index)
            if not (is_whole_file_compressed(path) or isinstance(hdu, fits.CompImageHDU)):
                check_data_present(path, hdu, choice.shape)
            header = merged_header(hdul, index)
    except BadRequest as exc:
        raise BadRequest(f"{name}: {exc.detail}") from None
    except PayloadTooLarge as exc:
        raise PayloadTooLarge(f"{name}: {exc.detail}") from None
    except Exception as exc:  # astropy raises many types for broken files
        raise BadRequest(f"{name} is not a readable FITS image ({type(exc).__name__})") from None
    wcs = celestial_wcs(header)
    if wcs is None:
        raise BadRequest(
            f"{name}: the image has no usable celestial WCS "
            "(RA/Dec axes in its header), so it cannot be placed on the sky"
        )
    return InputGeometry(
        path=path,
        hdu_index=index,
        choice=choice,
        wcs=wcs,
        scale_deg=pixel_scale_deg(wcs),
        header=header,
    )


# --------------------------------------------------------------------------------------
# The common grid
# --------------------------------------------------------------------------------------


@dataclass
class Grid:
    """An output grid: a celestial WCS and a (height, width) shape."""

    wcs: WCS
    shape: tuple[int, int]

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def scale_deg(self) -> float:
        return pixel_scale_deg(self.wcs)

    def to_header(self) -> fits.Header:
        header: fits.Header = self.wcs.to_header()
        return header


def _tan_wcs(ra0: float, dec0: float, scale_deg: float, crpix: tuple[float, float]) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crval = [ra0 % 360.0, dec0]
    wcs.wcs.cdelt = [-scale_deg, scale_deg]  # north up, east left
    wcs.wcs.crpix = list(crpix)
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.equinox = 2000.0
    # Rebuilt from its own FITS header: the grid is then exactly what a FITS file
    # (or a pickle sent to another process) says, so results match bit for bit.
    return WCS(wcs.to_header())


def _union_points(inputs: list[InputGeometry]) -> tuple[np.ndarray, np.ndarray]:
    ras, decs = zip(*(g.edge_world() for g in inputs), strict=True)
    return np.concatenate(ras), np.concatenate(decs)


def sky_centre(ra: np.ndarray, dec: np.ndarray) -> tuple[float, float]:
    """Mean direction of a set of sky points (safe across RA 0/360 and near poles)."""
    r, d = np.radians(ra), np.radians(dec)
    x, y, z = (np.cos(d) * np.cos(r)).mean(), (np.cos(d) * np.sin(r)).mean(), np.sin(d).mean()
    return math.degrees(math.atan2(y, x)) % 360.0, math.degrees(math.atan2(z, math.hypot(x, y)))


def _extent(inputs: list[InputGeometry]) -> tuple[float, float, float, float, float, float]:
    """Tangent point and the union's bounding box in intermediate degrees."""
    ra, dec = _union_points(inputs)
    ra0, dec0 = sky_centre(ra, dec)
    unit = _tan_wcs(ra0, dec0, 1.0, (1.0, 1.0))
    # With crpix 1 and cdelt (-1, 1) deg, 0-based pixel coordinates are (-xi, eta)
    # in degrees; the grids below use the same sign convention.
    x, y = unit.world_to_pixel_values(ra, dec)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise BadRequest("The inputs span too much of the sky to share one projection")
    return ra0, dec0, float(x.min()), float(x.max()), float(y.min()), float(y.max())


def fit_grid(inputs: list[InputGeometry], width: int, height: int) -> Grid:
    """A ``width`` x ``height`` grid, north up, that holds the union of the inputs.

    The union's bounding box is centred and fills the picture along its tighter
    dimension; pixels are square, so nothing is distorted (the other dimension
    has margins where no input lies).
    """
    ra0, dec0, x0, x1, y0, y1 = _extent(inputs)
    span_x, span_y = max(x1 - x0, 1e-9), max(y1 - y0, 1e-9)
    scale = max(span_x / width, span_y / height)
    # Centre of the box in intermediate degrees -> its pixel in the grid.
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    # 0-based pixel p = crpix - 1 + (unit coordinate) / scale; centre the box.
    crpix1 = (width - 1) / 2.0 + 1.0 - cx / scale
    crpix2 = (height - 1) / 2.0 + 1.0 - cy / scale
    return Grid(wcs=_tan_wcs(ra0, dec0, scale, (crpix1, crpix2)), shape=(int(height), int(width)))


def native_grid(
    inputs: list[InputGeometry], max_pixels: int, scale_deg: float | None = None
) -> Grid:
    """A grid at the finest input pixel scale (or ``scale_deg``) covering the union.

    413 when it would hold more than ``max_pixels`` pixels.
    """
    ra0, dec0, x0, x1, y0, y1 = _extent(inputs)
    scale = scale_deg or min(g.scale_deg for g in inputs)
    # (The tolerance keeps an extent of exactly n pixels at n, not n + 1.)
    width = int(math.ceil((x1 - x0) / scale - 1e-6))
    height = int(math.ceil((y1 - y0) / scale - 1e-6))
    width, height = max(width, 1), max(height, 1)
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"Mosaic output too large: {width} x {height} = {width * height:,} pixels exceeds "
            f"MAX_MOSAIC_OUTPUT_PIXELS ({max_pixels:,})"
        )
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    crpix1 = (width - 1) / 2.0 + 1.0 - cx / scale
    crpix2 = (height - 1) / 2.0 + 1.0 - cy / scale
    return Grid(wcs=_tan_wcs(ra0, dec0, scale, (crpix1, crpix2)), shape=(height, width))


def reduction_for(geometry: InputGeometry, grid: Grid) -> int:
    """Integer block factor that keeps the input's pixels no coarser than the grid's."""
    return max(1, int(math.floor(grid.scale_deg / geometry.scale_deg * (1 + 1e-6))))


def scaled_grid(grid: Grid, factor: float) -> Grid:
    """``grid`` with pixels ``1/factor`` times larger, same centre and orientation.

    The shape becomes (max(1, floor(H f)), max(1, floor(W f))); the grid's centre
    stays on the same sky position (used to shrink a grid to fit a budget).
    """
    height = max(1, int(math.floor(grid.height * factor)))
    width = max(1, int(math.floor(grid.width * factor)))
    wcs = grid.wcs.deepcopy()
    crpix = wcs.wcs.crpix
    wcs.wcs.crpix = [
        (width + 1) / 2.0 + (crpix[0] - (grid.width + 1) / 2.0) * factor,
        (height + 1) / 2.0 + (crpix[1] - (grid.height + 1) / 2.0) * factor,
    ]
    if wcs.wcs.has_cd():
        wcs.wcs.cd = wcs.wcs.cd / factor
    else:
        wcs.wcs.cdelt = wcs.wcs.cdelt / factor
    return Grid(wcs=WCS(wcs.to_header()), shape=(height, width))


def footprint_box(geometry: InputGeometry, grid: Grid, margin: int = 1) -> Window | None:
    """Grid rows and columns (half-open, clipped) that the input can touch, or None."""
    ra, dec = geometry.edge_world()
    x, y = grid.wcs.world_to_pixel_values(ra, dec)
    x, y = np.asarray(x), np.asarray(y)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return None
    x, y = x[ok], y[ok]
    c0 = max(0, int(math.floor(x.min())) - margin)
    c1 = min(grid.width, int(math.ceil(x.max())) + margin + 1)
    r0 = max(0, int(math.floor(y.min())) - margin)
    r1 = min(grid.height, int(math.ceil(y.max())) + margin + 1)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


# --------------------------------------------------------------------------------------
# Grid pixel -> input pixel
# --------------------------------------------------------------------------------------


class PixelMapper:
    """Input pixel coordinates for blocks of grid pixels.

    ``factor`` > 1 means the input was block-averaged by that factor before
    sampling: reduced pixel j covers original pixels j*f ... j*f+f-1, centred on
    j*f + (f-1)/2, so coordinates are divided accordingly.
    """

    def __init__(
        self, grid: Grid, input_wcs: WCS, factor: int = 1, tolerance: float = 0.01, step: int = 32
    ) -> None:
        self.grid = grid
        self.input_wcs = input_wcs
        self.factor = int(factor)
        self.tolerance = tolerance
        self.step = step

    def _exact(self, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ra, dec = self.grid.wcs.pixel_to_world_values(cols, rows)
        x, y = self.input_wcs.world_to_pixel_values(ra, dec)
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if self.factor > 1:
            shift = (self.factor - 1) / 2.0
            x = (x - shift) / self.factor
            y = (y - shift) / self.factor
        return x, y

    @staticmethod
    def _lattice(start: int, stop: int, step: int) -> np.ndarray:
        nodes = np.arange(start, stop, step, dtype=np.float64)
        if nodes[-1] != stop - 1:
            nodes = np.append(nodes, float(stop - 1))
        return nodes

    @staticmethod
    def _interp_axis(
        nodes: np.ndarray, values: np.ndarray, targets: np.ndarray, axis: int
    ) -> np.ndarray:
        """Linear interpolation of ``values`` (nodes along ``axis``) at ``targets``."""
        if nodes.size == 1:
            return np.repeat(values, targets.size, axis=axis)
        i = np.clip(np.searchsorted(nodes, targets, side="right") - 1, 0, nodes.size - 2)
        t = (targets - nodes[i]) / (nodes[i + 1] - nodes[i])
        a = np.take(values, i, axis=axis)
        b = np.take(values, i + 1, axis=axis)
        shape = [1] * values.ndim
        shape[axis] = targets.size
        t = t.reshape(shape)
        return np.asarray(a + (b - a) * t)

    def block(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """Input (x, y) as float32 arrays of shape (r1-r0, c1-c0); NaN off the sky."""
        step = self.step
        rows_t = np.arange(r0, r1, dtype=np.float64)
        cols_t = np.arange(c0, c1, dtype=np.float64)
        while True:
            rn = self._lattice(r0, r1, step)
            cn = self._lattice(c0, c1, step)
            cc, rr = np.meshgrid(cn, rn)
            x, y = self._exact(cc, rr)
            if step <= 2 or rn.size < 2 or cn.size < 2:
                break
            # Check the interpolation at the lattice cells' centres.
            rm = (rn[:-1] + rn[1:]) / 2.0
            cm = (cn[:-1] + cn[1:]) / 2.0
            cmm, rmm = np.meshgrid(cm, rm)
            xe, ye = self._exact(cmm, rmm)
            xi = (x[:-1, :-1] + x[1:, :-1] + x[:-1, 1:] + x[1:, 1:]) / 4.0
            yi = (y[:-1, :-1] + y[1:, :-1] + y[:-1, 1:] + y[1:, 1:]) / 4.0
            with np.errstate(invalid="ignore"):
                err = np.hypot(xe - xi, ye - yi)
            if not np.isfinite(err).any() or float(np.nanmax(err)) <= self.tolerance:
                break
            step //= 2
        # Interpolate along columns first (few rows), then along rows.
        xs = self._interp_axis(cn, x, cols_t, axis=1)
        ys = self._interp_axis(cn, y, cols_t, axis=1)
        xs = self._interp_axis(rn, xs, rows_t, axis=0).astype(np.float32)
        ys = self._interp_axis(rn, ys, rows_t, axis=0).astype(np.float32)
        return xs, ys


# --------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------


def sample_bilinear(
    data: np.ndarray, x: np.ndarray, y: np.ndarray, origin: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """Bilinear samples of ``data`` at pixel coordinates (x, y).

    ``origin`` = (row, column) of ``data[0, 0]`` in the coordinates' frame, for
    when ``data`` is a cut-out. Points outside the image by more than half a
    pixel are NaN; between the last pixel centre and the edge the edge value is
    used. A NaN neighbour with non-zero weight gives NaN.
    """
    h, w = data.shape
    xf = x - np.float32(origin[1])
    yf = y - np.float32(origin[0])
    with np.errstate(invalid="ignore"):
        inside = (xf >= -0.5) & (xf <= w - 0.5) & (yf >= -0.5) & (yf <= h - 0.5)
    xf = np.clip(np.nan_to_num(xf, nan=0.0), 0.0, max(w - 1, 0))
    yf = np.clip(np.nan_to_num(yf, nan=0.0), 0.0, max(h - 1, 0))
    x0 = np.minimum(xf.astype(np.int32), max(w - 2, 0))
    y0 = np.minimum(yf.astype(np.int32), max(h - 2, 0))
    tx = (xf - x0).astype(np.float32)
    ty = (yf - y0).astype(np.float32)
    flat = data.ravel()
    idx = y0.astype(np.int64) * w + x0
    dx = 1 if w > 1 else 0
    dy = w if h > 1 else 0
    v00 = flat[idx]
    v01 = flat[idx + dx]
    v10 = flat[idx + dy]
    v11 = flat[idx + dy + dx]
    # Zero weights must not let a NaN neighbour through (0 * NaN = NaN).
    top = np.where(tx == 0, v00, v00 + (v01 - v00) * tx) if dx else v00
    bottom = np.where(tx == 0, v10, v10 + (v11 - v10) * tx) if dx else v10
    out = np.where(ty == 0, top, top + (bottom - top) * ty) if dy else top
    result: np.ndarray = out.astype(np.float32, copy=False)
    result[~inside] = np.nan
    return result


def input_window(
    x: np.ndarray, y: np.ndarray, height: int, width: int, pad: int = 1
) -> Window | None:
    """Rows and columns (half-open) of the input that coordinates (x, y) touch, or None."""
    with np.errstate(invalid="ignore"):
        ok = (
            np.isfinite(x)
            & np.isfinite(y)
            & (x >= -0.5)
            & (x <= width - 0.5)
            & (y >= -0.5)
            & (y <= height - 0.5)
        )
    if not ok.any():
        return None
    xs, ys = x[ok], y[ok]
    c0 = max(0, int(math.floor(float(xs.min()))) - pad)
    c1 = min(width, int(math.floor(float(xs.max()))) + pad + 1)
    r0 = max(0, int(math.floor(float(ys.min()))) - pad)
    r1 = min(height, int(math.floor(float(ys.max()))) + pad + 1)
    return r0, r1, c0, c1

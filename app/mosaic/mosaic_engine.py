"""WCS mosaics in bounded memory, callable from plain Python.

    plan = plan_mosaic(paths, "mean", max_output_pixels=64_000_000)
    write_mosaic_fits(plan, "out.fits")               # streamed, tile by tile
    picture = mosaic_array(plan)                      # in memory (pictures)

The output grid is north up, east left, gnomonic, at the finest input pixel
scale (or fitted into a picture size). It is built in row blocks ("tiles"):
for each tile, each input whose footprint touches it is read only for the
rows the tile needs, resampled bilinearly (as ``reproject_interp``) and
combined. Peak memory is a few tile-sized arrays plus one input window,
whatever the output size and the number of inputs; a FITS output is written
to disk tile by tile and never held whole. With a Dask scheduler address,
tiles are computed on that cluster and written here, in the same order, so
the result is identical.

Exact zeros in the inputs count as no coverage (the fill value of detector
edges); pixels no input covers are NaN.
"""

from __future__ import annotations

import io
import math
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

import numpy as np
from astropy.io import fits

from app.errors import BadRequest, PayloadTooLarge
from app.processing.fits_io import block_mean, open_plane
from app.processing.reprojection import (
    Grid,
    InputGeometry,
    PixelMapper,
    fit_grid,
    footprint_box,
    input_window,
    native_grid,
    read_geometry,
    reduction_for,
    sample_bilinear,
    scaled_grid,
)
from app.storage.helpers import check_file_size

# The one definition of the combine methods: models and docs use these names.
CombineMethod = Literal["mean", "sum", "first", "last", "min", "max"]
COMBINE_METHODS: tuple[str, ...] = get_args(CombineMethod)
#: Output pixels per tile (a row block of the output).
TILE_PIXELS = 1 << 21
#: Tiles computed on a Dask cluster at once, at most (they wait here to be written).
DASK_TILES_IN_FLIGHT = 8
MB = 1024 * 1024

COPIED_KEYS = (
    "TELESCOP",
    "INSTRUME",
    "DETECTOR",
    "FILTER",
    "PUPIL",
    "CHANNEL",
    "BAND",
    "EXP_TYPE",
    "TARGNAME",
    "OBS_ID",
    "PROPOSID",
    "PI_NAME",
    "RADESYS",
    "EQUINOX",
    "DATE-OBS",
    "TIME-OBS",
    "MJD-OBS",
    "MJD-END",
    "EXPSTART",
    "EXPEND",
    "EXPTIME",
    "XPOSURE",
    "EFFEXPTM",
    "BUNIT",
)
#: Widest text kept per SRCMETA column: a card's value and comment fit a FITS card
#: (68 and 72 characters); longer ones (CONTINUE strings) end in "...".
SRCMETA_WIDTHS = {"FILENAME": 255, "KEYWORD": 72, "VALUE": 68, "COMMENT": 72}
SUMMARY_KEYS = (
    ("SRCINST", "INSTRUME"),
    ("SRCDETS", "DETECTOR"),
    ("SRCFILT", "FILTER"),
    ("SRCTARG", "TARGNAME"),
    ("SRCOBS", "OBS_ID"),
    ("SRCPROP", "PROPOSID"),
)


@dataclass
class MosaicPlan:
    inputs: list[InputGeometry]
    grid: Grid
    combine_method: str = "mean"
    boxes: list[tuple[int, int, int, int] | None] | None = None
    #: Block-average inputs finer than the grid before resampling (no aliasing when the
    #: grid was shrunk to fit a pixel limit).
    reduce: bool = False

    @property
    def tile_rows(self) -> int:
        return max(1, TILE_PIXELS // max(1, self.grid.width))

    def tiles(self) -> list[tuple[int, int]]:
        step = self.tile_rows
        return [(r, min(self.grid.height, r + step)) for r in range(0, self.grid.height, step)]


# --------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------


def read_inputs(
    paths: list[str], max_file_bytes: int | None = None, max_elements: int | None = None
) -> list[InputGeometry]:
    """Geometries of the inputs, with the per-file size and element limits (413)."""
    inputs = []
    for path in paths:
        if max_file_bytes is not None:
            check_file_size(path, max_file_bytes)
        inputs.append(read_geometry(path, max_elements=max_elements))
    return inputs


def picture_grid(
    inputs: list[InputGeometry], width: int | None, height: int | None, max_pixels: int
) -> Grid:
    """The grid of a picture: both sizes exact, one size with the sky's aspect, or native."""
    if width is None and height is None:
        return native_grid(inputs, max_pixels)
    if width is None or height is None:
        native = native_grid(inputs, 1 << 62)
        aspect = native.height / native.width
        if height is not None:
            width = max(1, round(height / aspect))
        elif width is not None:
            height = max(1, round(width * aspect))
    assert width is not None and height is not None
    return fit_grid(inputs, width, height)


def plan_mosaic(
    paths: list[str],
    combine_method: str = "mean",
    *,
    max_output_pixels: int = 64_000_000,
    width: int | None = None,
    height: int | None = None,
    max_file_bytes: int | None = None,
    shrink_to_fit: bool = False,
    max_elements: int | None = None,
) -> MosaicPlan:
    """Headers only: the inputs' geometry and the output grid.

    A native grid larger than ``max_output_pixels`` is 413, or with
    ``shrink_to_fit`` is made coarser by the side factor sqrt(max / pixels) (its
    centre kept) so that it fits, and finer inputs are block-averaged to it.
    """
    if combine_method not in COMBINE_METHODS:
        raise BadRequest(
            f"Unknown combine method {combine_method!r}; use one of {', '.join(COMBINE_METHODS)}"
        )
    if len(paths) < 2:
        raise BadRequest("A mosaic needs at least two files")
    inputs = read_inputs(paths, max_file_bytes, max_elements)
    if shrink_to_fit and width is None and height is None:
        grid = native_grid(inputs, 1 << 62)
        pixels = grid.width * grid.height
        if pixels > max_output_pixels:
            grid = scaled_grid(grid, math.sqrt(max_output_pixels / pixels))
    else:
        grid = picture_grid(inputs, width, height, max_output_pixels)
    if grid.width * grid.height > max_output_pixels:
        raise PayloadTooLarge(
            f"Mosaic output too large: exceeds MAX_MOSAIC_OUTPUT_PIXELS ({max_output_pixels:,})"
        )
    boxes = [footprint_box(g, grid) for g in inputs]
    for g, box in zip(inputs, boxes, strict=True):
        if box is None:
            raise BadRequest(f"{os.path.basename(g.path)} does not overlap the mosaic's area")
    return MosaicPlan(
        inputs=inputs, grid=grid, combine_method=combine_method, boxes=boxes, reduce=shrink_to_fit
    )


def estimate_mosaic_bytes(plan: MosaicPlan, in_memory: bool) -> int:
    """Peak bytes of building the mosaic: tiles, one input window, and the picture."""
    tile = plan.tile_rows * plan.grid.width
    widest = max(g.width for g in plan.inputs)
    window = min(max(g.height for g in plan.inputs), plan.tile_rows * 4 + 64) * widest * 8
    compressed = max(g.compressed_read_bytes for g in plan.inputs)
    building = tile * 64 + window + compressed + 32 * MB
    if not in_memory:
        return int(building)
    # The whole picture (float32), then the display pipeline over it.
    return int(plan.grid.width * plan.grid.height * 20 + building)


# --------------------------------------------------------------------------------------
# Tiles
# --------------------------------------------------------------------------------------


def _read_window(geometry: InputGeometry, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    with open_plane(geometry.path, geometry.choice.slice_index, hdu_index=geometry.hdu_index) as (
        reader,
        _,
    ):
        rows = reader.rows(r0, r1)
    window = np.ascontiguousarray(rows[:, c0:c1])
    window[window == 0] = np.nan  # detector-edge fill: no coverage
    return window


def _input_samples(
    plan: MosaicPlan, geometry: InputGeometry, tr0: int, tr1: int, c0: int, c1: int
) -> np.ndarray | None:
    """The input resampled onto grid rows ``tr0:tr1``, columns ``c0:c1`` (NaN uncovered).

    With ``plan.reduce`` an input finer than the grid is first averaged over
    f x f blocks (f the integer ratio of the pixel scales), read only for the
    window the block needs.
    """
    factor = reduction_for(geometry, plan.grid) if plan.reduce else 1
    height, width = -(-geometry.height // factor), -(-geometry.width // factor)
    x, y = PixelMapper(plan.grid, geometry.wcs, factor).block(tr0, tr1, c0, c1)
    window = input_window(x, y, height, width)
    if window is None:
        return None
    wr0, wr1, wc0, wc1 = window
    data = _read_window(
        geometry,
        wr0 * factor,
        min(geometry.height, wr1 * factor),
        wc0 * factor,
        min(geometry.width, wc1 * factor),
    )
    if factor > 1:
        data = block_mean(data, factor)
    return sample_bilinear(data, x, y, origin=(wr0, wc0))


def compute_tile(plan: MosaicPlan, r0: int, r1: int) -> np.ndarray:
    """Output rows ``r0:r1`` of the mosaic (float32, NaN where nothing covers)."""
    grid, method = plan.grid, plan.combine_method
    shape = (r1 - r0, grid.width)
    if method in ("mean", "sum"):
        total = np.zeros(shape, dtype=np.float32)
        count = np.zeros(shape, dtype=np.float32)
    else:
        out = np.full(shape, np.nan, dtype=np.float32)
    boxes = plan.boxes or [footprint_box(g, grid) for g in plan.inputs]
    for geometry, box in zip(plan.inputs, boxes, strict=True):
        if box is None or box[1] <= r0 or box[0] >= r1:
            continue
        tr0, tr1, c0, c1 = max(r0, box[0]), min(r1, box[1]), box[2], box[3]
        values = _input_samples(plan, geometry, tr0, tr1, c0, c1)
        if values is None:
            continue
        ok = np.isfinite(values)
        rows = slice(tr0 - r0, tr1 - r0)
        cols = slice(c0, c1)
        if method in ("mean", "sum"):
            values[~ok] = 0.0
            total[rows, cols] += values
            count[rows, cols] += ok
            continue
        target = out[rows, cols]
        if method == "first":
            take = ok & np.isnan(target)
        elif method == "last":
            take = ok
        elif method == "min":
            take = ok & ~(target <= values)
        else:  # max
            take = ok & ~(target >= values)
        target[take] = values[take]
    if method in ("mean", "sum"):
        if method == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                total /= count
        total[count == 0] = np.nan
        return total
    return out


@dataclass(frozen=True)
class DaskTarget:
    """A Dask scheduler to compute tiles on, with distributed's TLS settings when the
    address is ``tls://`` (CA, client certificate and key: paths or PEM text)."""

    address: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def client(self):
        from dask.distributed import Client

        security = None
        if self.address.startswith("tls://") or self.ca_file:
            from distributed.security import Security

            security = Security(
                tls_ca_file=self.ca_file,
                tls_client_cert=self.cert_file,
                tls_client_key=self.key_file,
                require_encryption=True,
            )
        return Client(self.address, timeout=30, security=security)


def iter_tiles(plan: MosaicPlan, dask_address: str | DaskTarget | None = None):
    """Yield ``(r0, r1, tile)`` in row order, locally or on a Dask cluster."""
    if not dask_address:
        for r0, r1 in plan.tiles():
            yield r0, r1, compute_tile(plan, r0, r1)
        return
    target = dask_address if isinstance(dask_address, DaskTarget) else DaskTarget(dask_address)
    with target.client() as client:
        shared = client.scatter(plan, broadcast=True)
        bounds = plan.tiles()
        # A few tiles in flight per worker, so finished tiles do not pile up here.
        in_flight = min(DASK_TILES_IN_FLIGHT, max(2, 2 * len(client.scheduler_info()["workers"])))
        pending: deque = deque()
        submitted = 0
        while submitted < len(bounds) or pending:
            while submitted < len(bounds) and len(pending) < in_flight:
                pending.append(
                    (submitted, client.submit(compute_tile, shared, *bounds[submitted], pure=False))
                )
                submitted += 1
            index, future = pending.popleft()
            yield (*bounds[index], future.result())


def mosaic_array(plan: MosaicPlan, dask_address: str | DaskTarget | None = None) -> np.ndarray:
    """The whole mosaic in memory (for pictures; FITS goes through write_mosaic_fits)."""
    out = np.empty(plan.grid.shape, dtype=np.float32)
    for r0, r1, tile in iter_tiles(plan, dask_address):
        out[r0:r1] = tile
    return out


# --------------------------------------------------------------------------------------
# FITS output
# --------------------------------------------------------------------------------------


def _short(values: list[str]) -> str:
    text = "|".join(values)
    return text if len(text) <= 68 else text[:65] + "..."


def _add_source_keywords(header: fits.Header, plan: MosaicPlan) -> None:
    """Keys shared by every input (copied), distinct-value summaries, HISTORY (P9)."""
    for key in COPIED_KEYS:
        values = [g.header.get(key) for g in plan.inputs]
        if values[0] is not None and all(v == values[0] for v in values) and key not in header:
            header[key] = values[0]
    for key, source in SUMMARY_KEYS:
        seen: list[str] = []
        for g in plan.inputs:
            value = g.header.get(source)
            if value is not None and str(value) not in seen:
                seen.append(str(value))
        if seen:
            header[key] = (_short(seen), f"Distinct {source} values of the inputs")
    header.add_history(
        f"Mosaic of {len(plan.inputs)} inputs by jwst-processing-engine, "
        f"combine method '{plan.combine_method}'"
    )
    header.add_history(
        "Inputs resampled bilinearly onto a common north-up TAN grid; "
        "exact zeros treated as no coverage"
    )


def mosaic_header(plan: MosaicPlan) -> fits.Header:
    """Primary header of P9 (CONTRACT.md §3.9): WCS, provenance, source keywords."""
    header = fits.Header()
    header["EXTNAME"] = ("MOSAIC", "Mosaic of several exposures")
    header.update(plan.grid.to_header())
    header["ORIGIN"] = ("JWST-DA", "Organisation that made the file")
    header["CREATOR"] = ("jwst-processing-engine", "Software that made the file")
    header["DATE"] = (
        datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "UTC date the file was written",
    )
    header["MOSAIC"] = (True, "This image is a mosaic")
    header["NINPUTS"] = (len(plan.inputs), "Number of input files")
    header["COMBMETH"] = (plan.combine_method, "How overlapping pixels were combined")
    for index, g in enumerate(plan.inputs, start=1):
        header[f"SRC{index:04d}"] = (os.path.basename(g.path)[:68], f"Input file {index}")
    _add_source_keywords(header, plan)
    header.add_history("NaN where nothing covers")
    return header


def observation_header(plan: MosaicPlan) -> fits.Header:
    """Primary header of an observation mosaic (CONTRACT-HEAD §10.5, Decision 19)."""
    header = fits.Header()
    header.update(plan.grid.to_header())
    header["ORIGIN"] = ("JWST-DataAnalysis", "Organisation that made the file")
    header["CREATOR"] = ("observation-mosaic-generator", "Software that made the file")
    header["DATE"] = (
        datetime.now(UTC).isoformat(timespec="seconds"),
        "UTC time the file was written",
    )
    header["NCOMBINE"] = (len(plan.inputs), "Number of input files")
    header["COMBMETH"] = (plan.combine_method, "How overlapping pixels were combined")
    header["HIERARCH OBS_MOSAIC"] = True
    _add_source_keywords(header, plan)
    header.add_history("0 where nothing covers")
    return header


def source_table(plan: MosaicPlan) -> fits.BinTableHDU:
    """The SRCMETA table: every card of every input header (texts bounded, see
    :data:`SRCMETA_WIDTHS`)."""
    index, names, keys, values, comments = [], [], [], [], []
    for i, g in enumerate(plan.inputs, start=1):
        name = os.path.basename(g.path)
        for card in g.header.cards:
            if not card.keyword:
                continue
            index.append(i)
            names.append(name)
            keys.append(card.keyword)
            values.append(str(card.value))
            comments.append(str(card.comment))

    def text_column(name: str, items: list[str], cap: int) -> fits.Column:
        # A FITS table pads every row to the column's width: bounded widths keep one
        # long value (a CONTINUE string) from widening every row of every input.
        encoded = [v.encode("ascii", "replace") for v in items]
        encoded = [e if len(e) <= cap else e[: cap - 3] + b"..." for e in encoded]
        width = max([1] + [len(e) for e in encoded])
        return fits.Column(
            name=name, format=f"{width}A", array=np.array(encoded, dtype=f"S{width}")
        )

    columns = [
        fits.Column(name="SRCINDEX", format="J", array=np.array(index, dtype=np.int32)),
        text_column("FILENAME", names, SRCMETA_WIDTHS["FILENAME"]),
        text_column("KEYWORD", keys, SRCMETA_WIDTHS["KEYWORD"]),
        text_column("VALUE", values, SRCMETA_WIDTHS["VALUE"]),
        text_column("COMMENT", comments, SRCMETA_WIDTHS["COMMENT"]),
    ]
    table = fits.BinTableHDU.from_columns(columns, name="SRCMETA")
    table.header["NINPUTS"] = (len(plan.inputs), "Number of input files")
    table.header["METAVERS"] = ("1.0", "Version of this table's layout")
    return table


def _hdu_bytes(hdu) -> bytes:
    """An extension HDU serialised on its own (header and padded data)."""
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
    return buf.getvalue()[2880:]  # an empty primary header is exactly one block


def write_mosaic_fits(
    plan: MosaicPlan,
    path: str,
    dask_address: str | DaskTarget | None = None,
    *,
    header: fits.Header | None = None,
    fill: float | None = None,
    on_start: Callable[[int], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> int:
    """Write the mosaic FITS file tile by tile; returns its size in bytes.

    The primary HDU's header is written first, then each tile's rows as
    big-endian float32 straight to their offset, then the padding and the
    SRCMETA extension. Nothing larger than a tile is in memory. ``header``
    defaults to :func:`mosaic_header`; ``fill`` replaces NaN (no coverage).
    ``on_start(size)`` is called once the file's final size is known and its
    header written; ``on_rows(n)`` each time the first ``n`` bytes are final
    (tiles arrive in row order), so a reader can stream the file as it grows.
    """
    header = mosaic_header(plan) if header is None else header
    height, width = plan.grid.shape
    # A 1x1 float32 HDU puts BITPIX, NAXIS and NAXISn in their required places;
    # only the sizes change.
    primary = fits.PrimaryHDU(data=np.zeros((1, 1), dtype=np.float32), header=header)
    primary.header["NAXIS1"] = width
    primary.header["NAXIS2"] = height
    head = primary.header.tostring().encode("ascii")
    data_bytes = width * height * 4
    pad = (-data_bytes) % 2880
    table = _hdu_bytes(source_table(plan))
    total = len(head) + data_bytes + pad + len(table)
    with open(path, "wb") as handle:
        handle.write(head)
        handle.flush()
        if on_start is not None:
            on_start(total)
        fd = handle.fileno()
        for r0, r1, tile in iter_tiles(plan, dask_address):
            if fill is not None:
                np.nan_to_num(tile, copy=False, nan=fill)
            os.pwrite(fd, tile.astype(">f4").tobytes(), len(head) + r0 * width * 4)
            if on_rows is not None:
                on_rows(len(head) + r1 * width * 4)
        handle.seek(len(head) + data_bytes)
        handle.write(b"\x00" * pad)
        handle.write(table)
        handle.flush()
        os.fsync(fd)
        size = handle.tell()
    if on_rows is not None:
        on_rows(size)
    return size


# --------------------------------------------------------------------------------------
# Footprints (headers only)
# --------------------------------------------------------------------------------------

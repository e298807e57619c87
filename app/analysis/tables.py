"""FITS tables: structure, and pages of rows with search and sort (§3.13-3.15).

Tables are opened memory-mapped; a page reads only the rows it shows, after
the search filter and the sort have chosen them from the columns they need.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from astropy.io import fits

from app.analysis.models import (
    SpectralColumn,
    SpectralDataResponse,
    TableColumn,
    TableDataResponse,
    TableHdu,
    TableInfoResponse,
)
from app.errors import BadRequest
from app.processing.fits_io import open_fits
from app.processing.header_limits import check_header_cards

#: What astropy holds for each header card it parses (its Card objects, and Column
#: objects for tables): measured 2.2 kB a card on 100 tables of 999 columns.
HEADER_BYTES_PER_CARD = 2560

SPECTRAL_COLUMNS = (
    "WAVELENGTH",
    "WAVE",
    "LAMBDA",
    "FLUX",
    "FLUX_ERROR",
    "ERROR",
    "SURF_BRIGHT",
    "SB_ERROR",
    "NET",
    "BACKGROUND",
    "BACKGROUND_ERROR",
    "DQ",
    "NPIXELS",
    "BERROR",
    "FLUX_VAR_POISSON",
    "FLUX_VAR_RNOISE",
    "FLUX_VAR_FLAT",
    "SB_VAR_POISSON",
    "SB_VAR_RNOISE",
    "SB_VAR_FLAT",
)
WAVELENGTH_NAMES = ("WAVELENGTH", "WAVE", "LAMBDA")
MAX_SPECTRAL_POINTS = 500_000
ARRAY_TEXT_LIMIT = 100


def is_table(hdu) -> bool:
    return isinstance(hdu, (fits.BinTableHDU, fits.TableHDU))


def column_info(column: fits.Column) -> TableColumn:
    fmt = column.format
    letter = getattr(fmt, "format", str(fmt)[-1:])
    repeat = int(getattr(fmt, "repeat", 1) or 1)
    variable = letter in ("P", "Q") or str(fmt).startswith(("P", "Q", "1P", "1Q"))
    shape = None
    if column.dim:
        shape = [int(v) for v in reversed(column.dim.strip("()").split(","))]
    elif variable:
        shape = None
    elif letter != "A" and repeat > 1:
        shape = [repeat]
    is_array = variable or shape is not None
    return TableColumn(
        name=column.name,
        dtype=str(fmt),
        unit=column.unit or None,
        format=column.disp or None,
        is_array=bool(is_array),
        array_shape=shape,
    )


def _table_hdu(hdul, hdu_index: int):
    if hdu_index < 0 or hdu_index >= len(hdul):
        raise BadRequest(f"HDU {hdu_index} does not exist (the file has {len(hdul)} HDUs)")
    hdu = hdul[hdu_index]
    if not is_table(hdu):
        raise BadRequest(f"HDU {hdu_index} is not a table (it is a {type(hdu).__name__})")
    return hdu


def header_cards(path: str | os.PathLike[str]) -> int:
    """Worker job: the cards of the file's headers, counted without parsing them (413
    for a header over the card limit)."""
    return check_header_cards(path)


def header_objects_bytes(cards: int) -> int:
    """Memory of astropy's objects for headers of ``cards`` cards in all."""
    return cards * HEADER_BYTES_PER_CARD


def table_info(path: str | os.PathLike[str]) -> TableInfoResponse:
    """Every table HDU of the file with its columns (no row is read)."""
    out = []
    with open_fits(path) as hdul:
        for index, hdu in enumerate(hdul):
            if not is_table(hdu):
                continue
            columns = [column_info(c) for c in hdu.columns]
            out.append(
                TableHdu(
                    index=index,
                    name=hdu.name or None,
                    hdu_type=type(hdu).__name__,
                    n_rows=int(hdu.header["NAXIS2"]),
                    n_columns=len(columns),
                    columns=columns,
                )
            )
    return TableInfoResponse(file_name=os.path.basename(os.fspath(path)), table_hdus=out)


def cell(value):
    """A JSON-safe cell: text for bytes, capped text for arrays, null for NaN/Inf/masked."""
    if value is None or value is np.ma.masked:
        return None
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", "replace").rstrip()
    if isinstance(value, str):
        return value.rstrip()
    if isinstance(value, np.ndarray):
        text = str(value.tolist())
        return text if len(text) <= ARRAY_TEXT_LIMIT else text[: ARRAY_TEXT_LIMIT - 3] + "..."
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    return str(value)


def _as_text(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "S":
        return np.char.lower(np.char.decode(values, "utf-8", "replace"))
    if values.dtype.kind == "U":
        return np.char.lower(values)
    return np.char.lower(values.astype(str))


def _search_mask(data, columns, needle: str) -> np.ndarray:
    needle = needle.lower()
    hit = np.zeros(len(data), dtype=bool)
    for column in columns:
        values = data[column.name]
        if isinstance(values, np.ndarray) and values.ndim == 1:
            hit |= np.char.find(_as_text(np.asarray(values)), needle) >= 0
        else:  # array and variable-length cells: their text form
            hit |= np.array([needle in str(cell(v)).lower() for v in values])
    return hit


def _sort_order(values: np.ndarray, descending: bool) -> np.ndarray | None:
    values = np.asarray(values)
    if values.ndim != 1:
        return None  # array columns are not sortable
    if values.dtype.kind == "S":
        values = np.char.decode(values, "utf-8", "replace")
    order = np.argsort(values, kind="stable")
    if descending:
        order = order[::-1]
        if values.dtype.kind == "f":  # NaN stays last either way
            nan = np.isnan(values[order])
            order = np.concatenate([order[~nan], order[nan]])
    return order


def table_page(
    path: str | os.PathLike[str],
    hdu_index: int = 0,
    page: int = 0,
    page_size: int = 100,
    sort_column: str | None = None,
    sort_direction: str | None = None,
    search: str | None = None,
) -> TableDataResponse:
    """One page of rows after an optional case-insensitive search and sort."""
    if not 1 <= page_size <= 500:
        raise BadRequest("page_size must be between 1 and 500")
    if page < 0:
        raise BadRequest("page must be 0 or greater")
    direction = (sort_direction or "asc").lower()
    if direction not in ("asc", "desc"):
        raise BadRequest("sort_direction must be 'asc' or 'desc'")
    with open_fits(path) as hdul:
        hdu = _table_hdu(hdul, hdu_index)
        data = hdu.data
        columns = list(hdu.columns)
        n_rows = 0 if data is None else len(data)
        index = np.arange(n_rows)
        if search and search.strip() and n_rows:
            index = index[_search_mask(data, columns, search.strip())]
        used_sort = None
        if sort_column and n_rows and len(index):
            by_lower = {c.name.lower(): c.name for c in columns}
            name = by_lower.get(sort_column.lower())
            if name is not None:
                values = np.asarray(data[name])
                order = _sort_order(
                    values[index] if len(index) != n_rows else values, direction == "desc"
                )
                if order is not None:
                    index = index[order]
                    used_sort = name
        total = int(len(index))
        pages = max(1, math.ceil(total / page_size))
        page = min(page, pages - 1)
        chosen = index[page * page_size : (page + 1) * page_size]
        rows: list[dict[str, Any]] = []
        if len(chosen):
            subset = data[np.sort(chosen)]
            position = {int(r): i for i, r in enumerate(np.sort(chosen))}
            names = [c.name for c in columns]
            for r in chosen:
                record = subset[position[int(r)]]
                rows.append({n: cell(record[n]) for n in names})
        return TableDataResponse(
            hdu_index=hdu_index,
            hdu_name=hdu.name or None,
            total_rows=total,
            total_columns=len(columns),
            page=page,
            page_size=page_size,
            columns=[column_info(c) for c in columns],
            rows=rows,
            sort_column=used_sort,
            sort_direction=("desc" if direction == "desc" else "asc") if used_sort else None,
        )


def spectral_data(path: str | os.PathLike[str], hdu_index: int = 1) -> SpectralDataResponse:
    """The spectral columns of a table HDU, wavelength first; null for non-finite values."""
    with open_fits(path) as hdul:
        hdu = _table_hdu(hdul, hdu_index)
        by_upper = {c.name.upper(): c for c in hdu.columns}
        wave = next((by_upper[n] for n in WAVELENGTH_NAMES if n in by_upper), None)
        if wave is None:
            raise BadRequest(
                "No WAVELENGTH column found in this table (looked for "
                f"{', '.join(WAVELENGTH_NAMES)})"
            )
        n_rows = int(hdu.header["NAXIS2"])
        if n_rows > MAX_SPECTRAL_POINTS:
            raise BadRequest(
                f"The table has {n_rows:,} rows; spectra are limited to "
                f"{MAX_SPECTRAL_POINTS:,} points"
            )
        chosen = [wave] + [
            by_upper[n] for n in SPECTRAL_COLUMNS if n in by_upper and by_upper[n] is not wave
        ]
        columns: list[SpectralColumn] = []
        data: dict[str, list[float | None]] = {}
        for column in chosen:
            values = np.asarray(hdu.data[column.name]) if n_rows else np.zeros(0)
            if values.ndim != 1 or values.dtype.kind not in "biuf":
                continue
            as_float = values.astype(np.float64)
            finite = np.isfinite(as_float)
            data[column.name] = [
                float(v) if ok else None for v, ok in zip(as_float, finite, strict=True)
            ]
            columns.append(
                SpectralColumn(name=column.name, unit=column.unit or None, n_points=values.size)
            )
        # Built from checked parts; validating half a million floats again costs time.
        return SpectralDataResponse.model_construct(
            hdu_index=hdu_index,
            hdu_name=hdu.name or None,
            n_points=n_rows,
            columns=columns,
            data=data,
        )

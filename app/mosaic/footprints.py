"""Sky footprints of FITS files from their headers (CONTRACT.md §3.10, CONTRACT-HEAD §10.6).

Corners and centres come from each file's WCS alone (no pixel is read); the bounding
box handles RA wrap-around at 0/360; the overlap warning names separate groups.
"""

from __future__ import annotations

import numpy as np

from app.mosaic.models import BoundingBox, Footprint, FootprintResponse
from app.mosaic.mosaic_engine import read_inputs
from app.mosaic.overlap import overlap_warning
from app.processing.reprojection import InputGeometry


def ra_bounds(ra: np.ndarray) -> tuple[float, float]:
    """The smallest RA arc holding every value: (start in [0, 360), start + width)."""
    values = np.sort(np.mod(np.asarray(ra, dtype=float), 360.0))
    if values.size == 1:
        return float(values[0]), float(values[0])
    gaps = np.diff(np.concatenate([values, values[:1] + 360.0]))
    widest = int(np.argmax(gaps))  # the arc starts just after the widest gap
    start = values[(widest + 1) % values.size]
    span = 360.0 - float(gaps[widest])
    return float(start), float(start + span)


def footprint(geometry: InputGeometry, key: str) -> Footprint:
    """The file's corners and centre on the sky (from its WCS; no pixel is read)."""
    w, h = geometry.width, geometry.height
    xs = np.array([0.0, w - 1.0, w - 1.0, 0.0, w / 2.0])
    ys = np.array([0.0, 0.0, h - 1.0, h - 1.0, h / 2.0])
    ra, dec = geometry.wcs.pixel_to_world_values(xs, ys)
    ra = np.mod(np.asarray(ra, dtype=float), 360.0)
    dec = np.asarray(dec, dtype=float)
    instrument = geometry.header.get("INSTRUME")
    return Footprint(
        file_path=key,
        corners_ra=[float(v) for v in ra[:4]],
        corners_dec=[float(v) for v in dec[:4]],
        center_ra=float(ra[4]),
        center_dec=float(dec[4]),
        instrument=str(instrument) if instrument is not None else None,
    )


def footprints(paths: list[str], keys: list[str]) -> FootprintResponse:
    """Worker job: corners, centres and the bounding box of the files (storage keys
    ``keys``), and the overlap warning when they form separate groups on the sky."""
    items = [footprint(g, key) for g, key in zip(read_inputs(paths), keys, strict=True)]
    all_ra = np.concatenate([f.corners_ra for f in items])
    all_dec = np.concatenate([f.corners_dec for f in items])
    min_ra, max_ra = ra_bounds(all_ra)
    return FootprintResponse(
        footprints=items,
        bounding_box=BoundingBox(
            min_ra=min_ra,
            max_ra=max_ra,
            min_dec=float(all_dec.min()),
            max_dec=float(all_dec.max()),
        ),
        n_files=len(items),
        overlap_warning=overlap_warning(
            keys,
            [f.center_ra for f in items],
            [f.center_dec for f in items],
            [f.instrument for f in items],
        ),
    )

"""Mosaic pictures: the display settings of files[0] over the whole mosaic."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from app.mosaic.mosaic_engine import DaskTarget, MosaicPlan, mosaic_array
from app.processing.enhancement import STRETCHES, DisplayParams, fit_display
from app.processing.render import colormap_table, encode_array, to_indices


def render_mosaic_picture(
    plan: MosaicPlan,
    display: DisplayParams,
    cmap: str,
    fmt: str,
    quality: int,
    dask_address: DaskTarget | str | None = None,
) -> bytes:
    """The mosaic stretched, coloured (no coverage is black), row 0 at the bottom."""
    data = mosaic_array(plan, dask_address)
    if display.stretch not in STRETCHES:
        display = replace(display, stretch="zscale")
    covered = np.isfinite(data)
    if covered.any():
        values = fit_display(data, display)(data)
    else:
        values = np.zeros(data.shape, dtype=np.float32)
    del data
    pixels = colormap_table(cmap)[to_indices(values)]
    pixels[~covered] = 0
    return encode_array(pixels[::-1], fmt, quality)

"""Observation mosaics (CONTRACT-HEAD §10.5): every detector file of one filter, one FITS.

The whole job runs in a worker: read the headers, build the native grid
(shrunk to ``max_output_pixels`` when larger, never refused for size), then
write the FITS file tile by tile while the server streams it to the client.
The worker reports through its :class:`~app.progress.JobHandle`:

* ``{"event": "file", "path": ..., "size": ...}`` once the header is written
  and the file's final size is known (the server can start the response);
* ``{"event": "rows", "upto": n}`` each time the first ``n`` bytes are final.

It stops at the next tile when cancelled (the client went away), and removes
its file when it fails. Memory follows the tile size, never the number of files.
"""

from __future__ import annotations

import os
import tempfile

from app.mosaic import mosaic_engine
from app.progress import JobHandle

MB = 1024 * 1024


def estimate_observation_bytes(file_sizes: list[int], on_dask: bool = False) -> int:
    """Peak bytes of the job, from the inputs' sizes alone (before any header is read).

    One tile's arrays, one input's window at most its whole plane (float32, and the
    block mean's copy), tiles in flight from a Dask cluster, and the working set.
    """
    largest = max(file_sizes, default=0)
    tile = mosaic_engine.TILE_PIXELS
    in_flight = mosaic_engine.DASK_TILES_IN_FLIGHT * tile * 4 if on_dask else 0
    return int(tile * 64 + 3 * largest + in_flight + 64 * MB)


def build_observation_mosaic(
    paths: list[str],
    combine_method: str,
    max_output_pixels: int,
    directory: str,
    dask_address: mosaic_engine.DaskTarget | str | None = None,
    *,
    max_elements: int | None = None,
    job: JobHandle | None = None,
) -> tuple[str, int]:
    """Worker job: write the observation mosaic into a new file in ``directory``.

    Returns (path, size). Pixels no input covers are 0 (§10.5), not NaN.
    """
    plan = mosaic_engine.plan_mosaic(
        paths,
        combine_method,
        max_output_pixels=max_output_pixels,
        shrink_to_fit=True,
        max_elements=max_elements,
    )
    header = mosaic_engine.observation_header(plan)
    os.makedirs(directory, exist_ok=True)
    fd, path = tempfile.mkstemp(suffix="_i2d.fits", prefix="mosaic-", dir=directory)
    os.close(fd)

    def started(size: int) -> None:
        if job is not None:
            job.emit({"event": "file", "path": path, "size": size})

    def rows(upto: int) -> None:
        if job is not None:
            job.check()
            job.emit({"event": "rows", "upto": upto})

    try:
        size = mosaic_engine.write_mosaic_fits(
            plan, path, dask_address, header=header, fill=0.0, on_start=started, on_rows=rows
        )
    except BaseException:
        os.unlink(path)
        raise
    return path, size

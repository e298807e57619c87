"""N-channel colour composites: plan, reproject (cached), stretch, colour, encode.

Two steps with a memory admission between them:

1. :func:`plan_composite` reads headers only: each file's geometry and the
   common grid, a north-up gnomonic grid of exactly ``width`` x ``height``
   square pixels that holds the union of every channel's footprint. It
   raises the request's 4xx errors that need no pixels (no WCS, unreadable
   header, channels that cannot overlap), and :func:`estimate_composite_bytes`
   says what the render will need.
2. :func:`render_composite` (in a worker process) builds each channel on the
   grid, streaming its files one at a time: each file is reduced at read time
   by an integer NaN-aware block mean so its pixels are no finer than the grid,
   resampled bilinearly onto the part of the grid it covers, and added into a
   coverage-weighted mean. Memory is the grid times a few bytes per pixel plus
   one reduced file, whatever the number of files. Reprojected channels go to
   an on-disk cache shared by the worker processes, keyed by the inputs'
   identity (path, size, mtime, HDU, plane) and the grid, so a re-render with
   other stretches or colours skips all of this. Then per channel: optional
   background neutralisation, stretch, levels, gamma, tone curve, weight,
   colour; the sum is divided by one common maximum; luminance and overall
   adjustments; 8-bit, row 0 at the bottom, PNG or JPEG.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from app.composite import color_mapping
from app.errors import BadRequest
from app.processing.background import subtract_sky
from app.processing.enhancement import STRETCHES
from app.processing.fits_io import open_plane
from app.processing.pipeline import DisplayParams
from app.processing.render import encode_array
from app.progress import JobHandle
from app.processing.reprojection import (
    Grid,
    InputGeometry,
    PixelMapper,
    fit_grid,
    footprint_box,
    read_geometry,
    reduction_for,
    sample_bilinear,
)

#: Grid pixels resampled per block (bounds the coordinate temporaries).
BLOCK_PIXELS = 1 << 20
CACHE_VERSION = "composite-channel-v1"
MB = 1024 * 1024


@dataclass
class ChannelSpec:
    """One channel as the worker needs it (plain, picklable)."""

    label: str
    paths: list[str]
    display: DisplayParams = field(default_factory=lambda: DisplayParams(stretch="asinh",
                                                                         asinh_a=0.05))
    curve: str = "linear"
    weight: float = 1.0
    rgb: tuple[float, float, float] | None = None
    luminance: bool = False


@dataclass
class CacheSpec:
    directory: str
    max_bytes: int
    max_entries: int
    ttl_seconds: float


@dataclass
class CompositePlan:
    channels: list[ChannelSpec]
    geometries: list[list[InputGeometry]]
    grid: Grid
    background_neutralization: bool = True
    overall: dict | None = None
    fmt: str = "png"
    quality: int = 95
    cache: CacheSpec | None = None
    identities: list[str] = field(default_factory=list)
    #: The picture's size; the grid may be smaller (a budget downscale).
    out_width: int = 0
    out_height: int = 0

    def __post_init__(self) -> None:
        self.out_width = self.out_width or self.grid.width
        self.out_height = self.out_height or self.grid.height

    def on_grid(self, grid: Grid) -> "CompositePlan":
        """The same composite on another grid (same picture size)."""
        return plan_on_grid(self.channels, self.geometries, grid, self.out_width,
                            self.out_height, background_neutralization=self.background_neutralization,
                            overall=self.overall, fmt=self.fmt, quality=self.quality,
                            cache=self.cache)


@dataclass
class CompositeResult:
    """What a render gives back: the encoded picture and its response headers."""

    content: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# Planning (headers only)
# --------------------------------------------------------------------------------------

def _file_identity(path: str) -> list:
    st = os.stat(path)
    return [os.path.realpath(path), st.st_size, st.st_mtime_ns]


def plan_composite(channels: list[ChannelSpec], width: int, height: int, *,
                   background_neutralization: bool = True, overall: dict | None = None,
                   fmt: str = "png", quality: int = 95,
                   cache: CacheSpec | None = None) -> CompositePlan:
    """Read every file's header, build the common grid, check the channels can overlap."""
    geometries = []
    for channel in channels:
        geoms = []
        for path in channel.paths:
            geoms.append(read_geometry(path, label=f"Channel {channel.label}: "
                                                   f"{os.path.basename(path)}"))
        geometries.append(geoms)
    grid = fit_grid([g for geoms in geometries for g in geoms], width, height)
    return plan_on_grid(channels, geometries, grid, width, height,
                        background_neutralization=background_neutralization, overall=overall,
                        fmt=fmt, quality=quality, cache=cache)


def plan_on_grid(channels: list[ChannelSpec], geometries: list[list[InputGeometry]], grid: Grid,
                 width: int, height: int, *, background_neutralization: bool = True,
                 overall: dict | None = None, fmt: str = "png", quality: int = 95,
                 cache: CacheSpec | None = None) -> CompositePlan:
    """The plan for channels already read, on ``grid``; 400 when they cannot overlap."""
    boxes = []
    for channel, geoms in zip(channels, geometries):
        found = [b for b in (footprint_box(g, grid) for g in geoms) if b is not None]
        if not found:
            raise BadRequest(f"No usable image data for channel {channel.label}")
        boxes.append((min(b[0] for b in found), max(b[1] for b in found),
                      min(b[2] for b in found), max(b[3] for b in found)))
    r0, r1 = max(b[0] for b in boxes), min(b[1] for b in boxes)
    c0, c1 = max(b[2] for b in boxes), min(b[3] for b in boxes)
    if len(boxes) > 1 and (r0 >= r1 or c0 >= c1):
        raise BadRequest("The channels do not overlap on the sky: their footprints are "
                         "disjoint, so no pixel would show every channel")
    grid_key = grid.wcs.to_header_string() + f"|{grid.shape}"
    identities = []
    for geoms in geometries:
        parts = [[*_file_identity(g.path), g.hdu_index, list(g.choice.leading)] for g in geoms]
        text = json.dumps([CACHE_VERSION, parts, grid_key])
        identities.append(hashlib.sha256(text.encode()).hexdigest())
    return CompositePlan(channels=channels, geometries=geometries, grid=grid,
                         background_neutralization=background_neutralization, overall=overall,
                         fmt=fmt, quality=quality, cache=cache, identities=identities,
                         out_width=int(width), out_height=int(height))


@dataclass(frozen=True)
class CostModel:
    """Peak bytes of a render as ``per_pixel`` x grid pixels + ``fixed``."""

    per_pixel: int
    fixed: int

    def bytes_for(self, grid_pixels: int) -> int:
        return int(self.per_pixel * grid_pixels + self.fixed)


def composite_cost(plan: CompositePlan) -> CostModel:
    """The render's memory model (what admission and the budget verdict use).

    Per grid pixel: every channel on the grid (float32, neutralised copies),
    float32 R, G, B, one channel being stretched with its temporaries, and the
    reprojection's float32 sum and coverage. Fixed: one reduced input, one
    block of coordinates, the picture at its output size (8-bit and the
    encoder's copy) and the interpreter's own working set.
    """
    largest = 0
    for geoms in plan.geometries:
        for g in geoms:
            f = reduction_for(g, plan.grid)
            largest = max(largest, -(-g.height // f) * -(-g.width // f))
    per_pixel = 4 * len(plan.channels) + 40
    fixed = largest * 4 + BLOCK_PIXELS * 48 + plan.out_width * plan.out_height * 16 + 64 * MB
    return CostModel(per_pixel=per_pixel, fixed=fixed)


def estimate_composite_bytes(plan: CompositePlan) -> int:
    """Bytes the render needs at its peak (checked against the engine's budget)."""
    return composite_cost(plan).bytes_for(plan.grid.height * plan.grid.width)


# --------------------------------------------------------------------------------------
# Reprojection (streaming, coverage-weighted)
# --------------------------------------------------------------------------------------

def _read_reduced(geometry: InputGeometry, factor: int, label: str) -> np.ndarray:
    try:
        with open_plane(geometry.path, geometry.choice.slice_index,
                        hdu_index=geometry.hdu_index) as (reader, _):
            data = reader.read_reduced(factor)
    except BadRequest as exc:
        raise BadRequest(f"Channel {label}: {os.path.basename(geometry.path)}: "
                         f"{exc.detail}") from None
    except (OSError, ValueError, TypeError) as exc:
        raise BadRequest(f"Channel {label}: {os.path.basename(geometry.path)} could not be "
                         f"read ({type(exc).__name__})") from None
    # Exact zeros are the detector-edge fill of resampled products: no coverage.
    data[data == 0] = np.nan
    return data


def reproject_files(geometries: list[InputGeometry], grid: Grid, label: str = "") -> np.ndarray:
    """The coverage-weighted mean of the files on ``grid`` (float32, NaN uncovered).

    Files are read one at a time, each reduced to the grid's resolution and
    resampled only over the part of the grid it covers.
    """
    total = np.zeros(grid.shape, dtype=np.float32)
    coverage = np.zeros(grid.shape, dtype=np.float32)
    for geometry in geometries:
        box = footprint_box(geometry, grid)
        if box is None:
            continue
        factor = reduction_for(geometry, grid)
        data = _read_reduced(geometry, factor, label)
        mapper = PixelMapper(grid, geometry.wcs, factor)
        r0, r1, c0, c1 = box
        rows = max(1, BLOCK_PIXELS // (c1 - c0))
        for start in range(r0, r1, rows):
            stop = min(r1, start + rows)
            x, y = mapper.block(start, stop, c0, c1)
            values = sample_bilinear(data, x, y)
            ok = np.isfinite(values)
            values[~ok] = 0.0
            total[start:stop, c0:c1] += values
            coverage[start:stop, c0:c1] += ok
        del data
    with np.errstate(invalid="ignore", divide="ignore"):
        total /= coverage
    total[coverage == 0] = np.nan
    return total


def _cache(spec: CacheSpec):
    from app.storage.temp_cache import TempCache

    return TempCache(spec.directory, spec.max_bytes, grace_seconds=0.0,
                     max_entries=spec.max_entries, ttl_seconds=spec.ttl_seconds)


def channel_on_grid(plan: CompositePlan, index: int,
                    on_miss: Callable[[], None] | None = None) -> np.ndarray:
    """Channel ``index`` on the plan's grid, from the cache when it is there.

    ``on_miss`` is called just before the channel is reprojected (not on a hit).
    """
    geoms, label = plan.geometries[index], plan.channels[index].label
    if plan.cache is None:
        if on_miss is not None:
            on_miss()
        return reproject_files(geoms, plan.grid, label)

    def fill(tmp) -> None:
        if on_miss is not None:
            on_miss()
        with open(tmp, "wb") as handle:
            np.save(handle, reproject_files(geoms, plan.grid, label))

    path = _cache(plan.cache).get_or_fetch(plan.identities[index], fill, suffix=".npy")
    return np.load(path, mmap_mode="r")


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------

def _progress(job: JobHandle | None, stage: str, message: str, **extra: object) -> None:
    """Report a stage (§10.2 grammar) and stop here if the job was cancelled."""
    if job is None:
        return
    job.check()
    job.emit({"event": "progress", "stage": stage, "message": message, **extra})


def composite_rgb(plan: CompositePlan, job: JobHandle | None = None,
                  fallbacks: list[str] | None = None) -> np.ndarray:
    """The colour picture on the plan's grid: float32 (height, width, 3) in [0, 1], row 0 first.

    Stages, each reported to ``job`` as it starts (CONTRACT-HEAD §10.2): the
    reprojection of each channel not in the cache, background neutralisation,
    the stretch of each channel, the colour combine. Unknown stretch names fall
    back to zscale and are listed in ``fallbacks`` as ``name:requested->zscale``.
    """
    grid, total = plan.grid, len(plan.channels)
    planes = []
    for index, channel in enumerate(plan.channels):
        def reprojecting(index: int = index, name: str = channel.label) -> None:
            _progress(job, "reproject", f"Reprojecting {name} ({index + 1} of {total})",
                      filter=name, index=index + 1, total=total)
        data = channel_on_grid(plan, index, on_miss=reprojecting)
        if not np.isfinite(data).any():
            raise BadRequest(f"No usable image data for channel {channel.label}")
        planes.append(data)
    if total > 1:
        in_all = np.ones(grid.shape, dtype=bool)
        for data in planes:
            in_all &= np.isfinite(data)
        if not in_all.any():
            raise BadRequest("The channels do not overlap on the sky: no pixel has data in "
                             "every channel")
        del in_all
    if plan.background_neutralization:
        _progress(job, "background_neutralize", "Applying background neutralization")
        planes = [subtract_sky(data) for data in planes]
    rgb = np.zeros((grid.height, grid.width, 3), dtype=np.float32)
    luminance = None
    for index, channel in enumerate(plan.channels):
        _progress(job, "stretch", f"Stretching {channel.label} ({index + 1} of {total})",
                  filter=channel.label, index=index + 1, total=total)
        if fallbacks is not None and channel.display.stretch not in STRETCHES:
            fallbacks.append(f"{channel.label}:{channel.display.stretch}->zscale")
        values = color_mapping.stretch_channel(np.asarray(planes[index]), channel.display,
                                               channel.curve)
        planes[index] = None  # type: ignore[call-overload]
        if channel.luminance:
            luminance = (values, channel.weight)
        else:
            color_mapping.add_colour(rgb, values, channel.rgb, channel.weight)
        del values
    _progress(job, "combine", "Combining color channels")
    color_mapping.normalise_common(rgb)
    if luminance is not None:
        rgb = color_mapping.replace_lightness(rgb, luminance[0], min(luminance[1], 1.0))
    if plan.overall:
        rgb = color_mapping.overall_adjust(rgb, **plan.overall)
    return rgb


def encode_rgb(rgb: np.ndarray, fmt: str, quality: int,
               size: tuple[int, int] | None = None) -> bytes:
    """Float RGB in [0, 1] (row 0 first) to PNG/JPEG with row 0 at the bottom.

    ``size`` = (width, height) of the picture when it differs from the array's
    (a downscaled grid): the picture is resampled to it (Lanczos).
    """
    pixels = color_mapping.to_rgb8(rgb)
    if size is not None and (size[0], size[1]) != (pixels.shape[1], pixels.shape[0]):
        from PIL import Image

        pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))
    return encode_array(pixels, fmt, quality)


def render_composite(plan: CompositePlan, job: JobHandle | None = None) -> CompositeResult:
    """The encoded picture and its headers (worker entry point)."""
    fallbacks: list[str] = []
    rgb = composite_rgb(plan, job, fallbacks)
    _progress(job, "encode", "Encoding image")
    content = encode_rgb(rgb, plan.fmt, plan.quality, (plan.out_width, plan.out_height))
    headers = {}
    if fallbacks:
        headers["X-Composite-Stretch-Fallbacks"] = ",".join(fallbacks)
    media = "image/png" if plan.fmt == "png" else "image/jpeg"
    return CompositeResult(content=content, media_type=media, headers=headers)

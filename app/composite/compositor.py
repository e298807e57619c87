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
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.composite import color_mapping, framing
from app.composite.auto_stretch import auto_stretch
from app.composite.feathering import feather as feather_channels
from app.composite.feathering import feather_strength
from app.composite.models import ChannelHistogram, ChannelReport, ChannelStats
from app.composite.quality import quality_headers, quality_metrics
from app.composite.resolution import blur_keeping_coverage, match_sigma, sharpen
from app.errors import BadRequest
from app.processing.background import subtract_sky
from app.processing.enhancement import STRETCHES, DisplayParams
from app.processing.fits_io import open_plane
from app.processing.instruments import normalise_instrument
from app.processing.pipeline import levels_of
from app.processing.render import encode_array
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
from app.progress import JobHandle

#: Grid pixels resampled per block (bounds the coordinate temporaries).
BLOCK_PIXELS = 1 << 20
CACHE_VERSION = "composite-channel-v1"
#: Side of the grid auto-stretch and channel analysis work on (CONTRACT-HEAD §10.4).
ANALYSIS_SIZE = 512
MB = 1024 * 1024


@dataclass
class ChannelSpec:
    """One channel as the worker needs it (plain, picklable)."""

    label: str
    paths: list[str]
    display: DisplayParams = field(
        default_factory=lambda: DisplayParams(stretch="asinh", asinh_a=0.05)
    )
    curve: str = "linear"
    weight: float = 1.0
    rgb: tuple[float, float, float] | None = None
    luminance: bool = False
    auto_stretch: bool = False


@dataclass(frozen=True)
class RenderOptions:
    """How the channels become the picture (CONTRACT-HEAD §10.1), picklable."""

    width: int = 1000
    height: int = 1000
    background_neutralization: bool = True
    overall: DisplayParams | None = None
    fmt: str = "png"
    quality: int = 95
    #: (radius, amount, threshold), or None
    sharpening: tuple[float, float, float] | None = None
    #: (saturation, vibrancy, hue_rotation), or None
    saturation: tuple[float, float, float] | None = None
    #: None: automatic
    feather_strength: float | None = None
    rotation_degrees: float = 0.0
    crop_center_x: float = 0.5
    crop_center_y: float = 0.5
    crop_zoom: float = 1.0


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
    options: RenderOptions
    cache: CacheSpec | None = None
    identities: list[str] = field(default_factory=list)
    #: Where auto-stretch looks (the analysis grid), when a channel asks for it.
    analysis: CompositePlan | None = None

    @property
    def instruments(self) -> list[str | None]:
        """Each channel's instrument (its first file's INSTRUME, normalised)."""
        return [normalise_instrument(geoms[0].header.get("INSTRUME")) for geoms in self.geometries]

    @property
    def scales_arcsec(self) -> list[float]:
        """Each channel's native pixel scale (its finest file's, from the WCS)."""
        return [min(g.scale_deg for g in geoms) * 3600.0 for geoms in self.geometries]

    def on_grid(self, grid: Grid) -> CompositePlan:
        """The same composite on another grid (same picture)."""
        plan = plan_on_grid(self.channels, self.geometries, grid, self.options, self.cache)
        plan.analysis = self.analysis
        return plan


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


def render_grid(inputs: list[InputGeometry], options: RenderOptions) -> Grid:
    """The grid a picture is rendered on: the union of the footprints fitted into
    width x height (square pixels, centred). Zoom, crop centre and rotation frame this
    render; they do not change its grid (so they cost no reprojection)."""
    return fit_grid(inputs, options.width, options.height)


def read_channel_geometries(
    channels: list[ChannelSpec], max_elements: int | None = None
) -> list[list[InputGeometry]]:
    """Every channel's files, described from their headers (400 for an unusable one, 413
    for one over ``max_elements``)."""
    return [
        [
            read_geometry(
                path,
                label=f"Channel {channel.label}: {os.path.basename(path)}",
                max_elements=max_elements,
            )
            for path in channel.paths
        ]
        for channel in channels
    ]


def plan_composite(
    channels: list[ChannelSpec],
    options: RenderOptions,
    cache: CacheSpec | None = None,
    max_elements: int | None = None,
) -> CompositePlan:
    """Read every file's header, build the common grid, check the channels can overlap."""
    geometries = read_channel_geometries(channels, max_elements)
    grid = render_grid([g for geoms in geometries for g in geoms], options)
    plan = plan_on_grid(channels, geometries, grid, options, cache)
    if any(c.auto_stretch for c in channels):
        plan.analysis = analysis_plan(
            channels, geometries, options.background_neutralization, cache
        )
    return plan


def analysis_plan(
    channels: list[ChannelSpec],
    geometries: list[list[InputGeometry]],
    background_neutralization: bool,
    cache: CacheSpec | None = None,
) -> CompositePlan:
    """The channels on the small analysis grid (ANALYSIS_SIZE^2) that auto-stretch and
    ``analyze-channels`` read: the same numbers whatever the picture's size."""
    options = RenderOptions(
        width=ANALYSIS_SIZE,
        height=ANALYSIS_SIZE,
        background_neutralization=background_neutralization,
    )
    grid = fit_grid([g for geoms in geometries for g in geoms], ANALYSIS_SIZE, ANALYSIS_SIZE)
    return plan_on_grid(channels, geometries, grid, options, cache)


def plan_on_grid(
    channels: list[ChannelSpec],
    geometries: list[list[InputGeometry]],
    grid: Grid,
    options: RenderOptions,
    cache: CacheSpec | None = None,
) -> CompositePlan:
    """The plan for channels already read, on ``grid``; 400 when they cannot overlap."""
    boxes = []
    for channel, geoms in zip(channels, geometries, strict=True):
        found = [b for b in (footprint_box(g, grid) for g in geoms) if b is not None]
        if not found:
            raise BadRequest(f"No usable image data for channel {channel.label}")
        boxes.append(
            (
                min(b[0] for b in found),
                max(b[1] for b in found),
                min(b[2] for b in found),
                max(b[3] for b in found),
            )
        )
    r0, r1 = max(b[0] for b in boxes), min(b[1] for b in boxes)
    c0, c1 = max(b[2] for b in boxes), min(b[3] for b in boxes)
    if len(boxes) > 1 and (r0 >= r1 or c0 >= c1):
        raise BadRequest(
            "The channels do not overlap on the sky: their footprints are "
            "disjoint, so no pixel would show every channel"
        )
    grid_key = grid.wcs.to_header_string() + f"|{grid.shape}"
    identities = []
    for geoms in geometries:
        parts = [[*_file_identity(g.path), g.hdu_index, list(g.choice.leading)] for g in geoms]
        text = json.dumps([CACHE_VERSION, parts, grid_key])
        identities.append(hashlib.sha256(text.encode()).hexdigest())
    return CompositePlan(channels, geometries, grid, options, cache, identities)


@dataclass(frozen=True)
class CostModel:
    """Peak bytes of a render as ``per_pixel`` x grid pixels + ``fixed``."""

    per_pixel: int
    fixed: int

    def bytes_for(self, grid_pixels: int) -> int:
        return int(self.per_pixel * grid_pixels + self.fixed)


def composite_cost(plan: CompositePlan) -> CostModel:
    """The render's memory model (what admission and the budget verdict use).

    Per grid pixel: every channel on the grid (float32 neutralised copies,
    coverage masks, coloured values) and, at the peak of the picture pipeline,
    float32 R, G, B with the temporaries of feathering (two combines),
    sharpening, HSL and rotation (a canvas up to twice the area). Fixed: one
    reduced input, one block of coordinates, the picture at its output size
    (8-bit and the encoder's copy) and the interpreter's own working set.
    """
    largest = 0
    compressed = 0
    for geoms in plan.geometries:
        for g in geoms:
            f = reduction_for(g, plan.grid)
            largest = max(largest, -(-g.height // f) * -(-g.width // f))
            compressed = max(compressed, g.compressed_read_bytes)
    per_pixel = 9 * len(plan.channels) + 160
    out_pixels = plan.options.width * plan.options.height
    fixed = largest * 4 + compressed + BLOCK_PIXELS * 48 + out_pixels * 16 + 64 * MB
    return CostModel(per_pixel=per_pixel, fixed=fixed)


def estimate_composite_bytes(plan: CompositePlan) -> int:
    """Bytes the render needs at its peak (checked against the engine's budget)."""
    return composite_cost(plan).bytes_for(plan.grid.height * plan.grid.width)


# --------------------------------------------------------------------------------------
# Reprojection (streaming, coverage-weighted)
# --------------------------------------------------------------------------------------


def _read_reduced(geometry: InputGeometry, factor: int, label: str) -> np.ndarray:
    try:
        with open_plane(
            geometry.path, geometry.choice.slice_index, hdu_index=geometry.hdu_index
        ) as (reader, _):
            data = reader.read_reduced(factor)
    except BadRequest as exc:
        raise BadRequest(
            f"Channel {label}: {os.path.basename(geometry.path)}: {exc.detail}"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise BadRequest(
            f"Channel {label}: {os.path.basename(geometry.path)} could not be "
            f"read ({type(exc).__name__})"
        ) from None
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

    return TempCache(
        spec.directory,
        spec.max_bytes,
        grace_seconds=0.0,
        max_entries=spec.max_entries,
        ttl_seconds=spec.ttl_seconds,
    )


def channel_on_grid(
    plan: CompositePlan, index: int, on_miss: Callable[[], None] | None = None
) -> np.ndarray:
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
# Rendering (CONTRACT-HEAD §10.1 steps 5-15)
# --------------------------------------------------------------------------------------


def _progress(job: JobHandle | None, stage: str, message: str, **extra: object) -> None:
    """Report a stage (§10.2 grammar) and stop here if the job was cancelled."""
    if job is None:
        return
    job.check()
    job.emit({"event": "progress", "stage": stage, "message": message, **extra})


def channels_on_grid(plan: CompositePlan, job: JobHandle | None = None) -> list[np.ndarray]:
    """Every channel on the grid (NaN uncovered), reporting each reprojection (cache misses)."""
    total = len(plan.channels)
    planes = []
    for index, channel in enumerate(plan.channels):

        def reprojecting(index: int = index, name: str = channel.label) -> None:
            _progress(
                job,
                "reproject",
                f"Reprojecting {name} ({index + 1} of {total})",
                filter=name,
                index=index + 1,
                total=total,
            )

        data = channel_on_grid(plan, index, on_miss=reprojecting)
        if not np.isfinite(data).any():
            raise BadRequest(f"No usable image data for channel {channel.label}")
        planes.append(data)
    if total > 1:
        in_all = np.ones(plan.grid.shape, dtype=bool)
        for data in planes:
            in_all &= np.isfinite(data)
        if not in_all.any():
            raise BadRequest(
                "The channels do not overlap on the sky: no pixel has data in every channel"
            )
    return planes


def match_resolutions(plan: CompositePlan, planes: list[np.ndarray]) -> list[np.ndarray]:
    """Blur the channels much coarser than the finest one (only with several instruments)."""
    instruments = plan.instruments
    if len({i for i in instruments if i}) < 2:
        return planes
    scales = plan.scales_arcsec
    finest = min(scales)
    grid_arcsec = plan.grid.scale_deg * 3600.0
    out = []
    for plane, scale in zip(planes, scales, strict=True):
        sigma = match_sigma(scale, finest, grid_arcsec)
        out.append(blur_keeping_coverage(plane, sigma) if sigma else plane)
    return out


def neutralised(
    plan: CompositePlan, planes: list[np.ndarray], job: JobHandle | None = None
) -> list[np.ndarray]:
    if not plan.options.background_neutralization:
        return planes
    _progress(job, "background_neutralize", "Applying background neutralization")
    return [subtract_sky(data) for data in planes]


def analysis_planes(plan: CompositePlan) -> list[np.ndarray]:
    """The channels as auto-stretch sees them: on the plan's grid, resolutions matched,
    neutralised when the plan asks (steps 5 and 8)."""
    return neutralised(plan, match_resolutions(plan, channels_on_grid(plan)))


def auto_displays(plan: CompositePlan) -> dict[int, tuple[DisplayParams, str]]:
    """Stretch settings of the channels that ask for auto-stretch, from the analysis grid."""
    wanted = [i for i, c in enumerate(plan.channels) if c.auto_stretch]
    if not wanted or plan.analysis is None:
        return {}
    planes = analysis_planes(plan.analysis)
    instruments = plan.instruments
    out = {}
    for index in wanted:
        params = auto_stretch(planes[index], instruments[index]).params
        out[index] = (
            levels_of(params),
            params.curve,
        )
    return out


def analyze_channels(plan: CompositePlan, bins: int = 100) -> list[ChannelReport]:
    """Per channel (CONTRACT-HEAD §10.4): auto-stretch parameters and their reasons, a
    histogram of the valid (> 0) pixels and their statistics (worker entry point)."""
    planes = analysis_planes(plan)
    out = []
    for plane, instrument in zip(planes, plan.instruments, strict=True):
        values = np.asarray(plane, dtype=np.float32)
        valid = values[np.isfinite(values) & (values > 0)].astype(np.float64)
        result = auto_stretch(values, instrument)
        if valid.size:
            counts, edges = np.histogram(
                valid, bins=bins, range=(float(valid.min()), float(valid.max()))
            )
            stats = ChannelStats(
                min=float(valid.min()),
                max=float(valid.max()),
                mean=float(valid.mean()),
                std=float(valid.std()),
            )
        else:
            counts, edges = np.zeros(bins, dtype=np.int64), np.zeros(bins + 1)
            stats = ChannelStats(min=0.0, max=0.0, mean=0.0, std=0.0)
        out.append(
            ChannelReport(
                params=result.params,
                meta=result.meta,
                stats=stats,
                histogram=ChannelHistogram(
                    counts=[int(c) for c in counts],
                    bin_edges=[float(e) for e in edges],
                    bin_centers=[float(c) for c in (edges[:-1] + edges[1:]) / 2],
                    n_bins=bins,
                ),
            )
        )
    return out


def _layers(
    values: list[np.ndarray | None], channels: list[ChannelSpec], indices: list[int]
) -> color_mapping.Layers:
    """The stretched planes of the given channels and their colours."""
    planes, colours = [], []
    for index in indices:
        plane, colour = values[index], channels[index].rgb
        if plane is None or colour is None:
            raise ValueError(f"channel {index} has no colour plane to combine")
        planes.append(plane)
        colours.append(colour)
    return color_mapping.Layers(planes, colours)


def render_rgb(
    plan: CompositePlan, job: JobHandle | None = None, report: dict[str, str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The sRGB picture on the grid (float32 (H, W, 3) in [0, 1], FITS row 0 first) and
    the coverage mask (any channel has data).

    Stages, each reported to ``job`` as it starts (CONTRACT-HEAD §10.2): the
    reprojection of each channel not in the cache, background neutralisation, the
    stretch of each channel, the colour combine. ``report`` receives the
    ``X-Composite-*`` headers the render decides (feathering, stretch fallbacks).
    """
    options, channels = plan.options, plan.channels
    report = {} if report is None else report
    total = len(channels)
    planes = match_resolutions(plan, channels_on_grid(plan, job))
    instruments = plan.instruments
    feather = feather_strength(options.feather_strength, instruments, plan.scales_arcsec)
    report["X-Composite-Auto-Feather"] = "true" if feather.auto else "false"
    report["X-Composite-Feather-Strength"] = f"{feather.strength:.3f}"
    planes = neutralised(plan, planes, job)
    coverage = [np.isfinite(p) for p in planes]
    values: list[np.ndarray | None] = []
    fallbacks = []
    luminance = None
    autos = auto_displays(plan)
    for index, channel in enumerate(channels):
        _progress(
            job,
            "stretch",
            f"Stretching {channel.label} ({index + 1} of {total})",
            filter=channel.label,
            index=index + 1,
            total=total,
        )
        data = np.asarray(planes[index])
        display, curve = autos.get(index, (channel.display, channel.curve))
        if display.stretch not in STRETCHES:
            fallbacks.append(f"{channel.label}:{display.stretch}->zscale")
        stretched = color_mapping.stretch_channel(data, display, curve)
        np.nan_to_num(stretched, copy=False, nan=0.0)
        planes[index] = None  # type: ignore[call-overload]
        if channel.luminance:
            luminance = (stretched, min(channel.weight, 1.0))
            values.append(None)
        else:
            if channel.weight != 1.0:
                stretched *= np.float32(channel.weight)
                np.clip(stretched, 0.0, 1.0, out=stretched)
            values.append(stretched)
    if fallbacks:
        report["X-Composite-Stretch-Fallbacks"] = ",".join(fallbacks)
    _progress(job, "combine", "Combining color channels")
    shape = plan.grid.shape
    colour = [i for i, c in enumerate(channels) if not c.luminance]
    colour_instruments = {instruments[i] for i in colour if instruments[i]}
    blend = (
        len({i for i in instruments if i}) >= 2
        and len(colour_instruments) >= 2
        and feather.strength > 0
        and len(colour) >= 2
    )
    if blend:
        rgb = feather_channels(
            colour,
            instruments,
            coverage,
            feather.strength,
            lambda idx: _layers(values, channels, idx),
        )
        if luminance is not None:  # the transfer is applied once: undo it for L
            rgb = color_mapping.srgb_transfer(
                color_mapping.replace_lightness(color_mapping.srgb_inverse(rgb), *luminance)
            )
    else:
        rgb = color_mapping.whole_picture(_layers(values, channels, colour).combined(), shape)
        if luminance is not None:
            rgb = color_mapping.replace_lightness(rgb, *luminance)
        rgb = color_mapping.srgb_transfer(rgb, out=rgb)
    values.clear()  # the coloured channels are no longer needed
    covered = np.zeros(shape, dtype=bool)
    for mask in coverage:
        covered |= mask
    if options.overall:
        rgb = color_mapping.overall_adjust(rgb, options.overall)
    adjust = None
    if options.saturation is not None and tuple(options.saturation) != (1.0, 0.0, 0.0):
        adjust = color_mapping.saturation_step(*options.saturation)
    if options.sharpening is not None:  # the saturation step on each block as it is sharpened
        rgb = sharpen(rgb, *options.sharpening, coverage=covered, out=rgb, then=adjust)
    elif adjust is not None:
        rgb = color_mapping.apply_step(rgb, adjust, out=rgb)
    return rgb, covered


def frame(rgb: np.ndarray, options: RenderOptions) -> tuple[np.ndarray, dict[str, float]]:
    """Row 0 to the top, auto-crop, quality metrics, rotation, 8-bit, letterbox:
    the exact-size 8-bit picture and the metrics."""
    shown = framing.auto_crop(rgb[::-1])
    metrics = quality_metrics(shown)
    pixels = framing.place(
        framing.to_8bit(shown),
        options.width,
        options.height,
        options.crop_zoom,
        options.crop_center_x,
        options.crop_center_y,
        options.rotation_degrees,
    )
    return pixels, metrics


def render_composite(plan: CompositePlan, job: JobHandle | None = None) -> CompositeResult:
    """The encoded picture and its headers (worker entry point)."""
    headers: dict[str, str] = {}
    rgb, _ = render_rgb(plan, job, headers)
    _progress(job, "encode", "Encoding image")
    pixels, metrics = frame(rgb, plan.options)
    del rgb
    headers.update(quality_headers(metrics))
    content = encode_array(pixels, plan.options.fmt, plan.options.quality)
    media = "image/png" if plan.options.fmt == "png" else "image/jpeg"
    return CompositeResult(content=content, media_type=media, headers=headers)

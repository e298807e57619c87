"""From a composite request to a plan and its budget verdict (shared by every composite route).

The routes of CONTRACT-HEAD §10.1-10.3 all start the same way: resolve every
key (403/404/400), check each file's size (413), read the headers and build
the common grid (400), then judge the grid against the memory limit. This
module does that once; the routes only wire its result to a response.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool

from app.composite import compositor
from app.composite.budget import BudgetVerdict, budget_verdict
from app.composite.color_mapping import hue_to_rgb
from app.composite.models import AnalyzeChannelsRequest, NChannelCompositeRequest, NChannelConfig
from app.config import Settings
from app.errors import PayloadTooLarge, Unprocessable
from app.processing.pipeline import levels_of
from app.processing.reprojection import scaled_grid
from app.storage.helpers import check_file_size
from app.storage.provider import StorageProvider
from app.workers import HEADER_JOB_BYTES, WorkerPool


def channel_name(index: int, label: str | None) -> str:
    """How a channel is named in messages and events: its label, or ``ch<i>`` (0-based)."""
    return label or f"ch{index}"


def check_colour_rules(body: NChannelCompositeRequest) -> None:
    """The two 422s of §10.1 step 10, checked before any work."""
    n_lum = sum(1 for c in body.channels if c.color.luminance)
    if n_lum > 1:
        raise Unprocessable("At most one luminance channel is allowed per composite")
    if n_lum == len(body.channels):
        raise Unprocessable("At least one color channel (hue or rgb) is required")


def channel_specs(
    channels: list[NChannelConfig], paths: list[list[str]]
) -> list[compositor.ChannelSpec]:
    """Worker-side channel descriptions (plain, picklable), in request order."""
    specs = []
    for index, (channel, files) in enumerate(zip(channels, paths, strict=True)):
        color = channel.color
        rgb = None
        if color.hue is not None:
            rgb = hue_to_rgb(color.hue)
        elif color.rgb is not None:
            rgb = (float(color.rgb[0]), float(color.rgb[1]), float(color.rgb[2]))
        specs.append(
            compositor.ChannelSpec(
                label=channel_name(index, channel.label),
                paths=files,
                display=levels_of(channel),
                curve=channel.curve,
                weight=channel.weight,
                rgb=rgb,
                luminance=bool(color.luminance),
                auto_stretch=channel.auto_stretch,
            )
        )
    return specs


def render_options(body: NChannelCompositeRequest) -> compositor.RenderOptions:
    """The request's picture settings, plain and picklable for the worker."""
    sharp, sat = body.sharpening, body.saturation
    return compositor.RenderOptions(
        width=body.width,
        height=body.height,
        background_neutralization=body.background_neutralization,
        overall=levels_of(body.overall) if body.overall else None,
        fmt=body.output_format,
        quality=body.quality,
        sharpening=(sharp.radius, sharp.amount, sharp.threshold) if sharp else None,
        saturation=(sat.saturation, sat.vibrancy, sat.hue_rotation) if sat else None,
        feather_strength=body.feather_strength,
        rotation_degrees=body.rotation_degrees,
        crop_center_x=body.crop_center_x,
        crop_center_y=body.crop_center_y,
        crop_zoom=body.crop_zoom,
    )


def cache_spec(settings: Settings) -> compositor.CacheSpec | None:
    if settings.COMPOSITE_CACHE_MAX_ENTRIES == 0 or settings.COMPOSITE_CACHE_MAX_BYTES == 0:
        return None
    return compositor.CacheSpec(
        directory=str(settings.COMPOSITE_CACHE_DIR),
        max_bytes=settings.COMPOSITE_CACHE_MAX_BYTES,
        max_entries=settings.COMPOSITE_CACHE_MAX_ENTRIES,
        ttl_seconds=settings.COMPOSITE_CACHE_TTL_SECONDS,
    )


def composite_limit(settings: Settings, engine_budget: int) -> int:
    """The bytes one composite may use: MAX_COMPOSITE_MEMORY_BYTES, capped by the engine's
    whole budget (so the verdict never lets through what admission would refuse)."""
    limit = settings.MAX_COMPOSITE_MEMORY_BYTES or engine_budget
    return min(int(limit), int(engine_budget))


def resolve_channel_paths(
    channels: list[NChannelConfig], storage: StorageProvider
) -> list[list[str]]:
    """Local paths of every channel's files, in order (403/404/400; S3 may download)."""
    return [[str(storage.local_path(key)) for key in channel.file_paths] for channel in channels]


def check_sizes(paths: list[list[str]], max_file_bytes: int) -> None:
    """413 for a file over the size limit (§10.0.3)."""
    for files in paths:
        for path in files:
            check_file_size(path, max_file_bytes)


@dataclass
class PreparedComposite:
    """A plan on the grid it will be rendered on, and the verdict that chose the grid."""

    plan: compositor.CompositePlan
    verdict: BudgetVerdict

    @property
    def estimate_bytes(self) -> int:
        return compositor.estimate_composite_bytes(self.plan)


def judge(
    plan: compositor.CompositePlan,
    settings: Settings,
    engine_budget: int,
    allow_force_downscale: bool,
) -> BudgetVerdict:
    cost = compositor.composite_cost(plan)
    return budget_verdict(
        plan.grid.shape,
        cost.per_pixel,
        cost.fixed,
        composite_limit(settings, engine_budget),
        settings.COMPOSITE_DOWNSCALE_FAIL_THRESHOLD,
        allow_force_downscale,
    )


def plan_request(
    body: NChannelCompositeRequest,
    paths: list[list[str]],
    settings: Settings,
    engine_budget: int,
    refuse: bool = True,
) -> PreparedComposite:
    """Worker job: size checks, headers, the grid and the verdict; the plan moved to the
    grid that fits.

    With ``refuse`` a ``fail`` verdict is the §10.1 413 (its detail word for word);
    without it (the estimate) the verdict is only reported.
    """
    check_colour_rules(body)
    check_sizes(paths, settings.max_fits_file_bytes)
    specs = channel_specs(body.channels, paths)
    plan = compositor.plan_composite(
        specs, render_options(body), cache_spec(settings), settings.MAX_FITS_ARRAY_ELEMENTS
    )
    verdict = judge(plan, settings, engine_budget, body.allow_force_downscale and refuse)
    if verdict.status == "fail" and refuse:
        raise PayloadTooLarge(verdict.detail)
    if verdict.downscaled and verdict.status != "fail":
        plan = plan.on_grid(scaled_grid(plan.grid, verdict.side_factor))
    return PreparedComposite(plan=plan, verdict=verdict)


def prepare_sync(
    body: NChannelCompositeRequest,
    settings: Settings,
    storage: StorageProvider,
    engine_budget: int,
    *,
    refuse: bool = True,
) -> PreparedComposite:
    """Resolve and plan in this process (tools and tests; the routes use :func:`prepare`)."""
    return plan_request(
        body, resolve_channel_paths(body.channels, storage), settings, engine_budget, refuse
    )


async def prepare(
    body: NChannelCompositeRequest,
    settings: Settings,
    storage: StorageProvider,
    pool: WorkerPool,
    *,
    refuse: bool = True,
    queued: bool = False,
) -> PreparedComposite:
    """Keys resolved off the event loop, then headers read in a worker (DESIGN.md
    principle 8: nothing that grows with the input runs in the server process)."""
    check_colour_rules(body)
    paths = await run_in_threadpool(resolve_channel_paths, body.channels, storage)
    return await pool.run(
        plan_request,
        body,
        paths,
        settings,
        pool.memory_budget,
        refuse,
        estimate_bytes=HEADER_JOB_BYTES,
        queued=queued,
    )


def plan_analysis(
    body: AnalyzeChannelsRequest, paths: list[list[str]], settings: Settings
) -> compositor.CompositePlan:
    """Worker job: the analysis plan of §10.4 (any mix of colours is fine here)."""
    check_sizes(paths, settings.max_fits_file_bytes)
    specs = channel_specs(body.channels, paths)
    geometries = compositor.read_channel_geometries(specs, settings.MAX_FITS_ARRAY_ELEMENTS)
    return compositor.analysis_plan(
        specs, geometries, body.background_neutralization, cache_spec(settings)
    )


async def prepare_analysis(
    body: AnalyzeChannelsRequest, settings: Settings, storage: StorageProvider, pool: WorkerPool
) -> compositor.CompositePlan:
    paths = await run_in_threadpool(resolve_channel_paths, body.channels, storage)
    return await pool.run(plan_analysis, body, paths, settings, estimate_bytes=HEADER_JOB_BYTES)

"""Composite route (CONTRACT.md §3.7): validate, plan off the loop, render in a worker."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.composite import composite_engine
from app.composite.color_mapping import hue_to_rgb
from app.composite.models import NChannelCompositeRequest
from app.config import Settings
from app.deps import get_pool, get_settings, get_storage, resolve_files
from app.errors import Unprocessable
from app.http_errors import error_responses
from app.processing.pipeline import DisplayParams
from app.storage.provider import StorageProvider
from app.workers import WorkerPool

router = APIRouter(prefix="/composite", tags=["Composite"])


def channel_specs(body: NChannelCompositeRequest, paths: list[list[str]]):
    """Worker-side channel descriptions; 422 for the colour rules of §3.7."""
    n_lum = sum(1 for c in body.channels if c.color.luminance)
    if n_lum > 1:
        raise Unprocessable("At most one luminance channel is allowed per composite")
    if n_lum == len(body.channels):
        raise Unprocessable("At least one color channel (hue or rgb) is required")
    specs = []
    for index, (channel, files) in enumerate(zip(body.channels, paths)):
        color = channel.color
        rgb = None
        if color.hue is not None:
            rgb = hue_to_rgb(color.hue)
        elif color.rgb is not None:
            rgb = tuple(float(v) for v in color.rgb)
        label = channel.label or f"{index + 1}"
        specs.append(composite_engine.ChannelSpec(
            label=label, paths=files,
            display=DisplayParams(stretch=channel.stretch, black_point=channel.black_point,
                                  white_point=channel.white_point, gamma=channel.gamma,
                                  asinh_a=channel.asinh_a),
            curve=channel.curve, weight=channel.weight, rgb=rgb,
            luminance=bool(color.luminance)))
    return specs


def cache_spec(settings: Settings):
    if settings.COMPOSITE_CACHE_MAX_ENTRIES == 0 or settings.COMPOSITE_CACHE_MAX_BYTES == 0:
        return None
    return composite_engine.CacheSpec(
        directory=str(settings.COMPOSITE_CACHE_DIR), max_bytes=settings.COMPOSITE_CACHE_MAX_BYTES,
        max_entries=settings.COMPOSITE_CACHE_MAX_ENTRIES,
        ttl_seconds=settings.COMPOSITE_CACHE_TTL_SECONDS)


@router.post("/generate-nchannel", response_class=Response,
             summary="Colour composite of several filters",
             responses={200: {"content": {"image/png": {}, "image/jpeg": {}},
                              "description": "The picture, exactly width x height"},
                        **error_responses(400, 403, 404, 413, 422, 429, 503)})
async def generate_nchannel(body: NChannelCompositeRequest,
                            settings: Settings = Depends(get_settings),
                            storage: StorageProvider = Depends(get_storage),
                            pool: WorkerPool = Depends(get_pool)):
    """Combine N filters into one colour picture. Each channel's files are placed on one
    common north-up grid (their WCS honoured, several files per channel combined by a
    coverage-weighted mean), optionally background-neutralised (sigma-clipped sky level
    subtracted), stretched, tone-curved, weighted and coloured by hue or RGB weights; an
    optional luminance channel sets the lightness (LRGB). The picture is exactly
    ``width`` x ``height`` with square sky pixels: the union of the footprints is centred
    and areas without data are black. Reprojected channels are cached, so changing only
    stretches or colours is fast."""
    paths = [[str(p) for p in await resolve_files(storage, c.file_paths)] for c in body.channels]
    specs = channel_specs(body, paths)
    overall = body.overall.model_dump() if body.overall else None
    plan = await run_in_threadpool(
        composite_engine.plan_composite, specs, body.width, body.height,
        background_neutralization=body.background_neutralization, overall=overall,
        fmt=body.output_format, quality=body.quality, cache=cache_spec(settings))
    content = await pool.run(composite_engine.render_composite, plan,
                             estimate_bytes=composite_engine.estimate_composite_bytes(plan))
    media = "image/png" if body.output_format == "png" else "image/jpeg"
    return Response(content=content, media_type=media)

"""Composite routes (CONTRACT.md §3.7, CONTRACT-HEAD §10.1-10.3): thin wiring.

Planning and the budget verdict are in ``planning``, the render in
``compositor`` (run in a worker), the NDJSON stream in ``stream``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from app.composite import compositor
from app.composite.models import (
    AnalyzeChannelsRequest,
    AnalyzeChannelsResponse,
    ChannelAnalysis,
    CompositeEstimate,
    NChannelCompositeRequest,
)
from app.composite.planning import channel_name, check_colour_rules, prepare, prepare_analysis
from app.composite.stream import MEDIA_TYPE, composite_stream
from app.deps import PoolDep, SettingsDep, StorageDep
from app.errors import PayloadTooLarge
from app.http_errors import error_responses, route

router = APIRouter(prefix="/composite", tags=["Composite"])

#: What planning a composite may answer (its files, its size against the budget).
PLAN_ERRORS = error_responses(400, 403, 404, 413, 422)
#: Planning, then a job in the pool (429 busy, 503 a worker lost).
ANALYZE_ERRORS = error_responses(400, 403, 404, 413, 422, 429, 503)


@route(
    router.post,
    "/generate-nchannel",
    None,
    {
        200: {
            "content": {"image/png": {}, "image/jpeg": {}},
            "description": "The picture, exactly width x height, with the "
            "X-Composite-* budget headers",
        },
        **error_responses(400, 403, 404, 413, 422, 429, 503),
    },
    response_class=Response,
)
async def generate_nchannel(
    body: NChannelCompositeRequest, settings: SettingsDep, storage: StorageDep, pool: PoolDep
):
    """Colour composite of several filters.

    Combine N filters into one colour picture. Each channel's files are placed on one
    common north-up grid (their WCS honoured, several files per channel combined by a
    coverage-weighted mean), optionally background-neutralised (sigma-clipped sky level
    subtracted), stretched, tone-curved, weighted and coloured by hue or RGB weights; an
    optional luminance channel sets the lightness (LRGB). The picture is exactly
    ``width`` x ``height`` with square sky pixels: the union of the footprints is centred
    and areas without data are black. Reprojected channels are cached, so changing only
    stretches or colours is fast. When the composite alone would not fit the memory
    limit its grid shrinks (``X-Composite-Budget-Status: warn``), or, below the fail
    threshold, 413 unless ``allow_force_downscale`` (``forced``)."""
    prepared = await prepare(body, settings, storage, pool)
    result = await pool.run(
        compositor.render_composite, prepared.plan, estimate_bytes=prepared.estimate_bytes
    )
    return Response(
        content=result.content,
        media_type=result.media_type,
        headers={**prepared.verdict.headers(), **result.headers},
    )


@route(
    router.post,
    "/generate-nchannel-stream",
    None,
    {
        200: {
            "content": {MEDIA_TYPE: {}},
            "description": "One JSON object per line: progress events "
            "(stage queued, reproject, "
            "background_neutralize, stretch, combine, "
            "encode), then exactly one complete or error",
        },
        **error_responses(422),
    },
    response_class=StreamingResponse,
)
async def generate_nchannel_stream(
    body: NChannelCompositeRequest,
    request: Request,
    settings: SettingsDep,
    storage: StorageDep,
    pool: PoolDep,
):
    """The same composite as a live NDJSON progress stream (queued work).

    The body of ``/composite/generate-nchannel``, answered at once with 200 and a
    stream of progress lines that come from the worker as it works. This is queued
    work: when the engine is full it waits (a ``queued`` line every few seconds) instead
    of refusing, until ``QUEUED_JOB_TIME_LIMIT_SECONDS``. Every failure after the 200 is an
    ``error`` line with the status the synchronous route would answer; the ``complete``
    line holds the picture (base64) and the synchronous route's headers. A client that
    disconnects cancels its job at the next stage."""
    check_colour_rules(body)
    return StreamingResponse(
        composite_stream(body, settings, storage, pool, request.is_disconnected),
        media_type=MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@route(router.post, "/estimate", CompositeEstimate, PLAN_ERRORS)
async def estimate(
    body: NChannelCompositeRequest, settings: SettingsDep, storage: StorageDep, pool: PoolDep
):
    """A composite's budget verdict, without rendering.

    Reads only headers: the grid the composite would use and whether it fits the
    memory limit as it is (``ok``), shrunk by a side factor at or above the fail
    threshold (``warn``), or only with ``allow_force_downscale`` (``fail``: a render
    would answer 413 with this ``detail``). The same verdict the render reaches."""
    total = sum(len(c.file_paths) for c in body.channels)
    limit = settings.MAX_COMPOSITE_ESTIMATE_FILES
    if total > limit:
        raise PayloadTooLarge(
            f"Estimate input exceeds soft cap: {total} files across {len(body.channels)} "
            f"channels (limit: {limit}). Submit smaller batches or generate without "
            "pre-flight."
        )
    verdict = (await prepare(body, settings, storage, pool, refuse=False)).verdict
    return CompositeEstimate(
        # allow_force_downscale is ignored here: what a render would force is a fail.
        status="ok" if verdict.status == "ok" else "warn" if verdict.status == "warn" else "fail",
        original_shape=list(verdict.original_shape),
        output_shape=list(verdict.output_shape),
        side_factor=round(verdict.side_factor, 6),
        detail=verdict.detail,
        memory_limit_mb=verdict.limit_bytes // 1_000_000,
        fail_threshold=verdict.threshold,
    )


@route(router.post, "/analyze-channels", AnalyzeChannelsResponse, ANALYZE_ERRORS)
async def analyze_channels(
    body: AnalyzeChannelsRequest, settings: SettingsDep, storage: StorageDep, pool: PoolDep
):
    """Auto-stretch, histogram and statistics per channel.

    Each channel is reprojected onto a small common grid (512 x 512, cached),
    resolution-matched and, with ``background_neutralization``, neutralised; then, per
    channel in request order: the stretch, levels, gamma, asinh softening and tone curve
    that ``auto_stretch: true`` would use (with the noise, signal-to-noise and dynamic
    range that chose them), a 100-bin histogram of the pixels above 0 and their
    statistics."""
    plan = await prepare_analysis(body, settings, storage, pool)
    results = await pool.run(
        compositor.analyze_channels,
        plan,
        estimate_bytes=compositor.estimate_composite_bytes(plan),
    )
    return AnalyzeChannelsResponse(
        channels=[
            ChannelAnalysis(channel_name=channel_name(i, c.label), label=c.label, **dict(r))
            for i, (c, r) in enumerate(zip(body.channels, results, strict=True))
        ]
    )

"""The processing engine: renders, combines and measures FITS files (port 8000)."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.analysis.routes import router as analysis_router
from app.app_factory import Service, build_app
from app.composite.planning import cache_spec
from app.composite.routes import router as composite_router
from app.config import Settings, load_settings
from app.discovery.routes import router as discovery_router
from app.mosaic.routes import MOSAIC_OUTPUT_DIR, sweep_stale_outputs
from app.mosaic.routes import router as mosaic_router
from app.processing.header_limits import MAX_HEADER_CARDS
from app.semantic.routes import router as semantic_router
from app.semantic.search_service import SemanticService
from app.storage.temp_cache import TempCache
from app.viewer.routes import router as viewer_router
from app.workers import WorkerPool

DESCRIPTION = """The heavy half of the JWST data backend: it reads FITS files from
storage and renders previews, thumbnails, histograms, pixel data and cube slices;
builds N-filter colour composites, WCS mosaics and footprints; measures regions,
detects sources, reads tables and spectra; suggests composite recipes; and answers
semantic searches over file metadata.
Heavy work runs in a bounded pool of worker processes, so `/health` stays instant.
Every error is JSON with a string `detail`."""

ROUTERS = (
    viewer_router,
    composite_router,
    mosaic_router,
    analysis_router,
    discovery_router,
    semantic_router,
)
SERVICE = Service("JWST Data Processing Engine", "jwst-processing-engine", DESCRIPTION, ROUTERS)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        workers, budget = settings.ENGINE_WORKERS, settings.ENGINE_MEMORY_BUDGET_BYTES
        assert workers is not None and budget is not None  # resolved by Settings
        app.state.pool = WorkerPool(
            workers,
            budget,
            settings.ENGINE_MAX_QUEUED,
            time_limit=settings.ENGINE_JOB_TIME_LIMIT_SECONDS,
            recycle_bytes=settings.ENGINE_WORKER_RECYCLE_BYTES,
        )
        app.state.semantic = SemanticService(settings.SEMANTIC_DATA_DIR)
        sweep_stale_outputs(settings.STORAGE_TEMP_CACHE_DIR / MOSAIC_OUTPUT_DIR)
        spec = cache_spec(settings)
        if spec is not None:
            TempCache(spec.directory, spec.max_bytes).sweep()
        await app.state.pool.start()
        try:
            yield
        finally:
            await app.state.pool.stop()

    limits = [
        f"FITS images: at most {settings.MAX_FITS_ARRAY_ELEMENTS:,} elements each (413"
        " beyond); a whole-file compressed input counts at its decompressed size.",
        f"Composite and mosaic inputs, and files fetched from S3: at most"
        f" {settings.MAX_FITS_FILE_SIZE_MB:,} MB each (413 beyond).",
        f"FITS headers: at most {MAX_HEADER_CARDS:,} cards each (413 beyond), counted"
        " before a header is parsed.",
        f"Every job: at most {settings.ENGINE_JOB_TIME_LIMIT_SECONDS:g} s in a worker (504"
        " beyond); a request that cannot be admitted now is 429 with Retry-After.",
    ]
    return build_app(SERVICE, settings, lifespan, settings.ENGINE_MAX_BODY_BYTES, limits)


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
app = create_app()

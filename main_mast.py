"""The MAST proxy: searches the MAST archive and downloads JWST files (port 8002).

Light by design: it imports only ``app.mast``, ``app.storage`` and ``app.config``,
never scipy, photutils or reproject.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.app_factory import Service, build_app
from app.config import Settings, load_settings
from app.mast.download_jobs import DownloadManager
from app.mast.mast_service import RECENT_PAGE_SIZE, SEARCH_PAGE_SIZE, MastService
from app.mast.routes import router as mast_router

DESCRIPTION = """The light half of the JWST data backend: it searches the MAST archive
(by target, position, observation, program, recent releases), lists products and
downloads FITS files into shared storage. Every error is JSON with a string `detail`."""

SERVICE = Service("JWST MAST Proxy Service", "jwst-mast-proxy", DESCRIPTION, (mast_router,))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Transfers run in threads: hand the GIL over more often than the default 5 ms
        # so that requests (progress polls, /health) are answered promptly meanwhile.
        sys.setswitchinterval(0.001)
        assert settings.MAST_DOWNLOAD_DIR is not None  # filled in by Settings
        settings.MAST_DOWNLOAD_DIR.mkdir(parents=True, exist_ok=True)
        app.state.mast = MastService(
            settings.MAST_BASE_URL, settings.NAME_RESOLVER_URL, settings.MAST_SEARCH_TIMEOUT
        )
        app.state.downloads = DownloadManager(settings, app.state.storage, app.state.mast)
        await app.state.downloads.startup()
        # Everything loaded so far lives as long as the process: keep it out of the
        # garbage collector's full passes, which would otherwise walk it every time
        # (tens of milliseconds with astroquery loaded, stalling every request).
        await asyncio.to_thread(app.state.mast.observations)
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await app.state.downloads.shutdown()
            app.state.mast.close()

    limits = [
        "MAST identifiers: an obs_id is letters, digits, '.', '_' and '-' (at most 200"
        " characters), a program id 1-6 digits; never wildcards (422 otherwise).",
        f"Searches: one page of at most {SEARCH_PAGE_SIZE:,} rows ({RECENT_PAGE_SIZE:,} for"
        f" recent releases), within {settings.MAST_SEARCH_TIMEOUT:g} s (504 beyond).",
    ]
    return build_app(SERVICE, settings, lifespan, settings.MAST_MAX_BODY_BYTES, limits)


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
app = create_app()

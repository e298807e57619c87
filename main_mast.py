"""The MAST proxy: searches the MAST archive and downloads JWST files (port 8002).

Light by design: it imports only ``app.mast``, ``app.storage`` and ``app.config``,
never scipy, photutils or reproject.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

from app.config import Settings, load_settings
from app.http_errors import install_error_handlers
from app.storage import create_storage

DESCRIPTION = """The light half of the JWST data backend: it searches the MAST archive
(by target, position, observation, program, recent releases), lists products and
downloads FITS files into shared storage. Every error is JSON with a string `detail`."""


class Health(BaseModel):
    status: str
    service: str


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.MAST_DOWNLOAD_DIR.mkdir(parents=True, exist_ok=True)
        yield

    app = FastAPI(title="JWST MAST Proxy Service", version="1.0.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.storage = create_storage(settings)
    install_error_handlers(app)

    @app.get("/", include_in_schema=False)
    async def root():
        return {"message": "JWST MAST Proxy Service", "status": "running"}

    @app.get("/health", response_model=Health, tags=["Health"], summary="Readiness probe")
    async def health():
        return {"status": "healthy", "service": "jwst-mast-proxy"}

    return app


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
app = create_app()

"""What both FastAPI apps share: settings, storage, error handlers, / and /health."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.http_errors import (
    BodySizeLimit,
    install_error_handlers,
    route,
    use_string_detail_in_openapi,
)
from app.offline_docs import install_offline_docs
from app.storage import create_storage
from app.storage.pins import pinning


class Health(BaseModel):
    status: str
    service: str


@dataclass(frozen=True)
class Service:
    """What a service says of itself: its docs' title and description, the name
    ``/health`` answers with, and its routers."""

    title: str
    name: str
    description: str
    routers: Sequence[APIRouter]


def build_app(
    service: Service,
    settings: Settings,
    lifespan,
    max_body_bytes: int,
    limits: Sequence[str] = (),
) -> FastAPI:
    """A FastAPI app with the common parts and the service's routers. Request bodies
    over ``max_body_bytes`` are refused (413) before they are held in memory. The docs'
    description ends with the limits in force: the body size and ``limits`` (one
    sentence each, from the settings the app runs with)."""
    title = service.title
    app = FastAPI(
        title=title,
        version="1.0.0",
        description=describe(
            service.description,
            [f"Request bodies: at most {max_body_bytes:,} bytes (413 beyond).", *limits],
        ),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_offline_docs(app)
    app.state.settings = settings
    app.state.storage = create_storage(settings)
    install_error_handlers(app)
    use_string_detail_in_openapi(app)
    app.add_middleware(RequestPins)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)

    @app.get("/", include_in_schema=False)
    async def root():
        return {"message": title, "status": "running"}

    @route(app.get, "/health", Health, tags=["Health"])
    async def health():
        """Readiness probe.

        Answers at once: heavy work never runs on the event loop."""
        return {"status": "healthy", "service": service.name}

    for router in service.routers:
        app.include_router(router)
    return app


def describe(description: str, limits: Sequence[str]) -> str:
    """A service's description followed by its limits, as a Markdown list."""
    return (
        description
        + "\n\n**Limits** (from this deployment's settings):\n\n"
        + "\n".join(f"- {limit}" for limit in limits)
    )


class RequestPins:
    """ASGI middleware: each request runs inside :func:`app.storage.pins.pinning`, so the
    cached files it resolved stay on disk until its response has been sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with pinning():
            await self.app(scope, receive, send)

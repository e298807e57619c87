"""The NDJSON progress stream of a queued composite (CONTRACT-HEAD §10.2).

One JSON object per line, each sent as soon as it exists: ``queued`` lines
while the job waits for the engine (Decision 12), the worker's own stage
events while it renders, then exactly one terminal event, ``complete`` (the
picture in base64 and the headers the synchronous route would send) or
``error`` (the status the synchronous route would answer, with
``retry_after`` on a 429). A client that goes away cancels its job.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from app.composite import compositor
from app.composite.models import NChannelCompositeRequest
from app.composite.planning import prepare
from app.config import Settings
from app.errors import ServiceError, TimeLimitExceeded
from app.storage.provider import StorageProvider
from app.workers import WorkerPool

logger = logging.getLogger(__name__)
MEDIA_TYPE = "application/x-ndjson"
#: Seconds between two ``queued`` lines while the job waits (the contract asks <= 5).
QUEUED_TICK = 2.0


def ndjson(event: dict[str, Any]) -> bytes:
    """One line: compact JSON (no raw newline can occur inside) and ``\\n``."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def queued_event(position: int) -> dict[str, Any]:
    ahead = position - 1
    message = (
        "Waiting for a free worker"
        if ahead == 0
        else f"Waiting for a free worker ({ahead} job{'s' if ahead != 1 else ''} ahead)"
    )
    return {"event": "progress", "stage": "queued", "message": message}


def complete_event(result: compositor.CompositeResult, headers: dict[str, str]) -> dict[str, Any]:
    """The §10.2 ``complete`` event: every header value a string, names lower-case."""
    names = {k.lower(): str(v) for k, v in headers.items()}
    names["content-type"] = result.media_type
    names["content-length"] = str(len(result.content))
    return {
        "event": "complete",
        "image_b64": base64.b64encode(result.content).decode("ascii"),
        "content_type": result.media_type,
        "headers": names,
    }


def error_event(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ServiceError):
        event: dict[str, Any] = {
            "event": "error",
            "detail": str(exc.detail),
            "status_code": int(exc.status_code),
        }
        if exc.status_code == 429:
            event["retry_after"] = int(exc.headers.get("Retry-After", "15"))
        return event
    logger.exception("Composite stream failed", exc_info=exc)
    return {"event": "error", "detail": "An internal error occurred", "status_code": 500}


async def composite_stream(
    body: NChannelCompositeRequest,
    settings: Settings,
    storage: StorageProvider,
    pool: WorkerPool,
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[bytes]:
    """The lines of one composite stream; always ends with a terminal event unless the
    client has gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.QUEUED_JOB_TIME_LIMIT_SECONDS
    planning = asyncio.ensure_future(prepare(body, settings, storage, pool, queued=True))
    try:
        # Headers are read in a worker too, queued like the render: say so while waiting.
        while not planning.done():
            await asyncio.wait({planning}, timeout=QUEUED_TICK)
            if planning.done():
                break
            if await disconnected():
                return
            if loop.time() > deadline:
                raise TimeLimitExceeded(
                    f"The composite did not start within its time limit of "
                    f"{settings.QUEUED_JOB_TIME_LIMIT_SECONDS:g} s; the engine is busy"
                )
            yield ndjson(queued_event(1))
        prepared = planning.result()
        steps = pool.stream(
            compositor.render_composite,
            prepared.plan,
            estimate_bytes=prepared.estimate_bytes,
            queued=True,
            waiting=queued_event,
            wait_tick=QUEUED_TICK,
            time_limit=max(1.0, deadline - loop.time()),
            disconnected=disconnected,
        )
        try:
            async for kind, value in steps:
                if kind == "event":
                    yield ndjson(value)
                else:
                    headers = {**prepared.verdict.headers(), **value.headers}
                    yield ndjson(complete_event(value, headers))
        finally:
            await steps.aclose()
    except Exception as exc:  # every failure after the 200 travels in band
        yield ndjson(error_event(exc))
    finally:
        if not planning.done():
            planning.cancel()

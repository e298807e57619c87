"""Semantic search routes (CONTRACT.md §3.17-3.19)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.deps import PoolDep, SemanticDep
from app.errors import BadRequest
from app.http_errors import error_responses, route
from app.semantic.models import (
    EmbedBatchRequest,
    EmbedBatchResponse,
    EmbedRequest,
    EmbedResponse,
    IndexStatus,
    SearchRequest,
    SearchResponse,
)

router = APIRouter(prefix="/semantic", tags=["Semantic search"])

SEARCH_ERRORS = error_responses(400, 422, 503)
#: Embedding runs in the worker pool, which may be busy (429).
EMBED_ERRORS = error_responses(400, 422, 429, 503)


@route(router.post, "/search", SearchResponse, SEARCH_ERRORS)
async def search(body: SearchRequest, service: SemanticDep):
    """Find files by meaning.

    Embed the question with all-MiniLM-L6-v2 and return the indexed files whose
    metadata prose is nearest (cosine similarity, exact search over every vector)."""
    return await service.search(body.query, body.top_k, body.min_score)


@route(router.get, "/index-status", IndexStatus)
async def index_status(service: SemanticDep):
    """State of the vector index.

    How many files are indexed, whether the model is installed (and which packages
    are missing if not), loaded in the server process, and whether the index file
    exists. Without the model, search and embedding answer 503 naming the package."""
    return await run_in_threadpool(service.status)


@route(router.post, "/embed-batch", EmbedBatchResponse, EMBED_ERRORS)
async def embed_batch(body: EmbedBatchRequest, service: SemanticDep, pool: PoolDep):
    """Index the metadata of many files.

    Turn each record into prose, embed it (in worker processes, in chunks, any number
    of records) and store it; a record already indexed is replaced. Records with nothing
    to embed are listed in ``errors``."""
    count, errors = await service.embed_items(body.items, pool)
    return {"embedded_count": count, "total_indexed": len(service.index), "errors": errors}


@route(router.post, "/embed", EmbedResponse, EMBED_ERRORS)
async def embed_one(body: EmbedRequest, service: SemanticDep, pool: PoolDep):
    """Index the metadata of one file.

    Like embed-batch for a single record; 400 when it has nothing to embed."""
    count, _ = await service.embed_items([body.metadata], pool)
    if count == 0:
        raise BadRequest("No embeddable text from metadata")
    return {"file_id": body.metadata.file_id, "success": True, "total_indexed": len(service.index)}

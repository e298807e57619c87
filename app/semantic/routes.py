"""Semantic search routes (CONTRACT.md §3.17-3.19)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from app.deps import PoolDep, SemanticDep
from app.errors import BadRequest
from app.http_errors import error_responses
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


@router.post(
    "/search",
    response_model=SearchResponse,
    summary="Find files by meaning",
    responses=error_responses(400, 422, 503),
)
async def search(body: SearchRequest, service: SemanticDep):
    """Embed the question with all-MiniLM-L6-v2 and return the indexed files whose
    metadata prose is nearest (cosine similarity, exact search over every vector)."""
    return await service.search(body.query, body.top_k, body.min_score)


@router.get("/index-status", response_model=IndexStatus, summary="State of the vector index")
async def index_status(service: SemanticDep):
    """How many files are indexed, whether the model is installed (and which packages
    are missing if not), loaded in the server process, and whether the index file
    exists. Without the model, search and embedding answer 503 naming the package."""
    return await run_in_threadpool(service.status)


@router.post(
    "/embed-batch",
    response_model=EmbedBatchResponse,
    summary="Index the metadata of many files",
    responses=error_responses(400, 422, 429, 503),
)
async def embed_batch(body: EmbedBatchRequest, service: SemanticDep, pool: PoolDep):
    """Turn each record into prose, embed it (in worker processes, in chunks, any number
    of records) and store it; a record already indexed is replaced. Records with nothing
    to embed are listed in ``errors``."""
    count, errors = await service.embed_items(body.items, pool)
    return {"embedded_count": count, "total_indexed": len(service.index), "errors": errors}


@router.post(
    "/embed",
    response_model=EmbedResponse,
    summary="Index the metadata of one file",
    responses=error_responses(400, 422, 429, 503),
)
async def embed_one(body: EmbedRequest, service: SemanticDep, pool: PoolDep):
    """Like embed-batch for a single record; 400 when it has nothing to embed."""
    count, _ = await service.embed_items([body.metadata], pool)
    if count == 0:
        raise BadRequest("No embeddable text from metadata")
    return {"file_id": body.metadata.file_id, "success": True, "total_indexed": len(service.index)}

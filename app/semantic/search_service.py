"""Semantic search: embed metadata in worker processes, search in the server process."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from starlette.concurrency import run_in_threadpool

from app.errors import BadRequest
from app.semantic import embedder
from app.semantic.models import FileMetadata
from app.semantic.text_builder import build_text
from app.semantic.vector_index import VectorIndex

#: Records embedded per worker job: bounds one job's time and memory.
CHUNK = 256
#: Memory of one embedding job: the model (~90 MB) plus activations of a chunk.
EMBED_JOB_BYTES = 400 * 1024 * 1024


def embed_texts(texts: list[str]) -> np.ndarray:
    """Worker job: unit embeddings of ``texts`` (the model loads once per process)."""
    return embedder.get_embedder().encode(texts)


class SemanticService:
    def __init__(self, directory) -> None:
        self.index = VectorIndex(directory, embedder.EMBEDDING_DIM)
        self._write_lock = asyncio.Lock()

    async def embed_items(self, items: list[FileMetadata], pool) -> tuple[int, list[str]]:
        """Embed and index; returns (embedded_count, errors)."""
        if not items:
            raise BadRequest("items list is required")
        embedder.require_model()
        errors, ids, texts = [], [], []
        for item in items:
            text = build_text(item)
            if not text:
                errors.append(f"{item.file_id}: no embeddable text")
                continue
            ids.append(item.file_id)
            texts.append(text)
        if not texts:
            return 0, errors
        # Chunks run on every worker at once (one core each), never more at a time
        # than there are workers, so a huge batch does not flood the pool's queue.
        gate = asyncio.Semaphore(max(1, pool.workers))

        async def embed_chunk(chunk: list[str]) -> np.ndarray:
            async with gate:
                return await pool.run(embed_texts, chunk, estimate_bytes=EMBED_JOB_BYTES)

        parts = await asyncio.gather(
            *(embed_chunk(texts[i : i + CHUNK]) for i in range(0, len(texts), CHUNK))
        )
        vectors = np.concatenate(parts)
        async with self._write_lock:
            await run_in_threadpool(self.index.upsert, ids, vectors, texts)
        return len(texts), errors

    async def search(self, query: str, top_k: int, min_score: float) -> dict:
        text = query.strip()
        if not text:
            raise BadRequest("query must contain some text, not only spaces")
        embedder.require_model()
        if len(self.index) == 0:
            await run_in_threadpool(self.index.reload)
        if len(self.index) == 0:
            return {
                "results": [],
                "query": query,
                "embed_time_ms": 0.0,
                "search_time_ms": 0.0,
                "total_indexed": 0,
            }
        t0 = time.perf_counter()
        vector = (await run_in_threadpool(embedder.get_embedder().encode, [text]))[0]
        t1 = time.perf_counter()
        hits = await run_in_threadpool(self.index.search, vector, top_k, min_score)
        t2 = time.perf_counter()
        return {
            "results": [
                {"file_id": i, "score": round(s, 6), "matched_text": t} for i, s, t in hits
            ],
            "query": query,
            "embed_time_ms": round((t1 - t0) * 1000, 1),
            "search_time_ms": round((t2 - t1) * 1000, 1),
            "total_indexed": len(self.index),
        }

    def status(self) -> dict:
        self.index.reload()
        missing = embedder.missing_packages()
        return {
            "total_indexed": len(self.index),
            "model_loaded": embedder.is_loaded(),
            "model_available": not missing,
            "missing_packages": missing,
            "index_file_exists": self.index.file_exists,
            "model_name": embedder.MODEL_NAME,
            "embedding_dim": embedder.EMBEDDING_DIM,
        }

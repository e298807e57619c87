"""FastAPI dependencies of both apps, as ``Annotated`` aliases: the one place routes
get the settings, storage, worker pool and services from.

A route writes ``settings: SettingsDep``; the alias carries ``Depends(...)``. The
services live on ``app.state`` (made by each app's lifespan); their classes are
named here only for type checkers, so the light MAST proxy never imports the
engine's worker pool or semantic search, nor the engine the proxy's services.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.storage.provider import StorageProvider

if TYPE_CHECKING:
    from app.mast.download_jobs import DownloadManager
    from app.mast.mast_service import MastService
    from app.semantic.search_service import SemanticService
    from app.workers import WorkerPool


def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_storage(request: Request) -> StorageProvider:
    return cast(StorageProvider, request.app.state.storage)


def get_pool(request: Request) -> WorkerPool:
    return cast("WorkerPool", request.app.state.pool)


def get_mast(request: Request) -> MastService:
    return cast("MastService", request.app.state.mast)


def get_downloads(request: Request) -> DownloadManager:
    return cast("DownloadManager", request.app.state.downloads)


def get_semantic(request: Request) -> SemanticService:
    return cast("SemanticService", request.app.state.semantic)


SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[StorageProvider, Depends(get_storage)]
PoolDep = Annotated["WorkerPool", Depends(get_pool)]
MastDep = Annotated["MastService", Depends(get_mast)]
DownloadsDep = Annotated["DownloadManager", Depends(get_downloads)]
SemanticDep = Annotated["SemanticService", Depends(get_semantic)]


async def resolve_file(storage: StorageProvider, key: str) -> Path:
    """The local file for a storage key, resolved off the event loop (S3 may download)."""
    return await run_in_threadpool(storage.local_path, key)


async def resolve_files(storage: StorageProvider, keys: list[str]) -> list[Path]:
    """Local files for several keys, in order, resolved off the event loop."""
    return await run_in_threadpool(lambda: [storage.local_path(k) for k in keys])

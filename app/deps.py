"""FastAPI dependencies shared by the routes of both apps."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.storage.provider import StorageProvider


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_storage(request: Request) -> StorageProvider:
    return request.app.state.storage


def get_pool(request: Request):
    return request.app.state.pool


async def resolve_file(storage: StorageProvider, key: str) -> Path:
    """The local file for a storage key, resolved off the event loop (S3 may download)."""
    return await run_in_threadpool(storage.local_path, key)


async def resolve_files(storage: StorageProvider, keys: list[str]) -> list[Path]:
    """Local files for several keys, in order, resolved off the event loop."""
    return await run_in_threadpool(lambda: [storage.local_path(k) for k in keys])

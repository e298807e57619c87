"""Build the storage provider the settings ask for."""

from __future__ import annotations

from app.config import Settings
from app.storage.provider import StorageProvider


def create_storage(settings: Settings) -> StorageProvider:
    if settings.STORAGE_PROVIDER == "s3":
        from app.storage.s3_storage import S3Storage, make_s3_client
        from app.storage.temp_cache import TempCache

        client = make_s3_client(
            settings.S3_ENDPOINT,
            settings.S3_REGION,
            settings.S3_ACCESS_KEY,
            settings.S3_SECRET_KEY,
            path_style=settings.S3_FORCE_PATH_STYLE,
        )
        cache = TempCache(settings.STORAGE_TEMP_CACHE_DIR, settings.STORAGE_TEMP_CACHE_MAX_BYTES)
        cache.sweep()  # what a process that died left behind
        return S3Storage(
            settings.S3_BUCKET_NAME, client, cache, max_object_bytes=settings.max_fits_file_bytes
        )
    from app.storage.local_storage import LocalStorage

    return LocalStorage(settings.STORAGE_BASE_PATH)

"""Storage keys to bytes and files, on local disk or S3 (DESIGN.md principle 4)."""

from app.storage.factory import create_storage
from app.storage.provider import FileStat, StorageProvider

__all__ = ["FileStat", "StorageProvider", "create_storage"]

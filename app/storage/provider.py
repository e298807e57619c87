"""The storage interface both providers implement."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileStat:
    """Size in bytes and modification time (POSIX seconds) of a stored file."""

    size: int
    mtime: float


class StorageProvider(ABC):
    """Maps storage keys (relative, ``/``-separated) to bytes and local files.

    Every method validates its key with :func:`app.storage.helpers.normalize_key`
    and raises :class:`app.errors.AccessDenied` (403), :class:`NotFound` (404) or
    :class:`BadRequest` (400, a directory) as DESIGN.md principle 4 says.
    """

    name: str = "abstract"

    @abstractmethod
    def local_path(self, key: str) -> Path:
        """A local file holding the object's bytes (S3: a cached download)."""

    @abstractmethod
    def stat(self, key: str) -> FileStat:
        """Size and modification time; raises NotFound / BadRequest."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True when ``key`` names an existing file."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically (readers never see half a file)."""

    @abstractmethod
    def put_file(self, key: str, source: Path) -> None:
        """Store the local file ``source`` under ``key`` (no-op if it is already there)."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Delete ``key``; False when it did not exist."""

    @abstractmethod
    def list_keys(self, prefix: str = "") -> list[str]:
        """All keys below ``prefix`` (a folder key, or "" for everything), sorted."""

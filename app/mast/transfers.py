"""How one file of a job gets from the archive to the disk: one strategy per source.

A download job does not care where bytes come from; it hands each file to its
:class:`TransferStrategy`, in a thread, and records what the strategy reports:

- :class:`HttpTransfers`: MAST's download URL with byte ranges; a stopped file
  keeps its ``.part`` and a resume continues from its last byte.
- :class:`S3Transfers`: the archive's public bucket in parallel ranged parts,
  pinned to the object's ETag; a stopped file starts again from zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from app.mast.http_transfer import Connection, FileTarget, download_file, fetch_size
from app.mast.job_store import FileRow
from app.mast.mast_service import MastService, default_archive_key
from app.mast.s3_transfer import describe_object, download_object
from app.mast.stopping import StopSignal
from app.mast.transport import RedirectPolicy

OnSize = Callable[[int, bool], None]  # (total bytes, whether the count restarts at 0)
OnBytes = Callable[[int], None]


@dataclass(frozen=True)
class FileTransfer:
    """One file to bring to ``final_path``, and where to report how it goes."""

    row: FileRow
    final_path: Path
    on_size: OnSize
    on_bytes: OnBytes
    stop: StopSignal


class TransferStrategy(Protocol):
    """Fetches one file of a job; blocking, called in a transfer thread."""

    @property
    def parallel_files(self) -> int:
        """Files of one job transferred at once."""
        ...

    @property
    def keeps_partial_files(self) -> bool:
        """Whether a stopped file's ``.part`` is worth keeping (resume continues it)."""
        ...

    def transfer(self, file: FileTransfer) -> int:
        """Bring the file to its place; returns its size. Raises ``DownloadStopped``
        or ``DownloadFailed``."""
        ...


@dataclass(frozen=True)
class HttpTransfers:
    mast: MastService
    policy: RedirectPolicy
    parallel_files: int = 3
    keeps_partial_files: bool = True

    def transfer(self, file: FileTransfer) -> int:
        connection = Connection(self.policy, file.stop)
        url = self.mast.download_url(file.row.uri)
        size = file.row.total_bytes or fetch_size(url, connection)
        file.on_size(size, False)
        return download_file(
            FileTarget(url, file.final_path, size), connection, on_bytes=file.on_bytes
        )


@dataclass(frozen=True)
class S3Transfers:
    client: Any  # a boto3 S3 client (anonymous)
    bucket: str
    obs_id: str
    parallel_files: int = 2
    keeps_partial_files: bool = False

    def transfer(self, file: FileTransfer) -> int:
        key = file.row.archive_key or default_archive_key(self.obs_id, file.row.filename)
        obj = describe_object(self.client, self.bucket, key)
        file.on_size(obj.size, True)
        return download_object(
            self.client, obj, file.final_path, on_bytes=file.on_bytes, should_stop=file.stop
        )

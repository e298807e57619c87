"""One file over HTTP with byte ranges: resumable, verified, never half-written.

The file grows in ``<name>.part`` next to its final place. A download resumes
from the ``.part`` file's size with a ``Range: bytes=<offset>-`` request, so a
dropped connection, a pause or a restart costs nothing already received. Only a
``.part`` of exactly the announced size is flushed to disk and renamed to the
final name; a server that ignores ranges (200 instead of 206) restarts the file
from zero rather than corrupting it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

YIELD_EVERY = 1 << 21
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class DownloadStopped(Exception):
    """Raised when a pause or cancel was requested; the .part file is kept."""


class DownloadFailed(Exception):
    """A permanent failure with a message for the user."""


@dataclass
class FileTarget:
    url: str
    final_path: Path
    expected_size: int = 0  # 0: unknown, learnt from the server

    @property
    def part_path(self) -> Path:
        return self.final_path.with_name(self.final_path.name + ".part")


def describe_os_error(exc: OSError, path: Path) -> str:
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return f"Cannot create {path.name}: something that is not a folder is in the way"
    if exc.errno == errno.ENOSPC:
        return f"Disk full while writing {path.name}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Cannot write {path.name}: the download directory is not writable"
    return f"Cannot write {path.name}: {exc.strerror or exc}"


async def fetch_size(session, url: str, timeout) -> int:
    """The file's size from a HEAD request (0 if the server does not say)."""
    async with session.head(url, timeout=timeout, allow_redirects=True) as response:
        if response.status == 404:
            raise DownloadFailed(f"Not found on MAST: {url.rsplit('=', 1)[-1]}")
        if response.status >= 400:
            raise ConnectionError(f"HEAD answered {response.status}")
        return int(response.headers.get("Content-Length", 0) or 0)


async def download_file(session, target: FileTarget, *,
                        on_bytes: Callable[[int], None],
                        should_stop: Callable[[], bool],
                        retries: int = 3, backoff: float = 0.5, timeout=None) -> int:
    """Download ``target``; returns its size. Calls ``on_bytes(n)`` as bytes arrive.

    Transient failures (connection drops, 5xx) are retried with exponential
    backoff, the retry budget renewing whenever bytes were gained. Raises
    :class:`DownloadStopped`, or :class:`DownloadFailed` with a readable reason.
    """
    import aiohttp

    part = target.part_path
    size = target.expected_size
    attempts = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        if size and offset > size:  # a stale .part of another version: start again
            part.unlink()
            on_bytes(-offset)
            offset = 0
        if size and offset == size:
            break
        if should_stop():
            raise DownloadStopped()
        gained = 0
        try:
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            async with session.get(target.url, headers=headers, timeout=timeout) as response:
                if response.status == 416 and size and offset >= size:
                    break
                if response.status == 404:
                    raise DownloadFailed(f"Not found on MAST: {target.final_path.name}")
                if response.status in (401, 403):
                    raise DownloadFailed(f"MAST refused {target.final_path.name} "
                                         f"(HTTP {response.status}); is it proprietary?")
                if response.status >= 400:
                    raise ConnectionError(f"MAST answered HTTP {response.status}")
                if offset and response.status == 200:  # range ignored: restart cleanly
                    part.unlink(missing_ok=True)
                    on_bytes(-offset)
                    offset = 0
                announced = _total_size(response, offset)
                if announced:  # the server is the truth (catalogue sizes can be stale)
                    size = announced
                flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if offset else os.O_TRUNC)
                try:
                    fd = os.open(part, flags, 0o644)
                except OSError as exc:
                    raise DownloadFailed(describe_os_error(exc, target.final_path)) from None
                try:
                    # Chunks as the socket delivers them, written straight to the file
                    # descriptor: no re-buffering in Python (this loop is the hot path).
                    since_yield = 0
                    async for chunk in response.content.iter_any():
                        view = memoryview(chunk)
                        while view:
                            written = os.write(fd, view)
                            view = view[written:]
                        gained += len(chunk)
                        on_bytes(len(chunk))
                        if should_stop():
                            raise DownloadStopped()
                        since_yield += len(chunk)
                        if since_yield >= YIELD_EVERY:
                            # On a fast link the reader rarely waits; let other requests
                            # (progress polls, /health) run.
                            since_yield = 0
                            await asyncio.sleep(0)
                except OSError as exc:
                    raise DownloadFailed(describe_os_error(exc, target.final_path)) from None
                finally:
                    os.close(fd)
            if not size:
                size = offset + gained
        except (DownloadStopped, DownloadFailed):
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
            attempts = 0 if gained else attempts + 1
            if attempts > retries:
                raise DownloadFailed(f"{target.final_path.name}: {exc or type(exc).__name__} "
                                     f"(after {retries} retries)") from None
            await asyncio.sleep(backoff * (2 ** max(0, attempts - 1)))
            continue
        current = part.stat().st_size if part.exists() else 0
        if size and current == size:
            break
        if size and current > size:
            part.unlink()
            on_bytes(-current)
            raise DownloadFailed(f"{target.final_path.name}: received more bytes than announced")
        # Short body without an error: try again from where it stopped.
        attempts = 0 if gained else attempts + 1
        if attempts > retries:
            raise DownloadFailed(f"{target.final_path.name}: incomplete after {retries} retries")
    await asyncio.to_thread(_finalise, part, target.final_path)
    return size


def _total_size(response, offset: int) -> int:
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match and match.group(3) != "*":
            return int(match.group(3))
    length = response.headers.get("Content-Length")
    if length:
        return int(length) + (offset if response.status == 206 else 0)
    return 0


def _finalise(part: Path, final: Path) -> None:
    """fsync the .part file and rename it into place atomically."""
    try:
        with open(part, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(part, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise DownloadFailed(describe_os_error(exc, final)) from None



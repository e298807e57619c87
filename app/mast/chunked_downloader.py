"""One file over HTTP with byte ranges: resumable, verified, never half-written.

The file grows in ``<name>.part`` next to its final place. A download resumes
from the ``.part`` file's size with a ``Range: bytes=<offset>-`` request, so a
dropped connection, a pause or a restart costs nothing already received. Only a
``.part`` of exactly the announced size is flushed to disk and renamed to the
final name; a server that ignores ranges (200 instead of 206) restarts the file
from zero rather than corrupting it.

This is blocking code: each file runs in a thread of its own (see
:mod:`app.mast.http_client` for why), reading into one reusable buffer.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from app.mast import http_client
from app.mast.part_file import (
    DownloadFailed,
    DownloadStopped,
    PartFile,
    describe_os_error,
    part_path,
)

__all__ = ["DownloadFailed", "DownloadStopped", "FileTarget", "describe_os_error",
           "download_file", "fetch_size"]

BUFFER_BYTES = 1024 * 1024
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 120.0
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass
class FileTarget:
    url: str
    final_path: Path
    expected_size: int = 0  # 0: unknown, learnt from the server

    @property
    def part_path(self) -> Path:
        return part_path(self.final_path)


def _refusal(status: int, name: str) -> DownloadFailed | None:
    """The permanent failure an HTTP status means, if it means one."""
    if status == 404:
        return DownloadFailed(f"Not found on MAST: {name}")
    if status in (401, 403):
        return DownloadFailed(f"MAST refused {name} (HTTP {status}); is it proprietary?")
    return None


def fetch_size(url: str, *, should_stop: Callable[[], bool] = lambda: False) -> int:
    """The file's size from a HEAD request (0 if the server does not say)."""
    try:
        with http_client.request(url, method="HEAD", connect_timeout=CONNECT_TIMEOUT,
                                 read_timeout=READ_TIMEOUT, should_stop=should_stop) as response:
            refusal = _refusal(response.status, url.rsplit("=", 1)[-1])
            if refusal:
                raise refusal
            if response.status >= 400:
                raise DownloadFailed(f"MAST answered HTTP {response.status} to HEAD {url}")
            return int(response.headers.get("content-length", 0) or 0)
    except http_client.Stopped:
        raise DownloadStopped() from None
    except (http_client.HttpError, ValueError) as exc:
        raise DownloadFailed(f"Cannot reach MAST: {exc}") from None


def download_file(target: FileTarget, *, on_bytes: Callable[[int], None],
                  should_stop: Callable[[], bool], retries: int = 3,
                  backoff: float = 0.5) -> int:
    """Download ``target``; returns its size. Calls ``on_bytes(n)`` as bytes arrive.

    Transient failures (connection drops, 5xx) are retried with exponential
    backoff, the retry budget renewing whenever bytes were gained. Raises
    :class:`DownloadStopped`, or :class:`DownloadFailed` with a readable reason.
    """
    part = target.part_path
    name = target.final_path.name
    size = target.expected_size
    buffer = memoryview(bytearray(BUFFER_BYTES))
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
            with http_client.request(target.url, headers=headers,
                                     connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                                     should_stop=should_stop) as response:
                if response.status == 416 and size and offset >= size:
                    break
                refusal = _refusal(response.status, name)
                if refusal:
                    raise refusal
                if response.status >= 400:
                    raise http_client.HttpError(f"MAST answered HTTP {response.status}")
                if offset and response.status == 200:  # range ignored: restart cleanly
                    part.unlink(missing_ok=True)
                    on_bytes(-offset)
                    offset = 0
                announced = _total_size(response, offset)
                if announced:  # the server is the truth (catalogue sizes can be stale)
                    size = announced
                with PartFile(target.final_path, offset=offset) as out:
                    while True:
                        n = response.readinto(buffer)
                        if not n:
                            break
                        out.write(buffer[:n])
                        gained += n
                        on_bytes(n)
                        if should_stop():
                            raise DownloadStopped()
            if not size:
                size = offset + gained
        except http_client.Stopped:
            raise DownloadStopped() from None
        except http_client.HttpError as exc:
            attempts = 0 if gained else attempts + 1
            if attempts > retries:
                raise DownloadFailed(f"{name}: {exc} (after {retries} retries)") from None
            time.sleep(backoff * (2 ** max(0, attempts - 1)))
            continue
        current = part.stat().st_size if part.exists() else 0
        if current == size:
            break
        if size and current > size:
            part.unlink()
            on_bytes(-current)
            raise DownloadFailed(f"{name}: received more bytes than announced")
        # Short body without an error: try again from where it stopped.
        attempts = 0 if gained else attempts + 1
        if attempts > retries:
            raise DownloadFailed(f"{name}: incomplete after {retries} retries")
    with PartFile(target.final_path, offset=size) as out:
        out.finalise()
    return size


def _total_size(response: http_client.Response, offset: int) -> int:
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if match and match.group(3) != "*":
            return int(match.group(3))
    if response.remaining is not None:
        return response.remaining + (offset if response.status == 206 else 0)
    return 0

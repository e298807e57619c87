"""One file over HTTP with byte ranges: resumable, verified, never half-written.

The file grows in ``<name>.part`` next to its final place. A download resumes
from the ``.part`` file's size with a ``Range: bytes=<offset>-`` request, so a
dropped connection, a pause or a restart costs nothing already received. Before
a byte of an answer is written, its framing is checked: a 206 must start at the
requested offset and agree with its ``Content-Length``; a body that runs past
what was declared is taken back out of the file. Only a ``.part`` of exactly the
announced size is flushed to disk and renamed to the final name; a server that
ignores ranges (200 instead of 206) restarts the file from zero.

This is blocking code: each file runs in a thread of its own, so a fast download
never delays the proxy's event loop.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.mast import transport
from app.mast.part_file import (
    DownloadFailed,
    DownloadStopped,
    PartFile,
    part_path,
    size_or_zero,
)
from app.mast.stopping import StopSignal, never

READ_BYTES = 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)$")

ShouldStop = Callable[[], bool]
OnBytes = Callable[[int], None]


@dataclass
class FileTarget:
    url: str
    final_path: Path
    expected_size: int = 0  # 0: unknown, learnt from the server

    @property
    def part_path(self) -> Path:
        return part_path(self.final_path)


@dataclass(frozen=True)
class Connection:
    """How a transfer reaches the archive: where it may go, and how it is stopped."""

    policy: transport.RedirectPolicy
    stop: ShouldStop = never

    def request(
        self, url: str, *, method: str = "GET", range_from: int | None = None
    ) -> transport.Response:
        signal = self.stop if isinstance(self.stop, StopSignal) else None
        return transport.request(
            url,
            policy=self.policy,
            method=method,
            range_from=range_from,
            read_timeout=transport.READ_TIMEOUT,
            should_stop=self.stop,
            on_abort=None if signal is None else signal.register,
        )


def _refusal(status: int, name: str) -> DownloadFailed | None:
    """The permanent failure an HTTP status means, if it means one."""
    if status == 404:
        return DownloadFailed(f"Not found on MAST: {name}")
    if status in (401, 403):
        return DownloadFailed(f"MAST refused {name} (HTTP {status}); is it proprietary?")
    return None


def fetch_size(url: str, connection: Connection) -> int:
    """The file's size from a HEAD request (0 if the server does not say)."""
    try:
        with connection.request(url, method="HEAD") as response:
            refusal = _refusal(response.status, url.rsplit("=", 1)[-1])
            if refusal:
                raise refusal
            if response.status >= 400:
                raise DownloadFailed(f"MAST answered HTTP {response.status} to HEAD {url}")
            length = response.headers.get("content-length", "")
            return int(length) if length.isdigit() else 0
    except transport.Stopped:
        raise DownloadStopped() from None
    except (transport.TransportError, transport.Refused) as exc:
        raise DownloadFailed(f"Cannot reach MAST: {exc}") from None


class _Retries:
    """Exponential backoff; the budget renews whenever an attempt gained bytes."""

    def __init__(self, name: str, retries: int, backoff: float) -> None:
        self.name, self.retries, self.backoff = name, retries, backoff
        self.failures = 0

    def after(self, gained: int, reason: str) -> None:
        """Sleep before the next attempt, or raise :class:`DownloadFailed` when spent."""
        self.failures = 0 if gained else self.failures + 1
        if self.failures > self.retries:
            raise DownloadFailed(f"{self.name}: {reason} (after {self.retries} retries)")
        time.sleep(self.backoff * (2 ** max(0, self.failures - 1)))


@dataclass
class _Attempt:
    """What one request added to the ``.part`` file."""

    offset: int
    gained: int = 0


def download_file(
    target: FileTarget,
    connection: Connection,
    *,
    on_bytes: OnBytes,
    retries: int = 3,
    backoff: float = 0.5,
) -> int:
    """Download ``target``; returns its size. Calls ``on_bytes(n)`` as bytes arrive
    (negative when bytes are discarded).

    Transient failures (connection drops, 5xx, malformed answers) are retried.
    Raises :class:`DownloadStopped`, or :class:`DownloadFailed` with a readable reason.
    """
    name = target.final_path.name
    size = target.expected_size
    retry = _Retries(name, retries, backoff)
    while True:
        offset = _resume_offset(target.part_path, size, on_bytes)
        if size and offset == size:
            break
        if connection.stop():
            raise DownloadStopped()
        attempt = _Attempt(offset)
        try:
            size = _fetch(target, connection, attempt, size, on_bytes)
        except transport.Stopped:
            raise DownloadStopped() from None
        except transport.Refused as exc:
            raise DownloadFailed(f"{name}: {exc}") from None
        except transport.TransportError as exc:
            retry.after(attempt.gained, str(exc))
            continue
        current = size_or_zero(target.part_path)
        if not size:  # no length was ever declared: the body's end is the file's end
            size = current
        if current == size:
            break
        retry.after(attempt.gained, "the server sent less than it announced")
    with PartFile(target.final_path, offset=size) as out:
        out.finalise()
    return size


def _resume_offset(part: Path, size: int, on_bytes: OnBytes) -> int:
    """Where to continue: the ``.part`` file's size (a longer stale one is discarded)."""
    offset = size_or_zero(part)
    if size and offset > size:
        part.unlink()
        on_bytes(-offset)
        return 0
    return offset


def _fetch(
    target: FileTarget, connection: Connection, attempt: _Attempt, size: int, on_bytes: OnBytes
) -> int:
    """One request from ``attempt.offset``; returns the file's size as now known."""
    name = target.final_path.name
    with connection.request(target.url, range_from=attempt.offset or None) as response:
        if response.status == 416 and size and attempt.offset >= size:
            return size
        refusal = _refusal(response.status, name)
        if refusal:
            raise refusal
        if response.status >= 400:
            raise transport.TransportError(f"MAST answered HTTP {response.status}")
        if response.status not in (200, 206):
            raise transport.TransportError(f"unexpected HTTP {response.status}")
        if attempt.offset and response.status == 200:  # range ignored: restart cleanly
            target.part_path.unlink(missing_ok=True)
            on_bytes(-attempt.offset)
            attempt.offset = 0
        total = _declared_total(response, attempt.offset)
        size = total or size  # the server is the truth (catalogue sizes can be stale)
        limit = size - attempt.offset if total else None
        _copy_body(response, target, attempt, limit, on_bytes, connection.stop)
    return size


def _declared_total(response: transport.Response, offset: int) -> int:
    """The whole file's size the answer declares (0: not said); bad framing raises."""
    length = response.content_length
    if response.status == 200:
        return length or 0
    match = _CONTENT_RANGE.match(response.headers.get("content-range", "").strip())
    if not match:
        raise transport.TransportError("a 206 answer without a valid Content-Range")
    first, last, total_text = int(match.group(1)), int(match.group(2)), match.group(3)
    if first != offset:
        raise transport.TransportError(
            f"asked for bytes from {offset}, the server sent bytes from {first}"
        )
    total = 0 if total_text == "*" else int(total_text)
    if last < first or (total and last >= total):
        raise transport.TransportError("an impossible Content-Range")
    if length is not None and length != last - first + 1:
        raise transport.TransportError("Content-Length and Content-Range disagree")
    return total


def _copy_body(
    response: transport.Response,
    target: FileTarget,
    attempt: _Attempt,
    limit: int | None,
    on_bytes: OnBytes,
    should_stop: ShouldStop,
) -> None:
    """Append the body to the ``.part`` file; a body longer than ``limit`` is undone."""
    with PartFile(target.final_path, offset=attempt.offset) as out:
        while True:
            data = response.read(READ_BYTES)
            if not data:
                return
            if limit is not None and attempt.gained + len(data) > limit:
                break
            out.write(data)
            attempt.gained += len(data)
            on_bytes(len(data))
            if should_stop():
                raise DownloadStopped()
    # The server sent more than it declared: none of this answer is trusted.
    os.truncate(target.part_path, attempt.offset)
    on_bytes(-attempt.gained)
    attempt.gained = 0
    raise transport.TransportError("the server sent more bytes than it announced")

"""A download's ``.part`` file: written as bytes arrive, renamed only when whole.

Both download paths (HTTP and S3) write through :class:`PartFile`. While data
arrives, the kernel is asked every few megabytes to start writing it to disk
(``sync_file_range`` on Linux), so the final ``fsync`` that makes a finished
file durable has little left to do: disk and network work at the same time
instead of one after the other. ``finalise`` then fsyncs the file, renames it
to its final name atomically and fsyncs the directory, so after a crash a
final name holds a complete file or does not exist at all.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

T = TypeVar("T")
BytesLike = bytes | bytearray | memoryview

WRITEBACK_EVERY = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2


class DownloadStopped(Exception):
    """Raised when a pause or cancel was requested; the .part file is kept."""


class DownloadFailed(Exception):
    """A permanent failure with a message for the user."""


def part_path(final_path: Path) -> Path:
    return final_path.with_name(final_path.name + ".part")


def size_or_zero(path: Path) -> int:
    """A file's size; 0 when it does not exist (a transfer not started yet)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def describe_os_error(exc: OSError, path: Path) -> str:
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return f"Cannot create {path.name}: something that is not a folder is in the way"
    if exc.errno == errno.ENOSPC:
        return f"Disk full while writing {path.name}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Cannot write {path.name}: the download directory is not writable"
    return f"Cannot write {path.name}: {exc.strerror or exc}"


def _load_sync_file_range() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return cast(Callable[..., int], function)


_sync_file_range = _load_sync_file_range()


class PartFile:
    """``<final>.part`` opened for writing; OSErrors come out as :class:`DownloadFailed`.

    ``offset`` > 0 appends to an existing partial file (a resumed download);
    ``size`` preallocates a file that parts will be ``pwrite``-n into.
    """

    def __init__(self, final_path: Path, *, offset: int = 0, size: int | None = None) -> None:
        self.final_path = final_path
        self.path = part_path(final_path)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if offset else os.O_TRUNC)
        self.fd = self._guard(os.open, self.path, flags, 0o644)
        self.position = offset
        self._flushed_to = offset
        self._pending = 0
        if size is not None:
            try:
                self._guard(os.ftruncate, self.fd, size)
            except DownloadFailed:
                self.close()
                raise

    def _guard(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return function(*args)
        except OSError as exc:
            raise DownloadFailed(describe_os_error(exc, self.final_path)) from None

    def write(self, data: BytesLike) -> None:
        """Append ``data`` (bytes-like) in full."""
        view = memoryview(data)
        while view:
            written = self._guard(os.write, self.fd, view)
            view = view[written:]
        self.position += len(data)
        if self.position - self._flushed_to >= WRITEBACK_EVERY:
            self._start_writeback(self._flushed_to, self.position - self._flushed_to)
            self._flushed_to = self.position

    def pwrite(self, data: BytesLike, offset: int) -> None:
        """Write ``data`` in full at ``offset`` (parallel parts of a preallocated file)."""
        view = memoryview(data)
        while view:
            written = self._guard(os.pwrite, self.fd, view, offset)
            view, offset = view[written:], offset + written
        self._start_writeback(offset - len(data), len(data))

    def _start_writeback(self, start: int, length: int) -> None:
        if _sync_file_range is not None and length > 0:
            # Only a hint: it starts the disk writes now and does not wait for them.
            _sync_file_range(self.fd, start, length, _SYNC_FILE_RANGE_WRITE)

    def size(self) -> int:
        size: int = self._guard(os.fstat, self.fd).st_size
        return size

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> PartFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def finalise(self) -> None:
        """fsync, close and atomically rename to the final name (then fsync the folder)."""
        self._guard(os.fsync, self.fd)
        self.close()
        self._guard(os.replace, self.path, self.final_path)
        dir_fd = self._guard(os.open, self.final_path.parent, os.O_RDONLY)
        try:
            self._guard(os.fsync, dir_fd)
        finally:
            os.close(dir_fd)


@contextmanager
def exclusive_folder(folder: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (one download writing into it at a time).

    Two transfers appending to the same ``.part`` file would interleave their bytes;
    this lock, taken by every download job and synchronous download for its
    observation folder, makes that impossible across threads and worker processes.
    The kernel releases it when the process dies, so a crash never leaves it held.
    """
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DownloadFailed(
                f"Another download of {what} is running; wait for it to "
                f"finish (or pause it) and try again"
            ) from None
        yield
    finally:
        os.close(fd)

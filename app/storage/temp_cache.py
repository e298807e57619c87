"""A bounded local LRU of downloaded objects (S3 reads go through it).

* Entries are files named by a hash of their identity (bucket, key, ETag), so a
  changed object is a new entry and a stale one simply ages out.
* Writes are atomic: a download goes to a temporary file that is renamed into
  place only when complete, so a reader never sees half an object.
* Safe under concurrent readers in several processes: a per-entry lock file
  makes one process download while the others wait, and an eviction lock
  serialises evictions. An evicted file that another process still has open
  stays readable (POSIX unlink semantics); entries used in the last
  ``grace_seconds`` are evicted only when nothing else can be.
* Entries in use are **pinned**: :meth:`TempCache.get_or_fetch` can hand back
  its entry with a shared lock held on the entry's lock file (until the caller's
  ``ExitStack`` closes), and eviction skips every entry whose lock it cannot take
  at once. So a file resolved for a request stays on disk until the request ends,
  even if other requests need the room meanwhile.
* Recency is the file's mtime, touched on every hit.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from app.storage.helpers import atomic_target


@contextmanager
def flock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if needed), held for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def _held(handle: IO[bytes]) -> Iterator[None]:
    """Close ``handle`` (releasing its lock) when the block ends."""
    try:
        yield
    finally:
        handle.close()


#: Partial files and orphan locks older than this are left by a dead process.
STALE_SECONDS = 600.0


class TempCache:
    """An on-disk LRU bounded to ``max_bytes``."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int,
        grace_seconds: float = 30.0,
        max_entries: int | None = None,
        ttl_seconds: float | None = None,
    ):
        self.directory = Path(directory)
        self.max_bytes = int(max_bytes)
        self.grace_seconds = grace_seconds
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.directory.mkdir(parents=True, exist_ok=True)
        self._locks = self.directory / ".locks"
        self._locks.mkdir(exist_ok=True)

    @staticmethod
    def entry_name(identity: str, suffix: str = "") -> str:
        digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:40]
        return digest + suffix

    def path_for(self, identity: str, suffix: str = "") -> Path:
        return self.directory / self.entry_name(identity, suffix)

    def get_or_fetch(
        self,
        identity: str,
        fetch: Callable[[Path], None],
        suffix: str = "",
        expected_size: int | None = None,
        pin: ExitStack | None = None,
    ) -> Path:
        """The cached file for ``identity``; ``fetch(tmp_path)`` fills it on a miss.

        With ``pin``, the entry stays pinned (never evicted) until ``pin`` closes.
        """
        target = self.path_for(identity, suffix)
        if pin is None and self._is_complete(target, expected_size):
            self._touch(target)  # a hit nobody pins: no lock needed
            return target
        lock = open(self._lock_path(target), "a+b")  # noqa: SIM115 - handed to ``pin``
        fetched = False
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_SH)
            if not self._is_complete(target, expected_size):
                # Upgrade to fetch it (or find that another process just did).
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
                if not self._is_complete(target, expected_size):
                    self._fetch(target, fetch, expected_size)
                    fetched = True
                fcntl.flock(lock.fileno(), fcntl.LOCK_SH)
            self._touch(target)
        except BaseException:
            lock.close()
            raise
        if pin is None:
            lock.close()
        else:
            pin.enter_context(_held(lock))
        if fetched:
            self.make_room(0, keep=target)
        return target

    def _fetch(
        self, target: Path, fetch: Callable[[Path], None], expected_size: int | None
    ) -> None:
        if expected_size is not None:
            self.make_room(expected_size)
        with atomic_target(target) as tmp:
            fetch(tmp)
            size = os.path.getsize(tmp)
            if expected_size is not None and size != expected_size:
                raise OSError(f"Incomplete download: got {size} of {expected_size} bytes")

    def _lock_path(self, entry: Path) -> Path:
        return self._locks / (entry.name + ".lock")

    def _evict(self, path: Path) -> bool:
        """Remove an entry unless it is pinned (or being fetched); True if removed."""
        try:
            with open(self._lock_path(path), "a+b") as lock:
                try:
                    fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                path.unlink()
                return True
        except OSError:
            return False

    def _is_complete(self, path: Path, expected_size: int | None) -> bool:
        try:
            st = path.stat()
        except OSError:
            return False
        if self.ttl_seconds is not None and time.time() - st.st_mtime > self.ttl_seconds:
            return False  # expired: unused for longer than the time to live
        return expected_size is None or st.st_size == expected_size

    @staticmethod
    def _touch(path: Path) -> None:
        try:
            os.utime(path)
        except OSError:
            pass

    def _files(self, wanted: Callable[[str], bool]) -> list[tuple[Path, int, float]]:
        """(path, size, mtime) of the directory's files whose name ``wanted`` accepts."""
        out = []
        for entry in os.scandir(self.directory):
            if not entry.is_file() or not wanted(entry.name):
                continue
            try:
                st = entry.stat()
            except OSError:
                continue
            out.append((Path(entry.path), st.st_size, st.st_mtime))
        return out

    def entries(self) -> list[tuple[Path, int, float]]:
        """The complete entries (hidden files are partial files or locks)."""
        return self._files(lambda name: not name.startswith("."))

    def _partial_files(self) -> list[tuple[Path, int, float]]:
        """Files being written (``atomic_target``'s hidden ``.*.tmp``), or left by a writer
        that was killed."""
        return self._files(lambda name: name.startswith(".") and name.endswith(".tmp"))

    def partial_bytes(self) -> int:
        return sum(size for _, size, _ in self._partial_files())

    def total_bytes(self) -> int:
        """Complete entries and partial files alike count against ``max_bytes``."""
        return sum(size for _, size, _ in self.entries()) + self.partial_bytes()

    def sweep(self, older_than: float = STALE_SECONDS) -> int:
        """Remove partial files and the locks of vanished entries not touched for
        ``older_than`` seconds (left by a process that died); returns how many."""
        now = time.time()
        removed = 0
        for path, _, mtime in self._partial_files():
            if now - mtime >= older_than:
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
        for entry in os.scandir(self._locks):
            name = entry.name
            if name == "evict.lock" or not name.endswith(".lock"):
                continue
            if (self.directory / name[: -len(".lock")]).exists():
                continue
            try:
                if now - entry.stat().st_mtime >= older_than:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue
        return removed

    def make_room(self, incoming: int, keep: Path | None = None) -> None:
        """Evict least recently used entries until ``incoming`` more bytes fit
        (and, with ``max_entries``, until the number of entries does)."""
        with flock(self._locks / "evict.lock"):
            entries = sorted(self.entries(), key=lambda e: e[2])
            # Partial files take room too (they cannot be evicted, only finished).
            total = sum(size for _, size, _ in entries) + self.partial_bytes()
            limit = self.max_bytes - incoming
            max_count = self.max_entries if self.max_entries is not None else len(entries)

            def fits() -> bool:
                return total <= limit and len(entries) <= max_count

            if fits():
                return
            now = time.time()
            # First pass spares recently used entries; the second takes what it must.
            for spare_recent in (True, False):
                for path, size, mtime in list(entries):
                    if fits():
                        return
                    if keep is not None and path == keep:
                        continue
                    if spare_recent and now - mtime < self.grace_seconds:
                        continue
                    if not self._evict(path):
                        continue
                    total -= size
                    entries.remove((path, size, mtime))

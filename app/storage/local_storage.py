"""Storage on the local disk, rooted at ``STORAGE_BASE_PATH``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from app.errors import NotFound
from app.storage.helpers import (
    atomic_target,
    is_within,
    normalize_key,
    resolve_local_file,
    safe_join,
)
from app.storage.provider import FileStat, StorageProvider


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)


class LocalStorage(StorageProvider):
    name = "local"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.realpath(root))
        self.root.mkdir(parents=True, exist_ok=True)

    def local_path(self, key: str) -> Path:
        return resolve_local_file(self.root, key)

    def stat(self, key: str) -> FileStat:
        st = self.local_path(key).stat()
        return FileStat(size=st.st_size, mtime=st.st_mtime)

    def exists(self, key: str) -> bool:
        path = safe_join(self.root, key)
        return path.is_file()

    def read_bytes(self, key: str) -> bytes:
        return self.local_path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        atomic_write_bytes(safe_join(self.root, key), data)

    def put_file(self, key: str, source: Path) -> None:
        target = safe_join(self.root, key)
        source = Path(os.path.realpath(source))
        if source == target:
            return
        with atomic_target(target) as tmp:
            shutil.copyfile(source, tmp)

    def delete(self, key: str) -> bool:
        path = safe_join(self.root, key)
        if not path.exists():
            return False
        if path.is_dir():
            raise NotFound(f"File not found: {path.name}")
        path.unlink()
        return True

    def list_keys(self, prefix: str = "") -> list[str]:
        base = safe_join(self.root, prefix) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        keys = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                full = os.path.realpath(os.path.join(dirpath, name))
                if is_within(full, self.root):
                    keys.append(os.path.relpath(full, self.root).replace(os.sep, "/"))
        return sorted(keys)

    def key_for(self, path: str | os.PathLike[str]) -> str:
        """The storage key of a local path under the root."""
        real = os.path.realpath(path)
        if not is_within(real, self.root):
            raise NotFound("Path is outside the storage root")
        return normalize_key(os.path.relpath(real, self.root).replace(os.sep, "/"))

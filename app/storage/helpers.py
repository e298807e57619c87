"""The one place where storage keys are checked and turned into local paths.

Clients send keys relative to the storage root (``mast/<obs>/<file>.fits``).
A key is refused with 403 when it is absolute, contains a ``..`` segment (also
when URL-encoded, once or several times), contains a NUL byte, or resolves,
through symlinks, to a place outside the root. A missing file is 404, a
directory is 400.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote

from app.errors import AccessDenied, BadRequest, NotFound, PayloadTooLarge

ACCESS_DENIED = "Access denied: invalid path"
#: Longest key and longest folder or file name in it (Linux PATH_MAX, NAME_MAX).
MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 255
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def _segments(text: str) -> list[str]:
    return text.replace("\\", "/").split("/")


def _is_unsafe(text: str) -> bool:
    if "\x00" in text:
        return True
    normalized = text.replace("\\", "/")
    if normalized.startswith("/") or normalized.startswith("~") or _WINDOWS_DRIVE.match(normalized):
        return True
    return any(seg == ".." for seg in _segments(normalized))


def normalize_key(key: str) -> str:
    """Check a storage key and return its canonical form (``a/b/c.fits``).

    Raises :class:`AccessDenied` for anything that could leave the root.
    """
    if not isinstance(key, str) or not key.strip():
        raise BadRequest("A file path (storage key) is required")
    # Undo URL-encoding a few times so that %2e%2e%2f and %252e... are caught too.
    probe = key
    for _ in range(4):
        if _is_unsafe(probe):
            raise AccessDenied(ACCESS_DENIED)
        decoded = unquote(probe)
        if decoded == probe:
            break
        probe = decoded
    if _is_unsafe(probe):
        raise AccessDenied(ACCESS_DENIED)
    parts = [seg for seg in _segments(key) if seg not in ("", ".")]
    if not parts:
        raise BadRequest("Path is not a file")
    canonical = "/".join(parts)
    # The filesystem's own limits (NAME_MAX, PATH_MAX): longer keys name nothing.
    if len(canonical.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES or any(
        len(seg.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES for seg in parts
    ):
        raise BadRequest(
            f"Storage key too long: at most {MAX_KEY_BYTES} bytes, "
            f"{MAX_SEGMENT_BYTES} per folder or file name"
        )
    return canonical


def is_within(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """True when ``path`` (already real) is ``root`` or lies below it."""
    path_s = os.fspath(path)
    root_s = os.fspath(root).rstrip(os.sep) or os.sep
    return path_s == root_s or path_s.startswith(root_s + os.sep)


def safe_join(root: str | os.PathLike[str], key: str) -> Path:
    """The real path of ``key`` under ``root``; 403 if it escapes (symlinks followed).

    The file need not exist (used for writes too).
    """
    real_root = os.path.realpath(root)
    canonical = normalize_key(key)
    real = os.path.realpath(os.path.join(real_root, canonical))
    if not is_within(real, real_root):
        raise AccessDenied(ACCESS_DENIED)
    return Path(real)


def resolve_local_file(root: str | os.PathLike[str], key: str) -> Path:
    """The real path of an existing regular file named by ``key`` under ``root``."""
    path = safe_join(root, key)
    if not path.exists():
        raise NotFound(f"File not found: {os.path.basename(normalize_key(key))}")
    if path.is_dir():
        raise BadRequest("Path is not a file")
    if not path.is_file():
        raise BadRequest("Path is not a regular file")
    return path


def sanitize_filename(name: str) -> str:
    """A file name safe to create in a directory: no separators, no control characters."""
    base = name.replace("\\", "/").split("/")[-1]
    base = re.sub(r"[^A-Za-z0-9._+-]", "_", base)
    base = base.lstrip(".")
    if not base:
        raise BadRequest(f"Unusable file name: {name!r}")
    return base[:255]


@contextmanager
def atomic_target(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    Readers see the old file or the complete new one, never a partial write; on
    any error the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def check_file_size(path: str | os.PathLike[str], max_bytes: int) -> None:
    """413 when the file is larger than ``max_bytes`` (CONTRACT-HEAD §10.0.3 text)."""
    check_size(os.path.getsize(path), max_bytes)


def check_size(size: int, max_bytes: int) -> None:
    """413 when ``size`` bytes are more than ``max_bytes``."""
    if size > max_bytes:
        mb = 1024 * 1024
        raise PayloadTooLarge(
            f"File too large: {size / mb:.1f}MB exceeds maximum {max_bytes / mb:.1f}MB"
        )

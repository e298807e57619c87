"""Storage keys, the local and S3 providers, and the LRU temp cache."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.errors import AccessDenied, BadRequest, NotFound
from app.storage.factory import create_storage
from app.storage.helpers import normalize_key, resolve_local_file, sanitize_filename
from app.storage.local_storage import LocalStorage
from app.storage.s3_storage import S3Storage
from app.storage.temp_cache import TempCache
from tests.support.servers import local_env, run_service, s3_storage

TRAVERSALS = [
    "/etc/passwd",
    "../etc/passwd",
    "real/../../etc/passwd",
    "real/..",
    "..\\..\\windows\\win.ini",
    "C:\\Windows\\win.ini",
    "%2e%2e/%2e%2e/etc/passwd",
    "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "%252e%252e%252fetc%252fpasswd",
    "real/m13.fits\x00.png",
    "~/secret.fits",
]


@pytest.mark.parametrize("key", TRAVERSALS)
def test_traversal_keys_are_denied(key):
    with pytest.raises(AccessDenied) as err:
        normalize_key(key)
    assert err.value.status_code == 403
    assert err.value.detail == "Access denied: invalid path"


def test_normalize_key_canonical_form():
    assert normalize_key("real//m13.fits") == "real/m13.fits"
    assert normalize_key("./real/./m13.fits") == "real/m13.fits"
    assert (
        normalize_key("mast/jw02733-o001_t001_nircam_clear-f090w/x_i2d.fits")
        == "mast/jw02733-o001_t001_nircam_clear-f090w/x_i2d.fits"
    )


def test_resolve_local_file_rules(data_root):
    assert (
        resolve_local_file(data_root, "real/m13.fits")
        == (data_root / "real" / "m13.fits").resolve()
    )
    with pytest.raises(NotFound) as missing:
        resolve_local_file(data_root, "real/nothing_here.fits")
    assert missing.value.detail == "File not found: nothing_here.fits"
    with pytest.raises(BadRequest) as directory:
        resolve_local_file(data_root, "a_directory")
    assert directory.value.detail == "Path is not a file"
    # A symlink inside the root that points outside it is refused.
    with pytest.raises(AccessDenied):
        resolve_local_file(data_root, "escape.fits")
    with pytest.raises(AccessDenied):
        resolve_local_file(data_root, "escape_dir/secret.fits")


def test_sanitize_filename():
    assert sanitize_filename("../../etc/passwd") == "passwd"
    assert sanitize_filename("jw0_nrca1_cal.fits") == "jw0_nrca1_cal.fits"
    assert sanitize_filename("a b;c.fits") == "a_b_c.fits"
    with pytest.raises(BadRequest):
        sanitize_filename("...")


def test_local_storage_round_trip(tmp_path):
    storage = LocalStorage(tmp_path / "root")
    storage.write_bytes("mast/obs/file.fits", b"abc")
    assert storage.read_bytes("mast/obs/file.fits") == b"abc"
    assert storage.exists("mast/obs/file.fits")
    assert storage.stat("mast/obs/file.fits").size == 3
    src = tmp_path / "src.bin"
    src.write_bytes(b"0123456789")
    storage.put_file("mosaic/m.fits", src)
    assert storage.list_keys() == ["mast/obs/file.fits", "mosaic/m.fits"]
    assert storage.list_keys("mast") == ["mast/obs/file.fits"]
    assert storage.key_for(storage.root / "mosaic" / "m.fits") == "mosaic/m.fits"
    assert storage.delete("mosaic/m.fits") is True
    assert storage.delete("mosaic/m.fits") is False
    # No temporary files are left behind by atomic writes.
    leftovers = [p for p in (storage.root / "mast" / "obs").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    with pytest.raises(AccessDenied):
        storage.write_bytes("../outside.bin", b"x")
    assert not (tmp_path / "outside.bin").exists()


def test_temp_cache_evicts_least_recently_used(tmp_path):
    cache = TempCache(tmp_path / "cache", max_bytes=250, grace_seconds=0)
    calls = []

    def filler(size):
        def fetch(tmp: Path):
            calls.append(size)
            tmp.write_bytes(b"x" * size)

        return fetch

    a = cache.get_or_fetch("a", filler(100), expected_size=100)
    time.sleep(0.02)
    b = cache.get_or_fetch("b", filler(100), expected_size=100)
    time.sleep(0.02)
    assert cache.get_or_fetch("a", filler(100), expected_size=100) == a  # hit, now most recent
    assert calls == [100, 100]
    time.sleep(0.02)
    c = cache.get_or_fetch("c", filler(100), expected_size=100)
    assert a.exists() and c.exists()
    assert not b.exists(), "the least recently used entry should have been evicted"
    assert cache.total_bytes() <= 250


def test_temp_cache_never_exposes_partial_files(tmp_path):
    cache = TempCache(tmp_path / "cache", max_bytes=10_000)

    def broken(tmp: Path):
        tmp.write_bytes(b"half")
        raise OSError("connection dropped")

    with pytest.raises(OSError):
        cache.get_or_fetch("obj", broken, expected_size=100)
    assert not cache.path_for("obj").exists()
    assert [p for p in (tmp_path / "cache").iterdir() if p.is_file()] == []
    # A fetch that returns the wrong size is refused too.
    with pytest.raises(OSError):
        cache.get_or_fetch("obj", lambda tmp: tmp.write_bytes(b"short"), expected_size=100)
    assert not cache.path_for("obj").exists()


def _concurrent_reader(directory, counter_path, result_queue):
    cache = TempCache(directory, max_bytes=10_000_000)

    def fetch(tmp: Path):
        with open(counter_path, "a") as handle:
            handle.write("x")
        time.sleep(0.3)
        tmp.write_bytes(b"payload" * 1000)

    path = cache.get_or_fetch("shared-object", fetch, expected_size=7000)
    result_queue.put(path.read_bytes() == b"payload" * 1000)


def test_temp_cache_one_download_for_concurrent_processes(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    counter = tmp_path / "downloads.txt"
    procs = [
        ctx.Process(target=_concurrent_reader, args=(tmp_path / "c", counter, queue))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    results = [queue.get(timeout=5) for _ in procs]
    assert results == [True] * 4
    assert counter.read_text() == "x", "only one process should have downloaded the object"


# ----------------------------------------------------------------------------------------
# S3 against a real SeaweedFS server
# ----------------------------------------------------------------------------------------


def _s3_settings(endpoint, tmp_path, **extra) -> Settings:
    storage = s3_storage(endpoint, tmp_path / "s3cache")
    return Settings(**storage, STORAGE_BASE_PATH=tmp_path / "d", **extra)


def test_s3_storage_against_seaweedfs(seaweedfs, tmp_path, data_root):
    endpoint, client = seaweedfs
    storage = create_storage(_s3_settings(endpoint, tmp_path))
    assert isinstance(storage, S3Storage)
    storage.write_bytes("uploads/u1/note.txt", b"hello")
    assert storage.read_bytes("uploads/u1/note.txt") == b"hello"
    storage.put_file("real/m13.fits", data_root / "real" / "m13.fits")
    local = storage.local_path("real/m13.fits")
    assert local.read_bytes() == (data_root / "real" / "m13.fits").read_bytes()
    assert local.name.endswith(".fits")
    # A second read is served from the cache without a new download.
    mtime = local.stat().st_mtime_ns
    assert storage.local_path("real/m13.fits") == local
    assert local.stat().st_mtime_ns >= mtime
    assert storage.stat("real/m13.fits").size == local.stat().st_size
    assert storage.exists("real/m13.fits")
    assert not storage.exists("real/none.fits")
    assert "real/m13.fits" in storage.list_keys("real")
    with pytest.raises(NotFound):
        storage.local_path("real/none.fits")
    with pytest.raises(BadRequest) as directory:
        storage.local_path("uploads/u1")
    assert directory.value.detail == "Path is not a file"
    with pytest.raises(AccessDenied):
        storage.local_path("../real/m13.fits")
    # A replaced object is a new cache entry (ETag changes), not stale bytes.
    storage.write_bytes("uploads/u1/note.txt", b"changed")
    assert storage.read_bytes("uploads/u1/note.txt") == b"changed"
    assert storage.delete("uploads/u1/note.txt") is True
    assert storage.delete("uploads/u1/note.txt") is False


def test_engine_serves_previews_from_s3(seaweedfs, tmp_path, data_root):
    endpoint, client = seaweedfs
    client.upload_file(
        str(data_root / "jwst" / "small_i2d.fits"), "jwst-data", "jwst/small_i2d.fits"
    )
    env = local_env(tmp_path / "base", ENGINE_WORKERS=1, **s3_storage(endpoint, tmp_path / "cache"))
    with run_service("main", env, tmp_path / "engine.log") as (base, _):
        ok = httpx.get(
            f"{base}/preview/abc",
            params={"file_path": "jwst/small_i2d.fits", "width": 200, "height": 200},
            timeout=60,
        )
        assert ok.status_code == 200, ok.text
        assert ok.headers["content-type"] == "image/png"
        assert ok.content[:8] == b"\x89PNG\r\n\x1a\n"
        missing = httpx.get(
            f"{base}/preview/abc", params={"file_path": "jwst/none.fits"}, timeout=60
        )
        assert missing.status_code == 404
        assert missing.json()["detail"] == "File not found: none.fits"
        hist = httpx.get(
            f"{base}/histogram/abc", params={"file_path": "jwst/small_i2d.fits"}, timeout=60
        )
        assert hist.status_code == 200
        assert sum(hist.json()["histogram"]["counts"]) > 0
    cached = [p for p in (tmp_path / "cache").iterdir() if p.is_file()]
    assert len(cached) == 1 and cached[0].stat().st_size == os.path.getsize(
        data_root / "jwst" / "small_i2d.fits"
    )


def test_partial_files_and_orphan_locks_are_swept_and_counted(tmp_path):
    """A writer killed mid-download leaves a hidden .tmp file; every entry ever made leaves
    a lock. Both are swept once stale, and partial files count against the bound."""
    import os as _os
    import time as _time

    from app.storage.temp_cache import STALE_SECONDS, TempCache

    cache = TempCache(tmp_path / "cache", max_bytes=10_000)
    cache.get_or_fetch("kept", lambda p: p.write_bytes(b"k" * 1000))
    cache.get_or_fetch("gone", lambda p: p.write_bytes(b"g" * 1000))
    cache.path_for("gone").unlink()
    partial = cache.directory / ".abc.fits.xyz.tmp"
    partial.write_bytes(b"p" * 6000)
    fresh_partial = cache.directory / ".def.fits.uvw.tmp"
    fresh_partial.write_bytes(b"q" * 10)
    assert cache.total_bytes() == 1000 + 6010
    old = _time.time() - STALE_SECONDS - 5
    _os.utime(partial, (old, old))
    for lock in (cache.directory / ".locks").glob("*.lock"):
        _os.utime(lock, (old, old))
    locks_before = sorted(p.name for p in (cache.directory / ".locks").glob("*.lock"))
    assert cache.sweep() == 2  # the stale partial file and the lock of "gone"
    assert not partial.exists() and fresh_partial.exists()
    locks_after = sorted(p.name for p in (cache.directory / ".locks").glob("*.lock"))
    assert len(locks_after) == len(locks_before) - 1
    assert cache.path_for("kept").exists()


def test_temp_cache_never_evicts_a_pinned_entry(tmp_path):
    """An entry resolved for a request that is still running stays on disk, however
    much room others need; once the request ends it is evictable like any other."""
    from contextlib import ExitStack

    cache = TempCache(tmp_path / "cache", max_bytes=250, grace_seconds=0)

    def filler(size):
        return lambda tmp: tmp.write_bytes(b"x" * size)

    with ExitStack() as request:
        a = cache.get_or_fetch("a", filler(200), expected_size=200, pin=request)
        b = cache.get_or_fetch("b", filler(200), expected_size=200)  # needs a's room
        assert a.exists() and b.exists()  # a is pinned: the bound waits for it
        cache.make_room(0)
        assert a.exists() and not b.exists()  # only the unpinned entry could go
    c = cache.get_or_fetch("c", filler(200), expected_size=200)
    assert not a.exists() and c.exists()  # released: evictable like any other
    assert cache.total_bytes() <= 250


def test_s3_objects_are_size_checked_before_download_and_pinned(seaweedfs, tmp_path):
    from app.errors import PayloadTooLarge
    from app.storage.pins import pinning

    endpoint, client = seaweedfs
    settings = _s3_settings(
        endpoint, tmp_path, MAX_FITS_FILE_SIZE_MB=1, STORAGE_TEMP_CACHE_MAX_BYTES=1_500_000
    )
    storage = create_storage(settings)
    client.put_object(Bucket="jwst-data", Key="big/too_big.fits", Body=b"\0" * (2 << 20))
    with pytest.raises(PayloadTooLarge, match="File too large: 2.0MB exceeds maximum 1.0MB"):
        storage.local_path("big/too_big.fits")
    cache_dir = settings.STORAGE_TEMP_CACHE_DIR
    assert not [p for p in cache_dir.iterdir() if p.is_file()]  # not one byte fetched
    for name in ("one", "two"):
        client.put_object(Bucket="jwst-data", Key=f"pin/{name}.fits", Body=b"1" * 900_000)
    with pinning():
        one = storage.local_path("pin/one.fits")
        two = storage.local_path("pin/two.fits")  # over the bound: one is pinned
        assert one.exists() and two.exists()
    client.put_object(Bucket="jwst-data", Key="pin/three.fits", Body=b"3" * 900_000)
    three = storage.local_path("pin/three.fits")  # the next fetch makes room again
    assert three.exists() and not one.exists()

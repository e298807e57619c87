"""Files from the archive's public S3 bucket, in ranged parts fetched in parallel.

Anonymous (unsigned) requests to ``MAST_S3_BUCKET`` at ``MAST_S3_ENDPOINT``.
Parts are written at their offsets into a preallocated ``.part`` file; only a
complete, size-checked file is renamed into place. Every part is asked for with
``IfMatch`` and the ETag the object had when its size was read, so a file can
never be stitched from two versions of an object replaced mid-download (S3
answers 412 and the file fails). A part that fails for a transient reason is
tried again after an exponential backoff with full jitter, on top of botocore's
own retries, so parallel parts do not retry in lockstep. This runs in threads
(boto3 is blocking); progress goes through a thread-safe callback.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.mast.part_file import DownloadFailed, DownloadStopped, PartFile

PART_SIZE = 8 * 1024 * 1024
PARALLEL_PARTS = 4
PART_ATTEMPTS = 4
BACKOFF_SECONDS = 0.5
_CHANGED = ("PreconditionFailed", "412")


@dataclass(frozen=True)
class ArchiveObject:
    """One object of the bucket, as it was when its download began."""

    bucket: str
    key: str
    size: int
    etag: str


def make_archive_client(endpoint: str | None, region: str) -> Any:
    from app.storage.s3_storage import make_s3_client

    return make_s3_client(endpoint, region, None, None, path_style=True, anonymous=True)


def describe_object(client: Any, bucket: str, key: str) -> ArchiveObject:
    """Size and ETag of ``s3://bucket/key`` (a clear failure when it is missing)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = _code(exc)
        if code in ("404", "NoSuchKey", "NotFound"):
            raise DownloadFailed(f"Not in the public bucket: s3://{bucket}/{key}") from None
        raise DownloadFailed(f"S3 error for {key}: {code or exc}") from None
    except BotoCoreError as exc:
        raise DownloadFailed(f"S3 unreachable: {exc}") from None
    return ArchiveObject(bucket, key, int(head["ContentLength"]), str(head.get("ETag", "")))


def download_object(
    client: Any,
    obj: ArchiveObject,
    final_path: Path,
    *,
    on_bytes: Callable[[int], None],
    should_stop: Callable[[], bool],
    part_size: int = PART_SIZE,
    parallel: int = PARALLEL_PARTS,
    backoff: float = BACKOFF_SECONDS,
) -> int:
    """Fetch ``obj`` into ``final_path`` in parallel parts; returns its size."""
    out = PartFile(final_path, size=obj.size)
    lock = threading.Lock()
    try:

        def fetch(start: int) -> int:
            end = min(obj.size, start + part_size) - 1
            if should_stop():
                raise DownloadStopped()
            body = _get_part(client, obj, start, end, final_path.name, backoff, should_stop)
            if len(body) != end - start + 1:
                raise DownloadFailed(f"S3 returned a short part of {final_path.name}")
            out.pwrite(body, start)
            with lock:
                on_bytes(len(body))
            return len(body)

        with ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = [pool.submit(fetch, start) for start in range(0, obj.size, part_size)]
            try:
                for future in as_completed(futures):
                    future.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        if out.size() != obj.size:
            raise DownloadFailed(f"{final_path.name}: size mismatch after download")
        out.finalise()
    finally:
        out.close()
    return obj.size


def _get_part(
    client: Any,
    obj: ArchiveObject,
    start: int,
    end: int,
    name: str,
    backoff: float,
    should_stop: Callable[[], bool],
) -> bytes:
    """Bytes ``start..end`` of the object's version ``obj.etag``, retried with jitter."""
    from botocore.exceptions import BotoCoreError, ClientError

    extra = {"IfMatch": obj.etag} if obj.etag else {}
    for attempt in range(PART_ATTEMPTS):
        try:
            answer = client.get_object(
                Bucket=obj.bucket, Key=obj.key, Range=f"bytes={start}-{end}", **extra
            )
            return bytes(answer["Body"].read())
        except ClientError as exc:
            if _code(exc) in _CHANGED:
                raise DownloadFailed(
                    f"{name} changed in the bucket during the download; start it again"
                ) from None
            failure: Exception = exc
        except BotoCoreError as exc:
            failure = exc
        if attempt == PART_ATTEMPTS - 1:
            break
        time.sleep(random.uniform(0, backoff * 2**attempt))  # full jitter
        if should_stop():
            raise DownloadStopped()
    raise DownloadFailed(f"S3 download of {name} failed: {failure}")


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))

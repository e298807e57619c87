"""Files from the archive's public S3 bucket, in ranged parts fetched in parallel.

Anonymous (unsigned) requests to ``MAST_S3_BUCKET`` at ``MAST_S3_ENDPOINT``.
Parts are written at their offsets into a preallocated ``.part`` file; only a
complete, size-checked file is renamed into place. This runs in threads (boto3
is blocking); progress goes through a thread-safe callback.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Callable

from app.mast.part_file import DownloadFailed, DownloadStopped, PartFile

PART_SIZE = 8 * 1024 * 1024
PARALLEL_PARTS = 4


def make_archive_client(endpoint: str | None, region: str):
    from app.storage.s3_storage import make_s3_client

    return make_s3_client(endpoint, region, None, None, path_style=True, anonymous=True)


def object_size(client, bucket: str, key: str) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchKey", "NotFound"):
            raise DownloadFailed(f"Not in the public bucket: s3://{bucket}/{key}") from None
        raise DownloadFailed(f"S3 error for {key}: {code or exc}") from None
    except BotoCoreError as exc:
        raise DownloadFailed(f"S3 unreachable: {exc}") from None


def download_object(client, bucket: str, key: str, final_path: Path, size: int, *,
                    on_bytes: Callable[[int], None], should_stop: Callable[[], bool],
                    part_size: int = PART_SIZE, parallel: int = PARALLEL_PARTS) -> int:
    """Fetch ``s3://bucket/key`` into ``final_path`` (``size`` bytes) in parallel parts."""
    from botocore.exceptions import BotoCoreError, ClientError

    out = PartFile(final_path, size=size)
    lock = threading.Lock()
    try:
        def fetch(start: int) -> int:
            end = min(size, start + part_size) - 1
            if should_stop():
                raise DownloadStopped()
            for attempt in range(4):
                try:
                    body = client.get_object(Bucket=bucket, Key=key,
                                             Range=f"bytes={start}-{end}")["Body"].read()
                    break
                except (ClientError, BotoCoreError) as exc:
                    if attempt == 3:
                        raise DownloadFailed(f"S3 download of {final_path.name} failed: "
                                             f"{exc}") from None
            if len(body) != end - start + 1:
                raise DownloadFailed(f"S3 returned a short part of {final_path.name}")
            out.pwrite(body, start)
            with lock:
                on_bytes(len(body))
            return len(body)

        with ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = [pool.submit(fetch, start) for start in range(0, size, part_size)]
            try:
                for future in as_completed(futures):
                    future.result()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        if out.size() != size:
            raise DownloadFailed(f"{final_path.name}: size mismatch after download")
        out.finalise()
    finally:
        out.close()
    return size

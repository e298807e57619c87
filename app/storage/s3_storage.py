"""Storage in an S3 bucket (AWS or any S3-compatible server such as SeaweedFS)."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any

from app.errors import BadRequest, NotFound, ServiceUnavailable
from app.storage.helpers import check_size, normalize_key
from app.storage.pins import PIN_SCOPE
from app.storage.provider import FileStat, StorageProvider
from app.storage.temp_cache import TempCache


def make_s3_client(
    endpoint: str | None,
    region: str,
    access_key: str | None,
    secret_key: str | None,
    path_style: bool = True,
    anonymous: bool = False,
) -> Any:
    """A boto3 S3 client; unsigned when ``anonymous`` (public buckets)."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    config_kwargs = {
        "s3": {"addressing_style": "path" if path_style else "auto"},
        "retries": {"max_attempts": 3, "mode": "standard"},
        "connect_timeout": 10,
        "read_timeout": 60,
    }
    if anonymous:
        config_kwargs["signature_version"] = UNSIGNED
    kwargs = {"region_name": region, "config": Config(**config_kwargs)}
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    if access_key and secret_key and not anonymous:
        kwargs["aws_access_key_id"] = access_key
        kwargs["aws_secret_access_key"] = secret_key
    return boto3.client("s3", **kwargs)


def _is_missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound") or status == 404


class S3Storage(StorageProvider):
    name = "s3"

    def __init__(
        self, bucket: str, client: Any, cache: TempCache, max_object_bytes: int | None = None
    ) -> None:
        self.bucket = bucket
        self.client = client
        self.cache = cache
        # Objects larger than this are refused (413) from their size alone, before any
        # byte is downloaded; so are objects the whole cache could not hold.
        limit = cache.max_bytes if max_object_bytes is None else max_object_bytes
        self.max_object_bytes = min(limit, cache.max_bytes)

    # -- helpers -------------------------------------------------------------------
    def _head(self, key: str) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
            return head
        except ClientError as exc:
            if _is_missing(exc):
                if self._is_prefix(key):
                    raise BadRequest("Path is not a file") from None
                raise NotFound(f"File not found: {posixpath.basename(key)}") from None
            raise ServiceUnavailable(f"Object storage error: {exc}") from None
        except BotoCoreError as exc:
            raise ServiceUnavailable(f"Object storage unreachable: {exc}") from None

    def _is_prefix(self, key: str) -> bool:
        listing = self.client.list_objects_v2(
            Bucket=self.bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1
        )
        return int(listing.get("KeyCount", 0)) > 0

    # -- interface -------------------------------------------------------------------
    def local_path(self, key: str) -> Path:
        key = normalize_key(key)
        head = self._head(key)
        size = int(head["ContentLength"])
        check_size(size, self.max_object_bytes)
        identity = f"{self.bucket}/{key}@{head.get('ETag', '')}:{size}"
        name = posixpath.basename(key)
        # Keep the file's own suffixes (".fits", ".fits.gz") so readers recognise it.
        suffix = "".join(Path(name).suffixes)[-16:] if "." in name else ""

        def fetch(tmp: Path) -> None:
            self.client.download_file(self.bucket, key, str(tmp))

        return self.cache.get_or_fetch(
            identity, fetch, suffix=suffix, expected_size=size, pin=PIN_SCOPE.get()
        )

    def stat(self, key: str) -> FileStat:
        head = self._head(normalize_key(key))
        modified = head.get("LastModified")
        return FileStat(
            size=int(head["ContentLength"]), mtime=modified.timestamp() if modified else 0.0
        )

    def exists(self, key: str) -> bool:
        try:
            self._head(normalize_key(key))
        except (NotFound, BadRequest):
            return False
        return True

    def read_bytes(self, key: str) -> bytes:
        return self.local_path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        # A single PUT is atomic in S3: readers see the old object or the new one.
        self.client.put_object(Bucket=self.bucket, Key=normalize_key(key), Body=data)

    def put_file(self, key: str, source: Path) -> None:
        self.client.upload_file(os.fspath(source), self.bucket, normalize_key(key))

    def delete(self, key: str) -> bool:
        key = normalize_key(key)
        if not self.exists(key):
            return False
        self.client.delete_object(Bucket=self.bucket, Key=key)
        return True

    def list_keys(self, prefix: str = "") -> list[str]:
        prefix = normalize_key(prefix) + "/" if prefix.strip("/") else ""
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return sorted(keys)

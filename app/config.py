"""Every setting of both services, typed, read from the environment.

One object, :class:`Settings`, holds them all. The apps build it once at start-up
(``create_app(settings)``) and hand it to routes through ``Depends(get_settings)``;
nothing else reads ``os.environ`` for configuration.

Names are those of the deployed stack (docker-compose and the .NET side rely on
several of them); see DESIGN.md's configuration table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

GIB = 1024**3


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


HostList = Annotated[list[str], NoDecode, BeforeValidator(_comma_separated)]
MIB = 1024**2


def cgroup_memory_limit() -> int | None:
    """The memory limit of this container in bytes, or None when there is none.

    Reads cgroup v2 (``memory.max``) and falls back to cgroup v1
    (``memory.limit_in_bytes``). Absurdly large v1 values mean "no limit".
    """
    candidates = (
        Path("/sys/fs/cgroup/memory.max"),
        Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    )
    for path in candidates:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            value = int(text)
        except ValueError:
            continue
        if value <= 0 or value >= 1 << 60:
            return None
        return value
    return None


class Settings(BaseSettings):
    """Configuration of the MAST proxy and of the processing engine."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore")

    # --- storage -----------------------------------------------------------------
    STORAGE_PROVIDER: Literal["local", "s3"] = "local"
    STORAGE_BASE_PATH: Path = Path("./data")
    S3_BUCKET_NAME: str = "jwst-data"
    S3_ENDPOINT: str | None = None
    S3_ACCESS_KEY: str | None = None
    S3_SECRET_KEY: str | None = None
    S3_FORCE_PATH_STYLE: bool = True
    S3_REGION: str = "us-east-1"
    STORAGE_TEMP_CACHE_DIR: Path = Path("/tmp/jwst-cache")
    STORAGE_TEMP_CACHE_MAX_BYTES: int = Field(default=2 * GIB, ge=1)

    # --- MAST proxy --------------------------------------------------------------
    MAST_BASE_URL: str = "https://mast.stsci.edu"
    # Hosts (``host`` or ``host:port``) a download may be redirected to, besides the host
    # of MAST_BASE_URL; never from https to http. Comma-separated in the environment.
    MAST_DOWNLOAD_HOSTS: HostList = ["mast.stsci.edu", "archive.stsci.edu"]
    # None keeps astropy's own Sesame mirrors.
    NAME_RESOLVER_URL: str | None = None
    MAST_S3_BUCKET: str = "stpubdata"
    # None means AWS itself.
    MAST_S3_ENDPOINT: str | None = None
    MAST_S3_REGION: str = "us-east-1"
    # None means <STORAGE_BASE_PATH>/mast.
    MAST_DOWNLOAD_DIR: Path | None = None
    MAST_SEARCH_TIMEOUT: float = Field(default=120.0, gt=0)
    # Free space a download must leave on the disk (its files are checked before starting).
    MAST_MIN_FREE_BYTES: int = Field(default=64 * MIB, ge=0)
    MAST_DOWNLOAD_TIMEOUT: float = Field(default=600.0, gt=0)
    # Nice value of the download threads (Linux: per thread): transfers are bulk work,
    # so requests such as progress polls are scheduled first on a busy machine. 0: off.
    MAST_TRANSFER_NICE: int = Field(default=10, ge=0, le=19)
    # Request bodies larger than this are refused (413) before they are read.
    MAST_MAX_BODY_BYTES: int = Field(default=1 * MIB, ge=1024)

    # --- processing engine limits ------------------------------------------------
    MAX_FITS_ARRAY_ELEMENTS: int = Field(default=200_000_000, ge=1)
    MAX_FITS_FILE_SIZE_MB: int = Field(default=10240, ge=1)
    MAX_MOSAIC_OUTPUT_PIXELS: int = Field(default=64_000_000, ge=1)
    # None means 80 % of the cgroup memory limit, or 4 GiB without one.
    ENGINE_MEMORY_BUDGET_BYTES: int | None = Field(default=None, ge=1)
    # None means the number of CPUs.
    ENGINE_WORKERS: int | None = Field(default=None, ge=1, le=64)
    # Requests allowed to wait for a worker before new ones get 429.
    ENGINE_MAX_QUEUED: int = Field(default=32, ge=1)
    # Every worker job stops (504) after this many seconds; its worker is replaced if it
    # does not stop by itself (queued work has QUEUED_JOB_TIME_LIMIT_SECONDS instead).
    ENGINE_JOB_TIME_LIMIT_SECONDS: float = Field(default=600.0, gt=0)
    # A worker holding more than this above its fresh size after a job is replaced.
    ENGINE_WORKER_RECYCLE_BYTES: int = Field(default=512 * MIB, ge=0)
    # Request bodies larger than this are refused (413) before they are read (an embed
    # batch of ~50,000 records fits).
    ENGINE_MAX_BODY_BYTES: int = Field(default=64 * MIB, ge=1024)
    # --- analysis -----------------------------------------------------------------
    DETECTION_MAX_PIXELS: int = Field(default=50_000_000, ge=1)
    DETECTION_TIME_LIMIT_SECONDS: float = Field(default=120.0, gt=0)

    # --- composites ------------------------------------------------------------------
    # Reprojected channels are cached on disk, shared by the worker processes. An entry
    # is one channel on one grid (a 3-filter composite uses 3 entries).
    COMPOSITE_CACHE_DIR: Path | None = None  # None means <STORAGE_TEMP_CACHE_DIR>/composite
    COMPOSITE_CACHE_TTL_SECONDS: float = Field(default=600.0, gt=0)
    COMPOSITE_CACHE_MAX_ENTRIES: int = Field(default=12, ge=0)
    COMPOSITE_CACHE_MAX_BYTES: int = Field(default=512 * MIB, ge=0)
    # The budget verdict (CONTRACT-HEAD §10.1): the memory one composite may use (None:
    # ENGINE_MEMORY_BUDGET_BYTES; never more than it), and the smallest side factor a
    # render shrinks to without allow_force_downscale.
    MAX_COMPOSITE_MEMORY_BYTES: int | None = Field(default=None, ge=1)
    COMPOSITE_DOWNSCALE_FAIL_THRESHOLD: float = Field(default=0.85, ge=0, le=1)
    # POST /composite/estimate refuses more files than this (413).
    MAX_COMPOSITE_ESTIMATE_FILES: int = Field(default=500, ge=1)
    # Queued work (the composite stream, observation mosaics) waits for the engine; the
    # whole job, waiting included, ends with 504 after this many seconds.
    QUEUED_JOB_TIME_LIMIT_SECONDS: float = Field(default=1800.0, gt=0)
    # None means <STORAGE_BASE_PATH>/semantic.
    SEMANTIC_DATA_DIR: Path | None = None
    DASK_SCHEDULER_ADDRESS: str | None = None
    # TLS for a tls:// scheduler (distributed's security settings): CA, client certificate
    # and key files. The cluster runs the engine's code on its data: it must be trusted.
    DASK_TLS_CA_FILE: str | None = None
    DASK_TLS_CERT_FILE: str | None = None
    DASK_TLS_KEY_FILE: str | None = None

    @model_validator(mode="after")
    def _fill_derived(self) -> Settings:
        if self.MAST_DOWNLOAD_DIR is None:
            self.MAST_DOWNLOAD_DIR = self.STORAGE_BASE_PATH / "mast"
        if self.COMPOSITE_CACHE_DIR is None:
            self.COMPOSITE_CACHE_DIR = self.STORAGE_TEMP_CACHE_DIR / "composite"
        if self.SEMANTIC_DATA_DIR is None:
            self.SEMANTIC_DATA_DIR = self.STORAGE_BASE_PATH / "semantic"
        if self.ENGINE_MEMORY_BUDGET_BYTES is None:
            limit = cgroup_memory_limit()
            self.ENGINE_MEMORY_BUDGET_BYTES = int(limit * 0.8) if limit else 4 * GIB
        if self.ENGINE_WORKERS is None:
            self.ENGINE_WORKERS = max(1, os.cpu_count() or 1)
        return self

    @property
    def max_fits_file_bytes(self) -> int:
        return self.MAX_FITS_FILE_SIZE_MB * MIB


def load_settings(**overrides) -> Settings:
    """Read the settings from the environment, with explicit overrides on top."""
    return Settings(**overrides)

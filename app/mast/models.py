"""Request and response models of the MAST proxy (CONTRACT.md §2 and §4.1)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

OBS_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")
EXAMPLE_OBS = "jw02733-o001_t001_nircam_clear-f090w"


def check_obs_id(value: str) -> str:
    value = value.strip()
    if not value or len(value) > 200 or not OBS_ID_PATTERN.match(value) or set(value) <= {"."}:
        raise ValueError("obs_id may contain only letters, digits, '.', '_' and '-' "
                         "(1-200 characters)")
    return value


class TargetSearchRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"target_name": "NGC 3132", "radius": 0.2, "calib_level": [2, 3]}]})

    target_name: str = Field(min_length=1, max_length=200,
                             description="Object name, resolved to coordinates by Sesame")
    radius: float = Field(default=0.2, gt=0, le=10, description="Cone radius in degrees")
    filters: dict | None = Field(default=None, description="Accepted and ignored (compatibility)")
    calib_level: list[int] | None = Field(default=[2, 3], description="MAST calibration levels "
                                          "(1-3); null or [] for all")


class CoordinateSearchRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"ra": 151.7567, "dec": -40.4372, "radius": 0.2, "calib_level": [3]}]})

    ra: float = Field(ge=-360, le=360, description="Right ascension in degrees; normalised to "
                                                   "[0, 360)")
    dec: float = Field(ge=-90, le=90, description="Declination in degrees")
    radius: float = Field(default=0.2, gt=0, le=10, description="Cone radius in degrees")
    calib_level: list[int] | None = Field(default=[2, 3])


class ObservationSearchRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"obs_id": EXAMPLE_OBS,
                                                               "calib_level": None}]})

    obs_id: str = Field(min_length=1, max_length=200, description="MAST obs_id")
    calib_level: list[int] | None = None


class ProgramSearchRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"program_id": "2733"}]})

    program_id: str = Field(min_length=1, max_length=50, description="JWST program (proposal) id")
    calib_level: list[int] | None = Field(default=[2, 3])


class RecentReleasesRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"days_back": 30, "instrument": "NIRCAM", "limit": 50, "offset": 0}]})

    days_back: int = Field(default=30, ge=1, le=365)
    instrument: str | None = Field(default=None, description="e.g. NIRCAM, MIRI, NIRSPEC, NIRISS")
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0)


class SearchResponse(BaseModel):
    search_type: str
    query_params: dict[str, Any]
    results: list[dict[str, Any]] = Field(description="MAST CAOM observation rows; NaN as null")
    result_count: int
    timestamp: str


class ProductsRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"obs_id": EXAMPLE_OBS}]})

    obs_id: str = Field(min_length=1, max_length=200)


class ProductsResponse(BaseModel):
    obs_id: str
    products: list[dict[str, Any]]
    product_count: int


class DownloadRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"obs_id": EXAMPLE_OBS, "product_type": "SCIENCE", "product_id": "_i2d"}]})

    obs_id: str
    product_type: str = "SCIENCE"
    product_id: str | None = Field(default=None, description="Only files whose name contains "
                                                             "this text")

    _check = field_validator("obs_id")(check_obs_id)


class DownloadResponse(BaseModel):
    status: str
    obs_id: str
    files: list[str] = []
    file_count: int = 0
    download_dir: str | None = None
    error: str | None = None
    timestamp: str


class ChunkedDownloadRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"obs_id": EXAMPLE_OBS, "product_type": "SCIENCE", "resume_job_id": None,
         "calib_level": [3]}]})

    obs_id: str
    product_type: str = "SCIENCE"
    resume_job_id: str | None = None
    calib_level: list[int] | None = None

    _check = field_validator("obs_id")(check_obs_id)


class S3DownloadRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"obs_id": EXAMPLE_OBS, "product_type": "SCIENCE", "calib_level": None}]})

    obs_id: str
    product_type: str = "SCIENCE"
    calib_level: list[int] | None = None

    _check = field_validator("obs_id")(check_obs_id)


class JobStarted(BaseModel):
    job_id: str
    obs_id: str
    message: str
    is_resume: bool = False
    download_source: str | None = None


class FileProgress(BaseModel):
    filename: str
    total_bytes: int
    downloaded_bytes: int
    progress_percent: float
    status: str = Field(description="pending, downloading, complete, failed or paused")


class ProgressResponse(BaseModel):
    job_id: str
    obs_id: str
    stage: str = Field(description="queued, fetching_products, downloading, complete, failed, "
                                   "paused or cancelled")
    message: str
    progress: int = Field(description="0-100, byte-based once sizes are known")
    total_files: int
    downloaded_files: int
    current_file: str | None
    files: list[str] = Field(description="Absolute local paths of completed files")
    error: str | None
    started_at: str | None
    completed_at: str | None
    download_dir: str | None
    is_complete: bool
    total_bytes: int
    downloaded_bytes: int
    download_progress_percent: float
    speed_bytes_per_sec: float
    eta_seconds: float | None
    file_progress: list[FileProgress]
    is_resumable: bool


class PauseResumeResponse(BaseModel):
    job_id: str
    status: str
    message: str


class ResumableJob(BaseModel):
    job_id: str
    obs_id: str
    total_bytes: int = 0
    downloaded_bytes: int = 0
    progress_percent: float = 0.0
    status: str
    total_files: int = 0
    completed_files: int = 0
    started_at: str | None = None


class ResumableJobsResponse(BaseModel):
    jobs: list[ResumableJob]
    count: int


class DismissResponse(BaseModel):
    job_id: str
    dismissed: bool
    deleted_files: int

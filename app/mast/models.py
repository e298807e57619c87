"""Request and response models of the MAST proxy (CONTRACT.md §2 and §4.1)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, Field

from app.schema import example

EXAMPLE_OBS = "jw02733-o001_t001_nircam_clear-f090w"
# One pattern for every MAST identifier this service passes on: letters, digits and
# '.', '_', '-', starting with a letter or digit. No wildcard ('*', '%') reaches MAST,
# and no id can name a hidden folder of the download directory (such as the job store).
OBS_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
PROGRAM_ID_PATTERN = re.compile(r"^[0-9]{1,6}$")


def _check(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        value = value.strip()
        if not pattern.match(value):
            raise ValueError(what)
        return value

    return AfterValidator(check)


CalibLevels = Annotated[
    list[Annotated[int, Field(ge=0, le=4)]] | None,
    Field(max_length=5, description="MAST calibration levels (0-4); null or [] for all"),
]
ProductType = Annotated[
    str,
    Field(
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z_]+$",
        description="MAST productType, e.g. SCIENCE",
    ),
]
ObsId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="MAST obs_id, e.g. "
        f"{EXAMPLE_OBS} (letters, digits, '.', '_', '-'; no wildcards)",
    ),
    _check(
        OBS_ID_PATTERN,
        "obs_id must start with a letter or digit and "
        "contain only letters, digits, '.', '_' and '-' (1-200 characters; "
        "no wildcards)",
    ),
]
ProgramId = Annotated[
    str,
    Field(
        min_length=1, max_length=50, description="JWST program (proposal) id: 1-6 digits, e.g. 2733"
    ),
    _check(PROGRAM_ID_PATTERN, "program_id must be 1-6 digits (no wildcards)"),
]


class TargetSearchRequest(BaseModel):
    model_config = example({"target_name": "NGC 3132", "radius": 0.2, "calib_level": [2, 3]})

    target_name: str = Field(
        min_length=1, max_length=200, description="Object name, resolved to coordinates by Sesame"
    )
    radius: float = Field(default=0.2, gt=0, le=10, description="Cone radius in degrees")
    filters: dict[str, Any] | None = Field(
        default=None, description="Accepted and ignored (compatibility)"
    )
    calib_level: CalibLevels = [2, 3]


class CoordinateSearchRequest(BaseModel):
    model_config = example({"ra": 151.7567, "dec": -40.4372, "radius": 0.2, "calib_level": [3]})

    ra: float = Field(
        ge=-360, le=360, description="Right ascension in degrees; normalised to [0, 360)"
    )
    dec: float = Field(ge=-90, le=90, description="Declination in degrees")
    radius: float = Field(default=0.2, gt=0, le=10, description="Cone radius in degrees")
    calib_level: CalibLevels = [2, 3]


class ObservationSearchRequest(BaseModel):
    model_config = example({"obs_id": EXAMPLE_OBS, "calib_level": None})

    obs_id: ObsId
    calib_level: CalibLevels = None


class ProgramSearchRequest(BaseModel):
    model_config = example({"program_id": "2733"})

    program_id: ProgramId
    calib_level: CalibLevels = [2, 3]


class RecentReleasesRequest(BaseModel):
    model_config = example({"days_back": 30, "instrument": "NIRCAM", "limit": 50, "offset": 0})

    days_back: int = Field(default=30, ge=1, le=365)
    instrument: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z][A-Za-z0-9/_ -]{0,39}$",
        description="e.g. NIRCAM, MIRI, NIRSPEC, NIRISS",
    )
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0)


class SearchResponse(BaseModel):
    search_type: str
    query_params: dict[str, Any]
    results: list[dict[str, Any]] = Field(description="MAST CAOM observation rows; NaN as null")
    result_count: int
    timestamp: str


class ProductsRequest(BaseModel):
    model_config = example({"obs_id": EXAMPLE_OBS})

    obs_id: ObsId


class ProductsResponse(BaseModel):
    obs_id: str
    products: list[dict[str, Any]]
    product_count: int


class DownloadRequest(BaseModel):
    model_config = example({"obs_id": EXAMPLE_OBS, "product_type": "SCIENCE", "product_id": "_i2d"})

    obs_id: ObsId
    product_type: ProductType = "SCIENCE"
    product_id: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Only files whose name contains this text",
    )


class DownloadResponse(BaseModel):
    status: str
    obs_id: str
    files: list[str] = []
    file_count: int = 0
    download_dir: str | None = None
    error: str | None = None
    timestamp: str


class ChunkedDownloadRequest(BaseModel):
    model_config = example(
        {
            "obs_id": EXAMPLE_OBS,
            "product_type": "SCIENCE",
            "resume_job_id": None,
            "calib_level": [3],
        }
    )

    obs_id: ObsId
    product_type: ProductType = "SCIENCE"
    resume_job_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    calib_level: CalibLevels = None


class S3DownloadRequest(BaseModel):
    model_config = example({"obs_id": EXAMPLE_OBS, "product_type": "SCIENCE", "calib_level": None})

    obs_id: ObsId
    product_type: ProductType = "SCIENCE"
    calib_level: CalibLevels = None


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
    stage: str = Field(
        description="queued, fetching_products, downloading, complete, failed, paused or cancelled"
    )
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

"""Request and response models of the analysis endpoints (CONTRACT.md §3.11-3.15)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.schema import example

EXAMPLE_KEY = (
    "mast/jw02733-o001_t001_nircam_clear-f090w/jw02733-o001_t001_nircam_clear-f090w_i2d.fits"
)


class Rectangle(BaseModel):
    x: int = Field(ge=0, description="Left column (0-based pixels)")
    y: int = Field(ge=0, description="Bottom row (0-based pixels)")
    width: int = Field(gt=0)
    height: int = Field(gt=0)


class Ellipse(BaseModel):
    cx: float = Field(ge=0, description="Centre column (0-based pixels)")
    cy: float = Field(ge=0, description="Centre row")
    rx: float = Field(gt=0, description="Semi-axis along columns, pixels")
    ry: float = Field(gt=0, description="Semi-axis along rows, pixels")


class Circle(BaseModel):
    cx: float = Field(description="Centre column (0-based pixels)")
    cy: float = Field(description="Centre row")
    r: float = Field(gt=0, description="Radius in pixels")


#: Vertices a polygon region may have (the cost of the inside test grows with them).
MAX_POLYGON_VERTICES = 1000


class Polygon(BaseModel):
    points: list[tuple[float, float]] = Field(
        min_length=3,
        max_length=MAX_POLYGON_VERTICES,
        description="Vertices [x, y] in "
        "0-based pixels; pixels whose centre is inside "
        "(even-odd rule) count",
    )


class RegionStatisticsRequest(BaseModel):
    model_config = example(
        {
            "file_path": EXAMPLE_KEY,
            "region_type": "rectangle",
            "rectangle": {"x": 100, "y": 200, "width": 50, "height": 40},
            "hdu_index": -1,
        },
        {
            "file_path": EXAMPLE_KEY,
            "region_type": "circle",
            "circle": {"cx": 512.5, "cy": 480.0, "r": 12},
        },
    )

    file_path: str = Field(min_length=1)
    region_type: Literal["rectangle", "ellipse", "circle", "polygon"]
    rectangle: Rectangle | None = None
    ellipse: Ellipse | None = None
    circle: Circle | None = None
    polygon: Polygon | None = None
    hdu_index: int = Field(default=-1, description="-1: the first image HDU")
    slice_index: int = Field(default=-1, description="Cube slice; -1: the middle one")


class RegionStatisticsResponse(BaseModel):
    mean: float
    median: float
    std: float = Field(description="Population standard deviation (ddof=0)")
    min: float
    max: float
    sum: float
    pixel_count: int = Field(description="Finite pixels inside the region")


class SourceDetectionRequest(BaseModel):
    model_config = example(
        {
            "file_path": EXAMPLE_KEY,
            "threshold_sigma": 5.0,
            "fwhm": 3.0,
            "method": "auto",
            "npixels": 10,
            "deblend": True,
        }
    )

    file_path: str = Field(min_length=1)
    threshold_sigma: float = Field(
        default=5.0, ge=1, le=50, description="Detection threshold in units of the background RMS"
    )
    fwhm: float = Field(default=3.0, ge=0.5, le=20, description="Expected stellar FWHM, pixels")
    method: str = Field(default="auto", description="auto, daofind, iraf or segmentation")
    npixels: int = Field(
        default=10, ge=1, le=1000, description="Minimum connected pixels of a segment"
    )
    deblend: bool = Field(default=True, description="Split blended segments (segmentation)")
    hdu_index: int = Field(default=-1)


class Source(BaseModel):
    id: int
    xcentroid: float = Field(description="0-based column")
    ycentroid: float = Field(description="0-based row")
    flux: float | None = Field(default=None, description="Background-subtracted flux (data units)")
    sharpness: float | None = Field(default=None, description="Point-source finders only")
    roundness: float | None = Field(default=None, description="Point-source finders only")
    fwhm: float | None = Field(
        default=None, description="Pixels; segmentation: twice the equivalent radius"
    )
    peak: float | None = Field(default=None, description="Highest background-subtracted pixel")


class SourceDetectionResponse(BaseModel):
    sources: list[Source]
    n_sources: int
    method: str = Field(description="The method actually used (auto resolves to one)")
    threshold_sigma: float
    threshold_value: float = Field(description="threshold_sigma x the median background RMS")
    estimated_fwhm: float | None = None


class TableColumn(BaseModel):
    name: str
    dtype: str = Field(description="FITS TFORM")
    unit: str | None = None
    format: str | None = Field(default=None, description="FITS TDISP")
    is_array: bool
    array_shape: list[int] | None = None


class TableHdu(BaseModel):
    index: int
    name: str | None = None
    hdu_type: str
    n_rows: int
    n_columns: int
    columns: list[TableColumn]


class TableInfoResponse(BaseModel):
    file_name: str
    table_hdus: list[TableHdu]


class TableDataResponse(BaseModel):
    hdu_index: int
    hdu_name: str | None = None
    total_rows: int = Field(description="Rows after the search filter")
    total_columns: int
    page: int = Field(description="The page returned (clamped to the last page)")
    page_size: int
    columns: list[TableColumn]
    rows: list[dict]
    sort_column: str | None = None
    sort_direction: Literal["asc", "desc"] | None = None


class SpectralColumn(BaseModel):
    name: str
    unit: str | None = None
    n_points: int


class SpectralDataResponse(BaseModel):
    hdu_index: int
    hdu_name: str | None = None
    n_points: int
    columns: list[SpectralColumn]
    data: dict[str, list[float | None]]

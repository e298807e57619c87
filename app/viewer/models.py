"""Request and response models of the viewer endpoints (CONTRACT.md §3.2-3.6)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schema import example


class ThumbnailRequest(BaseModel):
    model_config = example(
        {
            "file_path": "mast/jw02733-o001_t001_nircam_clear-f090w/"
            "jw02733-o001_t001_nircam_clear-f090w_i2d.fits"
        }
    )

    file_path: str = Field(
        min_length=1, description="Storage key of the FITS file, relative to the storage root"
    )


class ThumbnailResponse(BaseModel):
    thumbnail_base64: str = Field(
        description="PNG, 256 px on its long side, base64 without a "
        "data: prefix; zscale stretch, grey, north of the "
        "array's row 0 at the bottom"
    )


class HistogramBins(BaseModel):
    counts: list[int] = Field(description="Pixels per bin")
    bin_centers: list[float]
    bin_edges: list[float] = Field(description="n_bins + 1 edges spanning [0, 1]")
    n_bins: int


class CubeState(BaseModel):
    n_slices: int = Field(description="Slices along the cube's first axis (1 for an image)")
    current_slice: int = Field(description="Slice actually used (0 for an image)")


class HistogramStats(BaseModel):
    min: float | None
    max: float | None
    mean: float | None
    std: float | None


class HistogramResponse(BaseModel):
    data_id: str
    histogram: HistogramBins = Field(
        description="Histogram of the stretched display values in [0, 1]"
    )
    raw_histogram: HistogramBins = Field(
        description="Histogram of the raw pixel values, min-max normalised to [0, 1]"
    )
    percentiles: dict[str, float | None] = Field(
        description="Percentiles of the stretched values. Old keys p0 p1 p5 p25 p50 p75 p95 p99 "
        "(p0 is the 0.5th and p99 the 99.5th percentile, kept for compatibility) "
        "and unambiguous keys p_0_5 p_1 p_5 p_25 p_50 p_75 p_95 p_99 p_99_5"
    )
    stats: HistogramStats = Field(description="Statistics of the stretched values")
    cube_info: CubeState


class WcsParams(BaseModel):
    crpix1: float
    crpix2: float
    crval1: float = Field(description="Reference right ascension (or longitude), degrees")
    crval2: float = Field(description="Reference declination (or latitude), degrees")
    cdelt1: float = Field(description="Signed pixel scale along x, degrees per pixel")
    cdelt2: float = Field(description="Pixel scale along y, degrees per pixel")
    cd1_1: float
    cd1_2: float
    cd2_1: float
    cd2_2: float
    ctype1: str
    ctype2: str


class PixelData(BaseModel):
    """``GET /pixeldata``'s body but its ``data_id`` (what the engine returns)."""

    original_shape: list[int] = Field(description="[height, width] of the image plane")
    preview_shape: list[int] = Field(description="[height, width] of the returned pixels")
    scale_factor: float = Field(description="Original pixels per returned pixel along each axis")
    wcs: WcsParams | None = Field(
        description="Celestial WCS of the original pixels (astropy), null when the file has none"
    )
    units: str = Field(description="BUNIT of the data, or empty")
    pixels: str = Field(
        description="base64 of little-endian float32, row-major, "
        "preview_shape[0] x preview_shape[1]; NaN sent as 0; each "
        "value is the mean of a scale_factor x scale_factor block"
    )


class PixelDataResponse(PixelData):
    data_id: str


class Axis3(BaseModel):
    crval3: float
    cdelt3: float
    crpix3: float
    cunit3: str
    ctype3: str


class CubeInfo(BaseModel):
    """``GET /cubeinfo``'s body but its ``data_id`` (what the engine returns)."""

    is_cube: bool
    n_slices: int
    axis3: Axis3 | None
    slice_unit: str
    slice_label: str


class CubeInfoResponse(CubeInfo):
    data_id: str

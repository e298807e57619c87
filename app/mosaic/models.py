"""Request and response models of mosaics and footprints (CONTRACT.md §3.8-3.10)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.mosaic.mosaic_engine import CombineMethod
from app.schema import Fraction, example

EXAMPLE_KEYS: list[Any] = [
    "mast/jw02733-o001_t001_nircam_clear-f090w/jw02733001001_02101_00001_nrca1_cal.fits",
    "mast/jw02733-o001_t001_nircam_clear-f090w/jw02733001001_02101_00001_nrca2_cal.fits",
]


class MosaicFileConfig(BaseModel):
    file_path: str = Field(min_length=1, description="Storage key of the FITS file")
    stretch: str = Field(
        default="asinh",
        description="Display stretch (only files[0]'s "
        "settings are used, for the whole mosaic; unknown names mean zscale)",
    )
    black_point: Fraction = 0.0
    white_point: Fraction = 1.0
    gamma: float = Field(default=1.0, gt=0, le=5)
    asinh_a: float = Field(default=0.1, ge=0.001, le=1)


class MosaicRequest(BaseModel):
    model_config = example(
        {
            "files": [{"file_path": k, "stretch": "asinh"} for k in EXAMPLE_KEYS],
            "output_format": "png",
            "width": 2048,
            "height": None,
            "combine_method": "mean",
            "cmap": "inferno",
        },
        {
            "files": [{"file_path": k} for k in EXAMPLE_KEYS],
            "output_format": "fits",
            "quality": 95,
            "width": None,
            "height": None,
            "combine_method": "mean",
            "cmap": "grayscale",
        },
    )

    files: list[MosaicFileConfig] = Field(
        min_length=2, description="The exposures to stitch, in order (first/last refer to it)"
    )
    output_format: Literal["png", "jpeg", "fits"] = Field(
        default="png",
        description="png/jpeg: a rendered picture; fits: the float32 mosaic "
        "at the finest input pixel scale with NaN where nothing covers, streamed",
    )
    quality: int = Field(default=95, ge=1, le=100, description="JPEG quality")
    width: int | None = Field(
        default=None,
        gt=0,
        le=8000,
        description="Picture width; with "
        "height both exact, alone the height follows the sky's aspect; "
        "neither: native resolution. Not allowed with fits",
    )
    height: int | None = Field(default=None, gt=0, le=8000, description="Picture height")
    combine_method: CombineMethod = Field(
        default="mean",
        description="How overlapping pixels combine: mean (of the inputs "
        "covering the pixel), sum, first or last input in order, min, max",
    )
    cmap: str = Field(default="grayscale", description="Colormap of the picture")


class ObservationMosaicRequest(BaseModel):
    """Every per-detector file of one filter of one observation (CONTRACT-HEAD §10.5)."""

    model_config = example(
        {
            "file_paths": EXAMPLE_KEYS,
            "combine_method": "mean",
            "max_output_pixels": 64_000_000,
            "batch_size": 10,
        }
    )

    file_paths: list[str] = Field(
        min_length=2, max_length=500, description="Storage keys of the files, in order"
    )
    combine_method: CombineMethod = Field(
        default="mean", description="How overlapping pixels combine"
    )
    max_output_pixels: int = Field(
        default=64_000_000,
        ge=1,
        le=256_000_000,
        description="A larger native grid is made coarser to this many pixels (never refused)",
    )
    batch_size: int = Field(
        default=10,
        ge=4,
        le=20,
        description="Accepted for "
        "compatibility; the tiled engine combines all files at once "
        "(one global mean), so it needs no batches",
    )


class FootprintRequest(BaseModel):
    model_config = example({"file_paths": EXAMPLE_KEYS})

    file_paths: list[str] = Field(
        min_length=1, max_length=500, description="Storage keys; only headers are read"
    )


class Footprint(BaseModel):
    file_path: str
    corners_ra: list[float] = Field(
        description="RA (deg) of the pixel corners (0,0), "
        "(w-1,0), (w-1,h-1), (0,h-1), 0-based pixel centres"
    )
    corners_dec: list[float] = Field(description="Dec (deg) of the same corners")
    center_ra: float = Field(description="RA (deg) at pixel (w/2, h/2)")
    center_dec: float
    instrument: str | None = Field(default=None, description="INSTRUME of the header")


class BoundingBox(BaseModel):
    min_ra: float = Field(
        description="Start (deg) of the smallest RA arc that holds every corner, in [0, 360)"
    )
    max_ra: float = Field(
        description="min_ra plus the arc's width: above 360 when the box crosses RA 0"
    )
    min_dec: float
    max_dec: float


class FootprintResponse(BaseModel):
    footprints: list[Footprint]
    bounding_box: BoundingBox
    n_files: int
    overlap_warning: str | None = Field(
        default=None,
        description="When the files form several groups that do not overlap "
        "on the sky (fields of view from their instruments): the groups, one per line; "
        "else null",
    )

"""Request and response models of recipe discovery (CONTRACT.md §3.16)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.schema import example

#: Observations one request may list (a target's whole MAST history is a few thousand).
MAX_OBSERVATIONS = 20_000
NAME = 128


class ObservationInput(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    filter: str = Field(
        min_length=1,
        max_length=NAME,
        description="Filter name as MAST gives it, e.g. F444W or CLEAR;F444W",
    )
    instrument: str = Field(
        min_length=1, max_length=NAME, description="NIRCAM, NIRCAM/IMAGE, MIRI, NIRISS..."
    )
    wavelength_um: float | None = Field(
        default=None, gt=0, le=1000, description="Overrides the filter table"
    )
    observation_id: str | None = Field(default=None, max_length=NAME)
    t_obs_release: float | None = Field(
        default=None, description="Public release, MJD; later than today (proprietary) is dropped"
    )
    dataproduct_type: str | None = Field(
        default=None, max_length=NAME, description="'spectrum' is dropped"
    )
    data_product_type: str | None = Field(
        default=None,
        max_length=NAME,
        description="The .NET spelling of dataproduct_type (accepted too)",
    )
    s_ra: float | None = Field(
        default=None,
        ge=0,
        le=360,
        description="Pointing centre RA, degrees (spatial grouping, mosaic detection)",
    )
    s_dec: float | None = Field(
        default=None, ge=-90, le=90, description="Pointing centre Dec, degrees"
    )


class SuggestRecipesRequest(BaseModel):
    model_config = example(
        {
            "target_name": "NGC 3132",
            "observations": [
                {
                    "filter": "F090W",
                    "instrument": "NIRCAM",
                    "observation_id": "jw02733-o001_t001_nircam_clear-f090w",
                },
                {
                    "filter": "F187N",
                    "instrument": "NIRCAM",
                    "observation_id": "jw02733-o001_t001_nircam_clear-f187n",
                },
                {
                    "filter": "F444W",
                    "instrument": "NIRCAM",
                    "observation_id": "jw02733-o001_t001_nircam_clear-f444w",
                },
                {
                    "filter": "F1130W",
                    "instrument": "MIRI",
                    "observation_id": "jw02733-o002_t001_miri_f1130w",
                },
            ],
        }
    )

    target_name: str | None = Field(
        default=None,
        max_length=NAME,
        description="The "
        "target, e.g. M16, NGC 3324 or SMACS J0723.3-7327; "
        "curated recipes are found under its usual spellings",
    )
    observations: list[ObservationInput] | None = Field(default=None, max_length=MAX_OBSERVATIONS)


class TargetInfo(BaseModel):
    name: str
    common_name: str | None = None
    ra: float | None = None
    dec: float | None = None
    category: str | None = None


class Recipe(BaseModel):
    name: str
    rank: int = Field(
        description="0 curated (NASA-style), 1 cross-instrument or an "
        "instrument's filters, 2 classic, 3 narrowband, 4 broadband (+1 when "
        "cross-instrument recipes exist), 10 alternates and all-data variants"
    )
    filters: list[str] = Field(description="Upper-cased filter names")
    color_mapping: dict[str, str] = Field(description="Filter -> #rrggbb")
    instruments: list[str]
    requires_mosaic: bool = Field(
        default=False,
        description="A filter's observations point more than 10 arcsec apart: build mosaics first",
    )
    estimated_time_seconds: int
    observation_ids: list[str] | None = None
    description: str | None = None
    overlap_warning: str | None = None
    tag: str | None = Field(default=None, description="NASA-style, Recommended, All data")
    recommended_feather_strength: float | None = Field(
        default=None, description="For recipes over several instruments"
    )


class SuggestRecipesResponse(BaseModel):
    target: TargetInfo | None = None
    recipes: list[Recipe] = Field(default_factory=list)

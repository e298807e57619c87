"""Request and response models of recipe discovery (CONTRACT.md §3.16)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ObservationInput(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    filter: str = Field(min_length=1, description="Filter name as MAST gives it, e.g. F444W "
                        "or CLEAR;F444W")
    instrument: str = Field(min_length=1, description="NIRCAM, MIRI, NIRISS...")
    wavelength_um: float | None = Field(default=None, gt=0, description="Overrides the filter "
                                        "table")
    observation_id: str | None = None
    t_obs_release: float | None = Field(default=None, description="Public release, MJD; "
                                        "future dates (proprietary) are dropped")
    dataproduct_type: str | None = Field(default=None, description="'spectrum' is dropped")
    data_product_type: str | None = Field(default=None, description="The .NET spelling of "
                                          "dataproduct_type (accepted too)")


class SuggestRecipesRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "target_name": "NGC 3132",
        "observations": [
            {"filter": "F090W", "instrument": "NIRCAM", "observation_id": "jw02733-o001_t001_nircam_clear-f090w"},
            {"filter": "F187N", "instrument": "NIRCAM", "observation_id": "jw02733-o001_t001_nircam_clear-f187n"},
            {"filter": "F444W", "instrument": "NIRCAM", "observation_id": "jw02733-o001_t001_nircam_clear-f444w"},
            {"filter": "F1130W", "instrument": "MIRI", "observation_id": "jw02733-o002_t001_miri_f1130w"}]}]})

    target_name: str | None = None
    observations: list[ObservationInput] | None = None


class TargetInfo(BaseModel):
    name: str
    common_name: str | None = None
    ra: float | None = None
    dec: float | None = None
    category: str | None = None


class Recipe(BaseModel):
    name: str
    rank: int = Field(description="1 all filters of an instrument, 2 classic 3-colour, "
                      "3 narrowband, 4 broadband, 5 instruments together")
    filters: list[str] = Field(description="Shortest wavelength first")
    color_mapping: dict[str, str] = Field(description="Filter -> #rrggbb (chromatic order)")
    instruments: list[str]
    requires_mosaic: bool = False
    estimated_time_seconds: int
    observation_ids: list[str] | None = None


class SuggestRecipesResponse(BaseModel):
    target: TargetInfo | None = None
    recipes: list[Recipe] = Field(default_factory=list)

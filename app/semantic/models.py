"""Request and response models of semantic search (CONTRACT.md §3.17-3.19)."""

from __future__ import annotations

from pydantic import BaseModel, Field, JsonValue

from app.schema import Fraction, example

EXAMPLE_RECORD: dict[str, JsonValue] = {
    "file_id": "6650f1c2a9b8e4d3c2b1a0f9",
    "target_name": "Crab Nebula",
    "instrument": "MIRI",
    "filter_name": "F770W",
    "exposure_time": 1332.0,
    "wavelength_range": "mid-infrared",
    "processing_level": "L3",
    "calibration_level": 3,
    "observation_date": "2023-01-07",
    "proposal_pi": "Temim, Tea",
    "proposal_id": "1714",
    "observation_title": "The Crab Nebula with MIRI",
    "data_type": "image",
    "file_name": "jw01714-o002_t001_miri_f770w_i2d.fits",
}


class FileMetadata(BaseModel):
    """What is known of one file; its prose form is what gets embedded."""

    model_config = example(EXAMPLE_RECORD)

    file_id: str = Field(min_length=1, max_length=256, description="Record id of the .NET side")
    target_name: str | None = None
    instrument: str | None = None
    filter_name: str | None = None
    exposure_time: float | None = Field(default=None, description="Seconds")
    wavelength_range: str | None = None
    processing_level: str | None = None
    calibration_level: int | None = None
    observation_date: str | None = Field(default=None, description="yyyy-MM-dd")
    proposal_pi: str | None = None
    proposal_id: str | None = None
    observation_title: str | None = None
    data_type: str | None = None
    file_name: str | None = None


class EmbedBatchRequest(BaseModel):
    model_config = example({"items": [EXAMPLE_RECORD]})

    items: list[FileMetadata] = Field(
        description="Any number of records (embedded in "
        "chunks); re-embedding an id replaces its vector"
    )


class EmbedBatchResponse(BaseModel):
    embedded_count: int
    total_indexed: int
    errors: list[str] = Field(default_factory=list)


class EmbedRequest(BaseModel):
    model_config = example({"metadata": EXAMPLE_RECORD})

    metadata: FileMetadata


class EmbedResponse(BaseModel):
    file_id: str
    success: bool
    total_indexed: int


class SearchRequest(BaseModel):
    model_config = example(
        {"query": "MIRI images of the Crab Nebula", "top_k": 10, "min_score": 0.3}
    )

    query: str = Field(min_length=1, max_length=500, description="Plain-language question")
    top_k: int = Field(default=20, ge=1, le=100)
    min_score: Fraction = Field(default=0.3, description="Cosine similarity floor")


class SearchResult(BaseModel):
    file_id: str
    score: float = Field(description="Cosine similarity of the normalised embeddings, -1..1")
    matched_text: str = Field(description="The prose that was embedded for this file")


class SearchResponse(BaseModel):
    results: list[SearchResult]
    query: str
    embed_time_ms: float
    search_time_ms: float
    total_indexed: int


class IndexStatus(BaseModel):
    total_indexed: int
    model_loaded: bool = Field(description="The model is loaded in the server process")
    model_available: bool = Field(
        default=True,
        description="The model's package is installed, so search and embedding can work",
    )
    missing_packages: list[str] = Field(
        default_factory=list, description="What to install when the model is not available"
    )
    index_file_exists: bool
    model_name: str = "all-MiniLM-L6-v2"
    embedding_dim: int = 384

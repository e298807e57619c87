"""The prose that represents a file's metadata for embedding."""

from __future__ import annotations

from app.semantic.models import FileMetadata

#: The model reads about 256 tokens (~1,000 characters); longer prose is cut here, so one
#: huge title cannot bloat the stored index.
MAX_TEXT_CHARS = 2000
LEVELS = {
    1: "raw uncalibrated",
    2: "calibrated single exposure",
    3: "combined science-ready",
    4: "contributed high-level",
}


def build_text(m: FileMetadata) -> str:
    """A short description in words, e.g. "MIRI F770W image of Crab Nebula. ..."; empty
    when the record says nothing embeddable."""
    parts = []
    what = " ".join(v for v in (m.instrument, m.filter_name, m.data_type or None) if v)
    if m.target_name:
        parts.append(
            f"{what or 'Observation'} of {m.target_name}."
            if what
            else f"Observation of {m.target_name}."
        )
    elif what:
        parts.append(f"{what}.")
    if m.observation_title:
        parts.append(f"{m.observation_title}.")
    if m.wavelength_range:
        parts.append(f"Wavelength: {m.wavelength_range}.")
    if m.calibration_level is not None:
        label = LEVELS.get(m.calibration_level, "")
        parts.append(f"Calibration level {m.calibration_level}" + (f", {label}." if label else "."))
    if m.processing_level:
        parts.append(f"Processing level {m.processing_level}.")
    if m.exposure_time is not None:
        parts.append(f"Exposure {m.exposure_time:g} s.")
    if m.observation_date:
        parts.append(f"Observed {m.observation_date}.")
    if m.proposal_id or m.proposal_pi:
        prop = " ".join(
            v
            for v in (
                f"program {m.proposal_id}" if m.proposal_id else "",
                f"PI {m.proposal_pi}" if m.proposal_pi else "",
            )
            if v
        )
        parts.append(prop[0].upper() + prop[1:] + ".")
    if m.file_name:
        parts.append(f"File {m.file_name}.")
    text = " ".join(parts).strip()
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 3] + "..."

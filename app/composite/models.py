"""Request model of the N-channel composite (CONTRACT.md §3.7)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from app.composite.color_mapping import ToneCurve
from app.processing.enhancement import STRETCHES, Stretch
from app.schema import Fraction, example


class ChannelColor(BaseModel):
    """How a channel is coloured: exactly one of ``hue``, ``rgb`` or ``luminance``."""

    hue: float | None = Field(
        default=None,
        ge=0,
        le=360,
        description="Hue in degrees (0 red, 120 green, 240 blue); the "
        "channel adds HSV(hue, 1, 1) to the picture",
    )
    rgb: tuple[float, float, float] | None = Field(
        default=None, description="Red, green and blue weights, each 0-1"
    )
    luminance: bool = Field(
        default=False,
        description="Use this channel as the lightness of the colour "
        "picture (LRGB); at most one per composite",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ChannelColor:
        given = (self.hue is not None) + (self.rgb is not None) + bool(self.luminance)
        if given != 1:
            raise ValueError("color needs exactly one of hue, rgb or luminance")
        if self.rgb is not None and not all(0.0 <= v <= 1.0 for v in self.rgb):
            raise ValueError("rgb weights must each be between 0 and 1")
        return self


class NChannelConfig(BaseModel):
    """One channel: the files of one filter, how to stretch them and their colour."""

    file_paths: list[str] = Field(
        min_length=1,
        description="Storage keys of the channel's "
        "FITS files; several files are combined on the sky "
        "(coverage-weighted mean)",
    )
    stretch: str = Field(
        default="asinh",
        description=", ".join(STRETCHES) + " (anything else is treated as zscale)",
    )
    black_point: Fraction = Field(
        default=0.0, description="Black point, a percentile fraction 0-1 of the stretched values"
    )
    white_point: Fraction = Field(default=1.0, description="White point, 0-1")
    gamma: float = Field(default=1.0, gt=0, le=5, description="Gamma; output = x^(1/gamma)")
    asinh_a: float = Field(default=0.05, ge=0.001, le=1, description="Asinh softening")
    curve: ToneCurve = Field(
        default="linear",
        description="Tone curve after the stretch: s_curve 3x^2-2x^3, "
        "inverse_s 0.5+asin(2x-1)/pi, shadows x^0.7, highlights x^1.3",
    )
    weight: float = Field(default=1.0, ge=0, le=2, description="Channel weight, 0-2")
    color: ChannelColor
    label: str | None = Field(
        default=None,
        description="Name used in messages (labels may "
        "repeat; channels are identified by position)",
    )
    wavelength_um: float | None = Field(
        default=None, gt=0, description="Pivot wavelength in micrometres (informational)"
    )
    auto_stretch: bool = Field(
        default=False,
        description="Choose stretch, levels, gamma, "
        "asinh softening and tone curve from the channel's own data "
        "(as POST /composite/analyze-channels reports them); they "
        "replace the fields above",
    )


class OverallAdjustments(BaseModel):
    """A stretch applied to the combined colour picture (same limits for R, G and B)."""

    stretch: Stretch = "linear"
    black_point: Fraction = 0.0
    white_point: Fraction = 1.0
    gamma: float = Field(default=1.0, gt=0, le=5)
    asinh_a: float = Field(default=0.1, ge=0.001, le=1)


class Sharpening(BaseModel):
    """Unsharp mask on the picture's luma, only inside the data."""

    radius: float = Field(
        default=1.5, ge=0.5, le=10, description="Gaussian sigma in output-grid pixels"
    )
    amount: float = Field(default=0.0, ge=0, le=3, description="Strength; 0 is off")
    threshold: Fraction = Field(
        default=0.0, description="Luma differences smaller than this are not sharpened"
    )


class Saturation(BaseModel):
    """Colour intensity, in HSL."""

    saturation: float = Field(default=1.0, ge=0, le=2, description="Saturation factor; 0 is grey")
    vibrancy: Fraction = Field(
        default=0.0, description="Raises low saturations more than high ones: S + vibrancy (1 - S)"
    )
    hue_rotation: float = Field(
        default=0.0, ge=-30, le=30, description="Degrees added to every hue"
    )


def _example_file(observation: str) -> list[JsonValue]:
    """``file_paths`` of an example channel: a JWST public level-3 mosaic."""
    return [f"mast/{observation}/{observation}_i2d.fits"]


_F187N = "jw02733-o001_t001_nircam_clear-f187n"
_F444W = "jw02733-o001_t001_nircam_clear-f444w"
_F1130W = "jw02733-o002_t001_miri_f1130w"


class NChannelCompositeRequest(BaseModel):
    model_config = example(
        {
            "channels": [
                {
                    "file_paths": _example_file(_F187N),
                    "stretch": "asinh",
                    "asinh_a": 0.05,
                    "color": {"hue": 240},
                    "label": "F187N",
                    "wavelength_um": 1.874,
                },
                {
                    "file_paths": _example_file(_F444W),
                    "stretch": "asinh",
                    "color": {"hue": 120},
                    "label": "F444W",
                    "wavelength_um": 4.421,
                },
                {
                    "file_paths": _example_file(_F1130W),
                    "stretch": "zscale",
                    "curve": "s_curve",
                    "color": {"rgb": [1.0, 0.2, 0.0]},
                    "label": "F1130W",
                    "wavelength_um": 11.3,
                },
            ],
            "background_neutralization": True,
            "output_format": "png",
            "width": 1000,
            "height": 1000,
        }
    )

    channels: list[NChannelConfig] = Field(min_length=1)
    overall: OverallAdjustments | None = None
    background_neutralization: bool = Field(
        default=True, description="Subtract each channel's sigma-clipped sky level first"
    )
    output_format: Literal["png", "jpeg"] = "png"
    quality: int = Field(default=95, ge=1, le=100, description="JPEG quality")
    width: int = Field(default=1000, gt=0, le=4096, description="Output width in pixels (exact)")
    height: int = Field(default=1000, gt=0, le=4096, description="Output height in pixels (exact)")
    sharpening: Sharpening | None = Field(default=None, description="Unsharp mask; null: off")
    saturation: Saturation | None = Field(
        default=None, description="Saturation, vibrancy and hue rotation; null: unchanged"
    )
    feather_strength: Fraction | None = Field(
        default=None,
        description="Feathering between instruments: 0 off; null "
        "automatic (on when the channels come from two or more instruments)",
    )
    rotation_degrees: float = Field(
        default=0.0,
        ge=-180,
        le=180,
        description="Clockwise rotation on screen; the canvas grows, corners black",
    )
    crop_center_x: Fraction = Field(
        default=0.5, description="With zoom: which part is shown, 0 the left edge, 1 the right edge"
    )
    crop_center_y: Fraction = Field(default=0.5, description="0 the top edge, 1 the bottom edge")
    crop_zoom: float = Field(
        default=1.0,
        ge=0.1,
        le=5,
        description="1 fits the picture in width x height; 2 shows half of it twice as large",
    )
    debug_masks: bool = Field(default=False, description="Accepted and ignored")
    allow_force_downscale: bool = Field(
        default=False,
        description="When the composite alone would not fit the memory "
        "limit even shrunk to COMPOSITE_DOWNSCALE_FAIL_THRESHOLD of its side, shrink it "
        "anyway (budget status 'forced') instead of answering 413",
    )


class AnalyzeChannelsRequest(BaseModel):
    """Channels to analyse for auto-stretch (CONTRACT-HEAD §10.4)."""

    model_config = example(
        {
            "channels": [
                {
                    "file_paths": _example_file(_F187N),
                    "color": {"hue": 240},
                    "label": "F187N",
                },
                {
                    "file_paths": _example_file(_F1130W),
                    "color": {"hue": 0},
                    "label": "F1130W",
                },
            ],
            "background_neutralization": True,
        }
    )

    channels: list[NChannelConfig] = Field(min_length=1)
    background_neutralization: bool = Field(
        default=True, description="Subtract each channel's sigma-clipped sky level first"
    )


class StretchParams(BaseModel):
    """What auto-stretch chooses (the channel fields it replaces); the defaults are
    its safe choice for a channel with too little data."""

    model_config = ConfigDict(frozen=True)

    stretch: str = Field(default="asinh", description="Always asinh")
    asinh_a: float = Field(
        default=0.02, description="Asinh softening, from the noise and the range"
    )
    black_point: float = Field(default=0.02, description="Black point as a percentile fraction")
    white_point: float = Field(default=0.995, description="White point as a percentile fraction")
    gamma: float = Field(default=1.2, description="Moves the stretched median toward 0.28")
    curve: str = Field(default="s_curve", description="Tone curve, from the signal-to-noise ratio")


class ChannelHistogram(BaseModel):
    counts: list[int]
    bin_edges: list[float]
    bin_centers: list[float]
    n_bins: int


class ChannelMeta(BaseModel):
    dynamic_range: float
    noise: float
    snr: float
    hdr_detected: bool
    curve_reason: str
    instrument_adjusted: bool
    valid_pixels: int
    zero_coverage_frac: float


class ChannelStats(BaseModel):
    min: float
    max: float
    mean: float
    std: float


class ChannelReport(BaseModel):
    """What the engine measures of one channel (CONTRACT-HEAD §10.4)."""

    params: StretchParams
    histogram: ChannelHistogram
    meta: ChannelMeta
    stats: ChannelStats


class ChannelAnalysis(ChannelReport):
    channel_name: str
    label: str | None


class AnalyzeChannelsResponse(BaseModel):
    channels: list[ChannelAnalysis]


class CompositeEstimate(BaseModel):
    """The budget verdict of a composite, without rendering it (CONTRACT-HEAD §10.3)."""

    status: Literal["ok", "warn", "fail"] = Field(
        description="ok: fits; warn: will shrink by a side factor >= the threshold; fail: "
        "a render would answer 413"
    )
    original_shape: list[int] = Field(
        min_length=2, max_length=2, description="[H, W] of the grid the request asks for"
    )
    output_shape: list[int] = Field(
        min_length=2,
        max_length=2,
        description="[H, W] after shrinking (equal to original_shape when ok)",
    )
    side_factor: float = Field(description="Linear shrink, 1.0 when ok")
    detail: str = Field(description='"" when ok, else the 413 text of a render')
    memory_limit_mb: int = Field(description="The memory limit in MB (10^6 bytes), floored")
    fail_threshold: float = Field(description="COMPOSITE_DOWNSCALE_FAIL_THRESHOLD")

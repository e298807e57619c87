"""The facts recipes are made from, as data (CONTRACT-HEAD §10.7).

Adding a curated target is one entry in :data:`CURATED` (and, for another
spelling of its name, one in :data:`ALIASES`); no code changes.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Pivot wavelengths (micrometres) of the imaging filters recipes know (§10.7's table).
FILTER_WAVELENGTHS: dict[str, float] = {
    "F070W": 0.704,
    "F090W": 0.901,
    "F115W": 1.154,
    "F140M": 1.404,
    "F150W": 1.501,
    "F162M": 1.626,
    "F164N": 1.644,
    "F150W2": 1.659,
    "F182M": 1.845,
    "F187N": 1.874,
    "F200W": 1.989,
    "F210M": 2.093,
    "F212N": 2.12,
    "F250M": 2.503,
    "F277W": 2.762,
    "F300M": 2.989,
    "F322W2": 3.232,
    "F323N": 3.237,
    "F335M": 3.362,
    "F356W": 3.568,
    "F360M": 3.624,
    "F405N": 4.052,
    "F410M": 4.082,
    "F430M": 4.28,
    "F444W": 4.421,
    "F460M": 4.624,
    "F466N": 4.654,
    "F470N": 4.707,
    "F480M": 4.817,
    "F560W": 5.6,
    "F770W": 7.7,
    "F1000W": 10.0,
    "F1130W": 11.3,
    "F1280W": 12.8,
    "F1500W": 15.0,
    "F1800W": 18.0,
    "F2100W": 21.0,
    "F2550W": 25.5,
}

#: How instruments are named in recipe names, and their order there.
DISPLAY_NAMES = {
    "NIRCAM": "NIRCam",
    "NIRISS": "NIRISS",
    "NIRSPEC": "NIRSpec",
    "FGS": "FGS",
    "MIRI": "MIRI",
}
DISPLAY_ORDER = ("NIRCAM", "NIRISS", "NIRSPEC", "FGS", "MIRI")

#: Native pixel scales ("/px) for the recommended feather strength (§10.1 step 5).
PIXEL_SCALES = {"MIRI": 0.111, "NIRISS": 0.065, "NIRSPEC": 0.100}
NIRCAM_SHORT, NIRCAM_LONG, NIRCAM_SPLIT_UM = 0.031, 0.063, 2.4
DEFAULT_PIXEL_SCALE = 0.065

#: Target names that mean "not a science target": no recipes.
BACKGROUND_MARKERS = ("BACKGROUND",)
BACKGROUND_SUFFIXES = ("-BKG", "_BKG", "-BG", "_BG", "-CAL", "_CAL")


@dataclass(frozen=True)
class CuratedRecipe:
    """A press-release colour assignment: filters in order with their colours."""

    key: str
    name: str
    colours: tuple[tuple[str, str], ...]
    instruments: tuple[str, ...]
    subject: str

    @property
    def description(self) -> str:
        return f"NASA press-release color assignment for {self.subject}"

    @property
    def filters(self) -> list[str]:
        return [f for f, _ in self.colours]


#: The five-filter NIRCam palette of the Cosmic Cliffs and the Pillars of Creation.
NIRCAM_FIVE_FILTERS = (
    ("F090W", "#0000ff"),
    ("F187N", "#00ffff"),
    ("F200W", "#00ff00"),
    ("F335M", "#ff8000"),
    ("F444W", "#ff0000"),
)

CURATED: tuple[CuratedRecipe, ...] = (
    CuratedRecipe(
        "ngc 3132",
        "NASA NIRCam (Southern Ring)",
        (("F090W", "#0000ff"), ("F187N", "#00ffff"), ("F212N", "#00ff00"), ("F356W", "#ff0000")),
        ("NIRCAM",),
        "the Southern Ring Nebula (NIRCam)",
    ),
    CuratedRecipe(
        "ngc 3132",
        "NASA MIRI (Southern Ring)",
        (("F770W", "#0000ff"), ("F1130W", "#00ffff"), ("F1280W", "#ffff00"), ("F1800W", "#ff0000")),
        ("MIRI",),
        "the Southern Ring Nebula (MIRI)",
    ),
    CuratedRecipe(
        "ngc 3324",
        "NASA NIRCam (Cosmic Cliffs)",
        NIRCAM_FIVE_FILTERS,
        ("NIRCAM",),
        "the Carina Nebula Cosmic Cliffs",
    ),
    CuratedRecipe(
        "stephan's quintet",
        "NASA NIRCam+MIRI (Stephan's Quintet)",
        (
            ("F090W", "#0000ff"),
            ("F150W", "#0080ff"),
            ("F200W", "#00ffff"),
            ("F277W", "#00ff00"),
            ("F356W", "#ffff00"),
            ("F444W", "#ff8000"),
            ("F770W", "#ff0000"),
        ),
        ("NIRCAM", "MIRI"),
        "Stephan's Quintet",
    ),
    CuratedRecipe(
        "smacs 0723",
        "NASA Deep Field (SMACS 0723)",
        (
            ("F090W", "#0000ff"),
            ("F150W", "#0080ff"),
            ("F200W", "#00ffff"),
            ("F277W", "#00ff00"),
            ("F356W", "#ffff00"),
            ("F444W", "#ff0000"),
        ),
        ("NIRCAM",),
        "Webb's First Deep Field",
    ),
    CuratedRecipe(
        "ngc 346",
        "NASA NIRCam (NGC 346)",
        (("F200W", "#0000ff"), ("F277W", "#00ffff"), ("F335M", "#ff8000"), ("F444W", "#ff0000")),
        ("NIRCAM",),
        "NGC 346 (STScI 2023-101)",
    ),
    CuratedRecipe(
        "ngc 346",
        "NASA MIRI (NGC 346)",
        (
            ("F770W", "#0000ff"),
            ("F1000W", "#00ffff"),
            ("F1130W", "#00ff00"),
            ("F1500W", "#ffff00"),
            ("F2100W", "#ff0000"),
        ),
        ("MIRI",),
        "NGC 346 (STScI 2023-145)",
    ),
    CuratedRecipe(
        "m16",
        "NASA Pillars of Creation",
        NIRCAM_FIVE_FILTERS,
        ("NIRCAM",),
        "the Pillars of Creation",
    ),
)

#: Other names of the curated targets (after normalisation, see recipe_engine.target_keys).
ALIASES = {
    "ngc 7320": "stephan's quintet",
    "ngc 6611": "m16",
    "messier 16": "m16",
    "eagle nebula": "m16",
    "pillars of creation": "m16",
    "smacs j0723.3-7327": "smacs 0723",
    "smacs j0723": "smacs 0723",
    "southern ring nebula": "ngc 3132",
    "southern ring": "ngc 3132",
    "cosmic cliffs": "ngc 3324",
}

#: Hues (degrees) by wavelength rank, shortest first, for 1 to 6 filters (§10.7 Colours).
HUES = {
    1: (0,),
    3: (240, 120, 0),
    4: (240, 120, 30, 0),
    5: (240, 180, 120, 30, 0),
    6: (240, 180, 120, 60, 30, 0),
}
BICOLOUR = ("#0080ff", "#ff8000")

SECONDS_PER_FILTER = 8
MOSAIC_TIME_FACTOR = 1.5
#: Two observations of one filter farther apart than this need a mosaic (arcsec).
MOSAIC_SEPARATION_ARCSEC = 10.0
#: Curated recipes group observations by pointing within this (arcsec).
CURATED_POINTING_ARCSEC = 60.0
MAX_FILTERS = 7
BEST_N_TARGET = 6
PRUNE_RATIO = 1.3
LOW_COVERAGE_FRACTION = 0.1

STARS_AND_DUST = "Stars and dust \u2014 full near- to mid-infrared wavelength coverage"
NO_COORDINATES = (
    "No coordinate data \u2014 spatial overlap assumed. Result may combine "
    "non-overlapping pointings."
)
NON_OVERLAPPING_TILES = (
    "Required filters appear in non-overlapping mosaic tiles; output may "
    "show patches with incomplete filter coverage."
)

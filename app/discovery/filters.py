"""JWST imaging filters and their pivot wavelengths (micrometres).

Values from the JWST User Documentation filter tables (NIRCam, NIRISS, MIRI),
rounded to the nanometre. A filter's name encodes its width: W wide (W2 extra
wide), M medium, N narrow.
"""

from __future__ import annotations

import re

NIRCAM = {
    "F070W": 0.704, "F090W": 0.902, "F115W": 1.154, "F140M": 1.404, "F150W": 1.501,
    "F162M": 1.626, "F164N": 1.644, "F150W2": 1.671, "F182M": 1.845, "F187N": 1.874,
    "F200W": 1.990, "F210M": 2.093, "F212N": 2.120, "F250M": 2.503, "F277W": 2.786,
    "F300M": 2.996, "F322W2": 3.247, "F323N": 3.237, "F335M": 3.365, "F356W": 3.563,
    "F360M": 3.621, "F405N": 4.055, "F410M": 4.092, "F430M": 4.280, "F444W": 4.421,
    "F460M": 4.624, "F466N": 4.654, "F470N": 4.707, "F480M": 4.817,
}
NIRISS = {
    "F090W": 0.901, "F115W": 1.149, "F140M": 1.404, "F150W": 1.493, "F158M": 1.581,
    "F200W": 1.968, "F277W": 2.776, "F356W": 3.593, "F380M": 3.828, "F430M": 4.283,
    "F444W": 4.435, "F480M": 4.815,
}
MIRI = {
    "F560W": 5.6, "F770W": 7.7, "F1000W": 10.0, "F1130W": 11.3, "F1280W": 12.8,
    "F1500W": 15.0, "F1800W": 18.0, "F2100W": 21.0, "F2550W": 25.5,
}
BY_INSTRUMENT = {"NIRCAM": NIRCAM, "NIRISS": NIRISS, "MIRI": MIRI}

_FILTER = re.compile(r"F\d{3,4}[WMN]2?", re.IGNORECASE)
_WIDTH_ORDER = {"N": 0, "M": 1, "W": 2}


def canonical_filter(name: str) -> str:
    """The filter that defines a band: 'CLEAR;F444W' -> F444W, 'F444W;F405N' -> F405N
    (a pupil-wheel narrow band inside a wide one), anything else upper-cased."""
    found = [m.upper() for m in _FILTER.findall(name or "")]
    if not found:
        return (name or "").strip().upper()
    return min(found, key=lambda f: _WIDTH_ORDER.get(f.rstrip("2")[-1], 3))


def width_class(name: str) -> str:
    """'narrow', 'medium', 'broad' or '' from the name (trailing digits ignored)."""
    core = name.upper().rstrip("0123456789")
    return {"N": "narrow", "M": "medium", "W": "broad"}.get(core[-1:], "")


def wavelength_um(filter_name: str, instrument: str | None = None) -> float | None:
    """Pivot wavelength from the tables, else from the name's digits (F444W -> 4.44)."""
    name = canonical_filter(filter_name)
    inst = (instrument or "").upper()
    for table in ([BY_INSTRUMENT[inst]] if inst in BY_INSTRUMENT else []) + list(
            BY_INSTRUMENT.values()):
        if name in table:
            return table[name]
    digits = re.match(r"F(\d{3,4})", name)
    return int(digits.group(1)) / 100.0 if digits else None

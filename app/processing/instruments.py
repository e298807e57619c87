"""Facts about JWST's instruments, as data (CONTRACT-HEAD §10.6, Decision 15).

Names are normalised before any look-up: ``NIRCAM/IMAGE``, ``nircam`` and
``NIRCam`` are all ``NIRCAM``.
"""

from __future__ import annotations

#: Field-of-view radius in arcminutes, for deciding whether two pointings overlap.
FIELD_RADIUS_ARCMIN = {"NIRCAM": 1.1, "MIRI": 0.75, "NIRISS": 1.1, "NIRSPEC": 1.6}
DEFAULT_FIELD_RADIUS_ARCMIN = 1.1


def normalise_instrument(name: object) -> str | None:
    """``NIRCAM/IMAGE`` -> ``NIRCAM``; None or blank -> None."""
    if name is None:
        return None
    text = str(name).strip().upper()
    if not text:
        return None
    return text.split("/", 1)[0].strip() or None


def field_radius_arcmin(name: object) -> float:
    """The instrument's field-of-view radius (1.1' for unknown instruments)."""
    key = normalise_instrument(name)
    return FIELD_RADIUS_ARCMIN.get(key or "", DEFAULT_FIELD_RADIUS_ARCMIN)

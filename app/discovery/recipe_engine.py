"""Composite recipes for a set of observations (CONTRACT.md §3.16, Appendix A).

Observations are grouped by instrument, de-duplicated by filter and ordered
by wavelength; each recipe assigns hues by wavelength rank (short = violet
or blue, long = red), the chromatic ordering astronomers use for
representative colour.
"""

from __future__ import annotations

import colorsys

from app.discovery.filters import canonical_filter, wavelength_um, width_class

SECONDS_PER_FILTER = 8
BICOLOUR = ("#0080ff", "#ff8000")
PALETTES = {1: [0], 3: [240, 120, 0], 4: [240, 120, 30, 0], 5: [280, 240, 120, 30, 0],
            6: [280, 240, 120, 60, 30, 0], 7: [280, 240, 180, 120, 60, 30, 0]}


def hue_hex(hue: float) -> str:
    r, g, b = colorsys.hsv_to_rgb((hue % 360) / 360.0, 1.0, 1.0)
    return "#" + "".join(f"{round(c * 255):02x}" for c in (r, g, b))


def hues_for(n: int) -> list[float]:
    """Hues for n filters, shortest wavelength first (Appendix A)."""
    if n in PALETTES:
        return list(PALETTES[n])
    hues = list(PALETTES[7])
    while len(hues) < n:
        gaps = [hues[i] - hues[i + 1] for i in range(len(hues) - 1)]
        i = gaps.index(max(gaps))
        hues.insert(i + 1, (hues[i] + hues[i + 1]) / 2.0)
    return hues


def colour_mapping(filters: list[str]) -> dict[str, str]:
    """{filter: '#rrggbb'} for filters already in wavelength order."""
    if len(filters) == 2:
        return dict(zip(filters, BICOLOUR))
    return {f: hue_hex(h) for f, h in zip(filters, hues_for(len(filters)))}


def _usable(observations: list[dict], now_mjd: float) -> list[dict]:
    out = []
    for obs in observations:
        kind = (obs.get("dataproduct_type") or obs.get("data_product_type") or "").lower()
        if kind == "spectrum":
            continue
        release = obs.get("t_obs_release")
        if release is not None and release > now_mjd:
            continue  # proprietary: not yet public
        name = canonical_filter(obs.get("filter") or "")
        instrument = (obs.get("instrument") or "").strip().upper().split("/")[0]
        wave = obs.get("wavelength_um") or wavelength_um(name, instrument)
        if not name or not instrument or wave is None:
            continue
        out.append({**obs, "filter": name, "instrument": instrument, "wavelength": float(wave)})
    return out


def _recipe(name: str, rank: int, group: list[dict]) -> dict:
    group = sorted(group, key=lambda o: o["wavelength"])
    filters = [o["filter"] for o in group]
    ids = sorted({i for o in group for i in o.get("observation_ids", []) if i})
    instruments = sorted({o["instrument"] for o in group})
    return {"name": name, "rank": rank, "filters": filters,
            "color_mapping": colour_mapping(filters), "instruments": instruments,
            "requires_mosaic": False,
            "estimated_time_seconds": SECONDS_PER_FILTER * len(filters),
            "observation_ids": ids or None}


def suggest_recipes(observations: list[dict], now_mjd: float) -> list[dict]:
    """Recipes ranked 1 (all filters of an instrument) to 5 (instruments together)."""
    by_instrument: dict[str, dict[str, dict]] = {}
    for obs in _usable(observations, now_mjd):
        filters = by_instrument.setdefault(obs["instrument"], {})
        entry = filters.setdefault(obs["filter"], {**obs, "observation_ids": []})
        if obs.get("observation_id"):
            entry["observation_ids"].append(obs["observation_id"])
    recipes: list[dict] = []
    for instrument in sorted(by_instrument):
        group = sorted(by_instrument[instrument].values(), key=lambda o: o["wavelength"])
        n = len(group)
        recipes.append(_recipe(f"{n}-filter {instrument}", 1, group))
        if n > 3:
            recipes.append(_recipe(f"Classic 3-color {instrument}", 2,
                                   [group[0], group[n // 2], group[-1]]))
        narrow = [o for o in group if width_class(o["filter"]) == "narrow"]
        if len(narrow) >= 2 and len(narrow) < n:
            recipes.append(_recipe(f"Narrowband {instrument}", 3, narrow))
        broad = [o for o in group if width_class(o["filter"]) == "broad"]
        if len(broad) >= 2 and len(broad) < n:
            recipes.append(_recipe(f"Broadband {instrument}", 4, broad))
    if len(by_instrument) > 1:
        merged: dict[str, dict] = {}
        for instrument in sorted(by_instrument):
            for name, obs in by_instrument[instrument].items():
                merged.setdefault(name, obs)
        names = "+".join(sorted(by_instrument))
        recipes.append(_recipe(f"{len(merged)}-filter {names}", 5, list(merged.values())))
    recipes.sort(key=lambda r: (r["rank"], r["name"]))
    return recipes

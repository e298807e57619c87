"""Composite recipes for a target's observations (CONTRACT-HEAD §10.7).

Small functions over the data of :mod:`app.discovery.catalogue`. The list is
ordered as the browser reads it (the first recipe is shown as "Recommended"):
curated press-release recipes (rank 0, then their alternate tiles), then the
cross-instrument recipes, then each instrument's recipes (All, Classic or two
filters, Narrowband, Broadband). Everything grows at most as n log n with the
number of observations (the spatial work is in :mod:`app.discovery.sky_groups`).

Decisions (CONTRACT-HEAD 15, 16, 20): instrument names are normalised
(``NIRCAM/IMAGE`` -> ``NIRCAM``) for every look-up (fields of view, pixel
scales); ``dataproduct_type`` and ``data_product_type`` both exclude spectra;
curated targets are found under the spellings users type. Filters without a
known wavelength in the table are also tried by their defining filter
(``CLEAR;F444W`` -> F444W); they keep the name MAST gave them.
"""

from __future__ import annotations

import colorsys
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.discovery import catalogue as cat
from app.discovery.sky_groups import linked_groups, spread_exceeds
from app.processing.instruments import field_radius_arcmin, normalise_instrument

_MOSAIC_ID = re.compile(r"-c\d{4}_")
_INDIVIDUAL_ID = re.compile(r"-o\d{3,4}_")
_FILTER = re.compile(r"F\d{3,4}[WMN]2?")
_WIDTH_ORDER = {"N": 0, "M": 1, "W": 2}


# --------------------------------------------------------------------------------------
# Observations
# --------------------------------------------------------------------------------------


@dataclass
class Obs:
    """One usable observation, normalised."""

    filter: str  # upper-cased, as sent
    instrument: str  # upper-cased, as sent (NIRCAM/IMAGE)
    wavelength: float
    observation_id: str | None = None
    ra: float | None = None
    dec: float | None = None

    @property
    def has_coords(self) -> bool:
        return self.ra is not None and self.dec is not None

    @property
    def position(self) -> tuple[float, float]:
        """(ra, dec) in degrees of an observation that has coordinates."""
        if self.ra is None or self.dec is None:
            raise ValueError("observation without coordinates")
        return self.ra, self.dec

    @property
    def kind(self) -> str | None:
        """The real instrument (Decision 15)."""
        return normalise_instrument(self.instrument)

    @property
    def radius(self) -> float:
        return field_radius_arcmin(self.instrument)


def defining_filter(name: str) -> str:
    """'CLEAR;F444W' -> F444W; 'F444W;F405N' -> F405N (the narrow band defines it)."""
    found = [m.upper() for m in _FILTER.findall(name.upper())]
    if not found:
        return name.strip().upper()
    return min(found, key=lambda f: _WIDTH_ORDER.get(f.rstrip("2")[-1], 3))


def resolve_wavelength(name: str, given: float | None) -> float | None:
    if given is not None:
        return float(given)
    upper = name.strip().upper()
    if upper in cat.FILTER_WAVELENGTHS:
        return cat.FILTER_WAVELENGTHS[upper]
    return cat.FILTER_WAVELENGTHS.get(defining_filter(upper))


def filter_priority(name: str) -> int:
    """W (and W2) 0, M 1, N and anything else 2."""
    core = defining_filter(name)
    if core.endswith(("W", "W2")):
        return 0
    last = core.rstrip("0123456789")[-1:]
    return {"M": 1}.get(last, 2)


def filter_class(name: str) -> str:
    core = defining_filter(name)
    if core.endswith(("W", "W2")):
        return "broad"
    return {"M": "medium", "N": "narrow"}.get(core.rstrip("0123456789")[-1:], "")


def drop_duplicate_mosaics(observations: list[dict]) -> list[dict]:
    """Step 1: where a (filter, instrument) has both pipeline-mosaic (-cNNNN_) and
    individual (-oNNN_) observations, drop the mosaics."""
    without_id = [o for o in observations if not o.get("observation_id")]
    groups: dict[tuple[str, str], list[dict]] = {}
    for o in observations:
        if o.get("observation_id"):
            key = ((o.get("filter") or "").upper(), (o.get("instrument") or "").upper())
            groups.setdefault(key, []).append(o)
    out = list(without_id)
    for members in groups.values():
        mosaics = [o for o in members if _MOSAIC_ID.search(o["observation_id"])]
        individual = [
            o
            for o in members
            if not _MOSAIC_ID.search(o["observation_id"])
            and _INDIVIDUAL_ID.search(o["observation_id"])
        ]
        others = [o for o in members if o not in mosaics and o not in individual]
        out += ([] if individual else mosaics) + individual + others
    return out


def is_background_target(target_name: str | None) -> bool:
    name = (target_name or "").upper()
    return any(m in name for m in cat.BACKGROUND_MARKERS) or name.endswith(cat.BACKGROUND_SUFFIXES)


def usable_observations(observations: list[dict], today_mjd: int) -> list[Obs]:
    """Steps 3-5: no spectra (either spelling), a known wavelength, already public."""
    out = []
    for o in observations:
        kind = (o.get("dataproduct_type") or o.get("data_product_type") or "").lower()
        if kind == "spectrum":
            continue
        name = (o.get("filter") or "").strip().upper()
        wave = resolve_wavelength(name, o.get("wavelength_um"))
        if not name or wave is None:
            continue
        release = o.get("t_obs_release")
        if release is not None and release > today_mjd:
            continue
        raw_ra, raw_dec = o.get("s_ra"), o.get("s_dec")
        ra = dec = None
        if raw_ra is not None and raw_dec is not None:
            ra, dec = float(raw_ra), float(raw_dec)
        out.append(
            Obs(
                filter=name,
                instrument=(o.get("instrument") or "").strip().upper(),
                wavelength=wave,
                observation_id=o.get("observation_id"),
                ra=ra,
                dec=dec,
            )
        )
    return out


# --------------------------------------------------------------------------------------
# Filters, names, colours
# --------------------------------------------------------------------------------------


def representatives(observations: list[Obs]) -> dict[str, Obs]:
    """The first observation of each filter, in order of appearance."""
    reps: dict[str, Obs] = {}
    for o in observations:
        reps.setdefault(o.filter, o)
    return reps


def by_wavelength(observations: list[Obs]) -> list[str]:
    """The distinct filters, shortest wavelength first."""
    reps = representatives(observations)
    return sorted(reps, key=lambda f: reps[f].wavelength)


def display_name(instrument: str) -> str:
    head = instrument.split("/", 1)[0].strip().upper()
    return cat.DISPLAY_NAMES.get(head, head.title())


def instruments_label(instruments: set[str]) -> str:
    heads = {i.split("/", 1)[0].strip().upper() for i in instruments}
    known = [h for h in cat.DISPLAY_ORDER if h in heads]
    return " + ".join(display_name(h) for h in known + sorted(heads - set(known)))


def n_filters(n: int) -> str:
    return f"{n} filter{'s' if n != 1 else ''}"


def hue_hex(hue: float) -> str:
    r, g, b = colorsys.hsv_to_rgb((hue % 360) / 360.0, 1.0, 1.0)
    return "#" + "".join(f"{math.floor(255 * c):02x}" for c in (r, g, b))


def hues_for(n: int) -> list[float]:
    """Hues by wavelength rank (§10.7): the table up to 6; beyond, the extra hues go
    round-robin into the gaps of the six (largest first), evenly spaced in each."""
    if n in cat.HUES:
        return [float(h) for h in cat.HUES[n]]
    if n == 2:
        return [240.0, 0.0]
    base = list(cat.HUES[6])
    gaps = [base[i] - base[i + 1] for i in range(5)]
    order = sorted(range(5), key=lambda i: (-gaps[i], i))
    extra = [0] * 5
    for k in range(n - 6):
        extra[order[k % 5]] += 1
    hues: list[float] = []
    for i in range(5):
        hues += [base[i] - gaps[i] * j / (extra[i] + 1) for j in range(extra[i] + 1)]
    return hues + [float(base[5])]


def instrument_colours(filters: list[str]) -> dict[str, str]:
    """Per-instrument recipes: two filters blue-orange, else hues by wavelength rank."""
    if len(filters) == 2:
        return dict(zip(filters, cat.BICOLOUR, strict=True))
    return {f: hue_hex(h) for f, h in zip(filters, hues_for(len(filters)), strict=True)}


def _spread(count: int, start: float, stop: float, single: float) -> list[float]:
    if count == 1:
        return [single]
    return [start + (stop - start) * i / (count - 1) for i in range(count)]


def cross_colours(filters: list[str], reps: dict[str, Obs]) -> dict[str, str]:
    """Cross-instrument recipes: the near-infrared filters from blue (240) to green (120),
    MIRI's from yellow (60) to red (0)."""

    def is_miri(f: str) -> bool:
        inst = reps[f].instrument
        return inst.startswith("MIRI") if inst else reps[f].wavelength >= 5.0

    near = [f for f in filters if not is_miri(f)]
    mid = [f for f in filters if is_miri(f)]
    out = {f: hue_hex(h) for f, h in zip(near, _spread(len(near), 240, 120, 180), strict=True)}
    out.update({f: hue_hex(h) for f, h in zip(mid, _spread(len(mid), 60, 0, 30), strict=True)})
    return {f: out[f] for f in filters}


# --------------------------------------------------------------------------------------
# Space
# --------------------------------------------------------------------------------------


def requires_mosaic(observations: list[Obs]) -> bool:
    """Two observations of one filter more than 10" apart."""
    by_filter: dict[str, list[Obs]] = {}
    for o in observations:
        if o.has_coords:
            by_filter.setdefault(o.filter, []).append(o)
    return any(
        spread_exceeds(
            [o.position[0] for o in obs],
            [o.position[1] for o in obs],
            cat.MOSAIC_SEPARATION_ARCSEC,
        )
        for obs in by_filter.values()
        if len(obs) > 1
    )


def pointing_groups(observations: list[Obs], fixed_arcmin: float | None = None) -> list[list[Obs]]:
    """Single-linkage groups of the observations with coordinates (closer than the sum of
    their fields of view, or than ``fixed_arcmin``); those without coordinates join every
    group (alone, they are one group)."""
    placed = [o for o in observations if o.has_coords]
    loose = [o for o in observations if not o.has_coords]
    if not placed:
        return [loose] if loose else []
    if fixed_arcmin is None:
        radii = sorted({o.radius for o in placed})
        classes = [radii.index(o.radius) for o in placed]
        thresholds = {(a, b): ra + rb for a, ra in enumerate(radii) for b, rb in enumerate(radii)}
    else:
        classes = [0] * len(placed)
        thresholds = {(0, 0): fixed_arcmin}
    groups = linked_groups(
        [o.position[0] for o in placed],
        [o.position[1] for o in placed],
        classes,
        thresholds,
    )
    return [[placed[i] for i in g] + loose for g in groups]


def coverage_areas(observations: list[Obs]) -> dict[str, float]:
    """Per filter with coordinates: the bounding box (arcmin^2) of its pointings, each
    widened by its field of view, with RA offsets scaled by cos(mean Dec)."""
    by_filter: dict[str, list[Obs]] = {}
    for o in observations:
        if o.has_coords:
            by_filter.setdefault(o.filter, []).append(o)
    areas = {}
    for name, obs in by_filter.items():
        ra = np.radians([o.position[0] for o in obs])
        dec = np.array([o.position[1] for o in obs], dtype=float)
        mean_ra = math.degrees(math.atan2(np.sin(ra).mean(), np.cos(ra).mean()))
        scale = max(math.cos(math.radians(dec.mean())), 0.01)
        x = ((np.degrees(ra) - mean_ra + 180.0) % 360.0 - 180.0) * scale * 60.0
        y = (dec - dec.mean()) * 60.0
        r = np.array([o.radius for o in obs])
        areas[name] = float(((x + r).max() - (x - r).min()) * ((y + r).max() - (y - r).min()))
    return areas


def low_coverage(areas: dict[str, float]) -> set[str]:
    if len(areas) <= 1:
        return set()
    median = float(np.median(list(areas.values())))
    if median <= 0:
        return set()
    return {f for f, a in areas.items() if a < cat.LOW_COVERAGE_FRACTION * median}


def coverage_warning(low: set[str]) -> str | None:
    if not low:
        return None
    verb = "has" if len(low) == 1 else "have"
    return (
        f"Uneven coverage: {', '.join(sorted(low))} {verb} significantly less spatial "
        "coverage than other filters"
    )


# --------------------------------------------------------------------------------------
# Filter selection
# --------------------------------------------------------------------------------------


def prune(filters: list[str], reps: dict[str, Obs]) -> list[str]:
    """Drop near-duplicate wavelengths: walking by wavelength, a filter within a factor
    1.3 of the last one kept replaces it if its priority is better (on a tie the earlier
    stays), until a pass changes nothing."""
    kept = sorted(filters, key=lambda f: reps[f].wavelength)
    while True:
        walked: list[str] = []
        for f in kept:
            if walked and reps[f].wavelength / reps[walked[-1]].wavelength < cat.PRUNE_RATIO:
                if filter_priority(f) < filter_priority(walked[-1]):
                    walked[-1] = f
                continue
            walked.append(f)
        if walked == kept:
            return kept
        kept = walked


def best_n(filters: list[str], reps: dict[str, Obs], low: set[str] | None) -> list[str]:
    """Best-N selection for cross recipes with more than 7 filters (§10.7)."""
    known = [
        f
        for f in filters
        if defining_filter(f) in cat.FILTER_WAVELENGTHS or f in cat.FILTER_WAVELENGTHS
    ]
    wave = {f: reps[f].wavelength for f in filters}
    if len(filters) <= 5 or len(known) < 3:
        return sorted(filters, key=lambda f: wave[f])
    logs = {f: math.log(wave[f]) for f in known}
    lo, hi = min(logs.values()), max(logs.values())
    centres = [lo + (hi - lo) * i / (cat.BEST_N_TARGET - 1) for i in range(cat.BEST_N_TARGET)]
    bins: dict[int, list[str]] = {}
    for f in known:
        bins.setdefault(
            min(range(len(centres)), key=lambda i: abs(logs[f] - centres[i])), []
        ).append(f)
    chosen = [
        min(
            members,
            key=lambda f: (
                int(f in low) if low else 0,
                filter_priority(f),
                abs(logs[f] - centres[b]),
            ),
        )
        for b, members in sorted(bins.items())
    ]
    inst = {f: reps[f].instrument for f in known}
    for instrument in sorted(set(inst.values())):
        have = [f for f in chosen if inst[f] == instrument]
        spare = sorted(
            (f for f in known if inst[f] == instrument and f not in chosen),
            key=lambda f: (filter_priority(f), wave[f]),
        )
        while len(have) < 2 and spare and len(have) + len(spare) >= 2:
            f = spare.pop(0)
            chosen.append(f)
            have.append(f)
    while len(chosen) > cat.MAX_FILTERS:
        chosen.sort(key=lambda f: wave[f])
        counts = {i: sum(1 for f in chosen if inst[f] == i) for i in set(inst.values())}
        removable = [
            f
            for f in sorted(chosen, key=lambda f: (-filter_priority(f), wave[f]))
            if counts[inst[f]] > 2
        ]
        if not removable:
            chosen = chosen[: cat.MAX_FILTERS]
            break
        chosen.remove(removable[0])
    if len(chosen) < 5:
        for f in sorted(
            (f for f in known if f not in chosen), key=lambda f: (filter_priority(f), wave[f])
        ):
            if len(chosen) >= 5:
                break
            chosen.append(f)
    return sorted(chosen, key=lambda f: wave[f])


# --------------------------------------------------------------------------------------
# Recipes
# --------------------------------------------------------------------------------------


@dataclass
class Recipe:
    name: str
    rank: int
    filters: list[str]
    color_mapping: dict[str, str]
    instruments: list[str]
    requires_mosaic: bool = False
    observation_ids: list[str] | None = None
    description: str | None = None
    overlap_warning: str | None = None
    tag: str | None = None
    #: filter -> the instrument of its representative (for the feather strength)
    members: dict[str, Obs] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        seconds = cat.SECONDS_PER_FILTER * len(self.filters)
        if self.requires_mosaic:
            seconds = int(seconds * cat.MOSAIC_TIME_FACTOR)
        return {
            "name": self.name,
            "rank": self.rank,
            "filters": self.filters,
            "color_mapping": self.color_mapping,
            "instruments": self.instruments,
            "requires_mosaic": self.requires_mosaic,
            "estimated_time_seconds": seconds,
            "observation_ids": self.observation_ids,
            "description": self.description,
            "overlap_warning": self.overlap_warning,
            "tag": self.tag,
            "recommended_feather_strength": feather_strength(self),
        }


def ids_of(observations: list[Obs], filters: list[str] | None = None) -> list[str] | None:
    wanted = None if filters is None else set(filters)
    ids = [
        o.observation_id
        for o in observations
        if o.observation_id and (wanted is None or o.filter in wanted)
    ]
    return ids or None


def pixel_scale(obs: Obs) -> float:
    kind = obs.kind
    if kind == "NIRCAM":
        return cat.NIRCAM_LONG if obs.wavelength >= cat.NIRCAM_SPLIT_UM else cat.NIRCAM_SHORT
    return cat.PIXEL_SCALES.get(kind or "", cat.DEFAULT_PIXEL_SCALE)


def feather_strength(recipe: Recipe) -> float | None:
    """round(min(0.3, 0.05 x coarsest / finest pixel scale), 3) over the recipe's filters'
    instruments when there are two or more, else None."""
    reps = [recipe.members[f] for f in recipe.filters if f in recipe.members]
    if len({r.instrument for r in reps}) < 2:
        return None
    scales = [pixel_scale(r) for r in reps]
    return round(min(0.3, 0.05 * max(scales) / min(scales)), 3)


def _recipe(
    name: str,
    rank: int,
    filters: list[str],
    colours: dict[str, str],
    observations: list[Obs],
    **extra: Any,
) -> Recipe:
    reps = representatives(observations)
    used = [o for o in observations if o.filter in set(filters)]
    return Recipe(
        name=name,
        rank=rank,
        filters=filters,
        color_mapping=colours,
        instruments=sorted({o.instrument for o in used}),
        members={f: reps[f] for f in filters if f in reps},
        **extra,
    )


def cross_recipes(groups: dict[str, list[Obs]], observations: list[Obs]) -> list[Recipe]:
    """Recipes over several instruments (only with two or more instrument groups)."""
    if len(groups) < 2:
        return []
    with_coords = any(o.has_coords for o in observations)
    spatial = pointing_groups(observations) if with_coords else [observations]
    out = []
    for group in spatial:
        instruments = {o.instrument for o in group}
        if len(instruments) < 2:
            continue
        reps = representatives(group)
        filters = by_wavelength(group)
        label = instruments_label(instruments)
        mosaic = requires_mosaic(group) if with_coords else False
        warning = None if with_coords else cat.NO_COORDINATES
        common = {"requires_mosaic": mosaic, "overlap_warning": warning}
        if len(filters) <= cat.MAX_FILTERS:
            out.append(
                _recipe(
                    f"{n_filters(len(filters))} \u00b7 {label}",
                    1,
                    filters,
                    cross_colours(filters, reps),
                    group,
                    description=cat.STARS_AND_DUST,
                    observation_ids=ids_of(group),
                    **common,
                )
            )
            continue
        low = low_coverage(coverage_areas(group)) if with_coords else None
        best = best_n(filters, reps, low)
        out.append(
            _recipe(
                f"Best {len(best)} filters \u00b7 {label}",
                1,
                best,
                cross_colours(best, reps),
                group,
                tag="Recommended",
                description="Optimally spaced filters for best color separation",
                observation_ids=ids_of(group, best),
                **common,
            )
        )
        out.append(
            _recipe(
                f"{n_filters(len(filters))} \u00b7 {label}",
                10,
                filters,
                cross_colours(filters, reps),
                group,
                tag="All data",
                description=cat.STARS_AND_DUST,
                observation_ids=ids_of(group),
                **common,
            )
        )
    return out


def instrument_recipes(instrument: str, group: list[Obs], offset: int) -> list[Recipe]:
    """All (or pruned and All), Classic (or two filters), Narrowband, Broadband."""
    inst = display_name(instrument)
    reps = representatives(group)
    filters = by_wavelength(group)
    n = len(filters)
    low = low_coverage(coverage_areas(group))
    everything = f"All {n} {inst} filters for maximum detail"
    # The "all filters" recipes carry the mosaic flag and the coverage warning.
    whole = {"requires_mosaic": requires_mosaic(group), "overlap_warning": coverage_warning(low)}
    out: list[Recipe] = []

    def add(name: str, rank: int, chosen: list[str], description: str, **extra: Any) -> None:
        out.append(
            _recipe(
                name,
                rank + offset,
                chosen,
                instrument_colours(chosen),
                group,
                description=description,
                observation_ids=ids_of(group, chosen),
                **extra,
            )
        )

    pruned = prune(filters, reps) if n > cat.MAX_FILTERS else filters
    if n <= cat.MAX_FILTERS or len(pruned) == n:
        add(f"{n_filters(n)} \u00b7 {inst}", 1, filters, everything, **whole)
    else:
        k = len(pruned)
        removed = f"{k} {inst} filters \u2014 redundant wavelengths removed"
        add(f"{n_filters(k)} \u00b7 {inst}", 1, pruned, removed, **whole)
        add(f"{n_filters(n)} \u00b7 {inst}", 10, filters, everything, tag="All data", **whole)
    if n >= 3:
        # Filters whose coverage is not known to be poor (without coordinates, nothing is).
        candidates = [f for f in filters if f not in low]
        if len(candidates) >= 3:
            chosen = [candidates[0], candidates[len(candidates) // 2], candidates[-1]]
            balanced = "Three well-separated wavelengths for balanced color"
            add(f"Classic 3-color {inst}", 2, chosen, balanced)
        elif len(candidates) == 2:
            best = "Best coverage filters with complementary colors"
            add(f"2 filters \u00b7 {inst}", 2, candidates, best)
    narrow = [f for f in filters if filter_class(f) == "narrow"]
    if 2 <= len(narrow) < n:
        add(f"Narrowband {inst}", 3, narrow, "Emission-line filters highlighting gas structures")
    broad = [f for f in filters if filter_class(f) == "broad"]
    if 3 <= len(broad) < n:
        add(f"Broadband {inst}", 4, broad, "Broadband filters for a clean continuum view")
    return out


# --------------------------------------------------------------------------------------
# Curated recipes
# --------------------------------------------------------------------------------------


def target_keys(target_name: str | None) -> list[str]:
    """The catalogue keys a typed name may mean: the name as typed, with and without a
    space between touching letters and digits ("M16", "M 16"), "Messier N" as "mN",
    then the aliases of each."""
    text = re.sub(r"\s+", " ", (target_name or "").strip().lower())
    if not text:
        return []
    spaced = re.sub(r"(?<=[a-z])(?=\d)", " ", text)
    joined = re.sub(r"(?<=[a-z]) (?=\d)", "", text)
    forms = [text, spaced, joined, re.sub(r"^messier ?(\d+)$", r"m\1", text)]
    keys: list[str] = []
    for form in forms + [cat.ALIASES.get(f, "") for f in forms]:
        for candidate in (form, cat.ALIASES.get(form, "")):
            if candidate and candidate not in keys:
                keys.append(candidate)
    return keys


def curated_recipes(target_name: str | None, observations: list[Obs]) -> list[Recipe]:
    keys = target_keys(target_name)
    definitions = [d for d in cat.CURATED if d.key in keys]
    present = {o.filter for o in observations}
    firsts, alternates = [], []
    for definition in definitions:
        wanted = set(definition.filters)
        if not wanted <= present:
            continue
        relevant = [o for o in observations if o.filter in wanted]
        groups = [
            g
            for g in pointing_groups(relevant, cat.CURATED_POINTING_ARCSEC / 60.0)
            if {o.filter for o in g} >= wanted
        ]
        groups.sort(key=lambda g: (len(g), sum(o.radius**2 for o in g)), reverse=True)

        def make(
            name: str,
            rank: int,
            description: str,
            group: list[Obs],
            warning: str | None = None,
            definition: cat.CuratedRecipe = definition,
        ) -> Recipe:
            reps = representatives(group)
            return Recipe(
                name=name,
                rank=rank,
                filters=definition.filters,
                color_mapping=dict(definition.colours),
                instruments=list(definition.instruments),
                requires_mosaic=requires_mosaic(group),
                observation_ids=ids_of(group),
                description=description,
                overlap_warning=warning,
                tag="NASA-style",
                members={f: reps[f] for f in definition.filters if f in reps},
            )

        if not groups:
            firsts.append(
                make(
                    definition.name, 0, definition.description, relevant, cat.NON_OVERLAPPING_TILES
                )
            )
            continue
        firsts.append(make(definition.name, 0, definition.description, groups[0]))
        for k, group in enumerate(groups[1:], start=1):
            alternates.append(
                make(
                    f"{definition.name} (alt tile {k})",
                    10,
                    f"{definition.description} \u2014 alternate spatial tile group",
                    group,
                )
            )
    return firsts + alternates


# --------------------------------------------------------------------------------------
# The whole list
# --------------------------------------------------------------------------------------


def suggest_recipes(
    target_name: str | None, observations: list[dict], today_mjd: int
) -> list[dict[str, Any]]:
    """The recipes of §10.7, in the browser's order (the first is "Recommended")."""
    if is_background_target(target_name):
        return []
    usable = usable_observations(drop_duplicate_mosaics(observations), today_mjd)
    if not usable:
        return []
    groups: dict[str, list[Obs]] = {}
    for o in usable:
        groups.setdefault(o.instrument, []).append(o)
    recipes = curated_recipes(target_name, usable)
    cross = cross_recipes(groups, usable)
    recipes += cross
    offset = 1 if cross else 0
    for instrument, group in groups.items():
        recipes += instrument_recipes(instrument, group, offset)
    return [r.as_dict() for r in recipes]

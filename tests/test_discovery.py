"""Recipe discovery (CONTRACT-HEAD §10.7): every family checked against its rule."""

from __future__ import annotations

import colorsys
import itertools
import math
import threading
import time

import astropy.units as u
import httpx
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from app.discovery import catalogue as cat
from app.discovery.recipe_engine import (
    best_n,
    hues_for,
    representatives,
    target_keys,
    usable_observations,
)

RA, DEC = 274.70, -13.80  # near M16
FIELDS = (
    "name",
    "rank",
    "filters",
    "color_mapping",
    "instruments",
    "requires_mosaic",
    "estimated_time_seconds",
    "observation_ids",
    "description",
    "overlap_warning",
    "tag",
    "recommended_feather_strength",
)


def post(base, body):
    r = httpx.post(base + "/discovery/suggest-recipes", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def hexes(hues):
    return [
        "#" + "".join(f"{math.floor(255 * c):02x}" for c in colorsys.hsv_to_rgb(h / 360, 1, 1))
        for h in hues
    ]


def offset(ra, dec, east_arcsec=0.0, north_arcsec=0.0):
    """A point east and north of (ra, dec) by the given arcseconds (astropy)."""
    c = SkyCoord(ra * u.deg, dec * u.deg)
    moved = c.spherical_offsets_by(east_arcsec * u.arcsec, north_arcsec * u.arcsec)
    return float(moved.ra.deg), float(moved.dec.deg)


def obs(filt, inst="NIRCAM/IMAGE", oid=None, at=(RA, DEC), **extra):
    item = {
        "filter": filt,
        "instrument": inst,
        "observation_id": oid or f"{inst[:5]}-{filt}",
        "wavelength_um": None,
        "t_obs_release": None,
        "data_product_type": "image",
    }
    if at is not None:
        item["s_ra"], item["s_dec"] = at
    item.update(extra)
    return item


def recipes_of(base, observations, target=None):
    return post(base, {"target_name": target, "observations": observations})["recipes"]


def check_fields(recipe):
    assert set(recipe) == set(FIELDS)
    assert type(recipe["rank"]) is int and type(recipe["estimated_time_seconds"]) is int
    factor = 1.5 if recipe["requires_mosaic"] else 1.0
    assert recipe["estimated_time_seconds"] == int(8 * len(recipe["filters"]) * factor)
    assert list(recipe["color_mapping"]) == recipe["filters"]


# ---------------------------------------------------------------------------------------
# Curated recipes and the names users type (Decision 20)
# ---------------------------------------------------------------------------------------

PILLARS = ["F090W", "F187N", "F200W", "F335M", "F444W"]


@pytest.mark.parametrize(
    "name", ["M16", "M 16", "m16", "Messier 16", "NGC 6611", "NGC6611", "  m 16 "]
)
def test_pillars_are_found_under_every_spelling(engine_url, name):
    recipes = recipes_of(engine_url, [obs(f) for f in PILLARS], target=name)
    first = recipes[0]
    check_fields(first)
    assert first["name"] == "NASA Pillars of Creation" and first["rank"] == 0
    assert first["tag"] == "NASA-style" and first["instruments"] == ["NIRCAM"]
    assert first["color_mapping"] == {
        "F090W": "#0000ff",
        "F187N": "#00ffff",
        "F200W": "#00ff00",
        "F335M": "#ff8000",
        "F444W": "#ff0000",
    }
    assert first["description"] == "NASA press-release color assignment for the Pillars of Creation"


@pytest.mark.parametrize(
    "typed",
    [
        "NGC 3132",
        "ngc3132",
        "NGC 3324",
        "Stephan's Quintet",
        "NGC 7320",
        "SMACS 0723",
        "SMACS J0723.3-7327",
        "NGC 346",
        "NGC346",
        "M16",
    ],
)
def test_every_curated_target_is_reachable(engine_url, typed):
    keys = target_keys(typed)
    definitions = [d for d in cat.CURATED if d.key in keys]
    assert definitions, typed
    observations = [
        obs(f, "MIRI/IMAGE" if cat.FILTER_WAVELENGTHS[f] > 5 else "NIRCAM/IMAGE")
        for d in definitions
        for f in d.filters
    ]
    recipes = recipes_of(engine_url, observations, target=typed)
    curated = [r for r in recipes if r["tag"] == "NASA-style"]
    assert [r["name"] for r in curated] == [d.name for d in definitions]
    assert all(r["rank"] == 0 for r in curated)
    assert recipes[: len(curated)] == curated


def test_curated_needs_every_filter(engine_url):
    recipes = recipes_of(engine_url, [obs(f) for f in PILLARS[:-1]], target="M16")
    assert all(r["tag"] != "NASA-style" for r in recipes)


def test_curated_alternate_tiles_and_non_overlapping_filters(engine_url):
    far = offset(RA, DEC, east_arcsec=300)
    two_tiles = (
        [obs(f, oid=f"a-{f}") for f in PILLARS]
        + [obs(f, oid=f"b-{f}", at=far) for f in PILLARS]
        + [obs("F090W", oid="a-extra")]
    )
    recipes = recipes_of(engine_url, two_tiles, target="M16")
    assert recipes[0]["name"] == "NASA Pillars of Creation"
    # Step 1 orders the observations by (filter, instrument) group, in order of appearance.
    assert recipes[0]["observation_ids"] == ["a-F090W", "a-extra"] + [f"a-{f}" for f in PILLARS[1:]]
    alt = recipes[1]
    assert alt["name"] == "NASA Pillars of Creation (alt tile 1)" and alt["rank"] == 10
    assert alt["description"].endswith(" \u2014 alternate spatial tile group")
    assert alt["observation_ids"] == [f"b-{f}" for f in PILLARS]
    split = [obs(f) for f in PILLARS[:3]] + [obs(f, at=far) for f in PILLARS[3:]]
    only = recipes_of(engine_url, split, target="M16")[0]
    assert only["tag"] == "NASA-style" and only["overlap_warning"] == cat.NON_OVERLAPPING_TILES


# ---------------------------------------------------------------------------------------
# Mosaic detection and overlap
# ---------------------------------------------------------------------------------------


def test_requires_mosaic_at_30_arcsec_but_not_at_5(engine_url):
    for separation, expected in ((30.0, True), (5.0, False)):
        far = offset(RA, DEC, east_arcsec=separation)
        observations = [
            obs("F090W"),
            obs("F090W", oid="second", at=far),
            obs("F200W"),
            obs("F444W"),
        ]
        recipes = recipes_of(engine_url, observations)
        everything = recipes[0]
        assert everything["name"] == "3 filters \u00b7 NIRCam"
        assert everything["requires_mosaic"] is expected
        assert everything["estimated_time_seconds"] == (36 if expected else 24)
        classic = next(r for r in recipes if r["name"].startswith("Classic"))
        assert classic["requires_mosaic"] is False


def test_cross_instrument_recipe_and_rank_offset(engine_url):
    observations = [
        obs("F090W"),
        obs("F200W"),
        obs("F444W"),
        obs("F770W", "MIRI/IMAGE"),
        obs("F1130W", "MIRI/IMAGE"),
    ]
    recipes = recipes_of(engine_url, observations)
    for recipe in recipes:
        check_fields(recipe)
    cross = recipes[0]
    assert cross["name"] == "5 filters \u00b7 NIRCam + MIRI" and cross["rank"] == 1
    assert cross["description"] == cat.STARS_AND_DUST and cross["tag"] is None
    assert cross["instruments"] == ["MIRI/IMAGE", "NIRCAM/IMAGE"]
    assert list(cross["color_mapping"].values()) == hexes([240, 180, 120, 60, 0])
    assert cross["recommended_feather_strength"] == round(min(0.3, 0.05 * 0.111 / 0.031), 3)
    names = [(r["name"], r["rank"]) for r in recipes[1:]]
    assert names == [
        ("3 filters \u00b7 NIRCam", 2),
        ("Classic 3-color NIRCam", 3),
        ("2 filters \u00b7 MIRI", 2),
    ]
    miri = recipes[-1]
    assert miri["color_mapping"] == {"F770W": "#0080ff", "F1130W": "#ff8000"}


def test_fields_of_view_use_the_real_instrument(engine_url):
    """Decision 15: NIRCAM/IMAGE is NIRCam (1.1') and MIRI/IMAGE is MIRI (0.75'): joined
    below 1.85' apart, separate above."""
    for arcmin, joined in ((1.8, True), (1.9, False)):
        at = offset(RA, DEC, east_arcsec=arcmin * 60)
        observations = [
            obs("F090W"),
            obs("F200W"),
            obs("F770W", "MIRI/IMAGE", at=at),
            obs("F1130W", "MIRI/IMAGE", at=at),
        ]
        recipes = recipes_of(engine_url, observations)
        has_cross = any("+" in r["name"] for r in recipes)
        assert has_cross is joined, arcmin


def test_without_coordinates_overlap_is_assumed_and_said(engine_url):
    observations = [obs(f, at=None) for f in ("F090W", "F200W")] + [
        obs("F770W", "MIRI/IMAGE", at=None)
    ]
    cross = recipes_of(engine_url, observations)[0]
    assert cross["overlap_warning"] == cat.NO_COORDINATES
    assert cross["requires_mosaic"] is False


def test_uneven_coverage_warning_follows_the_area_rule(engine_url):
    wide = [offset(RA, DEC, e, n) for e in (-180, 180) for n in (-180, 180)]
    observations = (
        [obs("F090W", oid=f"a{i}", at=p) for i, p in enumerate(wide)]
        + [obs("F444W", oid=f"b{i}", at=p) for i, p in enumerate(wide)]
        + [obs("F200W")]
    )
    recipes = recipes_of(engine_url, observations)
    # By hand: F200W's box is (2 x 1.1')^2; the others' are about (6' + 2.2')^2.
    small, large = 2.2**2, (6 + 2.2) ** 2
    assert small < 0.1 * np.median([small, large, large])
    assert recipes[0]["overlap_warning"] == (
        "Uneven coverage: F200W has significantly less spatial coverage than other filters"
    )
    assert recipes[0]["requires_mosaic"] is True


# ---------------------------------------------------------------------------------------
# Many filters
# ---------------------------------------------------------------------------------------

NIRCAM_MANY = [
    "F070W",
    "F090W",
    "F115W",
    "F140M",
    "F150W",
    "F162M",
    "F182M",
    "F187N",
    "F200W",
    "F210M",
    "F277W",
    "F335M",
    "F444W",
]


def test_more_than_seven_filters_best_n_and_pruning(engine_url):
    observations = [obs(f) for f in NIRCAM_MANY] + [
        obs(f, "MIRI/IMAGE") for f in ("F560W", "F770W", "F1000W", "F1130W")
    ]
    recipes = recipes_of(engine_url, observations)
    best, everything = recipes[0], recipes[1]
    assert best["tag"] == "Recommended" and best["rank"] == 1
    assert best["name"] == f"Best {len(best['filters'])} filters \u00b7 NIRCam + MIRI"
    assert 5 <= len(best["filters"]) <= 7
    miri = [f for f in best["filters"] if cat.FILTER_WAVELENGTHS[f] > 5]
    assert len(miri) >= 2 and len(best["filters"]) - len(miri) >= 2
    waves = [cat.FILTER_WAVELENGTHS[f] for f in best["filters"]]
    assert waves == sorted(waves)
    assert everything["tag"] == "All data" and everything["rank"] == 10
    assert len(everything["filters"]) == 17
    pruned, all_nircam = recipes[2], recipes[3]
    assert pruned["description"].endswith("filters \u2014 redundant wavelengths removed")
    kept = [cat.FILTER_WAVELENGTHS[f] for f in pruned["filters"]]
    assert all(b / a >= 1.3 for a, b in itertools.pairwise(kept))
    assert all_nircam["tag"] == "All data" and all_nircam["rank"] == 11
    assert all_nircam["description"] == "All 13 NIRCam filters for maximum detail"


def test_best_n_keeps_two_per_instrument():
    observations = usable_observations(
        [obs(f) for f in NIRCAM_MANY] + [obs("F770W", "MIRI/IMAGE"), obs("F1000W", "MIRI/IMAGE")],
        61000,
    )
    reps = representatives(observations)
    chosen = best_n(sorted(reps, key=lambda f: reps[f].wavelength), reps, None)
    assert {"F770W", "F1000W"} <= set(chosen)
    assert len(chosen) <= 7


def test_hues_by_rank():
    assert hues_for(7) == [240, 210, 180, 120, 60, 30, 0]
    assert hues_for(8) == [240, 210, 180, 150, 120, 60, 30, 0]
    assert hexes([30]) == ["#ff7f00"]


# ---------------------------------------------------------------------------------------
# What is left out
# ---------------------------------------------------------------------------------------


def test_spectra_unknown_filters_and_unreleased_are_left_out(engine_url):
    observations = [
        obs("F090W"),
        obs("F200W"),
        obs("F444W"),
        obs("F150W", data_product_type="spectrum"),
        obs("F277W", dataproduct_type="SPECTRUM", data_product_type=None),
        obs("PRISM"),
        obs("F356W", t_obs_release=99999.0),
    ]
    recipes = recipes_of(engine_url, observations)
    assert recipes[0]["filters"] == ["F090W", "F200W", "F444W"]


def test_background_targets_and_duplicate_mosaics(engine_url):
    assert recipes_of(engine_url, [obs("F090W"), obs("F200W")], target="M16-BKG") == []
    assert recipes_of(engine_url, [obs("F090W")], target="Background field") == []
    observations = [
        obs("F090W", oid="jw01-c1001_t001_nircam_f090w"),
        obs("F090W", oid="jw01-o001_t001_nircam_f090w"),
        obs("F200W"),
    ]
    first = recipes_of(engine_url, observations)[0]
    assert "jw01-c1001_t001_nircam_f090w" not in first["observation_ids"]


def test_target_and_empty_requests(engine_url):
    body = post(engine_url, {"target_name": "NGC 3324", "observations": []})
    assert body == {
        "target": {
            "name": "NGC 3324",
            "common_name": None,
            "ra": None,
            "dec": None,
            "category": None,
        },
        "recipes": [],
    }
    r = httpx.post(engine_url + "/discovery/suggest-recipes", json={"observations": None})
    assert r.status_code == 400 and isinstance(r.json()["detail"], str)


def test_many_observations_are_fast_and_off_the_event_loop(engine_url):
    """16,000 observations (1.1 MB) are answered while /health stays fast (the work grows
    as n log n and runs off the event loop)."""
    rng = np.random.default_rng(0)
    observations = [
        obs(
            f"F{rng.choice(['090W', '200W', '444W', '770W'])}",
            rng.choice(["NIRCAM/IMAGE", "MIRI/IMAGE"]),
            oid=f"o{i}",
            at=(RA + rng.normal(0, 0.05), DEC + rng.normal(0, 0.05)),
        )
        for i in range(16000)
    ]
    latencies: list[float] = []
    done = threading.Event()

    def probe():
        with httpx.Client(timeout=10) as client:
            while not done.is_set():
                start = time.perf_counter()
                client.get(engine_url + "/health")
                latencies.append(time.perf_counter() - start)
                time.sleep(0.02)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    recipes = recipes_of(engine_url, observations)
    done.set()
    thread.join(5)
    assert recipes and all(set(r) == set(FIELDS) for r in recipes)
    assert max(latencies) < 0.5, f"/health took {max(latencies):.2f} s"

"""Recipe discovery (CONTRACT.md §3.16, Appendix A)."""

from __future__ import annotations

import colorsys

import httpx
import pytest

from app.discovery.filters import canonical_filter, wavelength_um, width_class
from app.discovery.recipe_engine import hues_for


def post(base, body):
    return httpx.post(base + "/discovery/suggest-recipes", json=body, timeout=60)


def hexes(hues):
    out = []
    for h in hues:
        r, g, b = colorsys.hsv_to_rgb(h / 360, 1, 1)
        out.append("#%02x%02x%02x" % (round(r * 255), round(g * 255), round(b * 255)))
    return out


OBS = [
    {"filter": "F444W", "instrument": "NIRCAM", "observation_id": "o-444"},
    {"filter": "F090W", "instrument": "NIRCAM", "observation_id": "o-090"},
    {"filter": "F187N", "instrument": "NIRCAM", "observation_id": "o-187"},
    {"filter": "F200W", "instrument": "NIRCAM", "observation_id": "o-200"},
    {"filter": "F470N", "instrument": "NIRCAM", "observation_id": "o-470"},
    {"filter": "F090W", "instrument": "NIRCAM", "observation_id": "o-090b"},  # duplicate filter
    {"filter": "F1130W", "instrument": "MIRI", "observation_id": "m-1130"},
    {"filter": "F770W", "instrument": "MIRI", "observation_id": "m-770"},
    {"filter": "F2100W", "instrument": "MIRI", "observation_id": "m-2100",
     "t_obs_release": 99999.0},  # proprietary until MJD 99999
    {"filter": "F560W", "instrument": "MIRI", "dataproduct_type": "spectrum"},
]


def test_mixed_nircam_and_miri(engine_url):
    r = post(engine_url, {"target_name": "NGC 3132", "observations": OBS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["target"]["name"] == "NGC 3132"
    recipes = {rec["name"]: rec for rec in body["recipes"]}
    assert [rec["rank"] for rec in body["recipes"]] == sorted(rec["rank"] for rec in body["recipes"])
    nircam = recipes["5-filter NIRCAM"]
    assert nircam["rank"] == 1
    assert nircam["filters"] == ["F090W", "F187N", "F200W", "F444W", "F470N"]
    assert list(nircam["color_mapping"].values()) == hexes([280, 240, 120, 30, 0])
    assert nircam["instruments"] == ["NIRCAM"] and nircam["requires_mosaic"] is False
    assert nircam["estimated_time_seconds"] == 40
    assert set(nircam["observation_ids"]) == {"o-444", "o-090", "o-090b", "o-187", "o-200",
                                              "o-470"}
    assert recipes["Classic 3-color NIRCAM"]["filters"] == ["F090W", "F200W", "F470N"]
    assert list(recipes["Classic 3-color NIRCAM"]["color_mapping"].values()) == \
        hexes([240, 120, 0])
    assert recipes["Narrowband NIRCAM"]["filters"] == ["F187N", "F470N"]
    assert recipes["Narrowband NIRCAM"]["color_mapping"] == {"F187N": "#0080ff",
                                                             "F470N": "#ff8000"}
    assert recipes["Broadband NIRCAM"]["filters"] == ["F090W", "F200W", "F444W"]
    # MIRI: the proprietary F2100W and the spectrum are dropped.
    miri = recipes["2-filter MIRI"]
    assert miri["filters"] == ["F770W", "F1130W"]
    both = recipes["7-filter MIRI+NIRCAM"]
    assert both["rank"] == 5 and both["instruments"] == ["MIRI", "NIRCAM"]
    assert both["filters"] == ["F090W", "F187N", "F200W", "F444W", "F470N", "F770W", "F1130W"]
    assert list(both["color_mapping"].values()) == hexes([280, 240, 180, 120, 60, 30, 0])


def test_explicit_wavelengths_and_pupil_filters(engine_url):
    body = {"observations": [
        {"filter": "CLEAR;F150W", "instrument": "NIRCAM"},
        {"filter": "F444W;F405N", "instrument": "NIRCAM"},
        {"filter": "FCUSTOM", "instrument": "NIRCAM", "wavelength_um": 3.0},
    ]}
    recipe = post(engine_url, body).json()["recipes"][0]
    assert recipe["filters"] == ["F150W", "FCUSTOM", "F405N"]
    assert recipe["observation_ids"] is None


def test_target_without_observations_is_200_empty(engine_url):
    r = post(engine_url, {"target_name": "Carina Nebula", "observations": []})
    assert r.status_code == 200
    assert r.json() == {"target": {"name": "Carina Nebula", "common_name": None, "ra": None,
                                   "dec": None, "category": None}, "recipes": []}
    r = post(engine_url, {"target_name": "Carina Nebula"})
    assert r.status_code == 200 and r.json()["recipes"] == []


def test_neither_target_nor_observations_is_400(engine_url):
    r = post(engine_url, {})
    assert r.status_code == 400 and "observations" in r.json()["detail"]
    r = post(engine_url, {"observations": [{"filter": "F444W"}]})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)


def test_filter_helpers():
    assert canonical_filter("clear;f444w") == "F444W"
    assert canonical_filter("F322W2;F323N") == "F323N"
    assert width_class("F150W2") == "broad" and width_class("F187N") == "narrow"
    assert wavelength_um("F480M", "NIRCAM") == pytest.approx(4.817)
    assert wavelength_um("F2550W", "MIRI") == 25.5
    assert wavelength_um("F999W") == pytest.approx(9.99)


def test_more_than_seven_filters_fill_the_largest_gaps():
    hues = hues_for(9)
    assert hues[:1] == [280] and hues[-1] == 0 and len(set(hues)) == 9
    assert hues == sorted(hues, reverse=True)

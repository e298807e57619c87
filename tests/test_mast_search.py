"""MAST searches and products through astroquery against the MAST stand-in."""

from __future__ import annotations

import time

import httpx
import pytest

from app.mast.mast_service import name_variants

TIMEOUT = 60


def post(base, path, body):
    return httpx.post(base + path, json=body, timeout=TIMEOUT)


def obs_ids(response):
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result_count"] == len(body["results"])
    return sorted(r["obs_id"] for r in body["results"])


def test_name_variants():
    assert name_variants("NGC-3132") == ["NGC-3132", "NGC 3132", "NGC3132"]
    assert name_variants("  NGC_3132 ") == ["NGC_3132", "NGC 3132", "NGC-3132", "NGC3132"]
    assert name_variants("Carina Nebula") == ["Carina Nebula", "Carina-Nebula", "CarinaNebula"]


def test_target_search_is_a_cone_and_public_only(proxy, standin):
    base, _, _ = proxy
    r = post(
        base,
        "/mast/search/target",
        {"target_name": "NGC-3132", "radius": 0.2, "calib_level": [2, 3]},
    )
    ids = obs_ids(r)
    # The stand-in also holds a proprietary observation (future release) and one inside
    # the 0.2-degree RA/Dec box but outside the 0.2-degree cone: neither is returned.
    assert ids == [
        "jw02733-o001_t001_nircam_clear-f090w",
        "jw02733-o001_t001_nircam_clear-f187n",
        "jw02733-o002_t001_miri_f1130w",
        "jw02733001001_02101_00001_nrca1",
    ]
    body = r.json()
    assert body["search_type"] == "target"
    assert body["query_params"] == {"target_name": "NGC-3132", "radius": 0.2, "calib_level": [2, 3]}
    assert body["timestamp"].endswith("+00:00")
    row = body["results"][0]
    # mast: URIs become download URLs on MAST_BASE_URL; NaN/masked become null.
    assert row["dataURL"].startswith(
        standin + "/api/v0.1/Download/file?uri=mast%3AJWST%2Fproduct%2F"
    )
    assert row["jpegURL"].endswith("_i2d.jpg")
    assert row["srcDen"] is None and row["sequence_number"] is None
    assert isinstance(row["calib_level"], int) and isinstance(row["s_ra"], float)


def test_calibration_level_filter(proxy):
    base, _, _ = proxy
    r = post(base, "/mast/search/target", {"target_name": "NGC 3132", "calib_level": [2]})
    assert obs_ids(r) == ["jw02733001001_02101_00001_nrca1"]
    every = post(base, "/mast/search/target", {"target_name": "NGC 3132", "calib_level": None})
    assert len(obs_ids(every)) == 4


def test_unknown_target_is_404_with_variants(proxy):
    base, _, _ = proxy
    r = post(base, "/mast/search/target", {"target_name": "Not A Real Object 123"})
    assert r.status_code == 404
    assert r.json()["detail"].startswith("Could not resolve target name 'Not A Real Object 123'")


def test_coordinate_search_normalises_ra(proxy):
    base, _, _ = proxy
    r = post(
        base,
        "/mast/search/coordinates",
        {"ra": 161.265 - 360, "dec": -59.6844, "radius": 0.1, "calib_level": [3]},
    )
    assert obs_ids(r) == ["jw02731-o001_t017_nircam_clear-f444w", "jw05555-o001_t001_miri_f560w"]
    assert r.json()["query_params"]["ra"] == pytest.approx(161.265)
    carina = [x for x in r.json()["results"] if x["obs_id"].startswith("jw05555")][0]
    assert carina["t_exptime"] is None  # NaN in MAST becomes null
    bad = post(base, "/mast/search/coordinates", {"ra": 10, "dec": 95})
    assert bad.status_code == 422 and isinstance(bad.json()["detail"], str)


def test_observation_and_program_search(proxy):
    base, _, _ = proxy
    r = post(
        base,
        "/mast/search/observation",
        {"obs_id": "jw02733-o002_t001_miri_f1130w", "calib_level": None},
    )
    assert obs_ids(r) == ["jw02733-o002_t001_miri_f1130w"]
    assert r.json()["search_type"] == "observation_id"
    secret = post(
        base, "/mast/search/observation", {"obs_id": "jw01234-o005_t002_nircam_clear-f444w"}
    )
    assert obs_ids(secret) == []
    program = post(base, "/mast/search/program", {"program_id": "2733", "calib_level": [3]})
    assert obs_ids(program) == [
        "jw02733-o001_t001_nircam_clear-f090w",
        "jw02733-o001_t001_nircam_clear-f187n",
        "jw02733-o002_t001_miri_f1130w",
        "jw02733-o009_t001_nircam_clear-f200w",
    ]


def test_recent_releases_sorted_and_paged(proxy):
    base, _, _ = proxy
    r = post(base, "/mast/search/recent", {"days_back": 30, "limit": 10, "offset": 0})
    ids = [x["obs_id"] for x in r.json()["results"]]
    assert ids == ["jw05555-o001_t001_miri_f560w", "jw02731-o001_t017_nircam_clear-f444w"]
    page2 = post(base, "/mast/search/recent", {"days_back": 30, "limit": 1, "offset": 1})
    assert [x["obs_id"] for x in page2.json()["results"]] == [
        "jw02731-o001_t017_nircam_clear-f444w"
    ]
    miri = post(base, "/mast/search/recent", {"days_back": 30, "instrument": "miri"})
    assert [x["obs_id"] for x in miri.json()["results"]] == ["jw05555-o001_t001_miri_f560w"]
    assert post(base, "/mast/search/recent", {"offset": -1}).status_code == 422
    assert post(base, "/mast/search/recent", {"days_back": 400}).status_code == 422


def test_products_are_science_fits(proxy):
    base, _, _ = proxy
    r = post(base, "/mast/products", {"obs_id": "jw02733-o001_t001_nircam_clear-f090w"})
    body = r.json()
    names = sorted(p["productFilename"] for p in body["products"])
    assert names == [
        "jw02733-o001_t001_nircam_clear-f090w_i2d.fits",
        "jw02733-o001_t001_nircam_clear-f090w_segm.fits",
        "jw02733-o001_t001_nircam_clear-f090w_x1d.fits",
        "jw02733001001_02101_00001_nrca1_cal.fits",
    ]
    assert body["product_count"] == 4
    assert all(p["productType"] == "SCIENCE" for p in body["products"])
    assert all(isinstance(p["size"], int) and p["size"] > 0 for p in body["products"])
    missing = post(base, "/mast/products", {"obs_id": "jw99999-o001_t001_none"})
    assert missing.json() == {
        "obs_id": "jw99999-o001_t001_none",
        "products": [],
        "product_count": 0,
    }


def test_product_lists_are_cached_briefly(standin):
    """Listing products and then downloading them asks MAST once."""
    from app.mast.mast_service import MastService

    def requests_seen() -> int:
        return httpx.get(standin + "/__control", timeout=10).json()["requests"]

    service = MastService(standin, standin + "/cgi-bin/nph-sesame/", timeout=20)
    obs_id = "jw02733-o001_t001_nircam_clear-f090w"
    before = requests_seen()
    first = service.product_rows(obs_id)
    asked = requests_seen()
    assert asked > before and len(first) == 4
    first[0]["productFilename"] = "changed by a caller"
    again = service.product_rows(obs_id)
    assert requests_seen() == asked
    assert again[0]["productFilename"] != "changed by a caller"
    service.product_rows(obs_id, "PREVIEW")  # another key asks again
    assert requests_seen() > asked


@pytest.fixture()
def impatient_proxy(standin, tmp_path):
    """A proxy that waits 1 s for MAST."""
    from tests.conftest import mast_env
    from tests.support.servers import run_service

    env = mast_env(standin, tmp_path, MAST_SEARCH_TIMEOUT=1)
    with run_service("main_mast", env, tmp_path / "p.log") as (base, _):
        yield base


def test_a_mast_failure_is_502(impatient_proxy, standin):
    httpx.post(standin + "/__control", json={"fail_next": 1})
    r = post(impatient_proxy, "/mast/search/program", {"program_id": "2733"})
    assert r.status_code == 502 and "MAST" in r.json()["detail"]


def test_a_slow_mast_is_504(impatient_proxy, standin):
    httpx.post(standin + "/__control", json={"invoke_delay": 3})
    try:
        r = post(impatient_proxy, "/mast/search/program", {"program_id": "2734"})
        assert r.status_code == 504
        assert r.json()["detail"] == "MAST search timed out after 1 seconds."
    finally:
        httpx.post(standin + "/__control", json={"invoke_delay": 0})


def test_an_unreachable_mast_is_502(tmp_path):
    from tests.conftest import mast_env
    from tests.support.servers import run_service

    unreachable = mast_env("http://127.0.0.1:9", tmp_path / "u")
    with run_service("main_mast", unreachable, tmp_path / "u.log") as (base, _):
        r = post(base, "/mast/search/program", {"program_id": "2733"})
        assert r.status_code == 502 and isinstance(r.json()["detail"], str)
        r = post(base, "/mast/search/target", {"target_name": "NGC 3132"})
        assert r.status_code == 502


def test_validation_errors_have_string_detail(proxy):
    base, _, _ = proxy
    for body in (
        {},
        {"target_name": ""},
        {"target_name": "x", "radius": 0},
        {"target_name": "x", "radius": 11},
    ):
        r = post(base, "/mast/search/target", body)
        assert r.status_code == 422 and isinstance(r.json()["detail"], str)
        assert isinstance(r.json()["errors"], list)


def requests_seen(standin: str) -> int:
    return httpx.get(standin + "/__control", timeout=10).json()["requests"]


def test_identifiers_are_checked_and_never_wildcards(proxy, standin):
    """One pattern for MAST identifiers everywhere: '*' and '%' (which astroquery turns
    into wildcard searches over every page) and hidden names never reach MAST."""
    base, _, _ = proxy
    before = requests_seen(standin)
    for path, body in [
        ("/mast/search/observation", {"obs_id": "jw02733*"}),
        ("/mast/search/observation", {"obs_id": "%"}),
        ("/mast/search/program", {"program_id": "27*"}),
        ("/mast/search/program", {"program_id": "2733%"}),
        ("/mast/products", {"obs_id": "jw0273%"}),
        ("/mast/download", {"obs_id": "jw02733*"}),
        ("/mast/download/start-chunked", {"obs_id": ".download_state"}),
        ("/mast/download/start-s3", {"obs_id": "../elsewhere"}),
        ("/mast/search/recent", {"instrument": "NIRCAM*"}),
        ("/mast/search/target", {"target_name": "NGC 3132", "calib_level": [9]}),
    ]:
        r = post(base, path, body)
        assert r.status_code == 422, (path, body, r.text)
        assert isinstance(r.json()["detail"], str)
    assert requests_seen(standin) == before
    r = post(base, "/mast/search/program", {"program_id": " 2733 "})
    assert r.status_code == 200 and r.json()["result_count"] > 0


def test_products_are_public_jwst_data_only(proxy):
    base, _, _ = proxy
    names = [
        p["productFilename"]
        for p in post(
            base, "/mast/products", {"obs_id": "jw02733-o001_t001_nircam_clear-f090w"}
        ).json()["products"]
    ]
    assert names and not any("embargoed" in n for n in names)  # dataRights not PUBLIC
    # An observation whose release date is still to come lists nothing.
    r = post(base, "/mast/products", {"obs_id": "jw01234-o005_t002_nircam_clear-f444w"})
    assert r.status_code == 200 and r.json()["product_count"] == 0


def test_a_search_asks_for_one_page(standin, monkeypatch):
    from app.mast import mast_service

    monkeypatch.setattr(mast_service, "SEARCH_PAGE_SIZE", 2)
    service = mast_service.MastService(standin, standin + "/cgi-bin/nph-sesame/", timeout=20)
    service.search_program("2733", None)  # column configuration fetched once
    before = requests_seen(standin)
    rows = service.search_program("2733", None)
    assert len(rows) == 2  # the first page of five public observations
    assert requests_seen(standin) - before == 1


def test_a_search_that_times_out_stops_its_work(standin):
    """astroquery sends requests without a socket timeout; the service gives every
    request one, so a search that MAST never answers ends (it does not hold a thread
    for as long as MAST stays silent)."""
    from app.errors import UpstreamError
    from app.mast.mast_service import MastService

    service = MastService(standin, standin + "/cgi-bin/nph-sesame/", timeout=1)
    service.observations()  # its requests give up after 1 + SEARCH_GRACE_SECONDS
    httpx.post(standin + "/__control", json={"invoke_delay": 120})
    try:
        t0 = time.monotonic()
        with pytest.raises(UpstreamError, match="MAST request failed"):
            service.search_program("2733", None)
        assert time.monotonic() - t0 < 60  # the silence lasts 120 s
    finally:
        httpx.post(standin + "/__control", json={"invoke_delay": 0})

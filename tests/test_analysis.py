"""Region statistics, source detection, tables and spectra (CONTRACT.md §3.11-3.15)."""

from __future__ import annotations

import math

import httpx
import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import SigmaClip
from fastapi.testclient import TestClient
from matplotlib.path import Path as MplPath
from photutils.background import Background2D, MedianBackground
from photutils.detection import DAOStarFinder

from app.config import Settings
from tests.conftest import real_image_path
from tests.support.synthetic import make_catalog, make_cube, make_jwst_image

TIMEOUT = 180


def post(base, path, body):
    return httpx.post(base + path, json=body, timeout=TIMEOUT)


def get(base, path, **params):
    return httpx.get(base + path, params=params, timeout=TIMEOUT)


def region_stats(base, key, region_type="rectangle", **body):
    """``POST /analysis/region-statistics`` of ``key``."""
    body = {"file_path": key, "region_type": region_type, **body}
    return post(base, "/analysis/region-statistics", body)


def rectangle(x, y, width, height):
    return {"x": x, "y": y, "width": width, "height": height}


def table_page(base, key, **params):
    """``GET /analysis/table-data`` of ``key``'s first table HDU unless ``params`` say."""
    return get(base, "/analysis/table-data", file_path=key, **{"hdu_index": 1, **params})


def m13_data() -> np.ndarray:
    with fits.open(real_image_path("m13.fits")) as hdul:
        hdu = next(h for h in hdul if h.data is not None and h.data.ndim == 2)
        return hdu.data.astype(np.float64)


@pytest.fixture(scope="session")
def ana(data_root):
    base = data_root / "analysis"
    base.mkdir(exist_ok=True)
    stars = make_jwst_image(
        base / "stars_i2d.fits",
        shape=(512, 512),
        seed=90,
        n_stars=80,
        n_galaxies=0,
        flux_range=(20.0, 400.0),
        noise=0.02,
        rotation_deg=20.0,
    )
    cube = make_cube(base / "cube.fits", n_slices=5, shape=(30, 40))
    # Tables: a mixed BinTable, an x1d-like spectrum, a million-row table.
    n = 12
    mixed = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="ID", format="J", array=np.arange(n)),
            fits.Column(name="NAME", format="10A", array=[f"star{i:02d}" for i in range(n)]),
            fits.Column(
                name="FLUX",
                format="E",
                unit="Jy",
                disp="F8.3",
                array=np.array([1.5, np.nan, 3.0, -1.0, np.inf, 2.0, 7.0, 0.5, 9.0, 4.0, 6.0, 8.0]),
            ),
            fits.Column(name="VEC", format="3D", array=np.arange(3 * n, dtype=float).reshape(n, 3)),
            fits.Column(name="GOOD", format="L", array=[i % 2 == 0 for i in range(n)]),
        ],
        name="CATALOG",
    )
    wave = np.linspace(1.0, 5.0, 200)
    flux = np.sin(wave)
    flux[10] = np.nan
    spectrum = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="WAVELENGTH", format="D", unit="um", array=wave),
            fits.Column(name="FLUX", format="D", unit="Jy", array=flux),
            fits.Column(name="FLUX_ERROR", format="D", unit="Jy", array=np.full(200, 0.01)),
            fits.Column(name="DQ", format="J", array=np.zeros(200, dtype=np.int32)),
            fits.Column(name="OTHER", format="D", array=np.ones(200)),
        ],
        name="EXTRACT1D",
    )
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            mixed,
            spectrum,
            fits.ImageHDU(np.zeros((4, 4), dtype=np.float32), name="IMG"),
        ]
    ).writeto(base / "tables.fits", overwrite=True)
    make_catalog(base / "million.fits", 1_000_000, seed=7, wavelengths=True)
    return {
        "stars": stars,
        "stars_key": "analysis/stars_i2d.fits",
        "cube": cube,
        "cube_key": "analysis/cube.fits",
        "tables": "analysis/tables.fits",
        "million": "analysis/million.fits",
        "million_path": base / "million.fits",
    }


# ---------------------------------------------------------------------------------------
# Region statistics
# ---------------------------------------------------------------------------------------


def expected_stats(values: np.ndarray) -> dict:
    v = values[np.isfinite(values)]
    return {
        "mean": v.mean(),
        "median": np.median(v),
        "std": v.std(),
        "min": v.min(),
        "max": v.max(),
        "sum": v.sum(),
        "pixel_count": v.size,
    }


def check(body: dict, expected: dict) -> None:
    assert body["pixel_count"] == expected["pixel_count"]
    assert isinstance(body["pixel_count"], int)
    for key in ("mean", "median", "std", "min", "max", "sum"):
        assert body[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9), key


def m13_region(engine_url, region_type: str, region: dict) -> httpx.Response:
    """POST /analysis/region-statistics of one ``region_type`` region of the M13 image."""
    return region_stats(engine_url, "real/m13.fits", region_type, **{region_type: region})


def test_rectangle_on_m13(engine_url):
    data = m13_data()
    r = m13_region(engine_url, "rectangle", {"x": 100, "y": 120, "width": 40, "height": 30})
    assert r.status_code == 200, r.text
    check(r.json(), expected_stats(data[120:150, 100:140]))


def test_rectangle_is_clamped_to_the_image(engine_url):
    data = m13_data()
    r = m13_region(engine_url, "rectangle", {"x": 280, "y": 290, "width": 100, "height": 100})
    check(r.json(), expected_stats(data[290:, 280:]))


def test_ellipse_and_circle_on_m13(engine_url):
    data = m13_data()
    rows, cols = np.mgrid[0:300, 0:300]
    inside = ((cols - 150.3) / 20.5) ** 2 + ((rows - 140.0) / 12.0) ** 2 <= 1
    r = m13_region(engine_url, "ellipse", {"cx": 150.3, "cy": 140.0, "rx": 20.5, "ry": 12.0})
    check(r.json(), expected_stats(data[inside]))
    inside = (cols - 60) ** 2 + (rows - 75.5) ** 2 <= 9.5**2
    r = m13_region(engine_url, "circle", {"cx": 60, "cy": 75.5, "r": 9.5})
    check(r.json(), expected_stats(data[inside]))


def test_polygon_on_m13_matches_matplotlib(engine_url):
    data = m13_data()
    points = [[50.2, 60.7], [200.5, 80.1], [170.3, 220.9], [90.0, 160.4], [120.6, 110.0]]
    rows, cols = np.mgrid[0:300, 0:300]
    inside = MplPath(points).contains_points(np.column_stack([cols.ravel(), rows.ravel()]))
    r = m13_region(engine_url, "polygon", {"points": points})
    check(r.json(), expected_stats(data.ravel()[inside]))


def test_cube_uses_middle_or_given_slice_and_skips_nan(engine_url, ana):
    cube = ana["cube"]
    for slice_index, plane in ((-1, 2), (4, 4)):
        r = region_stats(
            engine_url, ana["cube_key"], slice_index=slice_index, rectangle=rectangle(0, 0, 40, 30)
        )
        check(r.json(), expected_stats(cube[plane].astype(np.float64)))
    # NaN border pixels of the JWST-like file are not counted.
    with fits.open(ana["stars"].path) as hdul:
        sci = hdul["SCI"].data.astype(np.float64)
    r = region_stats(engine_url, ana["stars_key"], rectangle=rectangle(0, 0, 512, 512))
    check(r.json(), expected_stats(sci))
    assert r.json()["pixel_count"] < 512 * 512


@pytest.mark.parametrize(
    "body,fragment",
    [
        (
            {
                "region_type": "rectangle",
                "rectangle": {"x": 400, "y": 400, "width": 5, "height": 5},
            },
            "No valid pixels",
        ),
        ({"region_type": "ellipse"}, "'ellipse' is required"),
        (
            {
                "region_type": "rectangle",
                "rectangle": {"x": 0, "y": 0, "width": 5, "height": 5},
                "hdu_index": 7,
            },
            "HDU 7",
        ),
    ],
)
def test_region_errors(engine_url, body, fragment):
    r = region_stats(engine_url, "real/m13.fits", **body)
    assert r.status_code == 400 and fragment in r.json()["detail"]


def test_region_errors_on_tables_and_nan(engine_url, ana):
    r = region_stats(engine_url, ana["tables"], hdu_index=1, rectangle=rectangle(0, 0, 2, 2))
    assert r.status_code == 400 and "no image" in r.json()["detail"]
    r = region_stats(engine_url, ana["stars_key"], rectangle=rectangle(0, 0, 3, 3))  # a NaN corner
    assert r.status_code == 400 and "No valid pixels" in r.json()["detail"]
    r = region_stats(engine_url, "real/m13.fits", "hexagon")
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)


# ---------------------------------------------------------------------------------------
# Source detection
# ---------------------------------------------------------------------------------------


def recall(sources, truth, radius=1.0) -> float:
    xy = np.array([[s["xcentroid"], s["ycentroid"]] for s in sources])
    found = 0
    for star in truth:
        if len(xy) and np.min(np.hypot(xy[:, 0] - star.x, xy[:, 1] - star.y)) <= radius:
            found += 1
    return found / len(truth)


@pytest.mark.parametrize("method", ["daofind", "iraf", "segmentation", "auto"])
def test_detection_recovers_injected_stars(engine_url, ana, method):
    img = ana["stars"]
    # S/N of a Gaussian star: flux / (noise * sqrt(4 pi sigma^2)); all injected are > 10.
    area = 4 * math.pi * img.psf_sigma**2
    bright = [s for s in img.stars if s.flux / (img.noise * math.sqrt(area)) > 10]
    assert len(bright) == len(img.stars)
    r = post(
        engine_url,
        "/analysis/detect-sources",
        {
            "file_path": ana["stars_key"],
            "method": method,
            "threshold_sigma": 5.0,
            "fwhm": 3.5,
            "npixels": 5,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == (method if method != "auto" else body["method"])
    assert body["method"] in ("daofind", "iraf", "segmentation")
    assert body["n_sources"] == len(body["sources"])
    assert recall(body["sources"], bright) >= 0.95
    # The threshold is threshold_sigma x the background RMS (the generator's noise).
    assert body["threshold_value"] == pytest.approx(5.0 * img.noise, rel=0.1)
    # Few spurious detections on a clean field (galaxies aside there are none here).
    assert body["n_sources"] <= len(img.stars) * 1.15
    ids = [s["id"] for s in body["sources"]]
    assert len(set(ids)) == len(ids)
    if body["method"] == "segmentation":
        assert all(s["sharpness"] is None and s["fwhm"] > 0 for s in body["sources"])
    else:
        assert all(s["sharpness"] is not None for s in body["sources"])


def test_daofind_count_close_to_photutils_on_m13(engine_url):
    data = m13_data()
    r = post(
        engine_url,
        "/analysis/detect-sources",
        {"file_path": "real/m13.fits", "method": "daofind", "threshold_sigma": 5.0, "fwhm": 3.0},
    )
    assert r.status_code == 200, r.text
    ours = r.json()["n_sources"]
    # photutils directly: Background2D (64 px boxes, 3x3 filter, its own spline
    # interpolation) and DAOStarFinder at 5 x the median background RMS.
    bkg = Background2D(
        data,
        64,
        filter_size=3,
        sigma_clip=SigmaClip(sigma=3.0, maxiters=5),
        bkg_estimator=MedianBackground(),
        exclude_percentile=50.0,
    )
    threshold = 5.0 * float(np.median(bkg.background_rms))
    theirs = DAOStarFinder(
        threshold=threshold, fwhm=3.0, exclude_border=True, min_separation=0
    ).find_stars(data - bkg.background)
    n_theirs = 0 if theirs is None else len(theirs)
    assert n_theirs > 20
    assert abs(ours - n_theirs) <= 0.1 * n_theirs, (ours, n_theirs)
    assert r.json()["threshold_value"] == pytest.approx(threshold, rel=0.05)


def test_sources_in_nan_regions_are_dropped(engine_url, ana):
    r = post(
        engine_url,
        "/analysis/detect-sources",
        {"file_path": ana["stars_key"], "method": "segmentation", "npixels": 5},
    )
    with fits.open(ana["stars"].path) as hdul:
        nan = ~np.isfinite(hdul["SCI"].data)
    for s in r.json()["sources"]:
        assert not nan[int(round(s["ycentroid"])), int(round(s["xcentroid"]))]


@pytest.mark.parametrize(
    "body,status,fragment",
    [
        ({"method": "magic"}, 400, "Invalid method"),
        ({"threshold_sigma": 0.5}, 422, "threshold_sigma"),
        ({"fwhm": 30}, 422, "fwhm"),
    ],
)
def test_detection_errors(engine_url, ana, body, status, fragment):
    r = post(engine_url, "/analysis/detect-sources", {"file_path": ana["stars_key"], **body})
    assert r.status_code == status and fragment in r.json()["detail"]


def test_detection_on_all_nan_and_tables(engine_url, ana):
    r = post(engine_url, "/analysis/detect-sources", {"file_path": "bad/all_nan.fits"})
    assert r.status_code == 400, r.text
    r = post(engine_url, "/analysis/detect-sources", {"file_path": ana["tables"], "hdu_index": 1})
    assert r.status_code == 400


def test_detection_size_and_time_limits(data_root, ana):
    from main import create_app

    small = Settings(
        STORAGE_BASE_PATH=data_root,
        ENGINE_WORKERS=1,
        DETECTION_MAX_PIXELS=1000,
        DETECTION_TIME_LIMIT_SECONDS=0.05,
    )
    with TestClient(create_app(small)) as client:
        r = client.post("/analysis/detect-sources", json={"file_path": ana["stars_key"]})
        assert r.status_code == 413 and "too large" in r.json()["detail"]
    # A limit of a microsecond: no detection (a process round trip, a FITS read) can end
    # before it, on any machine, so the answer is always 504.
    quick = Settings(
        STORAGE_BASE_PATH=data_root, ENGINE_WORKERS=1, DETECTION_TIME_LIMIT_SECONDS=1e-6
    )
    with TestClient(create_app(quick)) as client:
        r = client.post(
            "/analysis/detect-sources",
            json={"file_path": ana["stars_key"], "method": "segmentation"},
        )
        assert r.status_code == 504 and "limit" in r.json()["detail"]
        # The engine goes on (the job stopped, or its worker was replaced): the next job
        # works.
        r = client.post(
            "/analysis/region-statistics",
            json={
                "file_path": "real/m13.fits",
                "region_type": "circle",
                "circle": {"cx": 10, "cy": 10, "r": 3},
            },
        )
        assert r.status_code == 200


# ---------------------------------------------------------------------------------------
# Tables and spectra
# ---------------------------------------------------------------------------------------


def test_table_info(engine_url, ana):
    r = get(engine_url, "/analysis/table-info", file_path=ana["tables"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["file_name"] == "tables.fits"
    assert [h["index"] for h in body["table_hdus"]] == [1, 2]
    catalog = body["table_hdus"][0]
    assert catalog["name"] == "CATALOG" and catalog["hdu_type"] == "BinTableHDU"
    assert catalog["n_rows"] == 12 and catalog["n_columns"] == 5
    cols = {c["name"]: c for c in catalog["columns"]}
    assert cols["FLUX"]["unit"] == "Jy" and cols["FLUX"]["format"] == "F8.3"
    assert cols["FLUX"]["dtype"] == "E" and not cols["FLUX"]["is_array"]
    assert cols["VEC"]["is_array"] and cols["VEC"]["array_shape"] == [3]
    assert not cols["NAME"]["is_array"] and cols["NAME"]["array_shape"] is None


def test_table_data_cells_sort_search_and_clamp(engine_url, ana):
    r = table_page(
        engine_url, ana["tables"], page=0, page_size=5, sort_column="FLUX", sort_direction="desc"
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total_rows"] == 12 and body["sort_column"] == "FLUX"
    fluxes = [row["FLUX"] for row in body["rows"]]
    assert fluxes == [None, 9.0, 8.0, 7.0, 6.0]  # Inf is null; NaN sorts last
    row = body["rows"][1]
    assert row["NAME"] == "star08" and row["GOOD"] is True and row["ID"] == 8
    assert row["VEC"] == "[24.0, 25.0, 26.0]"
    r = table_page(engine_url, ana["tables"], search="STAR1", page=9, page_size=2)
    body = r.json()
    assert body["total_rows"] == 2 and body["page"] == 0  # star10, star11; page clamped
    assert {row["NAME"] for row in body["rows"]} == {"star10", "star11"}
    r = table_page(engine_url, ana["tables"], sort_column="VEC")
    assert r.json()["sort_column"] is None  # array columns are not sortable


@pytest.mark.parametrize(
    "params,fragment",
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 501}, "page_size"),
        ({"page": -1}, "page"),
        ({"hdu_index": 3}, "not a table"),
        ({"hdu_index": 9}, "does not exist"),
        ({"sort_direction": "up", "sort_column": "ID"}, "sort_direction"),
    ],
)
def test_table_data_errors(engine_url, ana, params, fragment):
    r = table_page(engine_url, ana["tables"], **params)
    assert r.status_code == 400 and fragment in r.json()["detail"]


def test_million_row_table_sorted_page(engine_url, ana):
    with fits.open(ana["million_path"]) as hdul:
        mag = np.asarray(hdul[1].data["MAG"])
    r = table_page(
        engine_url, ana["million"], page=3, page_size=100, sort_column="MAG", sort_direction="asc"
    )
    assert r.status_code == 200, r.text
    expected = np.sort(mag, kind="stable")[300:400]
    got = np.array([row["MAG"] for row in r.json()["rows"]], dtype=np.float32)
    np.testing.assert_array_equal(got, expected)
    assert r.json()["total_rows"] == 1_000_000


def test_spectral_data(engine_url, ana):
    r = get(engine_url, "/analysis/spectral-data", file_path=ana["tables"], hdu_index=2)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["hdu_name"] == "EXTRACT1D" and body["n_points"] == 200
    assert [c["name"] for c in body["columns"]] == ["WAVELENGTH", "FLUX", "FLUX_ERROR", "DQ"]
    assert body["columns"][0]["unit"] == "um"
    assert body["data"]["FLUX"][10] is None
    assert body["data"]["FLUX"][11] == pytest.approx(math.sin(np.linspace(1, 5, 200)[11]))
    assert body["data"]["DQ"][0] == 0


@pytest.mark.parametrize(
    "key,hdu,fragment",
    [
        ("tables", 1, "No WAVELENGTH column"),
        ("tables", 3, "not a table"),
        ("million", 1, "limited to"),
    ],
)
def test_spectral_errors(engine_url, ana, key, hdu, fragment):
    r = get(engine_url, "/analysis/spectral-data", file_path=ana[key], hdu_index=hdu)
    assert r.status_code == 400 and fragment in r.json()["detail"]

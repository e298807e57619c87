"""The viewer endpoints over HTTP against a live engine (CONTRACT.md §3.1-3.6)."""

from __future__ import annotations

import base64
import dataclasses
import inspect
import io
import json

import httpx
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.processing.enhancement import DisplayParams
from app.processing.render import colormap_table
from app.viewer.routes import display_params
from tests.conftest import real_image_path

TIMEOUT = 120


def get(base, path, **params):
    return httpx.get(base + path, params=params, timeout=TIMEOUT)


def png_of(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_health_and_root(engine_url):
    assert httpx.get(engine_url + "/health").json() == {
        "status": "healthy",
        "service": "jwst-processing-engine",
    }
    assert httpx.get(engine_url + "/").json()["status"] == "running"


# ---------------------------------------------------------------------------------------
# Thumbnail
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,size",
    [
        ("real/m13.fits", (256, 256)),
        ("jwst/small_i2d.fits", (256, 192)),  # 400 x 300: aspect kept
        ("jwst/large_i2d.fits", (256, 256)),
        ("real/cfht.fits", (256, 256)),  # 101 x 101: enlarged to 256
        ("jwst/cube_s3d.fits", (192, 256)),  # 30 x 40 middle slice
    ],
)
def test_thumbnail_is_256_on_the_long_side(engine_url, key, size):
    r = httpx.post(engine_url + "/thumbnail", json={"file_path": key}, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    body = r.json()
    raw = base64.b64decode(body["thumbnail_base64"])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(raw)).size == size


def test_thumbnail_errors(engine_url):
    r = httpx.post(engine_url + "/thumbnail", json={"file_path": "bad/empty_primary.fits"})
    assert r.status_code == 400 and r.json()["detail"] == "No image data found in FITS file"
    r = httpx.post(engine_url + "/thumbnail", json={})
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], str) and "file_path" in r.json()["detail"]
    assert r.json()["errors"][0]["loc"][-1] == "file_path"


# ---------------------------------------------------------------------------------------
# Preview
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,w,h,expected",
    [
        ("jwst/large_i2d.fits", 1000, 1000, (1000, 1000)),
        ("jwst/small_i2d.fits", 1000, 1000, (1000, 750)),  # enlarged to fill the box
        ("jwst/small_i2d.fits", 100, 500, (100, 75)),
        ("real/m13.fits", 640, 480, (480, 480)),
        ("real/hst_test0.fits", 37, 900, (37, 37)),
    ],
)
def test_preview_exact_sizes(engine_url, key, w, h, expected):
    r = get(engine_url, "/preview/65a1b2c3d4e5f6a7b8c9d0e1", file_path=key, width=w, height=h)
    img = Image.open(io.BytesIO(r.content))
    assert r.headers["content-type"] == "image/png"
    assert img.size == expected


def test_preview_renders_stretch_and_colormap_faithfully(engine_url):
    """The picture equals the stretch formula applied to the file's pixels."""
    with fits.open(real_image_path("m13.fits")) as hdul:
        data = hdul[0].data.astype(np.float64)
    r = get(
        engine_url,
        "/preview/x",
        file_path="real/m13.fits",
        width=300,
        height=300,
        stretch="sqrt",
        cmap="grayscale",
    )
    picture = png_of(r).astype(float)
    t = (data - data.min()) / (data.max() - data.min())
    expected = np.round(np.sqrt(t) * 255)[::-1]  # row 0 at the bottom
    assert picture.shape == (300, 300)
    assert np.abs(picture - expected).max() <= 1


def test_preview_colormaps_use_their_tables(engine_url):
    for cmap in ("inferno", "viridis", "jet", "hot"):
        pic = png_of(
            get(
                engine_url,
                "/preview/x",
                file_path="real/m13.fits",
                width=300,
                height=300,
                cmap=cmap,
            )
        )
        assert pic.shape == (300, 300, 3)
        table = {tuple(c) for c in colormap_table(cmap)}
        colours = {tuple(c) for c in pic.reshape(-1, 3)[::97]}
        assert colours <= table, f"{cmap}: colours outside the colormap"


def test_preview_nan_border_is_lowest_colour(engine_url):
    pic = png_of(
        get(
            engine_url,
            "/preview/x",
            file_path="jwst/small_i2d.fits",
            width=400,
            height=300,
            cmap="viridis",
        )
    )
    # The corners of the JWST-like file are NaN (outside its rotated footprint).
    np.testing.assert_array_equal(pic[0, 0], colormap_table("viridis")[0])
    np.testing.assert_array_equal(pic[-1, -1], colormap_table("viridis")[0])


def test_preview_jpeg_and_quality(engine_url):
    low = get(engine_url, "/preview/x", file_path="jwst/small_i2d.fits", format="jpeg", quality=5)
    high = get(engine_url, "/preview/x", file_path="jwst/small_i2d.fits", format="jpeg", quality=95)
    assert low.headers["content-type"] == "image/jpeg" and low.content[:2] == b"\xff\xd8"
    assert len(low.content) < len(high.content) / 2
    assert Image.open(io.BytesIO(high.content)).size == (1000, 750)


def test_preview_cube_headers_and_slices(engine_url):
    r = get(engine_url, "/preview/x", file_path="jwst/cube_s3d.fits", slice_index=-1)
    assert r.headers["X-Cube-Slices"] == "7" and r.headers["X-Cube-Current"] == "3"
    r = get(engine_url, "/preview/x", file_path="jwst/cube_s3d.fits", slice_index=100)
    assert r.status_code == 200 and r.headers["X-Cube-Current"] == "6"
    r = get(engine_url, "/preview/x", file_path="real/m13.fits")
    assert r.headers["X-Cube-Slices"] == "1" and r.headers["X-Cube-Current"] == "0"


def test_preview_embeds_avm(engine_url, data_root, tmp_path):
    from pyavm import AVM

    meta = json.dumps(
        {
            "target_name": "Orion Bar",
            "instrument": "NIRCAM",
            "filter": "F090W",
            "facility": "JWST",
            "spectral_band": "Infrared",
        }
    )
    r = get(
        engine_url,
        "/preview/x",
        file_path="jwst/small_i2d.fits",
        width=200,
        height=200,
        embed_avm="true",
        avm_metadata=meta,
    )
    target = tmp_path / "p.png"
    target.write_bytes(r.content)
    avm = AVM.from_image(str(target))
    assert avm.Subject.Name == ["Orion Bar"]
    wcs = avm.to_wcs()
    with fits.open(data_root / "jwst" / "small_i2d.fits") as hdul:
        data_wcs = WCS(hdul["SCI"].header)
    # Picture centre and data centre are the same sky position.
    sky_pic = wcs.pixel_to_world_values(99.5, 74.5)
    sky_data = data_wcs.pixel_to_world_values(199.5, 149.5)
    assert abs(sky_pic[0] - sky_data[0]) * 3600 < 0.01
    assert abs(sky_pic[1] - sky_data[1]) * 3600 < 0.01
    bad = get(
        engine_url,
        "/preview/x",
        file_path="jwst/small_i2d.fits",
        embed_avm="true",
        avm_metadata="{not json",
    )
    assert bad.status_code == 400 and "avm_metadata" in bad.json()["detail"]


@pytest.mark.parametrize(
    "params,fragment",
    [
        ({"width": 5}, "Width"),
        ({"height": 9000}, "Height"),
        ({"gamma": 0.05}, "Gamma"),
        ({"black_point": 0.6, "white_point": 0.5}, "Black point"),
        ({"white_point": 1.5}, "White point"),
        ({"asinh_a": 0}, "Asinh"),
        ({"slice_index": -2}, "Slice index"),
        ({"format": "gif"}, "Format"),
        ({"quality": 0}, "Quality"),
        ({"cmap": "rainbow2"}, "colormap"),
        ({"stretch": "cubic"}, "stretch"),
        ({"smooth_method": "bilateral"}, "smooth_method"),
        ({"smooth_sigma": 11}, "smooth_sigma"),
        ({"smooth_size": 4}, "odd"),
    ],
)
def test_preview_parameter_ranges_give_400(engine_url, params, fragment):
    r = get(engine_url, "/preview/x", file_path="real/m13.fits", **params)
    assert r.status_code == 400, r.text
    assert fragment.lower() in r.json()["detail"].lower()


def test_display_query_parameters_are_the_display_fields_in_order():
    """``display_params`` hands its parameters to DisplayParams by position."""
    names = list(inspect.signature(display_params).parameters)
    assert names == [f.name for f in dataclasses.fields(DisplayParams)]
    values = dict(
        stretch="log", gamma=2.0, black_point=0.1, white_point=0.9, asinh_a=0.2,
        smooth_method="box", smooth_sigma=2.0, smooth_size=5,
    )  # fmt: skip
    assert dataclasses.asdict(display_params(**values)) == values


def test_preview_type_errors_give_422_with_string_detail(engine_url):
    r = get(engine_url, "/preview/x", file_path="real/m13.fits", width="wide")
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], str) and "width" in r.json()["detail"]
    r = get(engine_url, "/preview/x")
    assert r.status_code == 422 and "file_path" in r.json()["detail"]


@pytest.mark.parametrize("method", ["gaussian", "median", "box", "astropy_gaussian", "astropy_box"])
def test_preview_smoothing_methods(engine_url, method):
    r = get(
        engine_url,
        "/preview/x",
        file_path="jwst/small_i2d.fits",
        smooth_method=method,
        smooth_sigma=2,
        smooth_size=5,
        width=200,
        height=150,
    )
    assert png_of(r).shape == (150, 200)


# ---------------------------------------------------------------------------------------
# Paths and bad files
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,status",
    [
        ("../etc/passwd", 403),
        ("/etc/passwd", 403),
        ("%2e%2e/%2e%2e/etc/passwd", 403),
        ("escape.fits", 403),
        ("escape_dir/secret.fits", 403),
        ("real/m13.fits\x00", 403),
        ("real/absent.fits", 404),
        ("a_directory", 400),
    ],
)
@pytest.mark.parametrize("endpoint", ["preview", "histogram", "pixeldata", "cubeinfo"])
def test_path_rules_on_every_endpoint(engine_url, endpoint, key, status):
    r = get(engine_url, f"/{endpoint}/x", file_path=key)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], str)
    assert "/tmp" not in r.json()["detail"], "no internal paths in answers"


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("truncated.fits", "truncated"),
        ("not_fits.fits", "not a valid fits"),
        ("empty_file.fits", "empty"),
        ("empty_primary.fits", "no image data"),
        ("all_nan.fits", "no finite pixel"),
        ("naxis_lies.fits", "truncated"),
        ("table_only.fits", "no image data"),
    ],
)
@pytest.mark.parametrize("endpoint", ["preview", "histogram", "pixeldata"])
def test_bad_files_answer_400_and_server_stays_up(engine_url, endpoint, name, fragment):
    r = get(engine_url, f"/{endpoint}/x", file_path=f"bad/{name}")
    assert r.status_code == 400, r.text
    assert fragment in r.json()["detail"].lower()
    assert httpx.get(engine_url + "/health").status_code == 200


def test_out_of_range_slice_on_plain_image_is_accepted(engine_url):
    r = get(engine_url, "/histogram/x", file_path="real/m13.fits", slice_index=5)
    assert r.status_code == 200 and r.json()["cube_info"] == {"n_slices": 1, "current_slice": 0}


# ---------------------------------------------------------------------------------------
# Histogram
# ---------------------------------------------------------------------------------------


def test_histogram_against_numpy(engine_url):
    with fits.open(real_image_path("m13.fits")) as hdul:
        data = hdul[0].data.astype(np.float64)
    r = get(engine_url, "/histogram/abc", file_path="real/m13.fits", bins=100, stretch="log")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["data_id"] == "abc"
    t = (data - data.min()) / (data.max() - data.min())
    stretched = np.log(1000 * t + 1) / np.log(1001)
    counts, edges = np.histogram(stretched, bins=100, range=(0, 1))
    assert np.abs(np.array(body["histogram"]["counts"]) - counts).sum() <= 4
    np.testing.assert_allclose(body["histogram"]["bin_edges"], edges)
    assert body["histogram"]["n_bins"] == 100 and len(body["histogram"]["bin_centers"]) == 100
    raw_counts, _ = np.histogram(t, bins=100, range=(0, 1))
    assert np.abs(np.array(body["raw_histogram"]["counts"]) - raw_counts).sum() <= 4
    # 256 bins come from the shared bucketing pass: the same counts.
    body256 = get(engine_url, "/histogram/abc", file_path="real/m13.fits", bins=256).json()
    raw256, edges256 = np.histogram(t, bins=256, range=(0, 1))
    assert np.abs(np.array(body256["raw_histogram"]["counts"]) - raw256).sum() <= 4
    np.testing.assert_allclose(body256["raw_histogram"]["bin_edges"], edges256)
    qs = [0.5, 1, 5, 25, 50, 75, 95, 99, 99.5]
    want = np.percentile(stretched, qs)
    p = body["percentiles"]
    new_keys = ["p_0_5", "p_1", "p_5", "p_25", "p_50", "p_75", "p_95", "p_99", "p_99_5"]
    np.testing.assert_allclose([p[k] for k in new_keys], want, atol=1e-5)
    # The old keys keep their old meaning: p0 is the 0.5th and p99 the 99.5th percentile.
    np.testing.assert_allclose(
        [p["p0"], p["p1"], p["p50"], p["p99"]], [want[0], want[1], want[4], want[8]], atol=1e-5
    )
    assert set(p) == set(new_keys) | {"p0", "p1", "p5", "p25", "p50", "p75", "p95", "p99"}
    s = body["stats"]
    np.testing.assert_allclose(
        [s["min"], s["max"], s["mean"], s["std"]],
        [stretched.min(), stretched.max(), stretched.mean(), stretched.std()],
        atol=1e-5,
    )
    assert all(isinstance(c, int) for c in body["histogram"]["counts"])


def test_histogram_of_cube_slice(engine_url):
    r = get(
        engine_url, "/histogram/x", file_path="jwst/cube_s3d.fits", slice_index=2, stretch="linear"
    )
    assert r.json()["cube_info"] == {"n_slices": 7, "current_slice": 2}


def test_histogram_bins_range(engine_url):
    assert get(engine_url, "/histogram/x", file_path="real/m13.fits", bins=5).status_code == 400
    assert get(engine_url, "/histogram/x", file_path="real/m13.fits", bins=20000).status_code == 400


# ---------------------------------------------------------------------------------------
# Pixel data
# ---------------------------------------------------------------------------------------


def test_pixeldata_matches_the_file(engine_url, data_root):
    path = data_root / "jwst" / "small_i2d.fits"
    with fits.open(path) as hdul:
        sci = hdul["SCI"].data.astype(np.float32)
        header = hdul["SCI"].header
    r = get(engine_url, "/pixeldata/abc", file_path="jwst/small_i2d.fits", max_size=150)
    body = r.json()
    assert body["original_shape"] == [300, 400]
    assert body["preview_shape"] == [100, 134] and body["scale_factor"] == 3.0
    pixels = np.frombuffer(base64.b64decode(body["pixels"]), dtype="<f4").reshape(100, 134)
    padded = np.full((300, 402), np.nan, dtype=np.float64)
    padded[:, :400] = sci
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.nanmean(padded.reshape(100, 3, 134, 3), axis=(1, 3))
    np.testing.assert_allclose(pixels, np.nan_to_num(expected), atol=1e-5)
    assert body["units"] == "MJy/sr"
    wcs = WCS(header)
    w = body["wcs"]
    np.testing.assert_allclose([w["crpix1"], w["crpix2"]], wcs.wcs.crpix)
    np.testing.assert_allclose([w["crval1"], w["crval2"]], wcs.wcs.crval)
    np.testing.assert_allclose(
        [[w["cd1_1"], w["cd1_2"]], [w["cd2_1"], w["cd2_2"]]], wcs.pixel_scale_matrix, rtol=1e-10
    )
    np.testing.assert_allclose([w["cdelt1"], w["cdelt2"]], wcs.wcs.cdelt, rtol=1e-10)
    assert w["ctype1"] == "RA---TAN" and w["ctype2"] == "DEC--TAN"


def test_pixeldata_full_resolution_and_no_wcs(engine_url):
    with fits.open(real_image_path("m13.fits")) as hdul:
        data = hdul[0].data.astype(np.float32)
    body = get(engine_url, "/pixeldata/x", file_path="real/m13.fits").json()
    assert body["scale_factor"] == 1.0 and body["preview_shape"] == [300, 300]
    pixels = np.frombuffer(base64.b64decode(body["pixels"]), dtype="<f4").reshape(300, 300)
    np.testing.assert_array_equal(pixels, data)
    # The POSS plate carries a DSS plate solution, which astropy turns into a WCS.
    with fits.open(real_image_path("poss.fits")) as hdul:
        poss_wcs = WCS(hdul[0].header)
    poss = get(engine_url, "/pixeldata/x", file_path="real/poss.fits").json()["wcs"]
    np.testing.assert_allclose([poss["crval1"], poss["crval2"]], poss_wcs.wcs.crval)
    np.testing.assert_allclose([poss["crpix1"], poss["crpix2"]], poss_wcs.wcs.crpix)
    # A file without celestial axes has no WCS.
    assert get(engine_url, "/pixeldata/x", file_path="jwst/scaled_int.fits").json()["wcs"] is None
    assert (
        get(engine_url, "/pixeldata/x", file_path="real/m13.fits", max_size=50).status_code == 400
    )


# ---------------------------------------------------------------------------------------
# Cube info
# ---------------------------------------------------------------------------------------


def test_cubeinfo(engine_url):
    body = get(engine_url, "/cubeinfo/cid", file_path="jwst/cube_s3d.fits").json()
    assert body == {
        "data_id": "cid",
        "is_cube": True,
        "n_slices": 7,
        "axis3": {"crval3": 4.5, "cdelt3": 0.01, "crpix3": 1.0, "cunit3": "um", "ctype3": "WAVE"},
        "slice_unit": "um",
        "slice_label": "Wavelength",
    }
    flat = get(engine_url, "/cubeinfo/cid", file_path="real/m13.fits").json()
    assert flat == {
        "data_id": "cid",
        "is_cube": False,
        "n_slices": 1,
        "axis3": None,
        "slice_unit": "",
        "slice_label": "Frame",
    }
    assert get(engine_url, "/cubeinfo/x", file_path="bad/empty_primary.fits").status_code == 400


# ---------------------------------------------------------------------------------------
# Limits: 413 before loading, 429 when busy (in-process app with small limits)
# ---------------------------------------------------------------------------------------


def test_oversized_arrays_get_413(data_root):
    from main import create_app

    settings = Settings(
        STORAGE_BASE_PATH=data_root, ENGINE_WORKERS=1, MAX_FITS_ARRAY_ELEMENTS=100_000
    )
    with TestClient(create_app(settings)) as client:
        for path in ("/preview/x", "/histogram/x", "/pixeldata/x"):
            r = client.get(path, params={"file_path": "jwst/large_i2d.fits"})
            assert r.status_code == 413
            assert "exceeds maximum 100,000" in r.json()["detail"]
        r = client.post("/thumbnail", json={"file_path": "bad/naxis_lies.fits"})
        assert r.status_code == 413


def test_memory_budget_gives_413_with_how_far_over(data_root):
    from main import create_app

    settings = Settings(
        STORAGE_BASE_PATH=data_root, ENGINE_WORKERS=1, ENGINE_MEMORY_BUDGET_BYTES=20 * 1024 * 1024
    )
    with TestClient(create_app(settings)) as client:
        r = client.get("/histogram/x", params={"file_path": "jwst/large_i2d.fits"})
        assert r.status_code == 413
        assert "memory budget of 20 MB" in r.json()["detail"]

"""Mosaics and footprints (CONTRACT.md §3.8-3.10) against reproject and astropy."""

from __future__ import annotations

import io
import math

import httpx
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from fastapi.testclient import TestClient
from PIL import Image
from reproject import reproject_interp
from reproject.mosaicking import reproject_and_coadd
from scipy.ndimage import map_coordinates

from app.config import Settings
from app.mosaic import mosaic_engine
from app.mosaic.models import MosaicRequest
from app.mosaic.mosaic_engine import COMBINE_METHODS
from tests.conftest import real_image_path
from tests.support.servers import local_env, python_output, run_service
from tests.support.synthetic import DEC0, RA0, make_jwst_image, make_wcs

TIMEOUT = 180


def post(base, path, body):
    return httpx.post(base + path, json=body, timeout=TIMEOUT)


def files(keys, **first):
    out = [{"file_path": k} for k in keys]
    out[0].update(first)
    return out


@pytest.fixture(scope="session")
def mos(data_root):
    """A 2 x 2 grid of JWST-like tiles (20 % overlap, different rotations), and real m13
    split into two overlapping cut-outs with their own WCS."""
    base = data_root / "mosaic"
    base.mkdir(exist_ok=True)
    tiles, truth = [], []
    n, scale = 400, 0.031
    offset = n * scale * 0.8 / 3600
    for i in range(2):
        for j in range(2):
            key = f"mosaic/tile_{i}{j}_i2d.fits"
            img = make_jwst_image(
                data_root / key,
                shape=(n, n),
                seed=40 + 2 * i + j,
                ra=RA0 + (j - 0.5) * offset / math.cos(math.radians(DEC0)),
                dec=DEC0 + (i - 0.5) * offset,
                rotation_deg=2 + 5 * i + 3 * j,
                n_stars=25,
                flux_range=(200, 2000),
                extra_primary={"TARGNAME": "ORION-BAR", "OBS_ID": f"o{i}{j}"},
            )
            tiles.append(key)
            truth.extend(img.stars)
    m13 = real_image_path("m13.fits")
    with fits.open(m13) as hdul:
        hdu = next(h for h in hdul if h.data is not None and h.data.ndim == 2)
        data, wcs = hdu.data.astype(np.float32), WCS(hdu.header).celestial
    halves = []
    for name, cols in (("left", slice(0, 180)), ("right", slice(120, 300))):
        cut = fits.PrimaryHDU(data[:, cols])
        cut.header.update(wcs[:, cols].to_header())
        cut.header["INSTRUME"] = "DSS"
        cut.writeto(base / f"m13_{name}.fits", overwrite=True)
        halves.append(f"mosaic/m13_{name}.fits")
    far = "mosaic/far_i2d.fits"
    make_jwst_image(data_root / far, shape=(100, 100), ra=RA0 + 20, dec=DEC0, n_stars=3)
    return {"tiles": tiles, "stars": truth, "m13": halves, "far": far}


def read_fits(content: bytes):
    return fits.open(io.BytesIO(content))


def coadd(paths, wcs_out, shape, method):
    inputs = []
    for p in paths:
        with fits.open(p) as hdul:
            hdu = next(h for h in hdul if h.data is not None and h.data.ndim == 2)
            d = hdu.data.astype(np.float32)
            d[d == 0] = np.nan
            inputs.append((d, WCS(hdu.header).celestial))
    out, _ = reproject_and_coadd(
        inputs,
        wcs_out,
        shape_out=shape,
        reproject_function=reproject_interp,
        combine_function=method,
        blank_pixel_value=np.nan,
    )
    return out


# ---------------------------------------------------------------------------------------
# FITS path against reproject_and_coadd
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", COMBINE_METHODS)
def test_fits_mosaic_matches_reproject_and_coadd(engine_url, mos, data_root, method):
    r = post(
        engine_url,
        "/mosaic/generate",
        {"files": files(mos["tiles"]), "output_format": "fits", "combine_method": method},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/fits"
    with read_fits(r.content) as hdul:
        ours = hdul[0].data.astype(np.float64)
        wcs = WCS(hdul[0].header)
        assert hdul[0].header["COMBMETH"] == method
    theirs = coadd([data_root / k for k in mos["tiles"]], wcs, ours.shape, method)
    both = np.isfinite(ours) & np.isfinite(theirs)
    # Documented tolerance: float32 resampling, 1e-5 of the data range; identical coverage.
    scale = np.nanmax(np.abs(theirs))
    assert both.sum() > 0.6 * ours.size
    assert np.max(np.abs(ours[both] - theirs[both])) < 1e-5 * scale
    np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(theirs))


@pytest.fixture(scope="module")
def m13_mosaic(engine_url, mos):
    """m13 cut into two overlapping halves and stitched again: (pixels, WCS, the world
    coordinates of every pixel as flat arrays)."""
    r = post(engine_url, "/mosaic/generate", {"files": files(mos["m13"]), "output_format": "fits"})
    assert r.status_code == 200, r.text
    with read_fits(r.content) as hdul:
        ours = hdul[0].data.astype(np.float64)
        wcs = WCS(hdul[0].header)
    rows, cols = np.mgrid[0 : ours.shape[0], 0 : ours.shape[1]]
    return ours, wcs, wcs.pixel_to_world_values(cols.ravel(), rows.ravel())


def test_real_image_mosaic_agrees_with_reproject_and_coadd(m13_mosaic, mos, data_root):
    ours, wcs, _ = m13_mosaic
    theirs = coadd([data_root / k for k in mos["m13"]], wcs, ours.shape, "mean")
    both = np.isfinite(ours) & np.isfinite(theirs)
    assert both.sum() > 0.9 * 300 * 300
    # This grid falls exactly half-way between m13's pixels, where reproject_interp's
    # samples differ from exact bilinear interpolation by up to ~1 % near bright stars
    # (the next test is the exact check); so the comparison with reproject is statistical.
    diff = np.abs(ours[both] - theirs[both]) / np.nanmax(theirs)
    assert np.median(diff) < 1e-5 and np.percentile(diff, 99) < 2e-3


def test_real_image_mosaic_is_the_mean_of_bilinear_halves(m13_mosaic, mos, data_root):
    """Exact: the mean of scipy's bilinear interpolation of both halves at the grid's
    pixels."""
    ours, _, world = m13_mosaic
    total = np.zeros(ours.size)
    count = np.zeros(ours.size)
    for key in mos["m13"]:
        with fits.open(data_root / key) as hdul:
            half, half_wcs = hdul[0].data.astype(np.float64), WCS(hdul[0].header)
        x, y = half_wcs.world_to_pixel_values(*world)
        inside = (x >= -0.5) & (x <= half.shape[1] - 0.5) & (y >= -0.5) & (y <= half.shape[0] - 0.5)
        values = map_coordinates(
            half, [np.clip(y, 0, half.shape[0] - 1), np.clip(x, 0, half.shape[1] - 1)], order=1
        )
        total[inside] += values[inside]
        count[inside] += 1
    with np.errstate(invalid="ignore"):
        exact = (total / count).reshape(ours.shape)
    # The grid's outer ring lies exactly on the inputs' edges (x = -0.5): a 1e-9 px
    # difference decides coverage there, so only the ring may differ.
    mismatch = np.isfinite(exact) != np.isfinite(ours)
    assert not mismatch[1:-1, 1:-1].any()
    assert np.nanmax(np.abs(exact - ours)) < 1e-5 * np.nanmax(exact)


def test_real_image_mosaic_gives_back_m13(m13_mosaic):
    """The grid is aligned with m13's pixels, so every covered mosaic pixel is one m13
    pixel: the stitched sky is m13 itself."""
    ours, _, world = m13_mosaic
    with fits.open(real_image_path("m13.fits")) as hdul:
        hdu = next(h for h in hdul if h.data is not None and h.data.ndim == 2)
        original, m13_wcs = hdu.data.astype(np.float64), WCS(hdu.header).celestial
    x, y = m13_wcs.world_to_pixel_values(*world)
    xi, yi = np.rint(x).astype(int), np.rint(y).astype(int)
    on_pixel = (
        (np.abs(x - xi) < 1e-6)
        & (np.abs(y - yi) < 1e-6)
        & (xi >= 0)
        & (yi >= 0)
        & (xi < 300)
        & (yi < 300)
        & np.isfinite(ours.ravel())
    )
    assert on_pixel.sum() > 0.95 * 300 * 300
    np.testing.assert_allclose(
        ours.ravel()[on_pixel], original[yi[on_pixel], xi[on_pixel]], rtol=1e-6, atol=1e-8
    )


def test_fits_output_layout_and_provenance(engine_url, mos, data_root):
    # The documented FITS example of the request, with this test's tiles.
    example = MosaicRequest.model_config["json_schema_extra"]["examples"][1]
    assert example["output_format"] == "fits"
    r = post(engine_url, "/mosaic/generate", {**example, "files": files(mos["tiles"])})
    assert r.status_code == 200
    with read_fits(r.content) as hdul:
        h = hdul[0].header
        data = hdul[0].data
        assert data.dtype == np.dtype(">f4")
        assert h["EXTNAME"] == "MOSAIC" and h["ORIGIN"] == "JWST-DA"
        assert h["CREATOR"] == "jwst-processing-engine" and h["MOSAIC"] is True
        assert h["NINPUTS"] == 4 and h["COMBMETH"] == "mean" and "DATE" in h
        assert [h[f"SRC{i:04d}"] for i in range(1, 5)] == [k.split("/")[-1] for k in mos["tiles"]]
        # Shared keys copied, differing ones summarised.
        assert h["TELESCOP"] == "JWST" and h["FILTER"] == "F090W" and h["TARGNAME"] == "ORION-BAR"
        assert "OBS_ID" not in h and h["SRCOBS"] == "o00|o01|o10|o11"
        assert h["SRCINST"] == "NIRCAM" and h["BUNIT"] == "MJy/sr"
        assert any("Mosaic of 4 inputs" in str(v) for v in h["HISTORY"])
        # NaN where nothing covers: the grid's corners lie outside the rotated footprints.
        assert np.isnan(data[0, 0]) and np.isnan(data[-1, -1])
        table = hdul["SRCMETA"]
        assert table.header["NINPUTS"] == 4 and table.header["METAVERS"] == "1.0"
        rows = table.data
        assert set(rows["SRCINDEX"]) == {1, 2, 3, 4}
        first = rows[rows["SRCINDEX"] == 1]
        with fits.open(data_root / mos["tiles"][0]) as src:
            cards = len([c for c in src["SCI"].header.cards if c.keyword])
        assert len(first) >= cards
        assert "CRVAL1" in set(first["KEYWORD"]) and "FILTER" in set(first["KEYWORD"])
        # Known stars land where the WCS says (within 1 pixel of the local peak).
        wcs = WCS(h)
        bright = sorted(mos["stars"], key=lambda s: -s.flux)[:15]
        for star in bright:
            x, y = wcs.world_to_pixel_values(star.ra, star.dec)
            xi, yi = int(round(float(x))), int(round(float(y)))
            cut = data[yi - 3 : yi + 4, xi - 3 : xi + 4]
            if cut.shape != (7, 7) or not np.isfinite(cut).all():
                continue
            dy, dx = np.unravel_index(np.argmax(cut), cut.shape)
            assert math.hypot(xi - 3 + dx - x, yi - 3 + dy - y) <= 1.0


def test_fits_header_is_valid_for_astropy_verify(engine_url, mos):
    r = post(engine_url, "/mosaic/generate", {"files": files(mos["m13"]), "output_format": "fits"})
    with read_fits(r.content) as hdul:
        hdul.verify("exception")
        assert len(r.content) % 2880 == 0


# ---------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("width,height", [(300, 200), (257, None), (None, 180)])
def test_picture_sizes(engine_url, mos, width, height):
    r = post(
        engine_url,
        "/mosaic/generate",
        {"files": files(mos["tiles"]), "width": width, "height": height, "output_format": "png"},
    )
    assert r.status_code == 200, r.text
    im = Image.open(io.BytesIO(r.content))
    if width and height:
        assert im.size == (width, height)
    else:
        fits_r = post(
            engine_url, "/mosaic/generate", {"files": files(mos["tiles"]), "output_format": "fits"}
        )
        with read_fits(fits_r.content) as hdul:
            ny, nx = hdul[0].data.shape
        got_w, got_h = im.size
        assert (got_w == width) if width else (got_h == height)
        assert abs(got_h / got_w - ny / nx) < 0.01


def test_picture_native_size_and_black_uncovered(engine_url, mos):
    r = post(
        engine_url,
        "/mosaic/generate",
        {"files": files(mos["tiles"], stretch="linear"), "cmap": "viridis"},
    )
    assert r.status_code == 200
    fits_r = post(
        engine_url, "/mosaic/generate", {"files": files(mos["tiles"]), "output_format": "fits"}
    )
    with read_fits(fits_r.content) as hdul:
        data = hdul[0].data
    img = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert img.shape[:2] == data.shape
    flipped = data[::-1]
    assert (img[~np.isfinite(flipped)] == 0).all()  # no coverage is black, not viridis purple
    assert (img[np.isfinite(flipped)].sum(axis=-1) > 0).mean() > 0.99


def test_picture_uses_first_files_stretch(engine_url, mos):
    body = {"files": files(mos["tiles"], stretch="linear"), "width": 200, "height": 200}
    linear = np.asarray(Image.open(io.BytesIO(post(engine_url, "/mosaic/generate", body).content)))
    body["files"] = files(mos["tiles"], stretch="sqrt")
    body["files"][1]["stretch"] = "linear"
    sqrt = np.asarray(Image.open(io.BytesIO(post(engine_url, "/mosaic/generate", body).content)))
    assert sqrt.mean() > linear.mean() * 1.5


def test_jpeg_picture(engine_url, mos):
    r = post(
        engine_url,
        "/mosaic/generate",
        {
            "files": files(mos["m13"]),
            "output_format": "jpeg",
            "quality": 80,
            "width": 120,
            "height": 90,
        },
    )
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (120, 90)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body,status,fragment",
    [
        (lambda m: {"files": files(m["tiles"][:1])}, 422, "files"),
        (lambda m: {"files": files(m["tiles"]), "cmap": "rainbowish"}, 400, "Invalid colormap"),
        (
            lambda m: {"files": files(m["tiles"]), "output_format": "fits", "width": 100},
            400,
            "width and height",
        ),
        (lambda m: {"files": files(m["tiles"]), "combine_method": "median"}, 422, "combine_method"),
        (lambda m: {"files": files(m["tiles"]), "output_format": "tiff"}, 422, "output_format"),
        (lambda m: {"files": files(m["tiles"]), "width": 9000}, 422, "width"),
        (lambda m: {"files": files([m["tiles"][0], "real/hst_test0.fits"])}, 400, "celestial WCS"),
        (lambda m: {"files": files([m["tiles"][0], "bad/truncated.fits"])}, 400, ""),
        (
            lambda m: {"files": files([m["tiles"][0], m["far"]]), "output_format": "fits"},
            413,
            "MAX_MOSAIC_OUTPUT_PIXELS",
        ),
        (lambda m: {"files": files([m["tiles"][0], "missing.fits"])}, 404, ""),
        (lambda m: {"files": files([m["tiles"][0], "../../x.fits"])}, 403, ""),
    ],
)
def test_mosaic_errors(engine_url, mos, body, status, fragment):
    r = post(engine_url, "/mosaic/generate", body(mos))
    assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], str) and fragment in r.json()["detail"]


def test_file_size_and_output_limits_over_http(data_root, mos):
    settings = Settings(STORAGE_BASE_PATH=data_root, ENGINE_WORKERS=1, MAX_FITS_FILE_SIZE_MB=1)
    from main import create_app

    with TestClient(create_app(settings)) as client:
        r = client.post("/mosaic/generate", json={"files": files(mos["tiles"])})
        assert r.status_code == 413 and "File too large" in r.json()["detail"]
        # Footprints read only headers: no size limit.
        r = client.post("/mosaic/footprint", json={"file_paths": mos["tiles"]})
        assert r.status_code == 200


# ---------------------------------------------------------------------------------------
# Memory and Dask
# ---------------------------------------------------------------------------------------


def test_fits_mosaic_memory_is_bounded_by_tiles(data_root, tmp_path):
    paths = []
    for i in range(2):
        for j in range(2):
            path = tmp_path / f"big_{i}{j}.fits"
            make_jwst_image(
                path,
                shape=(1000, 1000),
                seed=60 + 2 * i + j,
                n_stars=20,
                ra=RA0 + (j - 0.5) * 0.0069,
                dec=DEC0 + (i - 0.5) * 0.0069,
                rotation_deg=4.0,
                with_err_dq=False,
            )
            paths.append(str(path))
    peaks = {}
    for tile_pixels in (1 << 15, 1 << 17):
        # In a fresh process: threads and lazy imports of earlier tests in this one
        # would otherwise count in tracemalloc's peak.
        script = (
            "import sys, tracemalloc\n"
            "from app.mosaic import mosaic_engine\n"
            f"mosaic_engine.TILE_PIXELS = {tile_pixels}\n"
            f"plan = mosaic_engine.plan_mosaic({paths!r})\n"
            f"mosaic_engine.write_mosaic_fits(plan, {str(tmp_path / 'warm.fits')!r})\n"
            "tracemalloc.start()\n"
            f"mosaic_engine.write_mosaic_fits(plan, {str(tmp_path / 'm.fits')!r})\n"
            "print(tracemalloc.get_traced_memory()[1],"
            " mosaic_engine.estimate_mosaic_bytes(plan, in_memory=False))\n"
        )
        peak, estimate = map(int, python_output(script).split())
        peaks[tile_pixels] = peak
        assert peak < estimate
    plan = mosaic_engine.plan_mosaic(paths)
    out = np.prod(plan.grid.shape) * 4
    # Memory follows the tile size, not the output: never the whole mosaic in memory.
    assert peaks[1 << 15] < out / 4, (peaks, out)
    assert peaks[1 << 15] < peaks[1 << 17]
    with fits.open(tmp_path / "m.fits") as hdul:
        whole = mosaic_engine.mosaic_array(plan)
        # Other tile bounds move the coarse coordinate lattice: equal to ~1e-5 px.
        np.testing.assert_array_equal(np.isfinite(hdul[0].data), np.isfinite(whole))
        np.testing.assert_allclose(hdul[0].data, whole, rtol=1e-4, atol=1e-5, equal_nan=True)


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def test_dask_path_gives_the_same_mosaic(mos, data_root, dask_cluster, tmp_path, monkeypatch):
    monkeypatch.setattr(mosaic_engine, "TILE_PIXELS", 1 << 17)
    plan = mosaic_engine.plan_mosaic([str(data_root / k) for k in mos["tiles"]], "max")
    assert len(plan.tiles()) > 3
    local = mosaic_engine.mosaic_array(plan)
    remote = mosaic_engine.mosaic_array(plan, dask_address=dask_cluster)
    np.testing.assert_array_equal(local, remote)


def test_engine_on_dask_over_http(mos, data_root, dask_cluster, engine_url, tmp_path):
    env = local_env(data_root, ENGINE_WORKERS=1, DASK_SCHEDULER_ADDRESS=dask_cluster)
    body = {"files": files(mos["tiles"]), "output_format": "fits", "combine_method": "last"}
    with run_service("main", env, tmp_path / "engine-dask.log") as (base, _proc):
        on_dask = post(base, "/mosaic/generate", body)
    local = post(engine_url, "/mosaic/generate", body)
    assert on_dask.status_code == 200 and local.status_code == 200
    with read_fits(on_dask.content) as a, read_fits(local.content) as b:
        np.testing.assert_array_equal(a[0].data, b[0].data)


# ---------------------------------------------------------------------------------------
# Footprints
# ---------------------------------------------------------------------------------------


def test_footprints_match_astropy(engine_url, mos, data_root):
    keys = mos["tiles"] + mos["m13"]
    r = post(engine_url, "/mosaic/footprint", {"file_paths": keys})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["n_files"] == len(keys) and len(body["footprints"]) == len(keys)
    all_ra, all_dec = [], []
    for item, key in zip(body["footprints"], keys, strict=True):
        assert item["file_path"] == key
        with fits.open(data_root / key) as hdul:
            hdu = next(h for h in hdul if h.data is not None and h.data.ndim == 2)
            h, w = hdu.data.shape
            wcs = WCS(hdu.header).celestial
        ra, dec = wcs.pixel_to_world_values([0, w - 1, w - 1, 0], [0, 0, h - 1, h - 1])
        np.testing.assert_allclose(item["corners_ra"], ra, atol=1e-9, rtol=1e-5)
        np.testing.assert_allclose(item["corners_dec"], dec, atol=1e-9, rtol=1e-5)
        cra, cdec = wcs.pixel_to_world_values(w / 2, h / 2)
        assert abs(item["center_ra"] - cra) < 1e-9 and abs(item["center_dec"] - cdec) < 1e-9
        all_ra.extend(ra)
        all_dec.extend(dec)
    assert body["footprints"][0]["instrument"] == "NIRCAM"
    box = body["bounding_box"]
    # m13 (RA 250) and Orion (RA 84): the smallest arc is the direct one.
    assert box["min_ra"] == pytest.approx(min(all_ra)) and box["max_ra"] == pytest.approx(
        max(all_ra)
    )
    assert box["min_dec"] == pytest.approx(min(all_dec))
    assert box["max_dec"] == pytest.approx(max(all_dec))


def test_footprint_ra_wraparound(engine_url, data_root):
    keys = []
    for name, ra in (("wrap_a", 359.995), ("wrap_b", 0.004)):
        make_jwst_image(
            data_root / f"mosaic/{name}.fits",
            shape=(100, 100),
            ra=ra,
            dec=10.0,
            n_stars=2,
            pixel_scale_arcsec=0.1,
        )
        keys.append(f"mosaic/{name}.fits")
    box = post(engine_url, "/mosaic/footprint", {"file_paths": keys}).json()["bounding_box"]
    half = 100 * 0.1 / 3600 / math.cos(math.radians(10)) / 2
    assert box["min_ra"] == pytest.approx(359.995 - half * 1.2, abs=half * 0.5)
    assert box["max_ra"] == pytest.approx(360.004 + half * 1.2, abs=half * 0.5)
    assert box["max_ra"] - box["min_ra"] < 0.1


def test_footprint_honours_sip(engine_url, data_root):
    w = make_wcs((200, 300), 150.0, 2.0, 0.2, 15.0)
    header = w.to_header()
    header["CTYPE1"], header["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    header["A_ORDER"] = header["B_ORDER"] = 2
    header["A_2_0"], header["B_0_2"], header["A_1_1"] = 2e-4, -3e-4, 1e-4
    hdu = fits.PrimaryHDU(np.ones((200, 300), dtype=np.float32), header=header)
    hdu.writeto(data_root / "mosaic/sip.fits", overwrite=True)
    r = post(engine_url, "/mosaic/footprint", {"file_paths": ["mosaic/sip.fits"]})
    item = r.json()["footprints"][0]
    sip = WCS(header)
    assert sip.sip is not None
    ra, dec = sip.pixel_to_world_values([0, 299, 299, 0], [0, 0, 199, 199])
    np.testing.assert_allclose(item["corners_ra"], ra, atol=1e-9, rtol=1e-5)
    plain_ra, _ = make_wcs((200, 300), 150.0, 2.0, 0.2, 15.0).pixel_to_world_values(299, 199)
    assert abs(item["corners_ra"][2] - plain_ra) > 1e-4  # the distortion really moved it


@pytest.mark.parametrize(
    "keys,status",
    [(["real/hst_test0.fits"], 400), ([], 422), (["nope.fits"], 404), (["bad/not_fits.fits"], 400)],
)
def test_footprint_errors(engine_url, keys, status):
    r = post(engine_url, "/mosaic/footprint", {"file_paths": keys})
    assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], str)


def test_a_half_written_input_is_refused_before_any_pixel(engine_url, mos, data_root, scratch):
    """A file cut in the middle of its data (a download still being written) is a 400 for
    every mosaic, not a picture with a hole: every input's declared data size is checked
    against the file at planning time."""
    source = data_root / mos["tiles"][1]
    with fits.open(source) as hdul:
        sci = hdul["SCI"]
        middle = sci.fileinfo()["datLoc"] + sci.data.nbytes // 2
    cut = scratch.path / "half_written_i2d.fits"
    cut.write_bytes(source.read_bytes()[:middle])
    key = scratch.key("half_written_i2d.fits")
    for fmt in ("png", "fits"):
        r = post(
            engine_url,
            "/mosaic/generate",
            {"files": files([mos["tiles"][0], key]), "output_format": fmt},
        )
        assert r.status_code == 400 and "truncated" in r.json()["detail"], r.text[:300]
    r = post(engine_url, "/mosaic/generate-observation", {"file_paths": [mos["tiles"][0], key]})
    assert r.status_code == 400 and "truncated" in r.json()["detail"]

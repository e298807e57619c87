"""The science core checked against independent computations."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.visualization import HistEqStretch, ZScaleInterval
from astropy.wcs import WCS
from numpy.testing import assert_array_equal
from PIL import Image

from app.errors import BadRequest, PayloadTooLarge
from app.processing import enhancement, parallel, statistics
from app.processing.avm import build_xmp, embed_xmp_jpeg, spatial_tags
from app.processing.enhancement import DisplayParams
from app.processing.fits_io import (
    block_mean,
    celestial_wcs,
    choose_plane,
    inspect_image,
    open_plane,
    scale_and_rotation,
)
from app.processing.render import (
    COLORMAPS,
    colormap_table,
    encode,
    encode_png,
    fit_within,
    indices_to_image,
    to_indices,
)
from app.processing.smoothing import smooth
from tests.conftest import real_image_path


@pytest.fixture(scope="module")
def m13():
    with fits.open(real_image_path("m13.fits")) as hdul:
        return hdul[0].data.astype(np.float32)


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,hdu",
    [
        ("m13.fits", 0),
        ("ukidss.fits", 1),
        ("cfht.fits", 0),
        ("poss.fits", 0),
        ("hst_test0.fits", 1),
    ],
)
def test_read_plane_matches_astropy(name, hdu):
    path = real_image_path(name)
    with fits.open(path) as hdul:
        expected = hdul[hdu].data.astype(np.float32)
    with open_plane(path) as (reader, info):
        assert info.hdu_index == hdu
        data = reader.read()
    np.testing.assert_allclose(data, expected, rtol=1e-6)


def test_scaled_integers_blank_and_compression(data_root):
    with fits.open(data_root / "jwst" / "scaled_int.fits") as hdul:
        raw = hdul[0].data  # astropy applies BSCALE/BZERO and BLANK itself
        expected = raw.astype(np.float32)
    with open_plane(data_root / "jwst" / "scaled_int.fits") as (reader, _):
        data = reader.read()
    assert np.isnan(data[0, 0]) and np.isnan(expected[0, 0])
    np.testing.assert_allclose(data[1:], expected[1:], rtol=1e-6)
    for name, hdu in (("tile_compressed.fits", 1), ("gzipped.fits.gz", 0)):
        with fits.open(data_root / "jwst" / name) as hdul:
            expected = hdul[hdu].data.astype(np.float32)
        with open_plane(data_root / "jwst" / name) as (reader, info):
            assert info.hdu_index == hdu
            np.testing.assert_allclose(reader.read(), expected, rtol=1e-6)
            np.testing.assert_allclose(
                reader.read_reduced(3), _nanmean_blocks(expected, 3), rtol=1e-5
            )


def _nanmean_blocks(a, f):
    h, w = a.shape
    padded = np.full((-(-h // f) * f, -(-w // f) * f), np.nan, dtype=np.float64)
    padded[:h, :w] = a
    blocks = padded.reshape(padded.shape[0] // f, f, padded.shape[1] // f, f)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.nanmean(blocks, axis=(1, 3))


@pytest.mark.parametrize("factor", [2, 3, 4, 7, 16])
def test_block_mean_against_nanmean(factor):
    rng = np.random.default_rng(factor)
    a = rng.normal(0, 1, (101, 67)).astype(np.float32)
    a[rng.random(a.shape) < 0.1] = np.nan
    a[:20, :20] = np.nan  # whole blocks without a finite pixel
    np.testing.assert_allclose(
        block_mean(a, factor), _nanmean_blocks(a, factor), rtol=1e-5, atol=1e-6, equal_nan=True
    )
    clean = np.abs(a[:96, :64]) + 1
    clean = np.nan_to_num(clean, nan=2.0)
    np.testing.assert_allclose(block_mean(clean, factor), _nanmean_blocks(clean, factor), rtol=1e-5)


def test_reduced_read_streams_blocks_like_a_whole_reduction(data_root):
    path = data_root / "jwst" / "large_i2d.fits"
    with fits.open(path) as hdul:
        full = hdul["SCI"].data.astype(np.float32)
    with open_plane(path) as (reader, _):
        reduced = reader.read_reduced(5)
        strided = reader.read_strided(3)
    np.testing.assert_allclose(reduced, _nanmean_blocks(full, 5), rtol=1e-4, equal_nan=True)
    np.testing.assert_array_equal(strided, full[::3, ::3])


def test_cube_plane_choice(data_root):
    path = data_root / "jwst" / "cube_s3d.fits"
    info = inspect_image(path)
    assert info.choice.n_slices == 7 and info.choice.slice_index == 3
    with open_plane(path, slice_index=5) as (reader, info):
        assert info.choice.slice_index == 5
        assert abs(float(np.mean(reader.read())) - 5.0) < 0.01
    with open_plane(path, slice_index=99) as (reader, info):
        assert info.choice.slice_index == 6  # clamped
        assert abs(float(np.mean(reader.read())) - 6.0) < 0.01
    four_d = choose_plane((3, 5, 10, 12), slice_index=1)
    assert four_d.leading == (1, 2) and four_d.n_slices == 3


def test_element_guard_before_reading(data_root):
    with pytest.raises(PayloadTooLarge) as err:
        inspect_image(data_root / "bad" / "naxis_lies.fits", max_elements=1_000_000)
    assert "exceeds maximum" in err.value.detail


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("truncated.fits", "truncated"),
        ("not_fits.fits", "Not a valid FITS file"),
        ("empty_file.fits", "empty"),
        ("empty_primary.fits", "No image data"),
        ("naxis_lies.fits", "truncated"),
        ("table_only.fits", "No image data"),
    ],
)
def test_bad_files_raise_clear_errors(data_root, name, fragment):
    with pytest.raises(BadRequest) as err:
        with open_plane(data_root / "bad" / name) as (reader, _):
            reader.read()
    assert fragment.lower() in err.value.detail.lower()


# ---------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------


def test_percentiles_exactly_match_numpy(m13):
    qs = statistics.REPORTED_PERCENTILES + (0, 100, 33.3)
    ours = statistics.percentiles(m13, qs)
    np.testing.assert_allclose(ours, np.percentile(m13, qs), rtol=0, atol=1e-9)


@pytest.mark.parametrize("n", [10, 1000, 300_000, 2_000_000])
def test_order_statistics_large_arrays(n):
    rng = np.random.default_rng(n)
    # A sky-like distribution: a narrow peak plus a long bright tail and ties.
    values = np.concatenate(
        [rng.normal(0.3, 0.02, n - n // 10), rng.exponential(50, n // 10)]
    ).astype(np.float32)
    values[: n // 20] = 0.3
    ranks = sorted({0, n - 1, n // 2, n // 3, int(n * 0.995), int(n * 0.005)})
    got = statistics.order_statistics(values, ranks)
    ordered = np.sort(values)
    assert [got[r] for r in ranks] == [float(ordered[r]) for r in ranks]


def test_percentiles_of_transformed_values_match_direct(m13):
    transform = enhancement.fit_display(m13, DisplayParams("asinh", asinh_a=0.05))
    direct = np.percentile(transform(m13), [1, 50, 99.5])
    np.testing.assert_allclose(
        statistics.percentiles(m13, [1, 50, 99.5], transform=transform), direct, atol=1e-6
    )


def test_histogram_matches_numpy(m13):
    norm = enhancement.normalize(m13)
    for bins in (10, 256, 1000):
        ours = statistics.histogram(norm, bins)
        counts, edges = np.histogram(norm, bins=bins, range=(0, 1))
        assert ours["n_bins"] == bins and len(ours["bin_edges"]) == bins + 1
        np.testing.assert_allclose(ours["bin_edges"], edges)
        # float32 binning may move a value sitting on an edge; allow a handful.
        assert sum(ours["counts"]) == counts.sum()
        assert np.abs(np.array(ours["counts"]) - counts).sum() <= 4


def test_summary_with_nan():
    a = np.array([[1.0, 2.0, np.nan], [4.0, np.inf, 6.0]], dtype=np.float32)
    s = statistics.summary(a)
    finite = np.array([1, 2, 4, 6.0])
    assert s["min"] == 1 and s["max"] == 6
    assert math.isclose(s["mean"], finite.mean()) and math.isclose(s["std"], finite.std())
    assert statistics.summary(np.full(4, np.nan))["mean"] is None


# ---------------------------------------------------------------------------------------
# Stretches, each against its formula
# ---------------------------------------------------------------------------------------


def _norm(x):
    f = x[np.isfinite(x)]
    return (x - f.min()) / (f.max() - f.min())


def test_each_stretch_against_its_formula(m13):
    x = m13.astype(np.float64)
    t = _norm(x)
    a = 0.1
    expected = {
        "linear": t,
        "asinh": np.arcsinh(t / a) / np.arcsinh(1 / a),
        "log": np.log(1000 * t + 1) / np.log(1001),
        "sqrt": np.sqrt(t),
        "power": t ** (1 / 2.0),
    }
    for name, want in expected.items():
        got = enhancement.apply_stretch(
            m13, DisplayParams(name, gamma=2.0 if name == "power" else 1.0, asinh_a=a)
        )
        np.testing.assert_allclose(got, want, atol=2e-6, err_msg=name)
    lo, hi = ZScaleInterval(contrast=0.25).get_limits(m13)
    np.testing.assert_allclose(
        enhancement.apply_stretch(m13, DisplayParams("zscale")),
        np.clip((x - lo) / (hi - lo), 0, 1),
        atol=2e-6,
    )
    eq = HistEqStretch(_norm(m13))(_norm(m13))
    np.testing.assert_allclose(
        enhancement.apply_stretch(m13, DisplayParams("histeq")), eq, atol=2e-6
    )


def test_levels_and_gamma(m13):
    got = enhancement.apply_stretch(
        m13, DisplayParams("linear", black_point=0.1, white_point=0.9, gamma=2.0)
    )
    t = _norm(m13.astype(np.float64))
    lo, hi = np.percentile(t, [10, 90])
    want = np.clip((t - lo) / (hi - lo), 0, 1) ** 0.5
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_stretch_keeps_nan_and_excludes_it_from_statistics():
    a = np.array([[np.nan, 0.0], [5.0, 10.0]], dtype=np.float32)
    got = enhancement.apply_stretch(a, DisplayParams("linear"))
    assert np.isnan(got[0, 0])
    np.testing.assert_allclose(got[np.isfinite(got)], [0, 0.5, 1])


# ---------------------------------------------------------------------------------------
# Smoothing
# ---------------------------------------------------------------------------------------


def test_smoothing_against_scipy_and_astropy(m13):
    from astropy.convolution import Box2DKernel, Gaussian2DKernel, convolve
    from scipy import ndimage

    np.testing.assert_allclose(
        smooth(m13, "gaussian", sigma=2.0),
        ndimage.gaussian_filter(m13, 2.0, mode="nearest"),
        rtol=1e-4,
    )
    np.testing.assert_allclose(
        smooth(m13, "box", size=5), ndimage.uniform_filter(m13, 5, mode="nearest"), rtol=1e-4
    )
    np.testing.assert_array_equal(
        smooth(m13, "median", size=3), ndimage.median_filter(m13, 3, mode="nearest")
    )
    np.testing.assert_allclose(
        smooth(m13, "astropy_gaussian", sigma=1.5),
        convolve(m13, Gaussian2DKernel(1.5), boundary="extend"),
        rtol=1e-4,
    )
    np.testing.assert_allclose(
        smooth(m13, "astropy_box", size=3),
        convolve(m13, Box2DKernel(3), boundary="extend"),
        rtol=1e-4,
    )
    holes = m13.copy()
    holes[100:110, 100:110] = np.nan
    for method in ("gaussian", "box", "median", "astropy_gaussian", "astropy_box"):
        out = smooth(holes, method, sigma=1.0, size=3)
        assert np.isnan(out[100:110, 100:110]).all(), method
        assert np.isfinite(out[:90]).all(), f"{method} let NaN bleed into its neighbours"


# ---------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------


def test_colormap_tables_match_matplotlib():
    import matplotlib

    for name in COLORMAPS:
        ref = matplotlib.colormaps["gray" if name == "grayscale" else name].resampled(256)
        want = np.round(ref(np.arange(256))[:, :3] * 255).astype(np.uint8)
        np.testing.assert_array_equal(colormap_table(name), want, err_msg=name)


@pytest.mark.parametrize(
    "w,h,bw,bh,expected",
    [
        (4096, 4096, 1000, 1000, (1000, 1000)),
        (400, 300, 1000, 1000, (1000, 750)),
        (300, 400, 1000, 1000, (750, 1000)),
        (2048, 1024, 500, 800, (500, 250)),
        (100, 5000, 800, 600, (12, 600)),
    ],
)
def test_fit_within_keeps_aspect_and_fills_one_side(w, h, bw, bh, expected):
    assert fit_within(w, h, bw, bh) == expected


def test_png_encoder_round_trip_and_orientation():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    rgb = rng.integers(0, 256, (20, 31, 3), dtype=np.uint8)
    for arr in (grey, rgb):
        img = Image.open(io.BytesIO(encode_png(arr)))
        np.testing.assert_array_equal(np.asarray(img), arr)
    # Row 0 of the data is the bottom row of the picture.
    idx = np.zeros((10, 10), dtype=np.uint8)
    idx[0, :] = 255
    img = np.asarray(indices_to_image(idx, (10, 10), "gray"))
    assert img[-1].min() == 255 and img[0].max() == 0
    # NaN renders as the colormap's lowest colour.
    nan_idx = to_indices(np.array([[np.nan, 1.0]], dtype=np.float32))
    coloured = np.asarray(indices_to_image(nan_idx, (2, 1), "viridis"))
    np.testing.assert_array_equal(coloured[0, 0], colormap_table("viridis")[0])
    np.testing.assert_array_equal(coloured[0, 1], colormap_table("viridis")[255])


def test_jpeg_quality_changes_size():
    rng = np.random.default_rng(1)
    img = indices_to_image(rng.integers(0, 256, (200, 200), dtype=np.uint8), (200, 200), "jet")
    low, high = encode(img, "jpeg", quality=10), encode(img, "jpeg", quality=95)
    assert low[:2] == b"\xff\xd8" and len(low) < len(high) / 2


# ---------------------------------------------------------------------------------------
# WCS and AVM
# ---------------------------------------------------------------------------------------


def test_scale_and_rotation_recovers_cdelt_and_crota():
    for rot in (0.0, 12.0, -37.5, 170.0):
        r = math.radians(rot)
        c1, c2 = -0.031 / 3600, 0.031 / 3600
        cd = np.array([[c1 * math.cos(r), -c2 * math.sin(r)], [c1 * math.sin(r), c2 * math.cos(r)]])
        got = scale_and_rotation(cd)
        assert math.isclose(got[0], c1, rel_tol=1e-12) and math.isclose(got[1], c2, rel_tol=1e-12)
        assert math.isclose(got[2], rot, abs_tol=1e-9)


def test_avm_round_trip_through_pyavm(data_root, tmp_path):
    from pyavm import AVM

    path = data_root / "jwst" / "small_i2d.fits"
    with fits.open(path) as hdul:
        header = hdul["SCI"].header
        ny, nx = hdul["SCI"].data.shape
    wcs = celestial_wcs(header)
    out_w, out_h = 200, 150  # the 400 x 300 image at half size
    xmp = build_xmp(
        {
            "target_name": "Orion Bar",
            "instrument": "NIRCam",
            "filter": "F090W",
            "spectral_band": "infrared",
            "description": "test",
        },
        spatial_tags(wcs, out_w, out_h, nx, ny),
    )
    for fmt in ("png", "jpeg"):
        img = indices_to_image(np.zeros((ny // 2, nx // 2), dtype=np.uint8), (out_w, out_h))
        target = tmp_path / f"avm.{fmt}"
        target.write_bytes(encode(img, fmt, 90, xmp))
        avm = AVM.from_image(str(target))
        assert avm.Subject.Name == ["Orion Bar"]
        assert avm.Facility == ["JWST"] and avm.Instrument == ["NIRCam"]
        assert avm.Spectral.Band == ["Infrared"]
        picture_wcs = avm.to_wcs()
        # A picture pixel and the data pixel it shows map to the same sky position.
        for px, py in ((0.5, 0.5), (100.0, 75.0), (199.5, 149.5), (30.0, 120.0)):
            data_x = (px + 0.5) * (nx / out_w) - 0.5
            data_y = (py + 0.5) * (ny / out_h) - 0.5
            sky_picture = picture_wcs.pixel_to_world_values(px, py)
            sky_data = wcs.pixel_to_world_values(data_x, data_y)
            assert abs(sky_picture[0] - sky_data[0]) * 3600 < 0.01
            assert abs(sky_picture[1] - sky_data[1]) * 3600 < 0.01


def test_embed_xmp_jpeg_keeps_jfif_first():
    img = indices_to_image(np.zeros((8, 8), dtype=np.uint8), (8, 8), "gray")
    buf = io.BytesIO()
    img.save(buf, "JPEG")
    out = embed_xmp_jpeg(buf.getvalue(), "<x/>")
    assert out[:4] == b"\xff\xd8\xff\xe0"
    assert b"http://ns.adobe.com/xap/1.0/\x00<x/>" in out
    Image.open(io.BytesIO(out)).load()


def test_celestial_wcs_reads_pc_and_sip(data_root):
    with fits.open(data_root / "jwst" / "small_i2d.fits") as hdul:
        header = hdul["SCI"].header
    ours = celestial_wcs(header)
    ref = WCS(header)
    np.testing.assert_allclose(ours.pixel_scale_matrix, ref.pixel_scale_matrix)
    assert celestial_wcs(fits.Header()) is None
    sip_path = real_image_path("cfht.fits")
    with fits.open(sip_path) as hdul:
        assert celestial_wcs(hdul[0].header) is not None


def test_streamed_finite_values_match_a_whole_read(data_root):
    path = data_root / "jwst" / "large_i2d.fits"
    with fits.open(path) as hdul:
        full = hdul["SCI"].data.astype(np.float32)
    with open_plane(path) as (reader, _):
        for step in (1, 3):
            sampled = full[::step, ::step]
            np.testing.assert_array_equal(reader.finite_values(step), sampled[np.isfinite(sampled)])


def test_shared_buckets_give_exact_percentiles_and_raw_histogram(data_root):
    with open_plane(data_root / "jwst" / "large_i2d.fits") as (reader, _):
        values = reader.finite_values()
    transform = enhancement.fit_display(values, DisplayParams("zscale"))
    buckets = statistics.Buckets(values)
    qs = statistics.REPORTED_PERCENTILES
    got = statistics.percentiles(values, qs, transform=transform, buckets=buckets)
    np.testing.assert_allclose(got, np.percentile(transform(values), qs), atol=1e-7)
    counts, _ = np.histogram(values, bins=256, range=(buckets.low, buckets.high))
    diff = np.abs(buckets.histogram_counts(256) - counts).sum()
    assert buckets.histogram_counts(256).sum() == values.size and diff <= 10
    assert buckets.histogram_counts(100) is None


def test_row_blocks_cover_every_row_once_and_errors_wait_for_every_block():
    height, width = 1500, 1000  # large enough for threads
    assert parallel.row_blocks(height, width)[0] == slice(0, parallel.BLOCK_PIXELS // width)
    seen = np.zeros(height, dtype=int)
    finished = []

    def mark(rows: slice) -> None:
        seen[rows] += 1
        if rows.start == 0:
            raise ValueError("the first block fails")
        finished.append(rows.start)

    with pytest.raises(ValueError, match="first block"):
        parallel.each_row_block(height, width, mark)
    # every block ran (the failing one too), each row exactly once
    assert_array_equal(seen, 1)
    assert len(finished) == len(parallel.row_blocks(height, width)) - 1


def test_pieces_that_ask_for_pieces_do_not_wait_on_themselves():
    """Every thread of the pool runs a block that itself splits a large array: the
    inner pieces run in place instead of queueing behind the outer ones forever."""
    height, width = 1500, 1000
    out = np.zeros((height, width), dtype=np.float32)
    inner = np.ones(parallel.PARALLEL_MIN * 2, dtype=np.float32)

    def outer(rows: slice) -> None:
        total = np.zeros(1)

        def add(part: slice) -> None:
            total[0] += inner[part].sum()

        parallel.each_chunk(inner.size, add)
        out[rows] = total[0]

    parallel.each_row_block(height, width, outer)
    assert_array_equal(out, float(inner.size))

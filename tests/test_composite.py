"""N-channel composites (CONTRACT.md §3.7): colour, alignment, background, cache, errors."""

from __future__ import annotations

import colorsys
import io
import math
import os
import time
import tracemalloc
import warnings

import httpx
import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.wcs import WCS
from PIL import Image
from reproject import reproject_interp

from app.composite import color_mapping, compositor
from app.composite.compositor import ChannelSpec
from app.processing.background import sky_level
from app.processing.enhancement import DisplayParams
from app.processing.reprojection import fit_grid, read_geometry
from tests.conftest import composite_cache_dir, real_image_path
from tests.support.composites import channel
from tests.support.synthetic import DEC0, RA0, make_jwst_image, make_tile_grid, make_wcs

TIMEOUT = 180


def post(base, body):
    return httpx.post(base + "/composite/generate-nchannel", json=body, timeout=TIMEOUT)


def picture(response) -> np.ndarray:
    assert response.status_code == 200, response.text[:500]
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB")).astype(int)


@pytest.fixture(scope="session")
def comp(data_root):
    """Composite inputs under <root>/composite; returns the keys and the truth."""
    base = data_root / "composite"
    base.mkdir(exist_ok=True)
    # One bright star at a known sky position, seen by three files with different
    # rotations, pixel scales and pointings.
    star_ra, star_dec = RA0 + 2.0 / 3600, DEC0 - 1.5 / 3600
    setups = [
        ("align_a", 0.031, 0.0, (500, 500), (RA0, DEC0)),
        ("align_b", 0.063, 25.0, (300, 260), (RA0 + 1.5 / 3600, DEC0)),
        ("align_c", 0.11, -40.0, (160, 180), (RA0, DEC0 + 1.0 / 3600)),
    ]
    for name, scale, rot, shape, (ra, dec) in setups:
        w = make_wcs(shape, ra, dec, scale, rot)
        x, y = w.world_to_pixel_values(star_ra, star_dec)
        make_jwst_image(
            base / f"{name}.fits",
            shape=shape,
            ra=ra,
            dec=dec,
            pixel_scale_arcsec=scale,
            rotation_deg=rot,
            n_stars=0,
            n_galaxies=0,
            stars=[(float(x), float(y), 3000.0)],
            nan_border=False,
            noise=0.01,
        )
    # A field with a flat sky of 0.3 and noise 0.02 for background tests.
    make_jwst_image(
        base / "sky.fits",
        shape=(300, 300),
        seed=11,  # the default sky: background 0.3, noise 0.02
        n_stars=20,
        n_galaxies=0,
        nan_border=False,
        rotation_deg=0.0,
    )
    # A 2 x 3 grid of detector files of one filter (many files per channel).
    tiles = make_tile_grid(
        data_root, "composite", 2, 3, step_arcsec=5.5, seed=20, shape=(200, 200), n_stars=10
    )
    make_jwst_image(base / "far.fits", shape=(200, 200), ra=RA0 + 1.0, dec=DEC0, n_stars=5)
    nan = fits.ImageHDU(np.full((50, 50), np.nan, dtype=np.float32), name="SCI")
    nan.header.update(make_wcs((50, 50), RA0, DEC0, 0.1, 0.0).to_header())
    fits.HDUList([fits.PrimaryHDU(), nan]).writeto(base / "all_nan.fits", overwrite=True)
    # A real sky image and the same sky resampled onto a rotated, coarser grid.
    m13 = real_image_path("m13.fits")
    with fits.open(m13) as hdul:
        index = next(i for i, h in enumerate(hdul) if h.data is not None and h.data.ndim == 2)
        data, header = hdul[index].data.astype(np.float32), hdul[index].header
    w13 = WCS(header).celestial
    target = make_wcs((220, 240), 250.4226, 36.4602, 1.4, 30.0)
    rotated, _ = reproject_interp((data, w13), target, shape_out=(220, 240))
    hdu = fits.PrimaryHDU(rotated.astype(np.float32))
    hdu.header.update(target.to_header())
    hdu.writeto(base / "m13_rotated.fits", overwrite=True)
    return {
        "align": [f"composite/{s[0]}.fits" for s in setups],
        "star": (star_ra, star_dec),
        "sky": "composite/sky.fits",
        "tiles": tiles,
        "far": "composite/far.fits",
        "all_nan": "composite/all_nan.fits",
        "m13": "real/m13.fits",
        "m13_rotated": "composite/m13_rotated.fits",
    }


# ---------------------------------------------------------------------------------------
# Colour
# ---------------------------------------------------------------------------------------


def linear(img: np.ndarray) -> np.ndarray:
    """8-bit sRGB pixels back to linear light (the sRGB transfer is applied once, §10.1)."""
    return color_mapping.srgb_inverse(img.astype(np.float32) / 255.0)


def test_pure_red_channel_gives_red_only_pixels(engine_url, comp):
    img = picture(
        post(
            engine_url,
            {
                "channels": [channel([comp["sky"]], {"rgb": [1, 0, 0]}, stretch="linear")],
                "width": 120,
                "height": 100,
            },
        )
    )
    assert img.shape == (100, 120, 3)
    assert img[..., 0].max() >= 250  # the common maximum (a Lanczos resize may soften it)
    assert img[..., 1].max() == 0 and img[..., 2].max() == 0


@pytest.mark.parametrize("hue,lit", [(120, 1), (240, 2), (0, 0)])
def test_hue_maps_to_its_primary(engine_url, comp, hue, lit):
    img = picture(
        post(
            engine_url,
            {"channels": [channel([comp["sky"]], {"hue": hue})], "width": 64, "height": 64},
        )
    )
    others = [k for k in range(3) if k != lit]
    assert img[..., lit].max() >= 250
    assert all(img[..., k].max() == 0 for k in others)


def test_rgb_weights_mix_as_specified(engine_url, comp):
    """In linear light G = R/2 and B = R/4 (the picture itself is sRGB-encoded)."""
    img = picture(
        post(
            engine_url,
            {
                "channels": [channel([comp["sky"]], {"rgb": [1, 0.5, 0.25]}, stretch="zscale")],
                "background_neutralization": False,
                "width": 80,
                "height": 80,
            },
        )
    )
    lin = linear(img)
    bright = lin[..., 0] > 0.4
    assert bright.sum() > 100
    assert abs(np.median(lin[..., 1][bright] / lin[..., 0][bright]) - 0.5) < 0.02
    assert abs(np.median(lin[..., 2][bright] / lin[..., 0][bright]) - 0.25) < 0.02


def test_one_image_in_three_colours_is_grey(engine_url, comp):
    """A real sky image as R, G and B: with one common maximum, white stays white."""
    chans = [channel([comp["m13"]], {"hue": h}, stretch="asinh") for h in (0, 120, 240)]
    img = picture(post(engine_url, {"channels": chans, "width": 150, "height": 150}))
    assert img.max() >= 250
    np.testing.assert_array_equal(img[..., 0], img[..., 1])
    np.testing.assert_array_equal(img[..., 1], img[..., 2])


def test_two_hues_share_one_maximum(engine_url, comp):
    """Red at weight 1 and green at weight 0.5 of the same image: G = R/2 in linear light."""
    chans = [
        channel([comp["sky"]], {"hue": 0}, stretch="linear"),
        channel([comp["sky"]], {"hue": 120}, stretch="linear", weight=0.5),
    ]
    img = picture(
        post(
            engine_url,
            {"channels": chans, "width": 90, "height": 90, "background_neutralization": False},
        )
    )
    lin = linear(img)
    assert img[..., 0].max() >= 250 and img[..., 1].max() < 200
    bright = lin[..., 0] > 0.1
    assert bright.sum() > 10
    assert abs(np.median(lin[..., 1][bright] / lin[..., 0][bright]) - 0.5) < 0.02


# ---------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------


def _peak(plane: np.ndarray) -> tuple[int, int]:
    row, col = np.unravel_index(np.argmax(plane), plane.shape)
    return int(row), int(col)


def test_star_lands_on_the_same_pixel_in_every_channel(comp, data_root):
    """One star in three files with different rotations, scales and pointings lands, in
    every channel, on the grid pixel its sky position predicts (before framing)."""
    width, height = 300, 240
    specs = [
        ChannelSpec(
            label=f"c{i}",
            paths=[str(data_root / k)],
            rgb=rgb,
            display=DisplayParams(stretch="linear"),
        )
        for i, (k, rgb) in enumerate(
            zip(comp["align"], ((1, 0, 0), (0, 1, 0), (0, 0, 1)), strict=True)
        )
    ]
    plan = compositor.plan_composite(
        specs,
        compositor.RenderOptions(width=width, height=height, background_neutralization=False),
    )
    rgb, _ = compositor.render_rgb(plan)
    grid = fit_grid([read_geometry(data_root / k) for k in comp["align"]], width, height)
    x, y = grid.wcs.world_to_pixel_values(*comp["star"])
    for k in range(3):
        row, col = _peak(rgb[..., k])
        assert math.hypot(row - float(y), col - float(x)) <= 1.0, (k, row, col, x, y)


def test_real_image_and_its_rotated_resampling_align(engine_url, comp):
    """m13 and m13 resampled (by reproject) onto a grid rotated by 30 degrees."""
    chans = [
        channel([comp["m13"]], {"hue": 0}, stretch="linear"),
        channel([comp["m13_rotated"]], {"hue": 120}, stretch="linear"),
    ]
    img = picture(
        post(
            engine_url,
            {"channels": chans, "width": 200, "height": 200, "background_neutralization": False},
        )
    )
    both = (img[..., 0] > 0) & (img[..., 1] > 0)
    rows, cols = np.nonzero(both)
    centroids = []
    for k in (0, 1):
        weight = img[..., k][both].astype(float) ** 2  # the bright cluster core dominates
        centroids.append(
            (np.sum(rows * weight) / weight.sum(), np.sum(cols * weight) / weight.sum())
        )
    (r1, c1), (r2, c2) = centroids
    assert math.hypot(r1 - r2, c1 - c2) <= 1.0, centroids


def test_grid_is_north_up_east_left_and_holds_every_footprint(comp, data_root):
    geoms = [read_geometry(data_root / k) for k in comp["align"]]
    grid = fit_grid(geoms, 300, 240)
    assert grid.wcs.wcs.cdelt[0] < 0 < grid.wcs.wcs.cdelt[1]
    for g in geoms:
        ra, dec = g.edge_world()
        x, y = grid.wcs.world_to_pixel_values(ra, dec)
        assert x.min() >= -0.5 - 1e-6 and x.max() <= 299.5 + 1e-6
        assert y.min() >= -0.5 - 1e-6 and y.max() <= 239.5 + 1e-6


def test_reprojected_channel_matches_reproject_interp(comp, data_root):
    """On a grid finer than the input, a channel is reproject_interp's bilinear resampling."""
    path = data_root / comp["m13_rotated"]
    geom = read_geometry(path)
    grid = fit_grid([geom], 400, 380)
    assert compositor.reduction_for(geom, grid) == 1
    ours = compositor.reproject_files([geom], grid)
    data = fits.getdata(path).astype(np.float32)
    data[data == 0] = np.nan
    theirs, _ = reproject_interp((data, geom.wcs), grid.wcs, shape_out=grid.shape, order="bilinear")
    both = np.isfinite(ours) & np.isfinite(theirs)
    assert both.sum() > 0.3 * ours.size
    np.testing.assert_allclose(ours[both], theirs[both], rtol=1e-4, atol=1e-3 * np.nanmax(theirs))
    # Coverage differs at most along the one-pixel rim of the footprint.
    assert (np.isfinite(ours) != np.isfinite(theirs)).sum() < 0.02 * ours.size


def test_many_files_per_channel_are_combined_coverage_weighted(engine_url, comp, data_root):
    geoms = [read_geometry(data_root / k) for k in comp["tiles"]]
    grid = fit_grid(geoms, 300, 200)
    combined = compositor.reproject_files(geoms, grid)
    # Independent: reproject each tile with reproject and average where covered.
    stack = []
    for g in geoms:
        f = compositor.reduction_for(g, grid)
        data = fits.getdata(g.path, "SCI").astype(np.float32)
        h, w = data.shape
        reduced = np.nanmean(
            np.pad(data, ((0, -h % f), (0, -w % f)), constant_values=np.nan).reshape(
                -(-h // f), f, -(-w // f), f
            ),
            axis=(1, 3),
        )
        binned = g.wcs[::f, ::f] if f > 1 else g.wcs
        out, _ = reproject_interp(
            (reduced, binned), grid.wcs, shape_out=grid.shape, order="bilinear"
        )
        stack.append(out)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # uncovered pixels: mean of nothing
        expected = np.nanmean(np.array(stack), axis=0)
    both = np.isfinite(combined) & np.isfinite(expected)
    assert both.sum() > 0.5 * combined.size
    np.testing.assert_allclose(combined[both], expected[both], atol=1e-4, rtol=1e-5)
    r = post(
        engine_url, {"channels": [channel(comp["tiles"], {"hue": 30})], "width": 300, "height": 200}
    )
    assert picture(r).shape == (200, 300, 3)


# ---------------------------------------------------------------------------------------
# Background, luminance, overall, formats
# ---------------------------------------------------------------------------------------


def test_sky_level_is_the_sigma_clipped_median(data_root, comp):
    data = fits.getdata(data_root / comp["sky"], "SCI")
    _, median, _ = sigma_clipped_stats(data, sigma=3.0)
    assert abs(sky_level(data) - median) < 1e-4
    assert abs(sky_level(data) - 0.3) < 0.002  # the generator's sky


def test_background_neutralisation_darkens_the_sky(engine_url, comp):
    body = {
        "channels": [channel([comp["sky"]], {"rgb": [1, 1, 1]}, stretch="zscale")],
        "width": 100,
        "height": 100,
    }
    on = picture(post(engine_url, body))[..., 0]
    off = picture(post(engine_url, {**body, "background_neutralization": False}))[..., 0]
    # The sky level subtracted and negatives clipped: about half the sky is black.
    assert 0.4 < (on == 0).mean() < 0.75
    assert (off == 0).mean() < 0.1
    assert np.median(off) > np.median(on)


def test_replace_lightness_matches_colorsys():
    rng = np.random.default_rng(3)
    rgb = rng.uniform(0, 1, (50, 3)).astype(np.float32)
    lum = rng.uniform(0, 1, 50).astype(np.float32)
    out = color_mapping.replace_lightness(rgb.reshape(50, 1, 3), lum.reshape(50, 1), 0.6)
    for k in range(50):
        h, light, s = colorsys.rgb_to_hls(*rgb[k])
        expected = colorsys.hls_to_rgb(h, light * 0.4 + lum[k] * 0.6, s)
        np.testing.assert_allclose(out[k, 0], expected, atol=1e-5, rtol=1e-5)


def test_luminance_channel_sets_the_lightness(engine_url, comp):
    colour = channel([comp["m13"]], {"hue": 200}, stretch="linear")
    plain = picture(post(engine_url, {"channels": [colour], "width": 100, "height": 100}))
    lrgb = picture(
        post(
            engine_url,
            {
                "channels": [colour, channel([comp["m13"]], {"luminance": True}, stretch="sqrt")],
                "width": 100,
                "height": 100,
            },
        )
    )
    assert not np.array_equal(plain, lrgb)
    lightness = (lrgb.max(axis=2) + lrgb.min(axis=2)) / 2
    plain_lightness = (plain.max(axis=2) + plain.min(axis=2)) / 2
    assert lightness.mean() > plain_lightness.mean()  # sqrt brightens the lightness


def test_tone_curves():
    x = np.linspace(0, 1, 11, dtype=np.float32)
    np.testing.assert_allclose(
        color_mapping.apply_curve(x.copy(), "s_curve"), 3 * x**2 - 2 * x**3, rtol=1e-5, atol=1e-8
    )
    np.testing.assert_allclose(
        color_mapping.apply_curve(x.copy(), "inverse_s"),
        0.5 + np.arcsin(2 * x - 1) / np.pi,
        atol=1e-6,
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        color_mapping.apply_curve(x.copy(), "shadows"), x**0.7, rtol=1e-5, atol=1e-8
    )
    np.testing.assert_allclose(
        color_mapping.apply_curve(x.copy(), "highlights"), x**1.3, rtol=1e-5, atol=1e-8
    )


def test_overall_adjustments_apply(engine_url, comp):
    chans = [
        channel([comp["m13"]], {"hue": 0}, stretch="linear"),
        channel([comp["m13"]], {"hue": 240}, stretch="linear"),
    ]
    base = {"channels": chans, "width": 80, "height": 80}
    plain = picture(post(engine_url, base))
    adjusted = picture(post(engine_url, {**base, "overall": {"stretch": "sqrt", "gamma": 1.5}}))
    assert adjusted.mean() > plain.mean()


@pytest.mark.parametrize("fmt,width,height", [("png", 333, 127), ("jpeg", 64, 200), ("png", 1, 1)])
def test_exact_output_sizes(engine_url, comp, fmt, width, height):
    r = post(
        engine_url,
        {
            "channels": [channel([comp["sky"]], {"hue": 60})],
            "output_format": fmt,
            "width": width,
            "height": height,
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == f"image/{fmt}"
    im = Image.open(io.BytesIO(r.content))
    assert im.format == fmt.upper() and im.size == (width, height)


def test_jpeg_quality(engine_url, comp):
    body = {
        "channels": [channel([comp["m13"]], {"hue": 30})],
        "output_format": "jpeg",
        "width": 300,
        "height": 300,
    }
    low = post(engine_url, {**body, "quality": 10}).content
    high = post(engine_url, {**body, "quality": 98}).content
    assert len(low) * 2 < len(high)


def test_explicit_nulls_integer_floats_and_repeated_labels(engine_url, comp):
    chans = [
        {
            "file_paths": [comp["sky"]],
            "color": {"hue": 0, "rgb": None, "luminance": False},
            "label": "F200W",
            "wavelength_um": None,
            "gamma": 1,
            "weight": 2,
        },
        {
            "file_paths": [comp["align"][0]],
            "color": {"hue": None, "rgb": [0, 1, 0]},
            "label": "F200W",
        },
    ]
    r = post(engine_url, {"channels": chans, "overall": None, "width": 50, "height": 40})
    assert picture(r).shape == (40, 50, 3)


# ---------------------------------------------------------------------------------------
# Cache and memory
# ---------------------------------------------------------------------------------------


def test_reprojected_channels_are_cached_by_content(engine_url, comp, data_root, scratch):
    cache = composite_cache_dir(data_root)
    key = scratch.key("cache_probe.fits")
    make_jwst_image(scratch.path / "cache_probe.fits", shape=(400, 400), seed=77, n_stars=30)
    body = {
        "channels": [channel([key], {"hue": 0}), channel([comp["sky"]], {"hue": 240})],
        "width": 211,
        "height": 173,
    }
    first = post(engine_url, body)
    assert first.status_code == 200
    entries = set(os.listdir(cache))
    # Other stretches and colours: no new entry, same geometry.
    again = post(
        engine_url,
        {
            **body,
            "channels": [
                channel([key], {"hue": 60}, stretch="log"),
                channel([comp["sky"]], {"hue": 180}),
            ],
        },
    )
    assert again.status_code == 200 and set(os.listdir(cache)) == entries
    # A changed file is a new entry (size and mtime are part of the identity).
    time.sleep(0.01)
    make_jwst_image(scratch.path / "cache_probe.fits", shape=(400, 400), seed=78, n_stars=30)
    third = post(engine_url, body)
    assert third.status_code == 200 and third.content != first.content
    assert len(set(os.listdir(cache)) - entries) == 1


def test_memory_estimate_covers_the_real_peak_and_ignores_file_count(comp, data_root):
    def plan_for(keys, size):
        spec = ChannelSpec(label="x", paths=[str(data_root / k) for k in keys], rgb=(1, 0, 0))
        return compositor.plan_composite([spec], compositor.RenderOptions(width=size, height=size))

    one = compositor.estimate_composite_bytes(plan_for(comp["tiles"][:1], 600))
    six = compositor.estimate_composite_bytes(plan_for(comp["tiles"], 600))
    assert six < one * 1.2  # streamed: the files of a channel are never held together
    plan = plan_for(comp["tiles"], 900)
    tracemalloc.start()
    compositor.render_composite(plan)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < compositor.estimate_composite_bytes(plan)


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_body,status,fragment",
    [
        (lambda c: {"channels": [channel(["bad/not_fits.fits"], {"hue": 0})]}, 400, "not_fits"),
        (lambda c: {"channels": [channel(["bad/truncated.fits"], {"hue": 0})]}, 400, "truncated"),
        (
            lambda c: {"channels": [channel([c["all_nan"]], {"hue": 0}, label="F090W")]},
            400,
            "No usable image data for channel F090W",
        ),
        (
            lambda c: {"channels": [channel(["real/hst_test0.fits"], {"hue": 0})]},
            400,
            "celestial WCS",
        ),
        (
            lambda c: {
                "channels": [channel([c["sky"]], {"hue": 0}), channel([c["far"]], {"hue": 120})]
            },
            400,
            "do not overlap",
        ),
        (
            lambda c: {
                "channels": [
                    channel([c["sky"]], {"luminance": True}),
                    channel([c["sky"]], {"luminance": True}),
                    channel([c["sky"]], {"hue": 0}),
                ]
            },
            422,
            "At most one luminance",
        ),
        (
            lambda c: {"channels": [channel([c["sky"]], {"luminance": True})]},
            422,
            "At least one color channel",
        ),
        (
            lambda c: {"channels": [channel([c["sky"]], {"hue": 0, "rgb": [1, 0, 0]})]},
            422,
            "exactly one",
        ),
        (lambda c: {"channels": [channel([c["sky"]], {"rgb": [1, 2, 0]})]}, 422, "rgb"),
        (lambda c: {"channels": []}, 422, "channels"),
        (lambda c: {"channels": [channel([], {"hue": 0})]}, 422, "file_paths"),
        (
            lambda c: {"channels": [channel([c["sky"]], {"hue": 0})], "output_format": "gif"},
            422,
            "output_format",
        ),
        (lambda c: {"channels": [channel([c["sky"]], {"hue": 0})], "width": 4097}, 422, "width"),
        (lambda c: {"channels": [channel([c["sky"]], {"hue": 0}, curve="wavy")]}, 422, "curve"),
        (lambda c: {"channels": [channel(["nope/missing.fits"], {"hue": 0})]}, 404, ""),
        (lambda c: {"channels": [channel(["../etc/passwd"], {"hue": 0})]}, 403, ""),
    ],
)
def test_error_paths(engine_url, comp, make_body, status, fragment):
    r = post(engine_url, make_body(comp))
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and fragment in detail
    assert httpx.get(engine_url + "/health").status_code == 200


def test_unknown_stretch_falls_back_to_zscale(engine_url, comp):
    a = post(
        engine_url,
        {
            "channels": [channel([comp["m13"]], {"hue": 0}, stretch="mystery")],
            "width": 60,
            "height": 60,
        },
    )
    b = post(
        engine_url,
        {
            "channels": [channel([comp["m13"]], {"hue": 0}, stretch="zscale")],
            "width": 60,
            "height": 60,
        },
    )
    assert a.status_code == 200 and a.content == b.content

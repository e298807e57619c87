"""The composite look of CONTRACT-HEAD §10.1 and §10.4: each step against an independent
computation, and every control over HTTP."""

from __future__ import annotations

import colorsys
import io
import math
from typing import Any

import httpx
import numpy as np
import pytest
from astropy.convolution import Gaussian2DKernel, convolve
from astropy.stats import sigma_clipped_stats
from numpy.testing import assert_allclose, assert_array_equal
from PIL import Image
from scipy.ndimage import distance_transform_edt, gaussian_filter
from skimage.color import lab2rgb, rgb2lab

from app.composite import color_mapping, compositor, framing
from app.composite.auto_stretch import auto_stretch
from app.composite.compositor import ChannelSpec, RenderOptions
from app.composite.feathering import (
    EXACT_RADIUS,
    edge_weights,
    feather,
    feather_strength,
    mix_lab,
    mix_lab_linear,
    mix_pairs,
)
from app.composite.quality import quality_headers, quality_metrics
from app.composite.resolution import gaussian_blur, sharpen
from app.processing.enhancement import DisplayParams
from tests.support.composites import channel, composite_body
from tests.support.synthetic import make_jwst_image

TIMEOUT = 300
# Pictures of more than a million pixels go by row blocks on several threads: the
# steps are checked there too, not only on small arrays.
BIG = (1100, 1000)


def render(base, body) -> np.ndarray:
    r = httpx.post(base + "/composite/generate-nchannel", json=body, timeout=TIMEOUT)
    assert r.status_code == 200, r.text[:400]
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)


@pytest.fixture(scope="module")
def look(data_root):
    """A flat-ish field that fills its grid (no crop, no resize at 120 x 120), a small
    coarse file, and a NIRCam field with a small MIRI field in its middle."""
    base = data_root / "look"
    base.mkdir(exist_ok=True)
    flat: dict[str, Any] = {"n_stars": 0, "n_galaxies": 0, "background": 1.0, "noise": 0.01}
    files: dict[str, dict[str, Any]] = {
        "field": {"shape": (240, 240), "n_stars": 30, "background": 0.3, "noise": 0.02},
        "field2": {"shape": (240, 240), "n_stars": 30, "background": 0.5, "noise": 0.03},
        "coarse": {"shape": (80, 80), "n_stars": 8, "pixel_scale_arcsec": 0.2},
        "nircam": {"shape": (400, 400), "pixel_scale_arcsec": 0.063, "instrument": "NIRCAM"},
        "miri": {"shape": (80, 80), "pixel_scale_arcsec": 0.11, "instrument": "MIRI"},
    }
    files["nircam"].update(flat)  # two flat fields: feathering's colours are easy to read
    files["miri"].update(flat)
    for seed, (name, spec) in enumerate(files.items(), start=501):
        square = {"rotation_deg": 0.0, "nan_border": False}
        make_jwst_image(base / f"{name}.fits", seed=seed, **square, **spec)
    return {name: f"look/{name}.fits" for name in files}


def plain(look, **extra):
    channels = [
        channel([look["field"]], {"hue": 0}, stretch="asinh"),
        channel([look["field2"]], {"hue": 120}, stretch="asinh"),
        channel([look["field"]], {"hue": 240}, stretch="sqrt"),
    ]
    return composite_body(channels, 120, 120, background_neutralization=False) | extra


# ---------------------------------------------------------------------------------------
# Each step against an independent computation
# ---------------------------------------------------------------------------------------


def test_srgb_transfer_is_the_iec_formula():
    x = np.linspace(0, 1, 10001, dtype=np.float32)
    expected = np.where(
        x <= 0.0031308,
        12.92 * x.astype(np.float64),
        1.055 * x.astype(np.float64) ** (1 / 2.4) - 0.055,
    )
    assert_allclose(color_mapping.srgb_transfer(x), expected, atol=2e-7)
    assert_allclose(color_mapping.srgb_inverse(color_mapping.srgb_transfer(x)), x, atol=2e-6)
    # In place, and over a picture large enough to go by chunks on threads.
    picture = np.random.default_rng(2).random((*BIG, 3), dtype=np.float32)
    encoded = color_mapping.srgb_transfer(picture)
    color_mapping.srgb_transfer(picture, out=picture)
    assert_array_equal(picture, encoded)
    with pytest.raises(ValueError, match="C-contiguous"):
        color_mapping.srgb_transfer(x, out=np.empty(x.size * 2, dtype=np.float32)[::2])


def test_cielab_mixing_matches_skimage():
    rng = np.random.default_rng(3)
    base, current = rng.random((2, 40, 50, 3)).astype(np.float32)
    weight = rng.random((40, 50)).astype(np.float32)
    weight[:5] = 0.0
    weight[-5:] = 1.0
    out = mix_lab(base, current, weight)
    w = weight[..., None].astype(np.float64)
    expected = np.clip(lab2rgb(rgb2lab(base) * (1 - w) + rgb2lab(current) * w), 0, 1)
    assert_allclose(out, expected, atol=1e-5)
    assert_allclose(out[:5], base[:5], atol=1e-5)
    assert_allclose(out[-5:], current[-5:], atol=1e-5)


def test_cielab_mixing_of_a_large_picture_matches_skimage():
    rng = np.random.default_rng(13)
    base, current = rng.random((2, *BIG, 3)).astype(np.float32)
    ramp = np.linspace(-0.2, 1.2, BIG[0], dtype=np.float32)
    weight = np.clip(np.repeat(ramp[:, None], BIG[1], axis=1), 0, 1)
    out = mix_lab(base, current, weight)
    linear = color_mapping.srgb_inverse(current)
    mix_lab_linear(color_mapping.srgb_inverse(base), linear, lambda rows: weight[rows], out=linear)
    assert_array_equal(linear, out)  # written over its own input, block by block
    w = weight[..., None].astype(np.float64)
    expected = np.clip(lab2rgb(rgb2lab(base) * (1 - w) + rgb2lab(current) * w), 0, 1)
    # float32 against float64: of 3.3 million values a few differ by just over 1e-5
    assert_allclose(out, expected, atol=2e-5)


def skimage_mix_of_combines(planes, colours, weight) -> np.ndarray:
    """skimage's CIELAB mix of the sRGB combine of all but the last plane (weight 1 - w)
    with that of all the planes (weight w)."""
    base = color_mapping.srgb_transfer(color_mapping.combine(planes[:-1], colours[:-1]))
    top = color_mapping.srgb_transfer(color_mapping.combine(planes, colours))
    w = weight[..., None].astype(np.float64)
    return np.clip(lab2rgb(rgb2lab(base) * (1 - w) + rgb2lab(top) * w), 0, 1)


def test_cielab_mixing_of_combines_asked_for_a_field_of_some_columns_matches_skimage():
    """The minority field covers some columns only: ``current`` (a Combination) is asked
    for those columns only, and the picture is still the CIELAB mix everywhere."""
    rng = np.random.default_rng(23)
    planes = [rng.random(BIG).astype(np.float32) for _ in range(3)]
    colours = [(0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)]
    others = color_mapping.Combination(planes[:2], colours[:2])
    every = color_mapping.Combination(planes, colours)
    weight = np.zeros(BIG, dtype=np.float32)
    columns = slice(BIG[1] // 3, BIG[1] // 2)
    weight[:, columns] = np.linspace(0.0, 1.3, BIG[0], dtype=np.float32).clip(0, 1)[:, None]
    asked: list[slice] = []

    def current(rows: slice, cols: slice) -> np.ndarray:
        asked.append(cols)
        return every(rows, cols)

    out = np.empty((*BIG, 3), dtype=np.float32)
    mix_lab_linear(others, current, weight.__getitem__, out=out)
    assert {(c.start, c.stop) for c in asked} == {(columns.start, columns.stop)}
    assert_allclose(out, skimage_mix_of_combines(planes, colours, weight), atol=2e-5)


def test_an_extension_is_both_combines_and_mixes_as_they_would():
    """Extension makes the combine without and with the added planes from one sum: each
    window is what the two Combinations give, and feathering's mix of its pair is the
    CIELAB mix of the two (skimage)."""
    rng = np.random.default_rng(25)
    planes = [rng.random(BIG).astype(np.float32) * k for k in (1.0, 2.0, 3.0)]
    planes[2][:, : BIG[1] // 2] = np.nan  # the added instrument covers half the picture
    colours = [(0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)]
    base = color_mapping.Layers(planes[:2], colours[:2])
    extension = color_mapping.Extension(base, color_mapping.Layers(planes[2:], colours[2:]))
    alone = color_mapping.Combination(planes[:2], colours[:2])
    every = color_mapping.Combination(planes, colours)
    rows, cols = slice(300, 700), slice(400, 900)
    first, extended = extension(rows)
    assert_allclose(first, alone(rows), rtol=1e-6, atol=1e-7)
    assert_allclose(extended(cols), every(rows, cols), rtol=1e-6, atol=1e-6)
    weight = np.zeros(BIG, dtype=np.float32)
    weight[:, BIG[1] // 3 :] = np.linspace(0.0, 1.3, BIG[0], dtype=np.float32).clip(0, 1)[:, None]
    out = np.empty((*BIG, 3), dtype=np.float32)
    mix_pairs(extension, weight.__getitem__, out)
    assert_allclose(out, skimage_mix_of_combines(planes, colours, weight), atol=2e-5)


def test_feathering_fields_that_cover_the_grid_is_the_plain_colour_combine():
    """Two instruments whose fields both cover the grid: nothing to fade, the picture is
    the sRGB of the all-channel combine, to the bit."""
    rng = np.random.default_rng(24)
    planes = [rng.random((300, 200)).astype(np.float32) for _ in range(3)]
    colours = [(0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0)]
    coverage = [np.ones((300, 200), dtype=bool)] * 3
    out = feather(
        [0, 1, 2],
        ["NIRCAM", "NIRCAM", "MIRI"],
        coverage,
        0.2,
        lambda idx: color_mapping.Layers([planes[i] for i in idx], [colours[i] for i in idx]),
    )
    expected = color_mapping.srgb_transfer(color_mapping.combine(planes, colours))
    assert_array_equal(out, expected)


def test_large_feather_radius_is_the_exact_distance_within_a_percent():
    """Above EXACT_RADIUS the distances come from a mask reduced by radius // EXACT_RADIUS,
    interpolated: against scipy's exact transform of the whole mask, within that
    reduction factor (2.5 % of the radius)."""
    field = np.zeros(BIG, dtype=bool)
    field[150:1000, 100:800] = True
    field[400:600, 300:500] = False  # a hole: distances from inner edges too
    radius = 300.0
    weight = edge_weights(field, radius)(slice(None))
    t = np.clip(distance_transform_edt(field) / radius, 0, 1)
    exact = t * t * (3 - 2 * t)
    assert_array_equal(weight[~field], 0.0)
    # smoothstep's slope is at most 1.5 / radius per pixel of distance
    factor = radius // EXACT_RADIUS
    assert np.abs(weight - exact).max() <= 1.5 * factor / radius


@pytest.mark.parametrize("rotation", [-40.0, 0.0, 360.0])  # a whole turn is no rotation
def test_hue_rotation_and_saturation_of_a_large_picture_match_colorsys(rotation):
    rng = np.random.default_rng(15)
    rgb = rng.random((*BIG, 3)).astype(np.float32)
    # Ties and edges of the HSL model: grey, black, white, two equal largest components,
    # the pure primaries and secondaries.
    edges = [(0.5, 0.5, 0.5), (0, 0, 0), (1, 1, 1), (0.8, 0.8, 0.1), (0.2, 0.9, 0.9)]
    edges += [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 0, 1), (0.9, 0.1, 0.9)]
    rgb.reshape(-1, 3)[: len(edges)] = edges
    out = color_mapping.adjust_saturation(rgb, 0.7, 0.1, rotation)
    in_place = rgb.copy()
    color_mapping.adjust_saturation(in_place, 0.7, 0.1, rotation, out=in_place)
    assert_array_equal(in_place, out)
    flat, got = rgb.reshape(-1, 3), out.reshape(-1, 3)
    for k in [*range(len(edges)), *rng.choice(flat.shape[0], 400, replace=False)]:
        h, l_, s = colorsys.rgb_to_hls(*map(float, flat[k]))
        s = min(max(s * 0.7, 0), 1)
        s = min(max(s + 0.1 * (1 - s), 0), 1)
        assert_allclose(got[k], colorsys.hls_to_rgb((h + rotation / 360) % 1, l_, s), atol=2e-6)


def test_combine_is_the_sum_of_coloured_planes_over_one_maximum():
    rng = np.random.default_rng(16)
    planes = [rng.random(BIG).astype(np.float32) for _ in range(3)]
    planes[1][:10] = np.nan  # no light
    colours = [(1.0, 0.2, 0.0), (0.0, 1.0, 0.5), (0.3, 0.0, 1.0)]
    out = color_mapping.combine(planes, colours)
    total = sum(
        np.nan_to_num(p)[..., None] * np.array(c) for p, c in zip(planes, colours, strict=True)
    )
    assert_allclose(out, total / total.max(), atol=1e-6)


@pytest.mark.parametrize("sigma", [0.6, 1.5, 3.7, 12.0])
def test_blur_by_blocks_is_exactly_scipys_whole_image_filter(sigma):
    rng = np.random.default_rng(20)
    values = rng.random(BIG).astype(np.float32)
    expected = gaussian_filter(values, sigma, mode="constant", cval=0.0, truncate=4.0)
    assert_array_equal(gaussian_blur(values, sigma), expected)


@pytest.mark.parametrize("amount", [0.8, 0.0])
def test_saturation_applied_while_sharpening_is_saturation_after_sharpening(amount):
    rng = np.random.default_rng(22)
    rgb = rng.random((*BIG, 3)).astype(np.float32)
    coverage = np.ones(BIG, dtype=bool)
    coverage[:, :10] = False
    step = color_mapping.saturation_step(1.3, 0.3, 10.0)
    fused = sharpen(rgb, 1.5, amount, 0.01, coverage, then=step)
    expected = color_mapping.adjust_saturation(
        sharpen(rgb, 1.5, amount, 0.01, coverage), 1.3, 0.3, 10.0
    )
    assert_array_equal(fused, expected)


def test_sharpening_of_a_large_picture_matches_astropy_convolution():
    rng = np.random.default_rng(17)
    rgb = rng.random((*BIG, 3)).astype(np.float32) * 0.6 + 0.2
    coverage = np.ones(BIG, dtype=bool)
    coverage[:, :10] = False
    out = sharpen(rgb, 1.0, 0.5, 0.05, coverage)
    in_place = rgb.copy()
    sharpen(in_place, 1.0, 0.5, 0.05, coverage, out=in_place)
    assert_array_equal(in_place, out)
    luma = 0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]
    blurred = convolve(
        luma.astype(np.float64), Gaussian2DKernel(1.0), boundary="fill", fill_value=0.0
    )
    delta = luma - blurred
    delta[np.abs(delta) < 0.05] = 0
    delta[~coverage] = 0
    assert_allclose(out, np.clip(rgb + 0.5 * delta[..., None], 0, 1), atol=2e-6)


@pytest.mark.parametrize("degrees", [17.0, -17.0, 33.3, 45.0, 90.0, -90.0, 180.0, 121.6])
@pytest.mark.parametrize("shape", [(37, 61), (1100, 1000)])
def test_rotation_is_pillows(degrees, shape):
    """The picture Pillow's own rotate gives (same canvas, pixels within a level: the
    strips are separate transforms whose offsets round a little differently)."""
    rng = np.random.default_rng(18)
    pixels = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected = Image.fromarray(pixels).rotate(
        -degrees, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=(0, 0, 0)
    )
    got = framing.rotate(pixels, degrees)
    assert got.shape == np.asarray(expected).shape
    diff = np.abs(got.astype(int) - np.asarray(expected).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


@pytest.mark.parametrize("degrees", [17.0, -33.3, 90.0, 180.0, 0.0])
@pytest.mark.parametrize(
    "size, zoom, centre",
    [
        ((256, 200), 1.0, (0.5, 0.5)),  # letterbox, shrinking: the whole rotation is read
        ((256, 200), 1.5, (0.4, 0.5)),
        ((900, 700), 1.5, (0.4, 0.5)),  # enlarging
        ((256, 200), 3.7, (1.0, 0.0)),  # a corner
        ((150, 120), 2.2, (0.0, 1.0)),
    ],
)
def test_rotating_only_the_part_placed_gives_the_whole_rotations_pixels(
    degrees, size, zoom, centre
):
    """place(..., degrees) rotates only the window its resize reads: what Pillow's
    resize of the shown box of the whole rotated picture gives, to the pixel without
    resampled rotation, else within a level in a few pixels (Pillow's kernel positions
    are sums that round differently from the window's origin)."""
    rng = np.random.default_rng(21)
    pixels = rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)
    whole = framing.rotate(pixels, degrees)
    (width, height), (h, w) = size, whole.shape[:2]
    s = min(width / w, height / h) * zoom
    new_w, new_h = round(w * s), round(h * s)
    left = (width - new_w) // 2 if new_w <= width else -int(centre[0] * (new_w - width))
    top = (height - new_h) // 2 if new_h <= height else -int(centre[1] * (new_h - height))
    x0, x1, y0, y1 = max(0, -left), min(new_w, width - left), max(0, -top), min(new_h, height - top)
    box = (x0 * w / new_w, y0 * h / new_h, x1 * w / new_w, y1 * h / new_h)
    shown = Image.fromarray(whole).resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS, box=box)
    expected = Image.new("RGB", size)
    expected.paste(shown, (left + x0, top + y0))
    got = framing.place(pixels, *size, zoom, *centre, degrees=degrees)
    if degrees % 90 == 0:
        assert_array_equal(got, np.asarray(expected))
    diff = np.abs(got.astype(int) - np.asarray(expected).astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize(
    "zoom, centre", [(1.0, (0.5, 0.5)), (1.5, (0.4, 0.5)), (2.0, (0.0, 1.0)), (3.7, (0.8, 0.2))]
)
def test_placing_computes_only_the_shown_part_of_the_whole_resize(zoom, centre):
    """The canvas shows the crop of the whole Lanczos resize (Pillow), computed from
    the shown part of the source only; on a smooth picture a level or two apart at
    most (Pillow rounds and clips between its two passes)."""
    rng = np.random.default_rng(19)
    smooth = gaussian_filter(rng.random((300, 420, 3)), (4, 4, 0))
    pixels = np.clip((smooth - smooth.min()) / np.ptp(smooth) * 255, 0, 255).astype(np.uint8)
    width, height = 256, 200
    got = framing.place(pixels, width, height, zoom, *centre)
    s = min(width / 420, height / 300) * zoom
    new_w, new_h = round(420 * s), round(300 * s)
    whole = np.asarray(Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.LANCZOS))
    left = (width - new_w) // 2 if new_w <= width else -int(centre[0] * (new_w - width))
    top = (height - new_h) // 2 if new_h <= height else -int(centre[1] * (new_h - height))
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    y0, x0 = max(0, -top), max(0, -left)
    shown = whole[y0 : y0 + height - max(0, top), x0 : x0 + width - max(0, left)]
    canvas[
        max(0, top) : max(0, top) + shown.shape[0], max(0, left) : max(0, left) + shown.shape[1]
    ] = shown
    diff = np.abs(got.astype(int) - canvas.astype(int))
    assert got.shape == (height, width, 3)
    assert diff.max() <= 3 and diff.mean() < 0.1


def test_feather_weights_are_a_smoothstep_of_the_edge_distance():
    field = np.zeros((60, 80), dtype=bool)
    field[10:50, 20:70] = True
    weight = edge_weights(field, 8.0)(slice(None))
    assert_array_equal(weight[~field], 0.0)
    # Distance to the nearest uncovered pixel, by hand, for the column through the middle.
    for row in range(10, 50):
        d = min(row - 9, 50 - row, 45 - 19, 70 - 45)
        t = min(d / 8.0, 1.0)
        assert weight[row, 45] == pytest.approx(3 * t * t - 2 * t**3, abs=1e-6)


def test_sharpening_matches_astropy_convolution_by_hand():
    rng = np.random.default_rng(4)
    rgb = rng.random((70, 90, 3)).astype(np.float32) * 0.6 + 0.2
    coverage = np.ones((70, 90), dtype=bool)
    coverage[:, :10] = False
    out = sharpen(rgb, 1.5, 0.8, 0.05, coverage)
    luma = 0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]
    blurred = convolve(
        luma.astype(np.float64),
        Gaussian2DKernel(1.5),
        boundary="fill",
        fill_value=0.0,
        normalize_kernel=True,
    )
    delta = luma - blurred
    delta[np.abs(delta) < 0.05] = 0
    delta[~coverage] = 0
    expected = np.clip(rgb + 0.8 * delta[..., None], 0, 1)
    assert_allclose(out, expected, atol=2e-6)
    assert_array_equal(out[:, :10], rgb[:, :10])


def test_hue_rotation_and_saturation_match_colorsys():
    rng = np.random.default_rng(5)
    rgb = rng.random((30, 40, 3)).astype(np.float32)
    out = color_mapping.adjust_saturation(rgb, 1.3, 0.2, 30.0)
    for (r, g, b), got in zip(rgb.reshape(-1, 3)[::37], out.reshape(-1, 3)[::37], strict=True):
        h, l_, s = colorsys.rgb_to_hls(float(r), float(g), float(b))
        s = min(max(s * 1.3, 0), 1)
        s = min(max(s + 0.2 * (1 - s), 0), 1)
        assert_allclose(got, colorsys.hls_to_rgb((h + 30 / 360) % 1, l_, s), atol=2e-6)


def test_quality_metrics_follow_the_formulas():
    rng = np.random.default_rng(6)
    img = np.zeros((100, 100, 3), dtype=np.float32)
    img[20:80, 10:90, 0] = rng.normal(0.5, 0.05, (60, 80))
    img[20:80, 10:90, 1] = rng.normal(0.25, 0.05, (60, 80))
    img[20:80, 10:90, 2] = 0.001  # below the data level: SNR 0, no median
    img = np.clip(img, 0, 1)
    m = quality_metrics(img)
    coverage = 60 * 80 / 100 / 100
    snrs, medians = [], []
    for k in range(3):
        v = img[..., k][img[..., k] > 0.005]
        if v.size < 100:
            snrs.append(0.0)
            continue
        mean, median, std = sigma_clipped_stats(v, sigma=3, maxiters=5)
        snrs.append(mean / std)
        medians.append(median)
    snr = np.mean(snrs)
    balance = min(medians) / max(medians)
    p1, p99 = np.percentile(img, [1, 99])
    spread = min(p99 - p1, 1)
    score = np.clip(
        1 + 4 * (0.3 * min(snr / 20, 1) + 0.25 * balance + 0.25 * spread + 0.2 * coverage), 1, 5
    )
    assert m == {
        "score": round(score, 2),
        "snr": round(snr, 2),
        "balance": round(balance, 2),
        "spread": round(spread, 2),
        "coverage": round(coverage, 2),
    }


def test_quality_metrics_of_an_empty_picture_are_the_floor():
    assert quality_metrics(np.zeros((50, 50, 3), dtype=np.float32)) == {
        "score": 1.0,
        "snr": 0.0,
        "balance": 0.0,
        "spread": 0.0,
        "coverage": 0.0,
    }


def test_quality_headers_are_the_shortest_decimal_of_each_value():
    headers = quality_headers(
        {"score": 3.0, "snr": 12.37, "balance": 0.5, "spread": 1.0, "coverage": 0.25}
    )
    assert headers == {
        "X-Quality-Score": "3.0",
        "X-Quality-SNR": "12.37",
        "X-Quality-Balance": "0.5",
        "X-Quality-Spread": "1.0",
        "X-Quality-Coverage": "0.25",
    }


def test_framing_rotation_and_letterbox():
    rgb = np.zeros((40, 60, 3), dtype=np.float32)
    rgb[5:30, 10:50] = 0.6
    rgb[5, 10] = 1.0
    cropped = framing.auto_crop(rgb)
    assert cropped.shape == (25, 40, 3)
    pixels = framing.to_8bit(cropped)
    assert_array_equal(framing.rotate(pixels, 90), np.rot90(pixels, k=-1))
    assert_array_equal(framing.rotate(pixels, -90), np.rot90(pixels, k=1))
    turned = framing.rotate(pixels, 30)
    w, h = 40, 25
    t = math.radians(30)
    assert abs(turned.shape[1] - (w * math.cos(t) + h * math.sin(t))) <= 2
    assert turned[0, 0].max() == 0  # new corners are black
    assert_array_equal(
        framing.to_8bit(np.array([0.0, 0.5, 0.999, 1.0, 2.0])), [0, 127, 254, 255, 255]
    )
    placed = framing.place(framing.to_8bit(cropped), 100, 100)
    assert placed.shape == (100, 100, 3)
    assert placed[:18].max() == 0 and placed[-19:].max() == 0  # letterbox bars


# ---------------------------------------------------------------------------------------
# Over HTTP
# ---------------------------------------------------------------------------------------


def test_saturation_zero_is_grey(engine_url, look):
    img = render(
        engine_url, plain(look, saturation={"saturation": 0, "vibrancy": 0, "hue_rotation": 0})
    )
    assert_array_equal(img[..., 0], img[..., 1])
    assert_array_equal(img[..., 1], img[..., 2])
    assert img.max() > 100


def test_hue_rotation_over_http_matches_colorsys(engine_url, look):
    base = render(engine_url, plain(look)) / 255.0
    turned = (
        render(
            engine_url, plain(look, saturation={"saturation": 1, "vibrancy": 0, "hue_rotation": 30})
        )
        / 255.0
    )
    assert base.shape == (120, 120, 3)
    diffs = []
    for (r, g, b), got in zip(base.reshape(-1, 3)[::7], turned.reshape(-1, 3)[::7], strict=True):
        h, l_, s = colorsys.rgb_to_hls(r, g, b)
        diffs.append(np.abs(np.array(colorsys.hls_to_rgb((h + 30 / 360) % 1, l_, s)) - got))
    # Both pictures are floored to 8 bits: a few levels at most.
    assert np.percentile(np.max(diffs, axis=1), 99) <= 3 / 255


def test_rotation_by_90_is_rot90_of_the_unrotated_render(engine_url, look):
    a = render(engine_url, plain(look))
    b = render(engine_url, plain(look, rotation_degrees=90))
    assert np.abs(b - np.rot90(a, k=-1)).max() <= 1
    c = render(engine_url, plain(look, rotation_degrees=-90))
    assert np.abs(c - np.rot90(a, k=1)).max() <= 1


def test_zoom_2_is_the_centre_of_the_zoom_1_render_enlarged(engine_url, look):
    body = {
        "channels": [channel([look["coarse"]], {"hue": 30}, stretch="asinh")],
        "background_neutralization": False,
        "width": 160,
        "height": 160,
    }
    one = render(engine_url, body).astype(np.uint8)
    two = render(engine_url, {**body, "crop_zoom": 2})
    crop = Image.fromarray(one[40:120, 40:120]).resize((160, 160), Image.Resampling.LANCZOS)
    assert np.abs(np.asarray(crop).astype(int) - two).mean() < 3
    # crop_center moves the window: (0, 0) shows the top-left quarter.
    corner = render(engine_url, {**body, "crop_zoom": 2, "crop_center_x": 0, "crop_center_y": 0})
    crop = Image.fromarray(one[:80, :80]).resize((160, 160), Image.Resampling.LANCZOS)
    assert np.abs(np.asarray(crop).astype(int) - corner).mean() < 3


def test_sharpening_changes_only_details(engine_url, look):
    soft = render(engine_url, plain(look))
    sharp = render(engine_url, plain(look, sharpening={"radius": 1.5, "amount": 2, "threshold": 0}))
    off = render(engine_url, plain(look, sharpening={"radius": 1.5, "amount": 0, "threshold": 0}))
    assert_array_equal(off, soft)
    assert np.abs(sharp - soft).max() > 10
    assert abs(sharp.mean() - soft.mean()) < 2  # an unsharp mask adds no light overall


def test_every_render_has_the_look_and_quality_headers(engine_url, look):
    r = httpx.post(engine_url + "/composite/generate-nchannel", json=plain(look), timeout=TIMEOUT)
    headers = r.headers
    assert headers["x-composite-auto-feather"] == "false"
    assert headers["x-composite-feather-strength"] == "0.000"
    score = float(headers["x-quality-score"])
    assert 1 <= score <= 5
    for name in ("snr", "balance", "spread", "coverage"):
        assert float(headers[f"x-quality-{name}"]) >= 0
    assert float(headers["x-quality-coverage"]) == 1.0


def nircam_miri(look, **extra):
    body = {
        "channels": [
            channel([look["nircam"]], {"hue": 240}, stretch="linear", label="F200W"),
            channel([look["miri"]], {"hue": 0}, stretch="linear", label="F770W"),
        ],
        "background_neutralization": False,
        "width": 200,
        "height": 200,
    }
    body.update(extra)
    return body


def test_mixed_instruments_feather_automatically(engine_url, look):
    r = httpx.post(
        engine_url + "/composite/generate-nchannel", json=nircam_miri(look), timeout=TIMEOUT
    )
    assert r.status_code == 200
    assert r.headers["x-composite-auto-feather"] == "true"
    expected = min(0.3, 0.05 * 0.11 / 0.063)
    assert r.headers["x-composite-feather-strength"] == f"{expected:.3f}"
    feathered = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    hard = render(engine_url, nircam_miri(look, feather_strength=0))
    # Inside the MIRI field (the middle) the colour is the all-channel colour.
    middle = (slice(95, 105), slice(95, 105))
    assert np.abs(feathered[middle] - hard[middle]).max() <= 2
    assert hard[middle][..., 0].mean() > 100  # red (MIRI) is there
    # Far outside it the picture is NIRCam's alone: blue.
    corner = feathered[5:20, 5:20]
    assert corner[..., 0].max() <= 2 and corner[..., 2].min() > 100
    # Across the MIRI edge, the hard combine steps; the feathered one fades.
    row = 100
    hard_step = np.abs(np.diff(hard[row, :, 0])).max()
    soft_step = np.abs(np.diff(feathered[row, :, 0])).max()
    assert hard_step > 100 and soft_step < hard_step / 4


def test_auto_stretch_renders_as_the_analysed_parameters(engine_url, look):
    analysed = httpx.post(
        engine_url + "/composite/analyze-channels",
        json={
            "channels": [
                channel([look["field"]], {"hue": 0}, label="F090W"),
                channel([look["miri"]], {"luminance": True}),
                channel([look["field2"]], {"luminance": True}),
            ],
            "background_neutralization": True,
        },
        timeout=TIMEOUT,
    )
    assert analysed.status_code == 200, analysed.text
    entries = analysed.json()["channels"]
    assert [e["channel_name"] for e in entries] == ["F090W", "ch1", "ch2"]
    assert entries[0]["label"] == "F090W" and entries[1]["label"] is None
    first = entries[0]
    assert first["params"]["stretch"] == "asinh"
    assert first["meta"]["instrument_adjusted"] is False
    assert entries[1]["meta"]["instrument_adjusted"] is True  # MIRI
    assert type(first["meta"]["valid_pixels"]) is int
    hist = first["histogram"]
    assert hist["n_bins"] == 100 and len(hist["counts"]) == 100 and len(hist["bin_edges"]) == 101
    assert all(type(c) is int for c in hist["counts"])
    assert sum(hist["counts"]) == first["meta"]["valid_pixels"]

    channels = [channel([look["field"]], {"hue": 0}), channel([look["field2"]], {"hue": 200})]
    auto = {
        "channels": [{**c, "auto_stretch": True} for c in channels],
        "width": 150,
        "height": 120,
    }
    params = httpx.post(
        engine_url + "/composite/analyze-channels", json={"channels": channels}, timeout=TIMEOUT
    ).json()["channels"]
    filled = {
        "channels": [{**c, **p["params"]} for c, p in zip(channels, params, strict=True)],
        "width": 150,
        "height": 120,
    }
    a = httpx.post(engine_url + "/composite/generate-nchannel", json=auto, timeout=TIMEOUT)
    b = httpx.post(engine_url + "/composite/generate-nchannel", json=filled, timeout=TIMEOUT)
    assert a.status_code == b.status_code == 200
    assert a.content == b.content


def test_auto_stretch_moves_a_dark_median_toward_the_target():
    """Decision 14: the render's x^(1/gamma) brings the stretched median to about 0.28."""
    rng = np.random.default_rng(7)
    data = np.abs(rng.normal(0.0, 1.0, (300, 300))).astype(np.float32) + 0.05
    data[100:110, 100:110] += 400.0  # a bright source makes the sky dark once stretched
    result = auto_stretch(data)
    p = result.params
    lo, hi = np.percentile(data[data > 0], [0.1, 99.9])
    mapped = np.clip(
        np.arcsinh(((data - lo) / (hi - lo)) / p.asinh_a) / math.asinh(1 / p.asinh_a), 0, 1
    )
    before = float(np.median(mapped))
    after = before ** (1 / p.gamma)
    assert abs(after - 0.28) < abs(before - 0.28)
    assert abs(after - 0.28) < 0.02 or p.gamma in (0.6, 2.5)
    assert result.meta.valid_pixels == 90000


def test_auto_stretch_safe_defaults_and_instrument_rule():
    empty = auto_stretch(np.zeros((20, 20), dtype=np.float32))
    assert empty.params.model_dump() == {
        "stretch": "asinh",
        "asinh_a": 0.02,
        "black_point": 0.02,
        "white_point": 0.995,
        "gamma": 1.2,
        "curve": "s_curve",
    }
    assert empty.meta.curve_reason == "insufficient_data"
    assert empty.meta.zero_coverage_frac == 1.0
    flat = auto_stretch(np.full((30, 30), 2.0, dtype=np.float32))
    assert flat.meta.curve_reason == "constant_data"
    rng = np.random.default_rng(8)
    data = rng.normal(1.0, 0.1, (200, 200)).astype(np.float32)
    data[50:60, 50:60] = 50
    nircam, miri = auto_stretch(data, "NIRCAM"), auto_stretch(data, "MIRI/IMAGE")
    assert miri.params.asinh_a == min(nircam.params.asinh_a, 0.015)
    assert miri.params.gamma == round(min(nircam.params.gamma * 1.15, 2.5), 2)
    assert miri.meta.instrument_adjusted and not nircam.meta.instrument_adjusted


def test_cached_grids_are_never_reused_for_a_larger_request(look, data_root):
    """Decision 18: the cache key holds the grid, so an export never reads a preview."""
    spec = ChannelSpec(
        label="x",
        paths=[str(data_root / look["field"])],
        rgb=(1, 0, 0),
        display=DisplayParams(stretch="asinh"),
    )
    small = compositor.plan_composite([spec], RenderOptions(width=100, height=100))
    large = compositor.plan_composite([spec], RenderOptions(width=400, height=400))
    assert small.identities != large.identities
    assert large.grid.shape == (400, 400)


def test_feather_strength_rule():
    assert feather_strength(None, ["NIRCAM", "MIRI"], [0.031, 0.111]).strength == pytest.approx(
        0.179, abs=1e-3
    )
    assert feather_strength(None, ["NIRCAM", "MIRI"], [0.063, 0.111]).strength == pytest.approx(
        0.088, abs=1e-3
    )
    assert feather_strength(None, ["NIRCAM", "NIRCAM"], [0.031, 0.063]).auto is False
    assert feather_strength(0.4, ["NIRCAM", "MIRI"], [0.031, 0.111]).strength == 0.4


@pytest.mark.parametrize(
    "extra,ok",
    [
        ({"sharpening": {"radius": 0.5, "amount": 3, "threshold": 1}}, True),
        ({"sharpening": {"radius": 10, "amount": 0, "threshold": 0}}, True),
        ({"sharpening": {"radius": 0.4}}, False),
        ({"sharpening": {"amount": 3.1}}, False),
        ({"sharpening": {"threshold": -0.1}}, False),
        ({"saturation": {"saturation": 2, "vibrancy": 1, "hue_rotation": -30}}, True),
        ({"saturation": {"saturation": 2.01}}, False),
        ({"saturation": {"vibrancy": 1.5}}, False),
        ({"saturation": {"hue_rotation": 31}}, False),
        ({"feather_strength": 1}, True),
        ({"feather_strength": 1.01}, False),
        ({"rotation_degrees": 180}, True),
        ({"rotation_degrees": -180.5}, False),
        ({"crop_center_x": 1, "crop_center_y": 0, "crop_zoom": 5}, True),
        ({"crop_center_x": 1.1}, False),
        ({"crop_zoom": 0.1}, True),
        ({"crop_zoom": 0.09}, False),
        ({"crop_zoom": 5.5}, False),
    ],
)
def test_new_fields_at_their_limits(engine_url, look, extra, ok):
    body = {"channels": [channel([look["coarse"]], {"hue": 0})], "width": 64, "height": 48, **extra}
    r = httpx.post(engine_url + "/composite/generate-nchannel", json=body, timeout=TIMEOUT)
    if ok:
        assert r.status_code == 200, r.text[:300]
        assert Image.open(io.BytesIO(r.content)).size == (64, 48)
    else:
        assert r.status_code == 422 and isinstance(r.json()["detail"], str)


def test_memory_estimate_covers_the_peak_with_every_control_on(look, data_root):
    import tracemalloc

    specs = [
        ChannelSpec(
            label=name,
            paths=[str(data_root / look[name])],
            rgb=rgb,
            display=DisplayParams(stretch="asinh"),
            auto_stretch=auto,
        )
        for name, rgb, auto in (
            ("nircam", (0, 0, 1), True),
            ("miri", (1, 0, 0), False),
            ("nircam", (0, 1, 0), False),
        )
    ]
    options = RenderOptions(
        width=500,
        height=400,
        sharpening=(2.0, 1.0, 0.01),
        saturation=(1.4, 0.3, 12.0),
        rotation_degrees=17.0,
        crop_zoom=1.5,
    )
    plan = compositor.plan_composite(specs, options)
    tracemalloc.start()
    result = compositor.render_composite(plan)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result.headers["X-Composite-Auto-Feather"] == "true"
    assert peak < compositor.estimate_composite_bytes(plan)

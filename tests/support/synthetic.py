"""A seeded generator of JWST-like FITS files (i2d layout) with a known truth.

Layout as the archive's level-3 products: an empty PRIMARY carrying the
observation metadata; ``SCI`` (float32, MJy/sr) with a TAN WCS (CRPIX, CRVAL,
CDELT and a PC rotation matrix); ``ERR`` and ``DQ``. Pixels outside a rotated
footprint are NaN, as the resampled mosaics' borders are. The sky holds a flat
background with Gaussian noise, Gaussian stars at known positions and fluxes,
and a few elliptical exponential galaxies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

#: Where the synthetic fields lie on the sky (the Orion Bar), in degrees.
RA0, DEC0 = 83.8221, -5.3911


@dataclass
class Star:
    x: float  # 0-based pixel column
    y: float  # 0-based pixel row
    flux: float  # total flux (sum over pixels)
    peak: float
    ra: float = 0.0
    dec: float = 0.0


@dataclass
class SyntheticImage:
    path: Path
    shape: tuple[int, int]
    header: fits.Header
    wcs: WCS
    stars: list[Star] = field(default_factory=list)
    background: float = 0.0
    noise: float = 0.0
    psf_sigma: float = 1.5


def make_wcs(shape, ra, dec, pixel_scale_arcsec, rotation_deg, crpix=None) -> WCS:
    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = list(crpix) if crpix is not None else [(nx + 1) / 2.0, (ny + 1) / 2.0]
    scale = pixel_scale_arcsec / 3600.0
    w.wcs.cdelt = [-scale, scale]
    t = math.radians(rotation_deg)
    w.wcs.pc = [[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]
    w.wcs.radesys = "ICRS"
    return w


def _stamp(img, x, y, r):
    """The pixel grids (yy, xx) of the box of half-size ``r`` around (x, y) inside the
    image and that box's slices, or None when the box misses the image."""
    ny, nx = img.shape
    x0, x1 = max(0, int(x) - r), min(nx, int(x) + r + 2)
    y0, y1 = max(0, int(y) - r), min(ny, int(y) + r + 2)
    if x0 >= x1 or y0 >= y1:
        return None
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return yy, xx, (slice(y0, y1), slice(x0, x1))


def _add_gaussian(img, x, y, flux, sigma):
    stamp = _stamp(img, x, y, int(math.ceil(5 * sigma)))
    if stamp is None:
        return
    yy, xx, box = stamp
    g = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))
    img[box] += (flux / (2 * math.pi * sigma**2) * g).astype(np.float32)


def _add_galaxy(img, x, y, flux, re, q, theta):
    stamp = _stamp(img, x, y, int(math.ceil(6 * re)))
    if stamp is None:
        return
    yy, xx, box = stamp
    dx, dy = xx - x, yy - y
    c, s = math.cos(theta), math.sin(theta)
    u = dx * c + dy * s
    v = (-dx * s + dy * c) / q
    rr = np.sqrt(u**2 + v**2)
    prof = np.exp(-rr / (re / 1.678))
    img[box] += (flux * prof / prof.sum()).astype(np.float32)


def make_jwst_image(
    path,
    shape=(512, 512),
    *,
    seed=0,
    ra=RA0,
    dec=DEC0,
    pixel_scale_arcsec=0.031,
    rotation_deg=12.0,
    n_stars=60,
    n_galaxies=4,
    background=0.3,
    noise=0.02,
    psf_sigma=1.5,
    flux_range=(5.0, 500.0),
    nan_border=True,
    instrument="NIRCAM",
    detector="NRCA1",
    filter_name="F090W",
    pupil="CLEAR",
    target="ORION-BAR",
    program="02733",
    with_err_dq=True,
    crpix=None,
    stars=None,
    bunit="MJy/sr",
    extra_primary=None,
) -> SyntheticImage:
    """Write a JWST-like i2d file and return what was put in it.

    ``stars`` may be a list of (x, y, flux) to place exactly; otherwise
    ``n_stars`` are drawn at random (kept 8 px away from the footprint edge).
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    wcs = make_wcs(shape, ra, dec, pixel_scale_arcsec, rotation_deg, crpix)
    sci = rng.standard_normal((ny, nx), dtype=np.float32)
    sci *= np.float32(noise)
    sci += np.float32(background)

    # Footprint: a rectangle rotated by the WCS rotation, inset from the edges.
    if nan_border:
        t = math.radians(rotation_deg)
        cy, cx = (ny - 1) / 2.0, (nx - 1) / 2.0
        half_w, half_h = nx * 0.42, ny * 0.42
        yy = np.arange(ny, dtype=np.float32)[:, None] - cy
        xx = np.arange(nx, dtype=np.float32)[None, :] - cx
        u = xx * math.cos(t) + yy * math.sin(t)
        v = -xx * math.sin(t) + yy * math.cos(t)
        outside = (np.abs(u) > half_w) | (np.abs(v) > half_h)

        def inside(x, y):
            uu = (x - cx) * math.cos(t) + (y - cy) * math.sin(t)
            vv = -(x - cx) * math.sin(t) + (y - cy) * math.cos(t)
            return abs(uu) < half_w - 8 and abs(vv) < half_h - 8
    else:
        outside = None

        def inside(x, y):
            return 8 <= x < nx - 8 and 8 <= y < ny - 8

    truth: list[Star] = []
    if stars is None:
        drawn = []
        lo, hi = math.log(flux_range[0]), math.log(flux_range[1])
        while len(drawn) < n_stars:
            x, y = rng.uniform(0, nx - 1), rng.uniform(0, ny - 1)
            if inside(x, y):
                drawn.append((x, y, math.exp(rng.uniform(lo, hi))))
        stars = drawn
    for x, y, flux in stars:
        _add_gaussian(sci, x, y, flux, psf_sigma)
        truth.append(
            Star(
                x=float(x),
                y=float(y),
                flux=float(flux),
                peak=float(flux / (2 * math.pi * psf_sigma**2)),
            )
        )
    for _ in range(n_galaxies):
        x, y = rng.uniform(0.2 * nx, 0.8 * nx), rng.uniform(0.2 * ny, 0.8 * ny)
        _add_galaxy(
            sci,
            x,
            y,
            rng.uniform(200, 2000),
            rng.uniform(4, 12),
            rng.uniform(0.4, 0.9),
            rng.uniform(0, math.pi),
        )
    if outside is not None:
        sci[outside] = np.nan
    if truth:
        sky = wcs.pixel_to_world_values(
            np.array([s.x for s in truth]), np.array([s.y for s in truth])
        )
        for s, r, d in zip(truth, sky[0], sky[1], strict=True):
            s.ra, s.dec = float(r), float(d)

    primary = fits.PrimaryHDU()
    ph = primary.header
    ph["TELESCOP"] = "JWST"
    ph["INSTRUME"] = instrument
    ph["DETECTOR"] = detector
    ph["FILTER"] = filter_name
    ph["PUPIL"] = pupil
    ph["TARGPROP"] = target
    ph["PROGRAM"] = program
    ph["DATE-OBS"] = "2023-01-15"
    ph["EFFEXPTM"] = 1288.5
    for key, value in (extra_primary or {}).items():
        ph[key] = value
    sci_hdu = fits.ImageHDU(sci, name="SCI")
    sci_hdu.header.update(wcs.to_header())
    sci_hdu.header["BUNIT"] = bunit
    hdus = [primary, sci_hdu]
    if with_err_dq:
        err = np.full((ny, nx), noise, dtype=np.float32)
        dq = np.zeros((ny, nx), dtype=np.uint32)
        if outside is not None:
            err[outside] = np.nan
            dq[outside] = 1
        hdus.append(fits.ImageHDU(err, name="ERR"))
        hdus.append(fits.ImageHDU(dq, name="DQ"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return SyntheticImage(
        path=path,
        shape=(ny, nx),
        header=sci_hdu.header,
        wcs=wcs,
        stars=truth,
        background=background,
        noise=noise,
        psf_sigma=psf_sigma,
    )


def make_cube(
    path,
    n_slices=5,
    shape=(64, 48),
    *,
    seed=1,
    ctype3="WAVE",
    cunit3="um",
    crval3=4.5,
    cdelt3=0.01,
    crpix3=1.0,
) -> np.ndarray:
    """An IFU-like cube (slices, y, x) whose slice k holds the value k + small noise."""
    rng = np.random.default_rng(seed)
    cube = np.empty((n_slices,) + tuple(shape), dtype=np.float32)
    for k in range(n_slices):
        cube[k] = k + 0.01 * rng.standard_normal(shape)
    hdu = fits.ImageHDU(cube, name="SCI")
    w = make_wcs(shape, 10.0, 20.0, 0.1, 0.0)
    for key, value in w.to_header().items():
        if key.endswith("1") or key.endswith("2") or key in ("RADESYS",):
            hdu.header[key] = value
    hdu.header["CTYPE3"] = ctype3
    hdu.header["CUNIT3"] = cunit3
    hdu.header["CRVAL3"] = crval3
    hdu.header["CDELT3"] = cdelt3
    hdu.header["CRPIX3"] = crpix3
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
    return cube


def make_tile_grid(
    root: Path,
    prefix: str,
    rows: int,
    cols: int,
    *,
    step_arcsec: float,
    seed: int,
    name: str = "tile_{i}{j}.fits",
    reuse: bool = False,
    **options,
) -> list[str]:
    """``rows`` x ``cols`` detector files of one filter, ``step_arcsec`` apart on the sky
    around (RA0, DEC0), without NaN borders (unrotated unless ``options`` say); their
    storage keys ``<prefix>/<name>`` (``name`` formatted with row ``i`` and column
    ``j``), row by row. With ``reuse``, a file already there is kept (the benches'
    cache). ``options`` go to :func:`make_jwst_image` (``shape``, ``n_stars``...)."""
    options = {"rotation_deg": 0.0, "nan_border": False, **options}
    ra_step = step_arcsec / 3600 / math.cos(math.radians(DEC0))
    keys = []
    for i in range(rows):
        for j in range(cols):
            key = f"{prefix}/{name.format(i=i, j=j)}"
            keys.append(key)
            if reuse and (root / key).exists():
                continue
            make_jwst_image(
                root / key,
                seed=seed + cols * i + j,
                ra=RA0 + (j - (cols - 1) / 2) * ra_step,
                dec=DEC0 + (i - (rows - 1) / 2) * step_arcsec / 3600,
                **options,
            )
    return keys


def make_catalog(path: Path, n: int, seed: int = 3, wavelengths: bool = False) -> None:
    """A source catalogue of ``n`` rows in one binary table: RA and DEC (float64,
    uniform over the sky), MAG (float32, normal around 20) and NAME (``src<i>``); with
    ``wavelengths``, a WAVE column too (float32, 1-5 um), which makes it a spectrum."""
    rng = np.random.default_rng(seed)
    columns = (
        [
            fits.Column(
                name="WAVE", format="E", unit="um", array=rng.uniform(1, 5, n).astype(np.float32)
            )
        ]
        if wavelengths
        else []
    )
    columns += [
        fits.Column(name="RA", format="D", array=rng.uniform(0, 360, n)),
        fits.Column(name="DEC", format="D", array=rng.uniform(-90, 90, n)),
        fits.Column(name="MAG", format="E", array=rng.normal(20, 2, n).astype(np.float32)),
        fits.Column(name="NAME", format="16A", array=np.char.add("src", np.arange(n).astype(str))),
    ]
    table = fits.BinTableHDU.from_columns(columns)
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path, overwrite=True)

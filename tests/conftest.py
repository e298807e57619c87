"""Shared fixtures: real sky images, JWST-like files, bad files, live services."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from tests.support.servers import local_env, run_mast_standin, run_seaweedfs, run_service
from tests.support.synthetic import make_cube, make_jwst_image


def _site_file(package: str, *parts: str) -> Path:
    module = __import__(package)
    return Path(module.__file__).resolve().parent.joinpath(*parts)


# Real sky images shipped inside installed packages (DESIGN.md principle 7).
REAL_IMAGES = {
    "m13.fits": ("astropy", "io", "fits", "hdu", "compressed", "tests", "data", "m13.fits"),
    "ukidss.fits": ("astroquery", "ukidss", "tests", "data", "image.fits"),
    "cfht.fits": ("astroquery", "cadc", "tests", "data", "query_images.fits"),
    "poss.fits": ("astroquery", "ipac", "ned", "tests", "data", "query_images.fits"),
    "hst_test0.fits": ("astropy", "io", "fits", "tests", "data", "test0.fits"),
}


def real_image_path(name: str) -> Path:
    package, *parts = REAL_IMAGES[name]
    return _site_file(package, *parts)


def _write_bad_files(root: Path) -> None:
    bad = root / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    good = fits.HDUList([fits.PrimaryHDU(np.arange(100 * 100, dtype=np.float32).reshape(100, 100))])
    good.writeto(bad / "whole.fits", overwrite=True)
    raw = (bad / "whole.fits").read_bytes()
    (bad / "truncated.fits").write_bytes(raw[: 2880 + 4000])
    (bad / "not_fits.fits").write_bytes(b"This is a plain text file, not FITS.\n" * 100)
    (bad / "empty_file.fits").write_bytes(b"")
    fits.PrimaryHDU().writeto(bad / "empty_primary.fits", overwrite=True)
    nan = np.full((64, 64), np.nan, dtype=np.float32)
    fits.PrimaryHDU(nan).writeto(bad / "all_nan.fits", overwrite=True)
    # A header that claims far more pixels than the file holds.
    header = fits.Header()
    header["SIMPLE"] = True
    header["BITPIX"] = -32
    header["NAXIS"] = 2
    header["NAXIS1"] = 10000
    header["NAXIS2"] = 10000
    liar = header.tostring().encode("ascii")
    liar += b" " * (-len(liar) % 2880)
    (bad / "naxis_lies.fits").write_bytes(liar + np.zeros(2880, dtype=np.uint8).tobytes())
    table = fits.BinTableHDU.from_columns([fits.Column(name="A", format="E", array=np.arange(5))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(bad / "table_only.fits", overwrite=True)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A storage root holding every test file, laid out as the engine sees it."""
    root = tmp_path_factory.mktemp("storage")
    real = root / "real"
    real.mkdir()
    for name in REAL_IMAGES:
        shutil.copy(real_image_path(name), real / name)
    jwst = root / "jwst"
    make_jwst_image(jwst / "small_i2d.fits", shape=(300, 400), seed=3)
    make_jwst_image(jwst / "large_i2d.fits", shape=(4096, 4096), seed=4, n_stars=200)
    make_cube(jwst / "cube_s3d.fits", n_slices=7, shape=(40, 30))
    # Scaled integer data, tile compression and whole-file gzip.
    rng = np.random.default_rng(5)
    ints = rng.integers(0, 30000, size=(120, 90)).astype(np.int16)
    scaled = fits.PrimaryHDU(ints)
    scaled.header["BSCALE"] = 0.5
    scaled.header["BZERO"] = 100.0
    scaled.header["BLANK"] = -32768
    scaled.data[0, 0] = -32768
    scaled.writeto(jwst / "scaled_int.fits", overwrite=True)
    comp = fits.CompImageHDU(
        rng.normal(10, 1, (150, 110)).astype(np.float32),
        compression_type="RICE_1",
        quantize_level=64,
    )
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(jwst / "tile_compressed.fits", overwrite=True)
    gz = fits.PrimaryHDU(rng.normal(5, 2, (80, 70)).astype(np.float32))
    gz.writeto(jwst / "gzipped.fits.gz", overwrite=True)
    _write_bad_files(root)
    (root / "a_directory").mkdir()
    outside = root.parent / (root.name + "_outside")
    outside.mkdir(exist_ok=True)
    shutil.copy(real_image_path("m13.fits"), outside / "secret.fits")
    os.symlink(outside / "secret.fits", root / "escape.fits")
    os.symlink(outside, root / "escape_dir")
    return root


def composite_cache_dir(data_root: Path) -> Path:
    """Where the test engine keeps reprojected composite channels (outside the root)."""
    return data_root.parent / (data_root.name + "_composite_cache")


@dataclass(frozen=True)
class Scratch:
    """A folder of the served storage root that one test alone writes into."""

    path: Path
    prefix: str  # its storage key

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"


@pytest.fixture()
def scratch(data_root: Path, request: pytest.FixtureRequest) -> Iterator[Scratch]:
    """Function-scoped writable data inside the session's storage root (which the
    session-scoped services serve): created for the test, removed after it, so no test
    sees another's files."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)[:100]
    folder = data_root / "scratch" / name
    folder.mkdir(parents=True)
    yield Scratch(folder, f"scratch/{name}")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def engine_url(data_root, tmp_path_factory):
    """The processing engine, a real uvicorn process on local storage."""
    logs = tmp_path_factory.mktemp("logs")
    env = local_env(data_root, ENGINE_WORKERS=2, COMPOSITE_CACHE_DIR=composite_cache_dir(data_root))
    with run_service("main", env, logs / "engine.log") as (base, _proc):
        yield base


@pytest.fixture(scope="session")
def mast_url(data_root, tmp_path_factory):
    logs = tmp_path_factory.mktemp("logs")
    env = local_env(data_root)
    with run_service("main_mast", env, logs / "mast.log") as (base, _proc):
        yield base


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    """A real S3 server (SeaweedFS) with the app bucket and a public-archive bucket."""
    workdir = tmp_path_factory.mktemp("seaweedfs")
    with run_seaweedfs(workdir, ["jwst-data", "stpubdata"]) as (endpoint, client):
        yield endpoint, client


@pytest.fixture(scope="session")
def standin(tmp_path_factory):
    """The MAST stand-in (real MAST protocol) with generated JWST products."""
    work = tmp_path_factory.mktemp("standin")
    with run_mast_standin(work / "files", work / "standin.log") as (base, _proc):
        yield base


def mast_env(standin_url: str, root: Path, **extra) -> dict[str, str]:
    standin = {
        "MAST_BASE_URL": standin_url,
        "NAME_RESOLVER_URL": standin_url + "/cgi-bin/nph-sesame/",
        "MAST_SEARCH_TIMEOUT": 20,
    }
    return local_env(root, **(standin | extra))


@pytest.fixture(scope="session")
def proxy(standin, tmp_path_factory):
    """The MAST proxy (two uvicorn workers, as deployed) pointed at the stand-in."""
    root = tmp_path_factory.mktemp("proxy_data")
    with run_service("main_mast", mast_env(standin, root), root / "proxy.log", workers=2) as (
        base,
        proc,
    ):
        yield base, root, proc

"""Observation mosaics (CONTRACT-HEAD §10.5) and the footprint overlap warning (§10.6)."""

from __future__ import annotations

import io
import math
import re

import httpx
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from numpy.testing import assert_allclose, assert_array_equal

from app.mosaic.observation import build_observation_mosaic
from app.mosaic.overlap import overlap_groups, overlap_warning
from app.processing.instruments import normalise_instrument
from tests.support.synthetic import DEC0, RA0, make_jwst_image
from tests.test_mosaic import coadd

TIMEOUT = 300


@pytest.fixture(scope="module")
def obs(data_root):
    """Eight 256^2 detector files of one filter, 2 x 4 with 20 % overlap, NIRCam F200W."""
    keys = []
    n, scale = 256, 0.031
    step = n * scale * 0.8 / 3600
    for i in range(2):
        for j in range(4):
            key = f"observation/jw01234-o001_t001_nircam_det{i}{j}_cal.fits"
            make_jwst_image(
                data_root / key,
                shape=(n, n),
                seed=300 + 4 * i + j,
                ra=RA0 + (j - 1.5) * step / math.cos(math.radians(DEC0)),
                dec=DEC0 + (i - 0.5) * step,
                rotation_deg=1.0 + i + j,
                n_stars=12,
                nan_border=False,
                extra_primary={"TARGNAME": "ORION-BAR", "OBS_ID": f"d{i}{j}"},
            )
            keys.append(key)
    return keys


def post(base, body):
    return httpx.post(base + "/mosaic/generate-observation", json=body, timeout=TIMEOUT)


def test_observation_mosaic_equals_reproject_and_coadd(engine_url, obs, data_root):
    r = post(
        engine_url,
        {
            "file_paths": obs,
            "combine_method": "mean",
            "max_output_pixels": 64_000_000,
            "batch_size": 4,
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/fits"
    assert r.headers["content-disposition"] == "attachment; filename=observation-mosaic.fits"
    assert int(r.headers["content-length"]) == len(r.content)
    with fits.open(io.BytesIO(r.content)) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "SRCMETA"]
        ours = hdul[0].data.astype(np.float64)
        wcs = WCS(hdul[0].header)
    theirs = coadd([data_root / k for k in obs], wcs, ours.shape, "mean")
    covered = np.isfinite(theirs)
    assert covered.sum() > 0.5 * ours.size
    # No coverage is 0, not NaN (§10.5); elsewhere equal to reproject within float32.
    assert np.isfinite(ours).all()
    assert_array_equal(ours[~covered], 0.0)
    scale = np.nanmax(np.abs(theirs))
    assert_allclose(ours[covered], theirs[covered], rtol=0, atol=1e-5 * scale)


def test_observation_header_and_srcmeta(engine_url, obs, data_root):
    r = post(engine_url, {"file_paths": obs[:3], "combine_method": "max"})
    assert r.status_code == 200
    with fits.open(io.BytesIO(r.content)) as hdul:
        header = hdul[0].header
        assert header["ORIGIN"] == "JWST-DataAnalysis"
        assert header["CREATOR"] == "observation-mosaic-generator"
        assert type(header["NCOMBINE"]) is int and header["NCOMBINE"] == 3
        assert header["COMBMETH"] == "max"
        assert header["OBS_MOSAIC"] is True
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", header["DATE"])
        assert "EXTNAME" not in header
        assert header["CTYPE1"] == "RA---TAN" and header["CTYPE2"] == "DEC--TAN"
        assert header["CDELT1"] < 0 and header["CUNIT1"].strip() == "deg"
        # Keys every input shares are copied; differing ones are summarised.
        assert header["TARGNAME"] == "ORION-BAR"
        assert header["SRCOBS"] == "d00|d01|d02"
        table = hdul["SRCMETA"].data
        names = {n for n in table["FILENAME"]}
        assert names == {k.rsplit("/", 1)[-1] for k in obs[:3]}
        expected = 0
        for key in obs[:3]:
            with fits.open(data_root / key) as src:
                cards = [c for c in src[1].header.cards if c.keyword] + [
                    c for c in src[0].header.cards if c.keyword
                ]
            expected += len(cards)
        # Every card of the image header and the primary's own (merged without repeats).
        assert 0 < len(table) <= expected
        first = table[table["SRCINDEX"] == 1]
        row = dict(zip(first["KEYWORD"], first["VALUE"], strict=True))
        assert row["OBS_ID"] == "d00" and row["TARGNAME"] == "ORION-BAR"


def test_max_output_pixels_shrinks_the_grid_instead_of_refusing(engine_url, obs, data_root):
    full = post(engine_url, {"file_paths": obs})
    with fits.open(io.BytesIO(full.content)) as hdul:
        h0, w0 = hdul[0].data.shape
        scale0 = abs(hdul[0].header["CDELT1"])
        centre0 = WCS(hdul[0].header).pixel_to_world((w0 - 1) / 2, (h0 - 1) / 2)
    limit = (h0 * w0) // 9
    small = post(engine_url, {"file_paths": obs, "max_output_pixels": limit})
    assert small.status_code == 200
    with fits.open(io.BytesIO(small.content)) as hdul:
        data = hdul[0].data
        h, w = data.shape
        assert h * w <= limit
        factor = math.sqrt(limit / (h0 * w0))
        assert (h, w) == (math.floor(h0 * factor), math.floor(w0 * factor))
        assert abs(hdul[0].header["CDELT1"]) == pytest.approx(scale0 / factor, rel=1e-9)
        centre = WCS(hdul[0].header).pixel_to_world((w - 1) / 2, (h - 1) / 2)
        assert centre.separation(centre0).arcsec < 0.01
        # Inputs were block-averaged (factor 3) to the coarser grid: the sky level is kept.
        assert np.median(data[data != 0]) == pytest.approx(
            np.median(full_data_nonzero(full.content)), rel=0.05
        )


def full_data_nonzero(content: bytes) -> np.ndarray:
    with fits.open(io.BytesIO(content)) as hdul:
        data = hdul[0].data
        return data[data != 0].copy()


@pytest.mark.parametrize(
    "body,status",
    [
        (lambda k: {"file_paths": k[:1]}, 422),
        (lambda k: {"file_paths": k[:1] * 501}, 422),
        (lambda k: {"file_paths": k[:2], "batch_size": 3}, 422),
        (lambda k: {"file_paths": k[:2], "batch_size": 21}, 422),
        (lambda k: {"file_paths": k[:2], "max_output_pixels": 256_000_001}, 422),
        (lambda k: {"file_paths": k[:2], "max_output_pixels": 0}, 422),
        (lambda k: {"file_paths": k[:2], "combine_method": "median"}, 422),
        (lambda k: {"file_paths": [k[0], "bad/truncated.fits"]}, 400),
        (lambda k: {"file_paths": [k[0], "bad/not_fits.fits"]}, 400),
        (lambda k: {"file_paths": [k[0], "real/hst_test0.fits"]}, 400),
        (lambda k: {"file_paths": [k[0], "nope/missing.fits"]}, 404),
        (lambda k: {"file_paths": [k[0], "../x.fits"]}, 403),
    ],
)
def test_observation_mosaic_errors(engine_url, obs, body, status):
    r = post(engine_url, body(obs))
    assert r.status_code == status, r.text[:300]
    assert isinstance(r.json()["detail"], str)


def test_dask_path_writes_the_same_bytes(obs, data_root, tmp_path, monkeypatch):
    from app.mosaic import mosaic_engine

    distributed = pytest.importorskip("dask.distributed")
    monkeypatch.setattr(mosaic_engine, "TILE_PIXELS", 1 << 16)
    paths = [str(data_root / k) for k in obs]
    local, _ = build_observation_mosaic(paths, "mean", 64_000_000, str(tmp_path / "local"))
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        remote, _ = build_observation_mosaic(
            paths, "mean", 64_000_000, str(tmp_path / "dask"), cluster.scheduler_address
        )
    with fits.open(local) as a, fits.open(remote) as b:
        assert_array_equal(a[0].data, b[0].data)
        assert a["SRCMETA"].data.tobytes() == b["SRCMETA"].data.tobytes()
        cards_a = [c.image for c in a[0].header.cards if c.keyword != "DATE"]
        cards_b = [c.image for c in b[0].header.cards if c.keyword != "DATE"]
        assert cards_a == cards_b


# ---------------------------------------------------------------------------------------
# Footprint overlap warning
# ---------------------------------------------------------------------------------------


def test_overlapping_files_give_no_warning(engine_url, obs):
    r = httpx.post(engine_url + "/mosaic/footprint", json={"file_paths": obs}, timeout=TIMEOUT)
    assert r.status_code == 200
    body = r.json()
    assert body["overlap_warning"] is None
    assert {f["instrument"] for f in body["footprints"]} == {"NIRCAM"}
    single = httpx.post(
        engine_url + "/mosaic/footprint", json={"file_paths": obs[:1]}, timeout=TIMEOUT
    ).json()
    assert single["overlap_warning"] is None


def test_disconnected_groups_give_the_exact_warning(engine_url, obs, data_root):
    far = "observation/far_miri.fits"
    make_jwst_image(
        data_root / far, shape=(100, 100), ra=RA0 + 0.5, dec=DEC0, n_stars=3, instrument="MIRI"
    )
    keys = [obs[0], far, obs[1]]
    r = httpx.post(engine_url + "/mosaic/footprint", json={"file_paths": keys}, timeout=TIMEOUT)
    assert r.status_code == 200
    names = [k.rsplit("/", 1)[-1] for k in keys]
    assert r.json()["overlap_warning"] == (
        "These 3 files form 2 spatially disconnected groups \u2014 the composite may have "
        "large gaps.\n"
        f"Group 1: {names[0]}, {names[2]} (NIRCAM)\n"
        f"Group 2: {names[1]} (MIRI)\n"
        "Consider compositing each group separately."
    )


def test_overlap_rule_against_astropy_separations():
    """Join when the separation is below the sum of the radii (NIRCam 1.1', MIRI 0.75')."""
    ra = [10.0, 10.0, 10.0, 10.0]
    dec = [0.0, 1.8 / 60, 3.7 / 60, 10.0 / 60]
    insts = ["NIRCAM", "MIRI", "NIRCAM/IMAGE", None]
    sep = SkyCoord(ra[0], dec[0], unit="deg").separation(SkyCoord(ra[1], dec[1], unit="deg")).arcmin
    assert sep < 1.1 + 0.75  # so 0 and 1 join; 1 and 2 are 1.9' apart > 1.85'
    assert overlap_groups(ra, dec, insts) == [[0, 1], [2], [3]]
    # Decision 15: NIRCAM/IMAGE is NIRCam (radius 1.1'), so 2.0' apart it joins NIRCam.
    assert overlap_groups([10, 10], [0, 2.0 / 60], ["NIRCAM", "NIRCAM/IMAGE"]) == [[0, 1]]
    assert normalise_instrument("nircam/image") == "NIRCAM"
    text = overlap_warning(["a/x.fits", "b/y.fits", "c/", "z.fits"], ra, dec, insts)
    assert text.splitlines()[1:4] == [
        "Group 1: x.fits, y.fits (MIRI, NIRCAM)",
        "Group 2:  (NIRCAM/IMAGE)",
        "Group 3: z.fits (UNKNOWN)",
    ]


def test_one_long_header_value_does_not_widen_the_provenance_table(engine_url, obs, data_root):
    """A 20 000-character CONTINUE string in one input's header: SRCMETA keeps it to a
    card's width, so the response stays the size of the image."""
    from astropy.io import fits as _fits

    long_key = "observation/long_header_cal.fits"
    make_jwst_image(
        data_root / long_key,
        shape=(256, 256),
        seed=399,
        rotation_deg=1.0,
        nan_border=False,
        n_stars=5,
        extra_primary={"NOTES": "x" * 20_000},
    )
    with _fits.open(data_root / long_key) as hdul:
        assert len(hdul[0].header["NOTES"]) == 20_000
    r = post(engine_url, {"file_paths": [obs[0], long_key]})
    assert r.status_code == 200
    with fits.open(io.BytesIO(r.content)) as hdul:
        image_bytes = hdul[0].data.nbytes
        table = hdul["SRCMETA"].data
        assert max(len(v) for v in table["VALUE"]) <= 68
        notes = [v for k, v in zip(table["KEYWORD"], table["VALUE"], strict=True) if k == "NOTES"]
        assert notes and notes[0].endswith("...")
    assert len(r.content) < image_bytes + 2_000_000


def test_unfinished_mosaic_files_are_swept_at_start(data_root, tmp_path):
    from fastapi.testclient import TestClient

    from app.config import Settings
    from main import create_app

    outputs = tmp_path / "cache" / "mosaic-output"
    outputs.mkdir(parents=True)
    stale = outputs / "mosaic-k2j3h4_i2d.fits"
    stale.write_bytes(b"SIMPLE  = " + b" " * 100)
    kept = outputs / "notes.txt"
    kept.write_text("not ours")
    settings = Settings(
        STORAGE_BASE_PATH=data_root, ENGINE_WORKERS=1, STORAGE_TEMP_CACHE_DIR=tmp_path / "cache"
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
        assert not stale.exists() and kept.exists()


def test_dask_over_tls_writes_the_same_bytes(obs, data_root, tmp_path, monkeypatch):
    """DASK_SCHEDULER_ADDRESS may be tls:// with distributed's security settings (CA,
    client certificate and key files)."""
    from app.mosaic import mosaic_engine
    from app.mosaic.mosaic_engine import DaskTarget

    distributed = pytest.importorskip("dask.distributed")
    from distributed.security import Security

    monkeypatch.setattr(mosaic_engine, "TILE_PIXELS", 1 << 16)
    security = Security.temporary()
    files = {}
    for name, pem in (
        ("ca", security.tls_ca_file),
        ("cert", security.tls_client_cert),
        ("key", security.tls_client_key),
    ):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text(pem)
    paths = [str(data_root / k) for k in obs[:4]]
    local, _ = build_observation_mosaic(paths, "mean", 64_000_000, str(tmp_path / "local"))
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
        protocol="tls",
        security=security,
    ) as cluster:
        assert cluster.scheduler_address.startswith("tls://")
        target = DaskTarget(
            cluster.scheduler_address,
            ca_file=str(files["ca"]),
            cert_file=str(files["cert"]),
            key_file=str(files["key"]),
        )
        remote, _ = build_observation_mosaic(
            paths, "mean", 64_000_000, str(tmp_path / "tls"), target
        )
        with pytest.raises(OSError):  # without the certificates the cluster refuses
            with DaskTarget(cluster.scheduler_address.replace("tls://", "tcp://")).client():
                pass
    with fits.open(local) as a, fits.open(remote) as b:
        assert_array_equal(a[0].data, b[0].data)

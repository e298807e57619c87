"""Hostile input cannot take the services down (issue: every request's cost bounded)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.errors import BadRequest
from app.processing.avm import embed_xmp_jpeg
from bench.common import Sampler
from tests.support.servers import python_output

MB = 1024 * 1024


def server_process(base: str) -> psutil.Process:
    port = int(base.rsplit(":", 1)[1])
    owner = next(
        c.pid
        for c in psutil.net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
    )
    return psutil.Process(owner)


def server_rss(base: str) -> int:
    return server_process(base).memory_info().rss


class PeakRss(Sampler):
    """The largest RSS a process reaches while the block runs (sampled every 5 ms)."""

    interval = 0.005

    def __init__(self, process: psutil.Process) -> None:
        super().__init__()
        self.process, self.peak = process, process.memory_info().rss

    def sample(self) -> None:
        self.peak = max(self.peak, self.process.memory_info().rss)


def test_a_huge_body_is_refused_before_it_is_held(mast_url):
    before = server_rss(mast_url)
    # Declared: refused from the headers alone.
    r = httpx.post(
        mast_url + "/mast/search/target",
        content=b"x" * (100 * MB),
        headers={"content-type": "application/json"},
        timeout=120,
    )
    assert r.status_code == 413 and "too large" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives, cut at the limit
        for _ in range(100):
            yield b"[" * MB

    try:
        r = httpx.post(
            mast_url + "/mast/search/target",
            content=chunks(),
            headers={"content-type": "application/json"},
            timeout=120,
        )
        assert r.status_code == 413 and isinstance(r.json()["detail"], str)
    except httpx.TransportError:
        pass  # the server may close the connection once it has answered 413
    assert server_rss(mast_url) - before < 30 * MB
    assert httpx.get(mast_url + "/health").status_code == 200


def test_engine_body_limit(data_root):
    from main import create_app

    settings = Settings(STORAGE_BASE_PATH=data_root, ENGINE_WORKERS=1, ENGINE_MAX_BODY_BYTES=1 * MB)
    with TestClient(create_app(settings)) as client:
        body = json.dumps({"observations": [{"filter": "F090W", "instrument": "NIRCAM"}] * 40_000})
        assert len(body) > MB
        r = client.post(
            "/discovery/suggest-recipes", content=body, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413 and "1,048,576" in r.json()["detail"]


@pytest.mark.parametrize(
    "key", ["a" * 304 + ".fits", "x/" + "b" * 256 + ".fits", "/".join(["d" * 200] * 6) + "/f.fits"]
)
def test_storage_keys_over_the_filesystem_limits_are_400(engine_url, key):
    r = httpx.get(engine_url + "/preview/0", params={"file_path": key}, timeout=30)
    assert r.status_code == 400 and "too long" in r.json()["detail"]


def test_avm_over_one_jpeg_segment_is_400():
    with pytest.raises(BadRequest):
        embed_xmp_jpeg(b"\xff\xd8\xff\xd9", "x" * 70_000)


def test_avm_metadata_too_large_over_http(data_root):
    from main import create_app

    settings = Settings(STORAGE_BASE_PATH=data_root, ENGINE_WORKERS=1)
    with TestClient(create_app(settings)) as client:
        metadata = json.dumps({"target_name": "M" * 65_000})
        r = client.get(
            "/preview/0",
            params={
                "file_path": "jwst/small_i2d.fits",
                "format": "jpeg",
                "embed_avm": "true",
                "avm_metadata": metadata,
            },
        )
        assert r.status_code == 400 and "AVM" in r.json()["detail"]
        assert client.get("/health").status_code == 200


def test_one_huge_title_does_not_bloat_the_index(tmp_path):
    import numpy as np

    from app.semantic.models import FileMetadata
    from app.semantic.text_builder import MAX_TEXT_CHARS, build_text
    from app.semantic.vector_index import VectorIndex

    index = VectorIndex(tmp_path, dim=4)
    ids = [f"id{i}" for i in range(1000)]
    vectors = np.eye(4, dtype=np.float32)[np.arange(1000) % 4]
    index.upsert(ids, vectors, [f"short text {i}" for i in range(1000)])
    small = index.path.stat().st_size
    huge = build_text(FileMetadata(file_id="big", observation_title="t" * 256 * 1024))
    assert len(huge) <= MAX_TEXT_CHARS
    index.upsert(["big"], np.ones((1, 4), dtype=np.float32), ["x" * 256 * 1024])
    # Even a 256 KiB text stored as is adds its own bytes, not 1001 times its length.
    assert index.path.stat().st_size < small + 2 * 256 * 1024
    again = VectorIndex(tmp_path, dim=4)
    assert len(again) == 1001 and again.texts[-1] == "x" * 256 * 1024
    assert again.ids[:2] == ["id0", "id1"]


def test_an_unreadable_index_is_moved_aside_and_the_engine_starts(data_root, tmp_path):
    from main import create_app

    semantic = tmp_path / "semantic"
    semantic.mkdir()
    (semantic / "index.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    settings = Settings(STORAGE_BASE_PATH=data_root, ENGINE_WORKERS=1, SEMANTIC_DATA_DIR=semantic)
    with TestClient(create_app(settings)) as client:
        status = client.get("/semantic/index-status").json()
        assert status["total_indexed"] == 0
    assert list(semantic.glob("index.npz.unreadable-*"))


def test_polygon_vertices_are_bounded(engine_url):
    points = [[10 + 5 * np.cos(t), 10 + 5 * np.sin(t)] for t in np.linspace(0, 6.28, 1001)]
    r = httpx.post(
        engine_url + "/analysis/region-statistics",
        json={
            "file_path": "real/m13.fits",
            "region_type": "polygon",
            "polygon": {"points": points},
        },
        timeout=60,
    )
    assert r.status_code == 422 and "polygon" in r.json()["detail"]


def test_detection_returns_at_most_the_brightest_sources():
    from app.processing.detection import detect_sources

    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (256, 256)).astype(np.float32)
    yy, xx = np.mgrid[0:256, 0:256]
    for k, (y, x) in enumerate(rng.uniform(12, 244, (40, 2))):
        image += (50 + 10 * k) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.3**2))
    everything = detect_sources(image.copy(), "daofind", 5.0, 3.0)
    assert everything["n_sources"] > 12
    top = detect_sources(image.copy(), "daofind", 5.0, 3.0, max_sources=12)
    assert top["n_sources"] == len(top["sources"]) == 12
    fluxes = sorted((s["flux"] for s in everything["sources"]), reverse=True)[:12]
    assert sorted((s["flux"] for s in top["sources"]), reverse=True) == pytest.approx(fluxes)
    assert [s["id"] for s in top["sources"]] == list(range(1, 13))


def test_huge_headers_are_parsed_in_workers_not_in_the_server(engine_url, scratch):
    """Three /cubeinfo calls on a file with an 8 MB header: the server process does not
    grow (headers are read in worker processes, under admission and a deadline), and the
    header is refused there for its card count before astropy parses it."""
    from astropy.io import fits

    path = scratch.path / "huge_header.fits"
    # 100,000 cards written as bytes (astropy's Header grows quadratically card by card).
    head = fits.PrimaryHDU(np.zeros((4, 5, 6), dtype=np.float32)).header.tostring()
    cards = "".join(f"K{i:07d}= 'vvvvvvvvvvvvvvvvvvvv'".ljust(80) for i in range(100_000))
    block = (head[:-80] + cards + "END".ljust(80)).encode("ascii")
    block += b" " * (-len(block) % 2880)
    data = np.zeros((4, 5, 6), dtype=">f4").tobytes()
    path.write_bytes(block + data + b"\0" * (-len(data) % 2880))
    assert path.stat().st_size > 7 * MB
    before = server_rss(engine_url)
    for _ in range(3):
        r = httpx.get(
            engine_url + "/cubeinfo/0",
            params={"file_path": scratch.key("huge_header.fits")},
            timeout=120,
        )
        assert r.status_code == 413
        assert r.json()["detail"].startswith("FITS header too large:")
    assert server_rss(engine_url) - before < 40 * MB


def _wide_tables(path: Path, tables: int, columns: int, keywords: int = 0) -> None:
    """A FITS file of ``tables`` empty binary tables of ``columns`` columns and
    ``keywords`` more cards each, written as header bytes (astropy would take longer
    to write it than to read it)."""
    from astropy.io import fits

    def card(key: str, value) -> str:
        text = f"'{value:<8}'" if isinstance(value, str) else f"{value:>20}"
        return f"{key:<8}= {text}".ljust(80)

    cards = [card("XTENSION", "BINTABLE"), card("BITPIX", 8), card("NAXIS", 2)]
    cards += [card("NAXIS1", 4 * columns), card("NAXIS2", 0), card("PCOUNT", 0)]
    cards += [card("GCOUNT", 1), card("TFIELDS", columns)]
    for i in range(1, columns + 1):
        cards += [card(f"TTYPE{i}", f"C{i}"), card(f"TFORM{i}", "E")]
    cards += [card(f"K{i:07d}", "a value of some length") for i in range(keywords)]
    text = "".join(cards) + "END".ljust(80)
    header = (text + " " * (-len(text) % 2880)).encode("ascii")
    path.write_bytes(fits.PrimaryHDU().header.tostring().encode("ascii") + header * tables)


def test_table_headers_are_parsed_in_a_worker_admitted_for_their_cards(engine_url, scratch):
    """40 tables with 2,400 header cards each (96,000 cards): astropy's objects for them
    cost over 100 MB, which the server process never holds (its answer is small); the
    answer is still every table."""
    _wide_tables(scratch.path / "wide.fits", 40, 10, keywords=2400)
    server = server_process(engine_url)
    before = server.memory_info().rss
    with PeakRss(server) as peak:
        r = httpx.get(
            engine_url + "/analysis/table-info",
            params={"file_path": scratch.key("wide.fits")},
            timeout=300,
        )
    assert r.status_code == 200, r.text[:300]
    listed = r.json()["table_hdus"]
    assert [t["index"] for t in listed] == list(range(1, 41))
    assert all(t["n_columns"] == 10 and t["n_rows"] == 0 for t in listed)
    assert peak.peak - before < 40 * MB


def test_table_info_estimate_counts_the_cards(data_root, scratch):
    """On an engine whose budget holds a header job but not 96,000 cards' objects, the
    table requests are refused for their cost (413), not run past it."""
    from main import create_app

    _wide_tables(scratch.path / "wide.fits", 40, 10, keywords=2400)
    settings = Settings(
        STORAGE_BASE_PATH=data_root, ENGINE_WORKERS=1, ENGINE_MEMORY_BUDGET_BYTES=160 * MB
    )
    with TestClient(create_app(settings)) as client:
        for path, extra in (
            ("/analysis/table-info", {}),
            ("/analysis/table-data", {"hdu_index": 1}),
            ("/analysis/spectral-data", {"hdu_index": 1}),
        ):
            r = client.get(path, params={"file_path": scratch.key("wide.fits"), **extra})
            assert r.status_code == 413, (path, r.text[:300])
            assert "memory budget" in r.json()["detail"]
        _wide_tables(scratch.path / "narrow.fits", 2, 10)
        r = client.get("/analysis/table-info", params={"file_path": scratch.key("narrow.fits")})
        assert r.status_code == 200 and len(r.json()["table_hdus"]) == 2


def test_compression_bombs_are_counted_and_bounded(data_root, scratch):
    """A 6000^2 float64 image of zeros gzips to almost nothing: the element limit refuses
    it in composites and mosaics, and estimates count it decompressed."""
    from astropy.io import fits

    from app.composite import compositor
    from app.composite.compositor import ChannelSpec, RenderOptions
    from app.processing.fits_io import data_size_bound
    from main import create_app
    from tests.support.synthetic import make_wcs

    bomb = scratch.path / "bomb.fits.gz"
    hdu = fits.PrimaryHDU(np.zeros((6000, 6000), dtype=np.float64))
    hdu.header.update(make_wcs((6000, 6000), 83.82, -5.39, 0.031, 0.0).to_header())
    hdu.writeto(bomb, overwrite=True)
    assert bomb.stat().st_size < 2 * MB
    assert data_size_bound(bomb) >= 6000 * 6000 * 8
    plan = compositor.plan_composite(
        [ChannelSpec(label="b", paths=[str(bomb)], rgb=(1, 0, 0))],
        RenderOptions(width=100, height=100),
    )
    assert compositor.composite_cost(plan).fixed > 2 * 6000 * 6000 * 8
    settings = Settings(
        STORAGE_BASE_PATH=data_root, ENGINE_WORKERS=1, MAX_FITS_ARRAY_ELEMENTS=10_000_000
    )
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/composite/generate-nchannel",
            json={
                "channels": [{"file_paths": [scratch.key("bomb.fits.gz")], "color": {"hue": 0}}],
                "width": 100,
                "height": 100,
            },
        )
        assert r.status_code == 413 and "Image too large" in r.json()["detail"]
        r = client.post(
            "/mosaic/generate-observation",
            json={"file_paths": [scratch.key("bomb.fits.gz"), "jwst/small_i2d.fits"]},
        )
        assert r.status_code == 413 and "Image too large" in r.json()["detail"]


def test_the_viewer_counts_a_compressed_float64_image_at_its_real_cost(tmp_path):
    """A whole-file gzip of float64 costs astropy about 20 bytes an element while it is
    read (held twice before the float32 copy); the viewer's estimate must cover what a
    thumbnail of it really takes (measured in a fresh process by its peak RSS)."""
    import gzip

    from astropy.io import fits

    from app.viewer import viewer_engine

    bomb = tmp_path / "float64.fits.gz"
    rng = np.random.default_rng(3)
    rows = np.round(rng.normal(size=(100, 3000)), 1)
    with gzip.open(bomb, "wb", compresslevel=1) as out:  # astropy's own gzip is slow
        fits.PrimaryHDU(np.tile(rows, (30, 1))).writeto(out)
    info, compressed = viewer_engine.inspect(str(bomb), -1, 10**9)
    assert compressed
    w, h = viewer_engine.long_side_size(
        info.choice.width, info.choice.height, viewer_engine.THUMBNAIL_SIZE
    )
    estimate = viewer_engine.estimate_picture_bytes(info, w, h, compressed)
    # VmHWM (this process's peak RSS): ru_maxrss would include the parent's, which a
    # child inherits across exec on Linux.
    script = (
        "import re\n"
        "from app.viewer import viewer_engine\n"
        "def peak():\n"
        "    text = open('/proc/self/status').read()\n"
        "    return int(re.search(r'VmHWM:\\s+(\\d+)', text).group(1)) * 1024\n"
        "before = peak()\n"
        f"viewer_engine.render_thumbnail({str(bomb)!r}, 10**9)\n"
        "print(peak() - before)\n"
    )
    peak = int(python_output(script).strip().splitlines()[-1])
    assert peak > 3000 * 3000 * 8  # the measurement sees the decompression
    assert estimate >= peak, (estimate / 1e6, peak / 1e6)


def test_a_header_with_too_many_cards_is_refused_before_parsing(data_root, scratch):
    """A 2 MB header (25,000 cards) in the second HDU of a file, plain or gzipped, is
    refused by every reader with 413 before astropy parses it; the good file beside it
    is read as usual."""
    import gzip

    from astropy.io import fits

    from app.errors import PayloadTooLarge
    from app.processing import fits_io, header_limits
    from main import create_app

    folder = scratch.path
    primary = fits.PrimaryHDU(np.ones((64, 64), dtype=np.float32))
    big = fits.ImageHDU(np.ones((8, 8), dtype=np.float32), name="SCI")
    for i in range(25_000):
        big.header.add_history(f"step {i} of a very long processing history")
    plain = folder / "many_cards.fits"
    fits.HDUList([primary, big]).writeto(plain, overwrite=True)
    with gzip.open(folder / "many_cards.fits.gz", "wb", compresslevel=1) as out:
        out.write(plain.read_bytes())
    for path in (plain, folder / "many_cards.fits.gz"):
        with pytest.raises(PayloadTooLarge, match="header of HDU 1 holds more than 10,000"):
            header_limits.check_header_cards(path)
    header_limits.check_header_cards(data_root / "jwst" / "small_i2d.fits")  # a real one
    with fits_io.open_fits(data_root / "jwst" / "small_i2d.fits") as hdul:
        assert len(hdul) > 1
    settings = Settings(STORAGE_BASE_PATH=data_root, ENGINE_WORKERS=1)
    with TestClient(create_app(settings)) as client:
        for name in ("many_cards.fits", "many_cards.fits.gz"):
            key = scratch.key(name)
            for method, url, kwargs in [
                ("post", "/thumbnail", {"json": {"file_path": key}}),
                ("get", "/preview/x", {"params": {"file_path": key}}),
                ("get", "/cubeinfo/x", {"params": {"file_path": key}}),
                ("post", "/mosaic/footprint", {"json": {"file_paths": [key]}}),
            ]:
                r = getattr(client, method)(url, **kwargs)
                assert r.status_code == 413, (url, r.text)
                assert "FITS header too large" in r.json()["detail"]
        r = client.post("/mosaic/footprint", json={"file_paths": ["jwst/small_i2d.fits"]})
        assert r.status_code == 200

"""OpenAPI docs: complete specs, offline /docs and /redoc, a real browser, a fuzzer."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from astropy.io import fits

from app.config import Settings
from app.mast.mast_service import SEARCH_PAGE_SIZE
from app.processing.header_limits import MAX_HEADER_CARDS
from tests.support.servers import local_env, run_service
from tests.support.synthetic import make_jwst_image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags that keep Chromium off the network (this machine has none) and quiet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def spec(base: str) -> dict:
    r = httpx.get(base + "/openapi.json", timeout=30)
    assert r.status_code == 200
    return r.json()


def operations(doc: dict):
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            yield path, method, op


# ---------------------------------------------------------------------------------------
# The specs say what each service is and document every operation
# ---------------------------------------------------------------------------------------


def test_a_route_docstring_gives_its_summary_and_description(engine_url, mast_url):
    """``route()`` splits the handler's docstring: first line (without its full stop) is
    the summary, the paragraphs after it the description."""
    search = spec(engine_url)["paths"]["/semantic/search"]["post"]
    assert search["summary"] == "Find files by meaning"
    assert search["description"].startswith("Embed the question with all-MiniLM-L6-v2")
    assert "Find files by meaning" not in search["description"]
    pause = spec(mast_url)["paths"]["/mast/download/pause/{job_id}"]["post"]
    assert pause["summary"] == "Pause a running download (partial files are kept)"
    assert pause["responses"]["404"]["description"] == "No active download"


@pytest.mark.parametrize("which", ["engine", "mast"])
def test_specs_are_complete(which, engine_url, mast_url):
    base = engine_url if which == "engine" else mast_url
    doc = spec(base)
    assert doc["info"]["title"] in ("JWST Data Processing Engine", "JWST MAST Proxy Service")
    assert doc["info"]["version"] and len(doc["info"]["description"]) > 80
    for path, method, op in operations(doc):
        where = f"{method.upper()} {path}"
        assert op.get("summary"), where
        assert len(op.get("description", "")) > 20, where
        codes = set(op["responses"])
        assert "200" in codes or "201" in codes, where
        if op.get("parameters") or op.get("requestBody"):
            assert codes & {"400", "404", "422"}, where  # every input can be wrong
        for code, response in op["responses"].items():
            if code.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert "$ref" in schema, where  # the error model
        body = op.get("requestBody")
        if body:
            content = body["content"]["application/json"]
            ref = content["schema"]["$ref"].split("/")[-1]
            model = doc["components"]["schemas"][ref]
            assert model.get("examples") or content.get("examples") or content.get("example"), (
                f"{where}: no example body"
            )


def test_descriptions_state_the_limits_in_force(data_root):
    """Each service's docs end with the limits of the settings it runs with."""
    from main import create_app as engine_app
    from main_mast import create_app as mast_app

    engine = engine_app(
        Settings(
            STORAGE_BASE_PATH=data_root,
            ENGINE_MAX_BODY_BYTES=3 * 2**20,
            MAX_FITS_ARRAY_ELEMENTS=12_345_678,
            MAX_FITS_FILE_SIZE_MB=777,
            ENGINE_JOB_TIME_LIMIT_SECONDS=42,
        )
    ).openapi()["info"]["description"]
    assert "**Limits**" in engine
    assert "Request bodies: at most 3,145,728 bytes (413 beyond)." in engine
    assert "at most 12,345,678 elements each (413 beyond)" in engine
    assert "files fetched from S3: at most 777 MB each" in engine
    assert f"at most {MAX_HEADER_CARDS:,} cards each (413 beyond)" in engine
    assert "Every job: at most 42 s in a worker (504 beyond)" in engine

    mast = mast_app(
        Settings(STORAGE_BASE_PATH=data_root, MAST_MAX_BODY_BYTES=65_536, MAST_SEARCH_TIMEOUT=9)
    ).openapi()["info"]["description"]
    assert "Request bodies: at most 65,536 bytes (413 beyond)." in mast
    assert "never wildcards (422 otherwise)" in mast
    assert f"one page of at most {SEARCH_PAGE_SIZE:,} rows" in mast and "within 9 s (504" in mast


def test_binary_responses_declare_media_types(engine_url):
    doc = spec(engine_url)
    media = {
        p: set(op["responses"]["200"].get("content", {}))
        for p, m, op in operations(doc)
        if m == "post" and p in ("/composite/generate-nchannel", "/mosaic/generate")
    }
    assert media["/composite/generate-nchannel"] == {"image/png", "image/jpeg"}
    assert media["/mosaic/generate"] == {"image/png", "image/jpeg", "application/fits"}
    preview = doc["paths"]["/preview/{data_id}"]["get"]["responses"]["200"]["content"]
    assert {"image/png", "image/jpeg"} <= set(preview)


@pytest.mark.parametrize(
    "page,asset", [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
def test_docs_pages_use_local_assets(engine_url, mast_url, page, asset):
    for base in (engine_url, mast_url):
        html = httpx.get(base + page).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert urls and all(u.startswith("/") for u in urls), urls  # nothing from a CDN
        assert "fonts.googleapis" not in html
        script = next(u for u in urls if u.endswith(asset))
        r = httpx.get(base + script)
        assert r.status_code == 200 and len(r.content) > 100_000


# ---------------------------------------------------------------------------------------
# A real browser, with no network beyond 127.0.0.1
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'); .ci/run installs it")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.mark.parametrize("which", ["engine", "mast"])
def test_swagger_ui_renders_and_tries_a_call(browser, which, engine_url, mast_url, tmp_path):
    base = engine_url if which == "engine" else mast_url
    n_ops = len(list(operations(spec(base))))
    page = browser.new_page()
    requested = []
    page.on("request", lambda req: requested.append(req.url))
    page.goto(base + "/docs", wait_until="networkidle")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert page.locator(".opblock").count() == n_ops
    title = page.locator(".information-container .title").inner_text()
    assert ("Processing Engine" in title) if which == "engine" else ("MAST Proxy" in title)
    # Expand GET /health, Try it out, Execute, and read the live answer.
    block = page.locator("#operations-Health-health_health_get")
    block.locator(".opblock-summary").click()
    block.locator("button.try-out__btn").click()
    block.locator("button.execute").click()
    response = block.locator(".live-responses-table tr.response .response-col_status").first
    response.wait_for(timeout=30_000)
    assert response.inner_text().strip().startswith("200")
    body = block.locator(".live-responses-table .microlight").first.inner_text()
    assert json.loads(body)["status"] == "healthy"
    shot = tmp_path / f"{which}-docs.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert requested and all(u.startswith(base) for u in requested), [
        u for u in requested if not u.startswith(base)
    ]
    page.close()


def test_redoc_renders_offline(browser, engine_url):
    page = browser.new_page()
    page.goto(engine_url + "/redoc", wait_until="networkidle")
    page.wait_for_selector("[data-section-id]", timeout=30_000)
    text = page.inner_text("body")
    assert "JWST Data Processing Engine" in text and "generate-nchannel" in text
    page.close()


# ---------------------------------------------------------------------------------------
# Fuzzing both specs with schemathesis against the live services
# ---------------------------------------------------------------------------------------

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "6"))
PROGRAM = "mast/jw02733-o001_t001_nircam_clear-{}/jw02733-o001_t001_nircam_clear-{}_i2d.fits"


@pytest.fixture(scope="module")
def fuzz_engine(tmp_path_factory):
    """An engine whose storage holds real files at the keys the spec's examples use, so
    the fuzzer's example phase exercises real processing, not only 404s."""
    root = tmp_path_factory.mktemp("fuzz_storage")
    for i, band in enumerate(("f090w", "f187n", "f444w")):
        make_jwst_image(
            root / PROGRAM.format(band, band),
            shape=(256, 256),
            seed=200 + i,
            filter_name=band.upper(),
            n_stars=20,
        )
    make_jwst_image(
        root / "mast/jw02733-o002_t001_miri_f1130w/jw02733-o002_t001_miri_f1130w_i2d.fits",
        shape=(128, 128),
        seed=210,
        pixel_scale_arcsec=0.11,
        instrument="MIRI",
        filter_name="F1130W",
        n_stars=10,
    )
    folder = "mast/jw02733-o001_t001_nircam_clear-f090w/"
    for j, detector in enumerate(("nrca1", "nrca2")):
        make_jwst_image(
            root / f"{folder}jw02733001001_02101_00001_{detector}_cal.fits",
            shape=(200, 200),
            seed=220 + j,
            ra=83.8221 + j * 0.0013,
            detector=detector.upper(),
            n_stars=10,
        )
    wave = np.linspace(1.0, 5.0, 300)
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.BinTableHDU.from_columns(
                [
                    fits.Column(name="WAVELENGTH", format="D", unit="um", array=wave),
                    fits.Column(name="FLUX", format="D", unit="Jy", array=np.cos(wave)),
                    fits.Column(name="FLUX_ERROR", format="D", unit="Jy", array=np.full(300, 0.01)),
                ],
                name="EXTRACT1D",
            ),
        ]
    ).writeto(root / f"{folder}jw02733o001_x1d.fits")
    # A small composite memory limit: the fuzzer's 4096^2 composites with every control on
    # are answered by the budget verdict (413, or shrunk when forced) instead of costing
    # seconds each; the render path itself is covered by the composite tests.
    env = local_env(
        root,
        ENGINE_WORKERS=2,
        COMPOSITE_CACHE_DIR=root.parent / "fuzz_composite_cache",
        MAX_COMPOSITE_MEMORY_BYTES=600_000_000,
    )
    with run_service("main", env, root.parent / "fuzz_engine.log") as (base, _proc):
        yield base


def run_schemathesis(base: str, report: Path) -> tuple[int, str, dict]:
    cmd = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        base + "/openapi.json",
        "--checks",
        "not_a_server_error,response_schema_conformance,"
        "content_type_conformance,status_code_conformance",
        "--max-examples",
        str(FUZZ_EXAMPLES),
        "--request-timeout",
        "120",
        "--workers",
        "1",
        "--seed",
        "1",
        "--phases",
        "examples,coverage,fuzzing",
        "--no-color",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(report),
    ]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    return done.returncode, done.stdout + done.stderr, {}


@pytest.mark.parametrize("which", ["engine", "mast"])
def test_fuzz_finds_no_server_errors(which, fuzz_engine, proxy, tmp_path):
    base = fuzz_engine if which == "engine" else proxy[0]
    code, output, _ = run_schemathesis(base, tmp_path / "events.ndjson")
    summary = output[-3000:]
    assert code == 0, summary
    assert "No issues found" in output or "passed" in output.lower(), summary
    match = re.search(r"(\d+) generated", output)
    print(f"{which}: {match.group(0) if match else '?'}; {summary[-600:]}")
    assert httpx.get(base + "/health", timeout=10).status_code == 200

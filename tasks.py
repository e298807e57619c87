#!/usr/bin/env python3
"""Set-up and everyday commands; needs only Python 3.11+.

    python3 tasks.py serve     # install into .venv, run both services on ./data
    python3 tasks.py test      # install into .venv (with test tools), run the test suite
    python3 tasks.py bench     # run the speed and memory benchmark (bench/)

Each installs what it needs with uv from uv.lock (uv itself goes into .uv/ first).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"
# uv installs exactly what uv.lock says (the one lock of the project: README commands,
# CI and both images). It lives in a small venv of its own, so syncing .venv never
# touches it.
UV_VERSION = "0.13.8"
UV_HOME = ROOT / ".uv"


def uv() -> Path:
    exe = UV_HOME / "bin" / "uv"
    if not exe.exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(UV_HOME)])
        subprocess.check_call(
            [
                str(UV_HOME / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"uv=={UV_VERSION}",
            ]
        )
    return exe


def ensure_venv(*extras: str) -> None:
    """.venv holding exactly the locked packages of the project and ``extras``."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script runs on any python3
        sys.exit("Python 3.11 or newer is required")
    env = dict(os.environ, UV_PROJECT_ENVIRONMENT=str(VENV), UV_PYTHON_DOWNLOADS="never")
    cmd = [str(uv()), "sync", "--locked", "--quiet", "--python", sys.executable]
    subprocess.check_call(cmd + [f"--extra={e}" for e in extras], cwd=ROOT, env=env)


def serve() -> int:
    ensure_venv("engine")
    env = dict(os.environ)
    env.setdefault("STORAGE_PROVIDER", "local")
    env.setdefault("STORAGE_BASE_PATH", str(ROOT / "data"))
    Path(env["STORAGE_BASE_PATH"]).mkdir(parents=True, exist_ok=True)
    services = [
        ("main", env.get("ENGINE_PORT", "8000")),
        ("main_mast", env.get("MAST_PORT", "8002")),
    ]
    procs = []
    for module, port in services:
        cmd = [
            str(PY),
            "-m",
            "uvicorn",
            f"{module}:app",
            "--host",
            env.get("HOST", "127.0.0.1"),
            "--port",
            port,
        ]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env))
        print(f"{module} on http://{env.get('HOST', '127.0.0.1')}:{port}  (docs at /docs)")

    def shutdown(*_):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, shutdown)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        shutdown()
        for p in procs:
            p.wait()
    return max((p.returncode or 0) for p in procs)


LINTED = ["app", "tests", "bench", "main.py", "main_mast.py", "tasks.py"]


def check() -> int:
    """The static gate: ruff (lint and format) and mypy, as configured in pyproject."""
    steps = [
        [str(PY), "-m", "ruff", "check", *LINTED],
        [str(PY), "-m", "ruff", "format", "--check", *LINTED],
        [str(PY), "-m", "mypy"],
    ]
    for step in steps:
        print("$", " ".join(step[2:]), flush=True)
        code = subprocess.call(step, cwd=ROOT)
        if code:
            return code
    return 0


def test(args: list[str]) -> int:
    """The static gate, then the test suite."""
    ensure_venv("engine", "dask", "dev")
    code = check()
    if code:
        print(
            "the static checks failed (see above); fix them before the tests run", file=sys.stderr
        )
        return code
    cmd = [str(PY), "-m", "pytest"]
    if not any(a.startswith("-m") for a in args) and not os.environ.get("RUN_SLOW"):
        cmd += ["-m", "not slow"]
    code = subprocess.call(cmd + args, cwd=ROOT)
    if code == 5:
        print("pytest collected no tests: that is a failure here", file=sys.stderr)
        return 1
    return code


BENCHES = {
    "viewer": "run_bench.py",
    "composite": "run_composite_bench.py",
    "mosaic": "run_mosaic_bench.py",
    "analysis": "run_analysis_bench.py",
    "mast": "run_mast_bench.py",
    "queued": "run_queued_bench.py",
    "look": "run_look_bench.py",
    "memory": "run_memory_bench.py",
}


def bench(args: list[str]) -> int:
    """``bench [suite] [options]``: one suite of bench/, or every suite in turn."""
    ensure_venv("engine", "dask", "dev")
    if args and args[0] in BENCHES:
        names, args = [args[0]], args[1:]
    else:
        names = list(BENCHES)
    code = 0
    for name in names:
        script = ROOT / "bench" / BENCHES[name]
        print(f"== bench {name} ==", flush=True)
        code |= subprocess.call([str(PY), str(script)] + args, cwd=ROOT)
    return code


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("serve", "test", "bench"):
        print(__doc__)
        return 2
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "serve":
        return serve()
    if command == "test":
        return test(rest)
    return bench(rest)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Memory given back (a script, not a test).

    python3 tasks.py bench memory

Starts the engine (2 workers), measures the resident memory of its whole process tree
fresh, runs the heavy sequence (a 4096^2 composite of the bench field, segmentation of
a 4096^2 image, a FITS mosaic of 16 tiles of 2048^2 and an observation mosaic of 36),
waits for the engine to be idle and measures again. Writes bench/results/memory.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.common import CACHE, RESULTS, tree_rss  # noqa: E402
from bench.run_composite_bench import body as composite_body  # noqa: E402
from bench.run_composite_bench import make_three  # noqa: E402
from bench.run_mosaic_bench import make_grid  # noqa: E402
from bench.run_queued_bench import make_sky  # noqa: E402
from tests.support.servers import run_service  # noqa: E402
from tests.support.synthetic import make_jwst_image  # noqa: E402

STORAGE = CACHE / "storage"
MB = 1024 * 1024


def settle(pid: int, seconds: float = 3.0) -> int:
    """The tree's RSS once it has stopped changing (workers replaced, memory returned)."""
    time.sleep(seconds)
    server = psutil.Process(pid).memory_info().rss
    workers = [p.memory_info().rss for p in psutil.Process(pid).children(recursive=True)]
    print(
        f"  server {server / MB:.0f} MB, children {', '.join(f'{w / MB:.0f}' for w in workers)} MB",
    )
    return tree_rss(pid)


def main() -> int:
    three = [[k] for k in make_three()]
    sixteen = make_grid(4)
    thirty_six = make_sky(6, 2048, 0.031)
    image = "analysis/memory_4096_i2d.fits"
    if not (STORAGE / image).exists():
        make_jwst_image(STORAGE / image, shape=(4096, 4096), seed=4096, n_stars=400)
    env = common.engine_env(STORAGE, COMPOSITE_CACHE_DIR=str(CACHE / "memory-composite-cache"))
    results: dict = {}
    with (
        run_service("main", env, RESULTS / "engine-memory.log") as (base, proc),
        httpx.Client(base_url=base, timeout=1800) as client,
    ):
        fresh = settle(proc.pid)
        steps = [
            ("composite_4096", "/composite/generate-nchannel", composite_body(three, 4096)),
            (
                "segmentation_4096",
                "/analysis/detect-sources",
                {"file_path": image, "method": "segmentation"},
            ),
            (
                "mosaic_16_fits",
                "/mosaic/generate",
                {"files": [{"file_path": k} for k in sixteen], "output_format": "fits"},
            ),
            ("observation_36", "/mosaic/generate-observation", {"file_paths": thirty_six}),
        ]
        for name, url, payload in steps:
            start = time.perf_counter()
            response = client.post(url, json=payload)
            if response.status_code == 404 and "Not Found" in response.text:
                print(f"{name:<20} skipped: this engine has no {url}")
                continue
            response.raise_for_status()
            print(f"{name:<20} {time.perf_counter() - start:6.2f} s")
            settle(proc.pid, 1.0)  # what each job leaves behind
        after = settle(proc.pid)
        results = {
            "fresh_tree_mb": fresh / MB,
            "idle_after_mb": after / MB,
            "difference_mb": (after - fresh) / MB,
        }
    print(
        f"engine tree RSS: fresh {fresh / MB:.0f} MB, idle after the heavy sequence "
        f"{after / MB:.0f} MB ({(after - fresh) / MB:+.0f} MB)"
    )
    return common.write_results("memory", results)


if __name__ == "__main__":
    sys.exit(main())

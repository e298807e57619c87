#!/usr/bin/env python3
"""Speed and memory of the viewer endpoints on JWST-like images (a script, not a test).

    python3 tasks.py bench [--sizes 4096 8192] [--repeat 7]

Starts the engine (uvicorn, ENGINE_WORKERS=2) on local storage under
bench/.cache, generates JWST-like i2d files once, then for each size measures
the median wall time of preview (to 1000x1000 PNG), histogram, pixeldata
(max_size 1200) and thumbnail over HTTP, the peak memory each job allocates
(tracemalloc around the same worker function run in this process: numpy
arrays included, the interpreter's baseline excluded), and /health latency
while eight large previews run at once. Prints a table and writes
bench/results/viewer.json.
"""

from __future__ import annotations

import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.processing.enhancement import DisplayParams  # noqa: E402
from app.viewer import viewer_engine  # noqa: E402
from bench import common  # noqa: E402
from bench.common import (  # noqa: E402
    CACHE,
    MB,
    RESULTS,
    HealthProbe,
    health_line,
    timed,
    traced_peak_mb,
)
from tests.support.servers import run_service  # noqa: E402
from tests.support.synthetic import make_jwst_image  # noqa: E402


def health_under_load(base: str, key: str) -> dict:
    """/health latency while 8 histeq previews of 2000 px run 4 at a time."""
    with (
        HealthProbe(base) as health,
        httpx.Client(base_url=base, timeout=300) as c,
        ThreadPoolExecutor(4) as pool,
    ):
        list(
            pool.map(
                lambda i: c.get(
                    f"/preview/load{i}",
                    params={"file_path": key, "width": 2000, "height": 2000, "stretch": "histeq"},
                ),
                range(8),
            )
        )
    return health.result()


def main() -> int:
    parser = common.arguments(repeat=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    args = parser.parse_args()
    storage = CACHE / "storage"
    for size in args.sizes:
        target = storage / "bench" / f"jwst_{size}_i2d.fits"
        if not target.exists():
            print(f"generating {target.name} ...")
            make_jwst_image(target, shape=(size, size), seed=size, n_stars=400, with_err_dq=False)
    results = {"sizes": {}}
    env = common.engine_env(storage)
    with run_service("main", env, RESULTS / "engine.log") as (base, _proc):
        with httpx.Client(base_url=base, timeout=300) as client:
            for size in args.sizes:
                key = f"bench/jwst_{size}_i2d.fits"
                float32_mb = size * size * 4 / MB
                path = str(storage / key)
                limit = 10**10
                cases = {
                    "preview_1000": (
                        (
                            "GET",
                            "/preview/b",
                            {"params": {"file_path": key, "width": 1000, "height": 1000}},
                        ),
                        (viewer_engine.render_preview, path, viewer_engine.PreviewParams(), limit),
                    ),
                    "histogram": (
                        ("GET", "/histogram/b", {"params": {"file_path": key}}),
                        (viewer_engine.compute_histogram, path, 256, -1, DisplayParams(), limit),
                    ),
                    "pixeldata_1200": (
                        ("GET", "/pixeldata/b", {"params": {"file_path": key, "max_size": 1200}}),
                        (viewer_engine.pixeldata_json, path, "b", 1200, -1, limit),
                    ),
                    "thumbnail": (
                        ("POST", "/thumbnail", {"json": {"file_path": key}}),
                        (viewer_engine.render_thumbnail, path, limit),
                    ),
                }
                row = {"float32_mb": float32_mb}
                for name, ((method, url, kwargs), job) in cases.items():
                    client.request(method, url, **kwargs).raise_for_status()  # page cache warm
                    times = timed(client, method, url, args.repeat, **kwargs)
                    peak = traced_peak_mb(*job)
                    row[name] = {
                        "median_s": statistics.median(times),
                        "min_s": min(times),
                        "peak_mb": peak,
                        "peak_vs_image": peak / float32_mb,
                    }
                    print(
                        f"{size:>5} {name:<15} median {row[name]['median_s']:.3f} s   "
                        f"peak {peak:7.1f} MB ({row[name]['peak_vs_image']:.2f}x the "
                        f"float32 image)"
                    )
                results["sizes"][str(size)] = row
            key = f"bench/jwst_{args.sizes[0]}_i2d.fits"
            results["health_under_load"] = health_under_load(base, key)
            print(
                health_line(
                    "during 8 concurrent 2000px histeq previews", results["health_under_load"]
                )
            )
    return common.write_results("viewer", results)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Speed and memory of WCS mosaics (a script, not a test).

    python3 tasks.py bench mosaic [--repeat 3]

Inputs (JWST-like, generated once under bench/.cache): 2048x2048 tiles at
0.031"/px with 20 % overlap, a 2 x 2 grid and a 4 x 4 grid. Over HTTP to a
live engine (2 workers): 4 tiles to native FITS and to a 2048-wide PNG, 16
tiles to FITS; the peak RSS of the worker processes (sampled every 20 ms);
/health latency throughout. Then the same 4-tile FITS on a Dask LocalCluster
of two workers (an engine with DASK_SCHEDULER_ADDRESS). Writes
bench/results/mosaic.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.common import CACHE, RESULTS, HealthProbe, RssSampler, summary, timed  # noqa: E402
from tests.support.servers import run_service  # noqa: E402
from tests.support.synthetic import make_tile_grid  # noqa: E402

STORAGE = CACHE / "storage"


def make_grid(n: int) -> list[str]:
    """An n x n grid of 2048^2 tiles at 0.031"/px with 20 % overlap (made once)."""
    print(f"tiles of mosaic/grid{n} (generated when missing) ...")
    return make_tile_grid(
        STORAGE,
        f"mosaic/grid{n}",
        n,
        n,
        step_arcsec=2048 * 0.031 * 0.8,
        seed=500,
        name="tile_{i}_{j}_cal.fits",
        reuse=True,
        shape=(2048, 2048),
        rotation_deg=1.0,
        n_stars=80,
        n_galaxies=2,
        with_err_dq=False,
    )


def body(keys: list[str], fmt: str, width: int | None = None) -> dict:
    return {
        "files": [{"file_path": k, "stretch": "asinh"} for k in keys],
        "output_format": fmt,
        "width": width,
        "height": None,
        "combine_method": "mean",
    }


def run_cases(base: str, pid: int, cases, results: dict, prefix: str = "") -> None:
    with httpx.Client(base_url=base, timeout=1200) as client:
        for name, payload, repeat in cases:
            client.post("/mosaic/generate", json=payload).raise_for_status()  # warm
            with RssSampler(pid) as rss:
                times = timed(client, "POST", "/mosaic/generate", repeat, json=payload)
            row = {**summary(times), **rss.result()}
            results[prefix + name] = row
            print(
                f"{prefix + name:<24} median {row['median_s']:6.2f} s  min {row['min_s']:6.2f} s"
                f"  peak worker RSS {row['peak_worker_mb']:6.0f} MB"
            )


def main() -> int:
    args = common.arguments(repeat=3).parse_args()
    four, sixteen = make_grid(2), make_grid(4)
    env = common.engine_env(STORAGE)
    results: dict = {}
    cases = [
        ("4_tiles_fits", body(four, "fits"), args.repeat),
        ("4_tiles_png_2048", body(four, "png", 2048), args.repeat),
        ("16_tiles_fits", body(sixteen, "fits"), max(1, args.repeat - 1)),
    ]
    with (
        run_service("main", env, RESULTS / "engine-mosaic.log") as (base, proc),
        HealthProbe(base) as health,
    ):
        run_cases(base, proc.pid, cases, results)
    health.report(results, "health_throughout", "throughout")
    from dask.distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        env_dask = {
            **env,
            "ENGINE_WORKERS": "1",
            "DASK_SCHEDULER_ADDRESS": cluster.scheduler_address,
        }
        with run_service("main", env_dask, RESULTS / "engine-mosaic-dask.log") as (base, proc):
            run_cases(base, proc.pid, cases[:1] + cases[2:], results, prefix="dask_")
    return common.write_results("mosaic", results)


if __name__ == "__main__":
    sys.exit(main())

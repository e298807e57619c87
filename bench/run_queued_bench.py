#!/usr/bin/env python3
"""Speed and memory of queued work (a script, not a test).

    python3 tasks.py bench queued [--repeat 5] [--skip-dask]

1. The composite progress stream against the synchronous composite: the bench's
   three-filter field (two 4096^2, one 2048^2) to 1000x1000, cold (composite cache
   emptied before each run), the two routes taking turns; the time to the stream's
   first line on an idle engine.
2. Observation mosaics to FITS (CONTRACT-HEAD §10.5): 36 tiles of 2048^2 at 0.031"/px
   (6 x 6, 20 % overlap; a ~105 Mpx native grid shrunk to 64 Mpx), and 144 tiles of
   1024^2 at 0.031"/px over the same sky; the whole response timed, the peak resident
   memory of the engine's process tree above its idle level. Then the same on a Dask
   LocalCluster of two workers (engine with DASK_SCHEDULER_ADDRESS).

Writes bench/results/queued.json.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.common import CACHE, RESULTS, HealthProbe, RssSampler, summary, tree_rss  # noqa: E402
from bench.run_composite_bench import body as composite_body  # noqa: E402
from bench.run_composite_bench import make_three  # noqa: E402
from tests.support.servers import run_service  # noqa: E402
from tests.support.synthetic import make_tile_grid  # noqa: E402

STORAGE = CACHE / "storage"
COMPOSITE_CACHE = CACHE / "queued-composite-cache"
MB = 1024 * 1024


def make_sky(n: int, size: int, scale: float) -> list[str]:
    """An n x n grid of size^2 tiles at ``scale`` "/px, 20 % overlap, centred on RA0, DEC0."""
    prefix = f"observation/grid{n}x{size}_{round(scale * 1000)}mas"
    print(f"tiles of {prefix} (generated when missing) ...")
    return make_tile_grid(
        STORAGE,
        prefix,
        n,
        n,
        step_arcsec=size * scale * 0.8,
        seed=7000,
        name="tile_{i:02d}_{j:02d}_cal.fits",
        reuse=True,
        shape=(size, size),
        pixel_scale_arcsec=scale,
        rotation_deg=1.0,
        n_stars=40,
        n_galaxies=1,
        with_err_dq=False,
    )


def stream_once(client: httpx.Client, payload: dict) -> tuple[float, float]:
    """(seconds to the first line, seconds to the terminal line) of one stream."""
    start = time.perf_counter()
    first = None
    with client.stream("POST", "/composite/generate-nchannel-stream", json=payload) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line:
                continue
            first = first or time.perf_counter() - start
            event = json.loads(line)
            if event["event"] in ("complete", "error"):
                assert event["event"] == "complete", event
                break
    return first or 0.0, time.perf_counter() - start


def bench_stream(base: str, repeat: int, results: dict) -> None:
    three = [[k] for k in make_three()]
    payload = composite_body(three, 1000)
    sync_times, stream_times, firsts = [], [], []
    with httpx.Client(base_url=base, timeout=600) as client:
        client.post("/composite/generate-nchannel", json=payload).raise_for_status()  # warm
        for _ in range(repeat):
            shutil.rmtree(COMPOSITE_CACHE, ignore_errors=True)
            start = time.perf_counter()
            client.post("/composite/generate-nchannel", json=payload).raise_for_status()
            sync_times.append(time.perf_counter() - start)
            shutil.rmtree(COMPOSITE_CACHE, ignore_errors=True)
            first, total = stream_once(client, payload)
            stream_times.append(total)
            firsts.append(first)
    results["composite_1000_cold_sync"] = summary(sync_times)
    results["composite_1000_cold_stream"] = summary(stream_times)
    results["stream_first_line"] = summary(firsts)
    ratio = (
        results["composite_1000_cold_stream"]["median_s"]
        / results["composite_1000_cold_sync"]["median_s"]
    )
    results["stream_over_sync"] = ratio
    print(
        f"composite 1000^2 cold: sync median {summary(sync_times)['median_s']:.3f} s, "
        f"stream median {summary(stream_times)['median_s']:.3f} s ({ratio:.2f}x); "
        f"first line median {summary(firsts)['median_s'] * 1000:.0f} ms, "
        f"max {max(firsts) * 1000:.0f} ms"
    )


def bench_observation(
    base: str, pid: int, cases, repeat: int, results: dict, prefix: str = ""
) -> None:
    with httpx.Client(base_url=base, timeout=1800) as client:
        for name, keys in cases:
            payload = {
                "file_paths": keys,
                "combine_method": "mean",
                "max_output_pixels": 64_000_000,
            }
            times, sizes = [], []
            idle = tree_rss(pid)
            with RssSampler(pid) as rss:
                for _ in range(repeat):
                    start = time.perf_counter()
                    r = client.post("/mosaic/generate-observation", json=payload)
                    r.raise_for_status()
                    times.append(time.perf_counter() - start)
                    sizes.append(len(r.content))
            row = {
                **summary(times),
                **rss.result(),
                "idle_total_mb": idle / MB,
                "above_idle_mb": rss.result()["peak_total_mb"] - idle / MB,
                "fits_mb": sizes[0] / MB,
            }
            results[prefix + name] = row
            print(
                f"{prefix + name:<28} median {row['median_s']:6.2f} s  min {row['min_s']:6.2f} s"
                f"  FITS {row['fits_mb']:5.0f} MB  peak tree {row['peak_total_mb']:6.0f} MB"
                f" ({row['above_idle_mb']:+.0f} MB above idle)"
            )


def main() -> int:
    parser = common.arguments(repeat=5)
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args()
    cases = [
        ("observation_36x2048_to_64mpx", make_sky(6, 2048, 0.031)),
        ("observation_144x1024", make_sky(12, 1024, 0.031)),
    ]
    env = common.engine_env(STORAGE, COMPOSITE_CACHE_DIR=str(COMPOSITE_CACHE))
    results: dict = {}
    with (
        run_service("main", env, RESULTS / "engine-queued.log") as (base, proc),
        HealthProbe(base) as health,
    ):
        bench_stream(base, args.repeat, results)
        bench_observation(base, proc.pid, cases, max(1, args.repeat // 2), results)
    health.report(results, "health_throughout", "throughout")
    if not args.skip_dask:
        from dask.distributed import LocalCluster

        with LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster:
            env_dask = {
                **env,
                "ENGINE_WORKERS": "1",
                "DASK_SCHEDULER_ADDRESS": cluster.scheduler_address,
            }
            with run_service("main", env_dask, RESULTS / "engine-queued-dask.log") as (base, proc):
                bench_observation(
                    base, proc.pid, cases, max(1, args.repeat // 2), results, prefix="dask_"
                )
    return common.write_results("queued", results)


if __name__ == "__main__":
    sys.exit(main())

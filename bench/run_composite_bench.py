#!/usr/bin/env python3
"""Speed and memory of N-channel composites (a script, not a test).

    python3 tasks.py bench composite [--repeat 3]

Inputs (JWST-like, generated once under bench/.cache): two 4096x4096 channels at
0.031"/px and one 2048x2048 at 0.063"/px of the same field, rotated a few
degrees from each other; and three channels of 40 detector files of 2048x2048
each (a 4 x 10 grid per channel). Over HTTP to a live engine (2 workers):
1000x1000 PNG cold (composite cache emptied before each run; the files are in
the OS page cache) and cached (the same channels with other stretches), 4096x4096
PNG cold, and 3 x 40 files to 2000x2000. Samples worker RSS every 20 ms and
/health every 10 ms throughout. Writes bench/results/composite.json.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.common import CACHE, RESULTS, HealthProbe, RssSampler, summary, timed  # noqa: E402
from tests.support.servers import run_service  # noqa: E402
from tests.support.synthetic import DEC0, RA0, make_jwst_image  # noqa: E402

STORAGE = CACHE / "storage"
COMPOSITE_CACHE = CACHE / "composite-cache"


def make_three() -> list[str]:
    """The three-filter field: two 4096^2 channels at 0.031"/px, one 2048^2 at 0.063"/px."""
    base = STORAGE / "composite"
    three = []
    for name, size, scale, rot, filt in (
        ("f090w", 4096, 0.031, 2.0, "F090W"),
        ("f200w", 4096, 0.031, 5.0, "F200W"),
        ("f444w", 2048, 0.063, 8.0, "F444W"),
    ):
        path = base / f"field_{name}_i2d.fits"
        if not path.exists():
            print(f"generating {path.name} ...")
            make_jwst_image(
                path,
                shape=(size, size),
                seed=size + int(rot),
                pixel_scale_arcsec=scale,
                rotation_deg=rot,
                n_stars=400,
                filter_name=filt,
                with_err_dq=False,
            )
        three.append(f"composite/{path.name}")
    return three


def make_inputs() -> dict:
    base = STORAGE / "composite"
    three = make_three()
    grid = {}
    step = 2048 * 0.031 * 0.95 / 3600  # 5 % overlap between neighbours
    for c, filt in enumerate(("F090W", "F150W", "F200W")):
        keys = []
        for i in range(10):
            for j in range(4):
                path = base / "grid" / f"{filt.lower()}_{i:02d}_{j}_cal.fits"
                if not path.exists():
                    print(f"generating {path.name} ...")
                    make_jwst_image(
                        path,
                        shape=(2048, 2048),
                        seed=1000 * c + 10 * i + j,
                        ra=RA0 + (j - 1.5) * step / 0.9952,
                        dec=DEC0 + (i - 4.5) * step,
                        rotation_deg=0.5,
                        n_stars=60,
                        n_galaxies=1,
                        filter_name=filt,
                        with_err_dq=False,
                        nan_border=False,
                    )
                keys.append(str(path.relative_to(STORAGE)))
        grid[filt] = keys
    return {"three": three, "grid": grid}


def body(channels: list[list[str]], size: int, stretch: str = "asinh") -> dict:
    return {
        "channels": [
            {"file_paths": keys, "stretch": stretch, "color": {"hue": hue}}
            for keys, hue in zip(channels, (240, 120, 0), strict=True)
        ],
        "width": size,
        "height": size,
        "output_format": "png",
    }


def clear_cache() -> None:
    shutil.rmtree(COMPOSITE_CACHE, ignore_errors=True)


def main() -> int:
    args = common.arguments(repeat=3).parse_args()
    inputs = make_inputs()
    env = common.engine_env(STORAGE, COMPOSITE_CACHE_DIR=str(COMPOSITE_CACHE))
    results: dict = {}
    url = "/composite/generate-nchannel"
    with (
        run_service("main", env, RESULTS / "engine-composite.log") as (base, proc),
        httpx.Client(base_url=base, timeout=600) as client,
        HealthProbe(base) as health,
    ):
        three = [[k] for k in inputs["three"]]
        client.post(url, json=body(three, 1000)).raise_for_status()  # page cache warm
        cases = [
            ("1000_cold", body(three, 1000), clear_cache, args.repeat),
            ("1000_cached", body(three, 1000, stretch="log"), None, 2 * args.repeat + 1),
            ("4096_cold", body(three, 4096), clear_cache, args.repeat),
            (
                "3x40_files_2000_cold",
                body(list(inputs["grid"].values()), 2000),
                clear_cache,
                max(1, args.repeat // 2),
            ),
        ]
        for name, payload, before, repeat in cases:
            with RssSampler(proc.pid) as rss:
                times = timed(client, "POST", url, repeat, before=before, json=payload)
            results[name] = {**summary(times), **rss.result()}
            row = results[name]
            print(
                f"{name:<22} median {row['median_s']:6.2f} s  min {row['min_s']:6.2f} s  "
                f"peak worker RSS {row['peak_worker_mb']:7.0f} MB"
            )
    health.report(results, "health_throughout", "throughout")
    return common.write_results("composite", results)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Speed of the composite look (a script, not a test).

    python3 tasks.py bench look [--repeat 5]

Inputs: the composite bench's field (F090W 4096^2 at 0.031"/px, F444W 2048^2 at
0.063"/px, both NIRCam) and a MIRI F770W file (1032 x 1024 at 0.11"/px) of the same
sky. Over HTTP to a live engine (2 workers):

* a 3-channel composite (F090W, F444W, F770W) to 2048^2 with every control of
  CONTRACT-HEAD §10.1 on (sharpening, saturation and vibrancy and hue rotation,
  feathering of the mixed instruments, rotation 17 degrees, zoom 1.5) against the same
  composite with none of them (feathering off), cold (composite cache emptied before each
  run) and cached, the two taking turns;
* POST /composite/analyze-channels on F090W, F444W and F200W (two 4096^2, one 2048^2),
  cold (cache emptied) and cached.

Writes bench/results/look.json.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.common import CACHE, RESULTS, summary  # noqa: E402
from bench.run_composite_bench import make_three  # noqa: E402
from tests.support.servers import run_service  # noqa: E402
from tests.support.synthetic import make_jwst_image  # noqa: E402

STORAGE = CACHE / "storage"
COMPOSITE_CACHE = CACHE / "look-composite-cache"


def make_miri() -> str:
    path = STORAGE / "composite" / "field_f770w_miri_i2d.fits"
    if not path.exists():
        print(f"generating {path.name} ...")
        make_jwst_image(
            path,
            shape=(1024, 1032),
            seed=770,
            pixel_scale_arcsec=0.11,
            rotation_deg=4.0,
            n_stars=150,
            instrument="MIRI",
            detector="MIRIMAGE",
            filter_name="F770W",
            with_err_dq=False,
        )
    return f"composite/{path.name}"


def channels(keys: list[str]) -> list[dict]:
    return [
        {"file_paths": [k], "stretch": "asinh", "color": {"hue": hue}}
        for k, hue in zip(keys, (240, 120, 0), strict=True)
    ]


def timed_post(client: httpx.Client, url: str, payload: dict, cold: bool) -> float:
    if cold:
        shutil.rmtree(COMPOSITE_CACHE, ignore_errors=True)
    start = time.perf_counter()
    client.post(url, json=payload).raise_for_status()
    return time.perf_counter() - start


def main() -> int:
    args = common.arguments(repeat=5).parse_args()
    f090w, f200w, f444w = make_three()
    miri = make_miri()
    env = common.engine_env(STORAGE, COMPOSITE_CACHE_DIR=str(COMPOSITE_CACHE))
    plain = {
        "channels": channels([f090w, f444w, miri]),
        "width": 2048,
        "height": 2048,
        "feather_strength": 0,
    }
    every = {
        **plain,
        "feather_strength": None,
        "sharpening": {"radius": 1.5, "amount": 0.8, "threshold": 0.01},
        "saturation": {"saturation": 1.3, "vibrancy": 0.3, "hue_rotation": 10},
        "rotation_degrees": 17,
        "crop_zoom": 1.5,
        "crop_center_x": 0.4,
    }
    analyze = {"channels": channels([f090w, f444w, f200w]), "background_neutralization": True}
    results: dict = {}
    url = "/composite/generate-nchannel"
    with (
        run_service("main", env, RESULTS / "engine-look.log") as (base, _proc),
        httpx.Client(base_url=base, timeout=600) as client,
    ):
        r = client.post(url, json=every)
        r.raise_for_status()
        assert r.headers["x-composite-auto-feather"] == "true", r.headers
        for temperature, cold in (("cold", True), ("cached", False)):
            times: dict[str, list[float]] = {"plain": [], "every_control": []}
            for _ in range(args.repeat):
                times["plain"].append(timed_post(client, url, plain, cold))
                times["every_control"].append(timed_post(client, url, every, cold))
            for name, values in times.items():
                results[f"2048_{name}_{temperature}"] = summary(values)
            ratio = (
                summary(times["every_control"])["median_s"] / summary(times["plain"])["median_s"]
            )
            results[f"2048_ratio_{temperature}"] = ratio
            print(
                f"2048^2 {temperature:<6}: plain median {summary(times['plain'])['median_s']:.3f}"
                f" s, every control {summary(times['every_control'])['median_s']:.3f} s "
                f"({ratio:.2f}x)"
            )
        for temperature, cold in (("cold", True), ("cached", False)):
            values = [
                timed_post(client, "/composite/analyze-channels", analyze, cold)
                for _ in range(args.repeat)
            ]
            results[f"analyze_{temperature}"] = figures = summary(values)
            median, slowest = figures["median_s"], max(values)
            print(f"analyze-channels {temperature:<6}: median {median:.3f} s, max {slowest:.3f} s")
    return common.write_results("look", results)


if __name__ == "__main__":
    sys.exit(main())

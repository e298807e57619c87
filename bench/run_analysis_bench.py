#!/usr/bin/env python3
"""Speed and memory of analysis and semantic search (a script, not a test).

    python3 tasks.py bench analysis [--repeat 3]

Over HTTP to a live engine (2 workers): source detection on a 4096x4096 and a
2048x2048 JWST-like image with each method (worker RSS sampled every 20 ms);
page 2,000 of a million-row table sorted by a float column; embedding 1,000
metadata records (embed-batch); and searches over an index of 10,000 vectors
(the 1,000 real ones plus 9,000 random unit vectors written beforehand: search
time does not depend on what the vectors mean). Writes bench/results/analysis.json.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from bench.common import CACHE, RESULTS, HealthProbe, RssSampler, summary, timed  # noqa: E402
from tests.support.servers import run_service  # noqa: E402
from tests.support.synthetic import make_catalog, make_jwst_image  # noqa: E402

STORAGE = CACHE / "storage"
TARGETS = [
    "Crab Nebula",
    "Carina Nebula",
    "Orion Bar",
    "Jupiter",
    "NGC 3132",
    "M16",
    "Cassiopeia A",
    "Stephan's Quintet",
    "SMACS 0723",
    "NGC 1365",
]
INSTRUMENTS = [
    ("NIRCAM", "F090W"),
    ("NIRCAM", "F444W"),
    ("MIRI", "F770W"),
    ("MIRI", "F1130W"),
    ("NIRISS", "F200W"),
]


def make_inputs() -> dict:
    keys = {}
    for size in (2048, 4096):
        key = f"analysis/detect_{size}_i2d.fits"
        if not (STORAGE / key).exists():
            print(f"generating {key} ...")
            make_jwst_image(
                STORAGE / key,
                shape=(size, size),
                seed=size + 1,
                n_stars=size // 4,
                n_galaxies=size // 256,
                with_err_dq=False,
            )
        keys[size] = key
    table = STORAGE / "analysis" / "million.fits"
    if not table.exists():
        make_catalog(table, 1_000_000)
    keys["table"] = "analysis/million.fits"
    return keys


def records(n: int) -> list[dict]:
    out = []
    for i in range(n):
        inst, filt = INSTRUMENTS[i % len(INSTRUMENTS)]
        out.append(
            {
                "file_id": f"rec{i:05d}",
                "target_name": TARGETS[i % len(TARGETS)],
                "instrument": inst,
                "filter_name": filt,
                "calibration_level": 2 + i % 2,
                "observation_title": f"Program {1000 + i % 97} imaging",
                "exposure_time": 100.0 + i,
                "observation_date": "2023-05-01",
                "data_type": "image",
            }
        )
    return out


def main() -> int:
    args = common.arguments(repeat=3).parse_args()
    keys = make_inputs()
    semantic_dir = CACHE / "semantic-bench"
    shutil.rmtree(semantic_dir, ignore_errors=True)
    env = common.engine_env(STORAGE, SEMANTIC_DATA_DIR=str(semantic_dir))
    results: dict = {}
    with (
        run_service("main", env, RESULTS / "engine-analysis.log") as (base, proc),
        httpx.Client(base_url=base, timeout=600) as client,
        HealthProbe(base) as health,
    ):
        for size, method in (
            (2048, "daofind"),
            (2048, "iraf"),
            (2048, "segmentation"),
            (4096, "daofind"),
            (4096, "iraf"),
            (4096, "segmentation"),
        ):
            payload = {
                "file_path": keys[size],
                "method": method,
                "threshold_sigma": 5.0,
                "fwhm": 3.5,
                "npixels": 10,
                "deblend": True,
            }
            client.post("/analysis/detect-sources", json=payload).raise_for_status()
            with RssSampler(proc.pid) as rss:
                times = timed(client, "POST", "/analysis/detect-sources", args.repeat, json=payload)
            n = client.post("/analysis/detect-sources", json=payload).json()["n_sources"]
            name = f"detect_{method}_{size}"
            results[name] = {**summary(times), **rss.result(), "n_sources": n}
            print(
                f"{name:<26} median {results[name]['median_s']:6.2f} s  peak worker RSS "
                f"{results[name]['peak_worker_mb']:6.0f} MB  ({n} sources)"
            )
        params = {
            "file_path": keys["table"],
            "hdu_index": 1,
            "page": 2000,
            "page_size": 100,
            "sort_column": "MAG",
            "sort_direction": "desc",
        }
        client.get("/analysis/table-data", params=params).raise_for_status()
        results["table_sorted_page_1M"] = summary(
            timed(client, "GET", "/analysis/table-data", 2 * args.repeat + 1, params=params)
        )
        print(
            f"sorted page of 1M rows     median "
            f"{results['table_sorted_page_1M']['median_s']:6.3f} s"
        )
        t0 = time.perf_counter()
        client.post("/semantic/embed-batch", json={"items": records(1000)}).raise_for_status()
        results["embed_1000_s"] = time.perf_counter() - t0
        print(f"embed 1000 records         {results['embed_1000_s']:6.2f} s")
    # Grow the index to 10,000 vectors, then search it from a fresh engine.
    from app.semantic.vector_index import VectorIndex

    index = VectorIndex(semantic_dir)
    rng = np.random.default_rng(0)
    extra = rng.normal(size=(9000, index.dim)).astype(np.float32)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    index.upsert([f"random{i}" for i in range(9000)], extra, ["random"] * 9000)
    with (
        run_service("main", env, RESULTS / "engine-analysis-search.log") as (base, _proc),
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        body = {"query": "MIRI images of the Crab Nebula", "top_k": 20, "min_score": 0.3}
        client.post("/semantic/search", json=body).raise_for_status()  # loads the model
        times, server = [], []
        for i in range(50):
            t0 = time.perf_counter()
            r = client.post(
                "/semantic/search", json={**body, "query": f"{TARGETS[i % 10]} with MIRI"}
            )
            times.append(time.perf_counter() - t0)
            r.raise_for_status()
            server.append(r.json()["embed_time_ms"] + r.json()["search_time_ms"])
            assert r.json()["total_indexed"] == 10000
        in_server_ms = float(np.median(server))
        results["search_10000"] = {**summary(times), "server_median_ms": in_server_ms}
        over_http_ms = 1000 * results["search_10000"]["median_s"]
        print(f"search over 10,000         median {over_http_ms:.1f} ms over HTTP", end=" ")
        print(f"({in_server_ms:.1f} ms embed+search)")
    health.report(results, "health_throughout_detection", "during detection")
    return common.write_results("analysis", results)


if __name__ == "__main__":
    sys.exit(main())

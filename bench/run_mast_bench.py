#!/usr/bin/env python3
"""MAST proxy download benchmark (a script, not a test).

    .venv/bin/python bench/run_mast_bench.py [--size-mb 256] [--files 3]

Serves three 256 MB products from the MAST stand-in on loopback and compares:
curl fetching the same three URLs at once, against a chunked download job of
the proxy (start -> complete). While the proxy downloads, it polls progress
every 20 ms (latency percentiles) and samples the proxy's RSS every 20 ms.
Writes bench/results/mast.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import RssSampler, percentile  # noqa: E402
from tests.support.servers import run_mast_standin, run_service  # noqa: E402

CACHE = ROOT / "bench" / ".cache" / "mast"
RESULTS = ROOT / "bench" / "results"
OBSID, OBS_ID = "87600006", "jw05555-o001_t001_miri_f560w"  # no products of its own


def make_files(count: int, size_mb: int) -> list[Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = CACHE / f"{OBS_ID}_big{i}_i2d.fits"
        if not path.exists() or path.stat().st_size != size_mb << 20:
            with open(path, "wb") as handle:
                for _ in range(size_mb):
                    handle.write(os.urandom(1 << 20))
        paths.append(path)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    files = make_files(args.files, args.size_mb)
    total = sum(p.stat().st_size for p in files)
    RESULTS.mkdir(parents=True, exist_ok=True)
    large = [f"{OBSID}={p.name}={p}" for p in files]
    work = CACHE / "run"
    if work.exists():
        subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    result: dict = {"files": len(files), "bytes": total}
    with run_mast_standin(work / "standin_files", work / "standin.log", large) as (mast, _):
        # Warm the page cache, then curl: three transfers at once into files on the same
        # disk, like the proxy (which also fsyncs each file before renaming it).
        for p in files:
            p.read_bytes()
        urls = [f"{mast}/api/v0.1/Download/file?uri=mast:JWST/product/{p.name}" for p in files]
        curl_runs = []
        for _ in range(args.repeat):
            curl_dir = work / "curl"
            curl_dir.mkdir()
            t0 = time.perf_counter()
            procs = [subprocess.Popen(["curl", "-sf", "-o", str(curl_dir / f"f{i}"), u])
                     for i, u in enumerate(urls)]
            assert all(p.wait() == 0 for p in procs)
            curl_runs.append(time.perf_counter() - t0)
            subprocess.run(["rm", "-rf", str(curl_dir)], check=True)
        curl_s = sorted(curl_runs)[len(curl_runs) // 2]
        result["curl_seconds"] = curl_s
        result["curl_mb_per_s"] = total / curl_s / 1e6

        env = {"STORAGE_BASE_PATH": str(work / "data"), "MAST_BASE_URL": mast,
               "NAME_RESOLVER_URL": mast + "/cgi-bin/nph-sesame/"}
        with run_service("main_mast", env, work / "proxy.log") as (base, proc):
            idle_rss = psutil.Process(proc.pid).memory_info().rss
            latencies: list[float] = []
            stages: list[str] = []
            runs = []
            with RssSampler(proc.pid) as rss, httpx.Client(base_url=base, timeout=60) as client:
                for attempt in range(args.repeat):
                    t0 = time.perf_counter()
                    job = client.post("/mast/download/start-chunked",
                                      json={"obs_id": OBS_ID}).json()["job_id"]
                    first_bytes = None
                    while True:
                        q0 = time.perf_counter()
                        body = client.get(f"/mast/download/progress-chunked/{job}").json()
                        latencies.append(time.perf_counter() - q0)
                        stages.append(body["stage"])
                        if first_bytes is None and body["downloaded_bytes"] > 0:
                            first_bytes = (q0, body["downloaded_bytes"])
                        if body["is_complete"]:
                            break
                        time.sleep(0.02)
                    end = time.perf_counter()
                    assert body["stage"] == "complete", body
                    runs.append((end - t0, (total - first_bytes[1]) / (end - first_bytes[0])))
                    client.delete(f"/mast/download/resumable/{job}",
                                  params={"delete_files": "true"})
            proxy_s = sorted(r[0] for r in runs)[len(runs) // 2]
            transfer_rate = sorted(r[1] for r in runs)[len(runs) // 2]
            during = sorted(t for t, st in zip(latencies, stages) if st == "downloading")
            latencies.sort()
            result.update({
                "proxy_seconds": proxy_s,
                "proxy_mb_per_s": total / proxy_s / 1e6,
                "proxy_vs_curl": curl_s / proxy_s,
                # Transfer phase only (after MAST answered the product query).
                "transfer_mb_per_s": transfer_rate / 1e6,
                "transfer_vs_curl": transfer_rate / (total / curl_s),
                "proxy_idle_rss_mb": idle_rss / 2**20,
                "proxy_peak_rss_mb": max(idle_rss / 2**20, rss.result()["peak_total_mb"]),
                "progress_polls": len(latencies),
                "progress_p50_ms": 1000 * percentile(latencies, 0.5),
                "progress_p99_ms": 1000 * percentile(latencies, 0.99),
                "progress_max_ms": 1000 * latencies[-1],
                # Only the polls answered while bytes were flowing.
                "progress_polls_downloading": len(during),
                "progress_p50_ms_downloading": 1000 * percentile(during, 0.5),
                "progress_p99_ms_downloading": 1000 * percentile(during, 0.99),
            })
    print(json.dumps(result, indent=2))
    (RESULTS / "mast.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""MAST proxy download benchmark (a script, not a test).

    .venv/bin/python bench/run_mast_bench.py [--size-mb 256] [--files 3]

Serves three 256 MB products from the MAST stand-in on loopback and compares:
curl fetching the same three URLs at once, against a chunked download job of
the proxy (start -> complete), taking turns (8 runs each, medians). While the
proxy downloads, it polls progress every 20 ms (latency percentiles) and samples
the proxy's RSS every 20 ms.
Writes bench/results/mast.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
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


class PollWhile:
    """Polls one URL every 20 ms in a thread while the block runs; latencies kept."""

    def __init__(self, base: str, path: str, latencies: list[float]) -> None:
        self.client = httpx.Client(base_url=base, timeout=60)
        self.path, self.latencies = path, latencies
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self.done.is_set():
            t0 = time.perf_counter()
            self.client.get(self.path).raise_for_status()
            self.latencies.append(time.perf_counter() - t0)
            time.sleep(0.02)

    def __enter__(self) -> PollWhile:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()
        self.client.close()


def curl_once(urls: list[str], folder: Path, poller: PollWhile) -> tuple[float, float]:
    """curl fetching every URL at once into files on the same disk.

    Returns the wall seconds of curl alone, and of curl plus an fsync of its files
    (what the proxy does before it calls a file complete: like for like). ``poller``
    polls the (idle) proxy meanwhile: the latency floor this machine sets when
    loopback transfers of this size keep its cores busy.
    """
    folder.mkdir()
    t0 = time.perf_counter()
    with poller:
        procs = [
            subprocess.Popen(["curl", "-sf", "-o", str(folder / f"f{i}"), u])
            for i, u in enumerate(urls)
        ]
        assert all(p.wait() == 0 for p in procs)
    seconds = time.perf_counter() - t0
    for i in range(len(urls)):
        fd = os.open(folder / f"f{i}", os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    durable = time.perf_counter() - t0
    subprocess.run(["rm", "-rf", str(folder)], check=True)
    return seconds, durable


def proxy_once(client: httpx.Client, polls: list, dismiss: bool = True) -> tuple[float, str]:
    """One chunked job from start to complete (product query, transfer, fsync, rename),
    polling progress every 20 ms; wall seconds. Appends (latency, stage) of every poll
    to ``polls``."""
    t0 = time.perf_counter()
    job = client.post("/mast/download/start-chunked", json={"obs_id": OBS_ID}).json()["job_id"]
    while True:
        q0 = time.perf_counter()
        body = client.get(f"/mast/download/progress-chunked/{job}").json()
        polls.append((time.perf_counter() - q0, body["stage"]))
        if body["is_complete"]:
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    assert body["stage"] == "complete", body
    if dismiss:
        client.delete(f"/mast/download/resumable/{job}", params={"delete_files": "true"})
    return seconds, job


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=8)
    args = parser.parse_args()
    files = make_files(args.files, args.size_mb)
    total = sum(p.stat().st_size for p in files)
    RESULTS.mkdir(parents=True, exist_ok=True)
    large = [f"{OBSID}={p.name}={p}" for p in files]
    work = CACHE / "run"
    if work.exists():
        subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    result: dict = {"files": len(files), "bytes": total, "runs": args.repeat}
    with run_mast_standin(work / "standin_files", work / "standin.log", large) as (mast, _):
        for p in files:  # warm the page cache
            p.read_bytes()
        urls = [f"{mast}/api/v0.1/Download/file?uri=mast:JWST/product/{p.name}" for p in files]
        env = {
            "STORAGE_BASE_PATH": str(work / "data"),
            "MAST_BASE_URL": mast,
            "NAME_RESOLVER_URL": mast + "/cgi-bin/nph-sesame/",
        }
        with run_service("main_mast", env, work / "proxy.log") as (base, proc):
            idle_rss = psutil.Process(proc.pid).memory_info().rss
            polls: list[tuple[float, str]] = []  # (latency, stage)
            curl_runs, durable_curl_runs, proxy_runs = [], [], []
            floor: list[float] = []
            with RssSampler(proc.pid) as rss, httpx.Client(base_url=base, timeout=60) as client:
                # A first job (not measured) whose progress is polled while curl runs; it
                # also leaves the product list cached, as listing products before
                # downloading them does.
                _, warm = proxy_once(client, [], dismiss=False)
                # curl and the proxy take turns, so drifting machine load hits both alike.
                for _ in range(args.repeat):
                    poller = PollWhile(base, f"/mast/download/progress-chunked/{warm}", floor)
                    seconds, durable = curl_once(urls, work / "curl", poller)
                    curl_runs.append(seconds)
                    durable_curl_runs.append(durable)
                    proxy_runs.append(proxy_once(client, polls)[0])
            curl_s, proxy_s = statistics.median(curl_runs), statistics.median(proxy_runs)
            durable_s = statistics.median(durable_curl_runs)
            during = sorted(t for t, stage in polls if stage == "downloading")
            latencies = sorted(t for t, _ in polls)
            result.update(
                {
                    "curl_seconds": curl_s,
                    "curl_mb_per_s": total / curl_s / 1e6,
                    "proxy_seconds": proxy_s,
                    "proxy_mb_per_s": total / proxy_s / 1e6,
                    # Whole job (start, product query, transfer, fsync, rename) against curl.
                    "proxy_vs_curl": curl_s / proxy_s,
                    "proxy_vs_curl_per_run": [
                        round(c / p, 3) for c, p in zip(curl_runs, proxy_runs, strict=True)
                    ],
                    # curl + fsync of its files: the same durability as the proxy's.
                    "curl_fsync_seconds": durable_s,
                    "proxy_vs_curl_fsync": durable_s / proxy_s,
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
                    # The same polls against the idle proxy while curl downloads: the floor.
                    "progress_polls_during_curl": len(floor),
                    "progress_p50_ms_during_curl": 1000 * percentile(sorted(floor), 0.5),
                    "progress_p99_ms_during_curl": 1000 * percentile(sorted(floor), 0.99),
                }
            )
    print(json.dumps(result, indent=2))
    return common.write_results("mast", result)


if __name__ == "__main__":
    sys.exit(main())

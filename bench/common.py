"""Helpers shared by the benchmark scripts: timing, /health probing, memory sampling."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from tests.support.servers import local_env

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results"
MB = 1024 * 1024

# Benches print a line per step as it ends: show each at once, even into a pipe.
sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]


def write_results(name: str, results: dict) -> int:
    """Keep a bench's figures in ``bench/results/<name>.json``; 0, the exit status."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2))
    return 0


def arguments(repeat: int) -> argparse.ArgumentParser:
    """A bench script's command line: ``--repeat N`` runs of each case (default ``repeat``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=repeat, help="runs of each case")
    return parser


def engine_env(storage: Path, **settings: str) -> dict[str, str]:
    """The environment of a benchmarked engine: two workers on ``storage``, plus
    ``settings``; the results folder is made for its log."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    return local_env(storage, ENGINE_WORKERS=2, **settings)


def traced_peak_mb(fn, *args) -> float:
    """Peak bytes allocated while ``fn(*args)`` runs (numpy reports to tracemalloc)."""
    import tracemalloc

    fn(*args)  # imports and caches first
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1] / MB
    finally:
        tracemalloc.stop()


def timed(
    client: httpx.Client, method: str, url: str, repeat: int, before=None, **kwargs
) -> list[float]:
    """Wall times of ``repeat`` requests; ``before()`` runs untimed before each."""
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        r = client.request(method, url, **kwargs)
        times.append(time.perf_counter() - t0)
        r.raise_for_status()
    return times


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def summary(times: list[float]) -> dict:
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "runs": len(times),
    }


class Sampler:
    """Calls ``self.sample()`` every ``interval`` seconds in a thread while the block runs."""

    interval = 0.01

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


class HealthProbe(Sampler):
    """Polls ``/health`` every 10 ms while the block runs."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.client = httpx.Client(base_url=base, timeout=10)
        self.latencies: list[float] = []

    def sample(self) -> None:
        t0 = time.perf_counter()
        self.client.get("/health")
        self.latencies.append(time.perf_counter() - t0)

    def __exit__(self, *exc) -> None:
        super().__exit__(*exc)
        self.client.close()

    def result(self) -> dict:
        lat = sorted(self.latencies)
        if not lat:
            return {"samples": 0}
        return {
            "samples": len(lat),
            "p50_ms": 1000 * percentile(lat, 0.5),
            "p99_ms": 1000 * percentile(lat, 0.99),
            "max_ms": 1000 * lat[-1],
        }

    def report(self, results: dict, key: str, when: str) -> None:
        """Put the latencies in ``results[key]`` and print them as ``when``."""
        results[key] = self.result()
        print(health_line(when, results[key]))


def health_line(when: str, h: dict) -> str:
    """One printed line for a :meth:`HealthProbe.result`."""
    return (
        f"/health {when}: p50 {h['p50_ms']:.1f} ms, p99 {h['p99_ms']:.1f} ms, "
        f"max {h['max_ms']:.1f} ms ({h['samples']} probes)"
    )


class RssSampler(Sampler):
    """Samples the resident memory of a process and its children every 20 ms.

    ``peak_worker_mb`` is the largest RSS any single child (a worker process)
    reached; ``peak_total_mb`` the largest sum over the whole tree.
    """

    interval = 0.02
    refresh_every = 25  # samples between re-listing the tree (walking /proc is not cheap)

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.root = psutil.Process(pid)
        self.peak_worker = 0
        self.peak_total = 0
        self._procs: list[psutil.Process] = []
        self._samples = 0

    def sample(self) -> None:
        if self._samples % self.refresh_every == 0:
            try:
                self._procs = [self.root] + self.root.children(recursive=True)
            except psutil.Error:
                return
        self._samples += 1
        rss = []
        for p in self._procs:
            try:
                rss.append((p.pid, p.memory_info().rss))
            except psutil.Error:
                pass
        self.peak_total = max(self.peak_total, sum(r for _, r in rss))
        children = [r for pid, r in rss if pid != self.root.pid]
        if children:
            self.peak_worker = max(self.peak_worker, max(children))

    def result(self) -> dict:
        return {"peak_worker_mb": self.peak_worker / MB, "peak_total_mb": self.peak_total / MB}


def tree_rss(pid: int) -> int:
    """Resident memory (bytes) of a process and all its children now."""
    root = psutil.Process(pid)
    total = 0
    for p in [root] + root.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total

"""Heavy work never blocks the event loop: /health stays fast under load."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np


async def _probe_health(client: httpx.AsyncClient, stop: asyncio.Event, out: list[float]):
    while not stop.is_set():
        t0 = time.perf_counter()
        r = await client.get("/health")
        out.append(time.perf_counter() - t0)
        assert r.status_code == 200
        await asyncio.sleep(0.02)


async def _heavy(client: httpx.AsyncClient, i: int):
    params = {
        "file_path": "jwst/large_i2d.fits",
        "width": 2000,
        "height": 2000,
        "stretch": ["histeq", "asinh", "zscale", "log"][i % 4],
        "smooth_method": "gaussian",
        "smooth_sigma": 3,
    }
    r = await client.get(f"/preview/load{i}", params=params)
    return r.status_code


def test_health_answers_fast_while_previews_run(engine_url):
    async def scenario():
        latencies: list[float] = []
        stop = asyncio.Event()
        limits = httpx.Limits(max_connections=20)
        async with (
            httpx.AsyncClient(base_url=engine_url, timeout=120, limits=limits) as heavy,
            httpx.AsyncClient(base_url=engine_url, timeout=10) as light,
        ):
            probe = asyncio.create_task(_probe_health(light, stop, latencies))
            t0 = time.perf_counter()
            statuses = await asyncio.gather(*(_heavy(heavy, i) for i in range(6)))
            busy = time.perf_counter() - t0
            stop.set()
            await probe
        return statuses, latencies, busy

    statuses, latencies, busy = asyncio.run(scenario())
    assert all(s in (200, 429) for s in statuses), statuses
    assert statuses.count(200) >= 2
    assert busy > 0.5, "the load should keep the workers busy for a while"
    assert len(latencies) >= 10
    p99 = float(np.percentile(latencies, 99))
    # Previews on the event loop would hold /health for their whole run (busy > 0.5 s).
    assert p99 < 0.25, f"/health p99 {p99 * 1000:.0f} ms under load"

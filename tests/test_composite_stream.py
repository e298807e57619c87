"""Queued composites (CONTRACT-HEAD §10.2, §10.3, §10.1 budget): the NDJSON stream, waiting
instead of 429, cancellation, the budget verdict and the estimate, over HTTP."""

from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from app.composite import planning
from app.composite.budget import budget_verdict
from app.composite.models import NChannelCompositeRequest
from app.config import Settings
from app.storage.local_storage import LocalStorage
from app.storage.temp_cache import TempCache, flock
from tests.conftest import composite_cache_dir
from tests.support.composites import channel, composite_body
from tests.support.ndjson import StreamResult, read_lines, stream_composite
from tests.support.servers import local_env, run_service
from tests.support.synthetic import DEC0, RA0, make_jwst_image, make_tile_grid

TIMEOUT = 300


@pytest.fixture(scope="module")
def stream_files(data_root):
    """Fresh files (never rendered before this module) under <root>/stream."""
    base = data_root / "stream"
    base.mkdir(exist_ok=True)
    keys = {}
    for i, name in enumerate(["f090w", "f200w", "f444w", "f770w", "lum", "spare"]):
        make_jwst_image(
            base / f"{name}.fits",
            shape=(400, 400),
            seed=100 + i,
            n_stars=25,
            ra=RA0 + i * 0.2 / 3600,
            dec=DEC0,
        )
        keys[name] = f"stream/{name}.fits"
    keys["tiles"] = make_tile_grid(
        data_root, "stream", 3, 3, step_arcsec=7, seed=200, shape=(256, 256), n_stars=8
    )
    return keys


def three_channels(keys, **extra):
    channels = [
        channel([keys["f090w"]], {"hue": 240}, label="F090W"),
        channel([keys["f200w"]], {"hue": 120}, label="F200W"),
        channel([keys["f444w"]], {"hue": 0}, label="F444W"),
    ]
    return composite_body(channels, 320, 240) | extra


# ---------------------------------------------------------------------------------------
# Holding a channel's cache lock: a deterministic way to pause a render mid-way
# ---------------------------------------------------------------------------------------


def lock_path(body: dict, data_root: Path, cache_dir: Path, channel_index: int) -> Path:
    """The cache lock the worker takes before reprojecting ``channel_index`` of ``body``."""
    settings = Settings(STORAGE_BASE_PATH=data_root, COMPOSITE_CACHE_DIR=cache_dir)
    prepared = planning.prepare_sync(
        NChannelCompositeRequest(**body), settings, LocalStorage(data_root), 4 << 30
    )
    name = TempCache.entry_name(prepared.plan.identities[channel_index], ".npy")
    return cache_dir / ".locks" / (name + ".lock")


#: Holding a cache entry's lock, as the worker itself takes it.
holding = flock


class StreamThread(threading.Thread):
    """Reads one stream in the background (a client of the job queue)."""

    def __init__(self, base: str, body: dict) -> None:
        super().__init__(daemon=True)
        self.base, self.body = base, body
        self.result = StreamResult()
        self.status: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream(
                "POST",
                self.base + "/composite/generate-nchannel-stream",
                json=self.body,
                timeout=TIMEOUT,
            ) as response:
                self.status = response.status_code
                read_lines(response, self.result)
        except BaseException as exc:  # reported by the test
            self.error = exc


def wait_for(predicate, what: str, limit: float = 120.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------
# The stream
# ---------------------------------------------------------------------------------------


def test_three_channel_stream_reports_each_stage_then_the_sync_picture(engine_url, stream_files):
    body = three_channels(stream_files)
    result = stream_composite(engine_url, body)
    assert result.terminal["event"] == "complete", result.terminal
    assert result.stages == ["reproject"] * 3 + ["background_neutralize"] + ["stretch"] * 3 + [
        "combine",
        "encode",
    ]
    reprojects = [e for e in result.progress if e["stage"] == "reproject"]
    assert [(e["index"], e["total"], e["filter"]) for e in reprojects] == [
        (1, 3, "F090W"),
        (2, 3, "F200W"),
        (3, 3, "F444W"),
    ]
    assert reprojects[0]["message"] == "Reprojecting F090W (1 of 3)"
    image = result.image()
    assert image.size == (320, 240) and image.format == "PNG"
    sync = httpx.post(engine_url + "/composite/generate-nchannel", json=body, timeout=TIMEOUT)
    assert sync.status_code == 200
    assert (
        result.terminal["image_b64"]
        and Image.open(io.BytesIO(sync.content)).tobytes() == image.tobytes()
    )
    import base64

    assert base64.b64decode(result.terminal["image_b64"]) == sync.content
    headers = result.terminal["headers"]
    assert headers["x-composite-budget-status"] == sync.headers["x-composite-budget-status"] == "ok"
    assert headers["content-type"] == "image/png"
    assert headers["content-length"] == str(len(sync.content))
    # The look and quality headers of §10.1 travel inside the complete event too.
    for name in (
        "x-composite-auto-feather",
        "x-composite-feather-strength",
        "x-quality-score",
        "x-quality-snr",
        "x-quality-balance",
        "x-quality-spread",
        "x-quality-coverage",
    ):
        assert headers[name] == sync.headers[name]


def test_cached_rerender_has_no_reproject_lines(engine_url, stream_files):
    body = three_channels(stream_files, background_neutralization=False)
    stream_composite(engine_url, body)  # fills the cache (if not yet)
    again = stream_composite(
        engine_url, {**body, "channels": [{**c, "stretch": "log"} for c in body["channels"]]}
    )
    assert again.terminal["event"] == "complete"
    assert again.stages == ["stretch"] * 3 + ["combine", "encode"]


@pytest.mark.parametrize(
    "keys,status,fragment",
    [
        (["bad/truncated.fits"], 400, "truncated"),
        (["bad/not_fits.fits"], 400, "not_fits"),
        (["nope/missing.fits"], 404, ""),
        (["../etc/passwd"], 403, ""),
    ],
)
def test_bad_input_is_an_in_band_error(engine_url, stream_files, keys, status, fragment):
    body = {
        "channels": [channel(keys, {"hue": 0}), channel([stream_files["f090w"]], {"hue": 120})],
        "width": 64,
        "height": 64,
    }
    result = stream_composite(engine_url, body)
    assert result.terminal["event"] == "error"
    assert result.terminal["status_code"] == status
    assert fragment in result.terminal["detail"]


def test_validation_errors_are_plain_422_before_the_stream(engine_url, stream_files):
    for body in (
        {"channels": []},
        {"channels": [channel([stream_files["f090w"]], {"luminance": True})]},
        {"channels": [channel([stream_files["f090w"]], {"hue": 0})], "width": 0},
    ):
        r = httpx.post(
            engine_url + "/composite/generate-nchannel-stream", json=body, timeout=TIMEOUT
        )
        assert r.status_code == 422 and isinstance(r.json()["detail"], str)


def test_duplicate_labels_and_unnamed_channels(engine_url, stream_files):
    body = {
        "channels": [
            channel([stream_files["f090w"]], {"hue": 240}, label="F200W"),
            channel([stream_files["f200w"]], {"hue": 0}, label="F200W"),
            channel([stream_files["f444w"]], {"hue": 120}),
        ],
        "width": 100,
        "height": 100,
        "background_neutralization": False,
    }
    result = stream_composite(engine_url, body)
    assert result.terminal["event"] == "complete"
    stretches = [(e["filter"], e["index"]) for e in result.progress if e["stage"] == "stretch"]
    assert stretches == [("F200W", 1), ("F200W", 2), ("ch2", 3)]
    assert result.image().size == (100, 100)


def test_unknown_stretch_is_reported_as_a_fallback(engine_url, stream_files):
    body = {
        "channels": [
            channel([stream_files["f090w"]], {"hue": 0}, stretch="mystery", label="F090W")
        ],
        "width": 80,
        "height": 80,
    }
    result = stream_composite(engine_url, body)
    assert result.terminal["headers"]["x-composite-stretch-fallbacks"] == "F090W:mystery->zscale"
    sync = httpx.post(engine_url + "/composite/generate-nchannel", json=body, timeout=TIMEOUT)
    assert sync.headers["x-composite-stretch-fallbacks"] == "F090W:mystery->zscale"


def test_lines_arrive_while_the_job_is_still_working(engine_url, stream_files, data_root):
    """The first line reaches the client while the render is provably unfinished: the
    test holds the cache lock the worker needs for the second channel."""
    body = {
        "channels": [
            channel(stream_files["tiles"][:5], {"hue": 0}, label="A"),
            channel(stream_files["tiles"][4:], {"hue": 200}, label="B"),
        ],
        "width": 500,
        "height": 500,
    }
    lock = lock_path(body, data_root, composite_cache_dir(data_root), 1)
    with holding(lock):
        reader = StreamThread(engine_url, body)
        reader.start()
        wait_for(lambda: len(reader.result.progress) >= 1, "the first line")
        time.sleep(0.5)  # nothing more can come while the lock is held
        assert reader.result.terminal is None
        assert reader.result.stages == ["reproject"]
    reader.join(TIMEOUT)
    assert reader.error is None and reader.status == 200
    assert reader.result.terminal["event"] == "complete"
    assert reader.result.stages[:2] == ["reproject", "reproject"]


def test_concurrent_streams_wait_instead_of_429_and_health_stays_fast(
    engine_url, stream_files, data_root
):
    """12 streams on 2 workers: the first two are held mid-render, so the other ten must
    wait; all complete, none is refused, and /health answers quickly throughout."""
    cache = composite_cache_dir(data_root)
    blocked = []
    for i in range(2):
        body = {
            "channels": [
                channel([stream_files["spare"]], {"hue": 0}),
                channel([stream_files["tiles"][i]], {"hue": 120}),
            ],
            "width": 150 + i,
            "height": 150,
        }
        blocked.append((body, lock_path(body, data_root, cache, 1)))
    others = [three_channels(stream_files, width=120 + i, height=90) for i in range(10)]
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                start = time.perf_counter()
                assert client.get(engine_url + "/health").status_code == 200
                latencies.append(time.perf_counter() - start)
                time.sleep(0.05)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    readers = []
    with holding(blocked[0][1]), holding(blocked[1][1]):
        for body, _ in blocked:
            readers.append(StreamThread(engine_url, body))
            readers[-1].start()
        for reader in readers:
            wait_for(lambda r=reader: r.result.stages[-1:] == ["reproject"], "a held job")
        for body in others:
            readers.append(StreamThread(engine_url, body))
            readers[-1].start()
        for reader in readers[2:]:
            wait_for(lambda r=reader: "queued" in r.result.stages, "a queued line")
    for reader in readers:
        reader.join(TIMEOUT)
    stop.set()
    prober.join(10)
    for reader in readers:
        assert reader.error is None and reader.status == 200
        assert reader.result.terminal["event"] == "complete", reader.result.terminal
    assert len(latencies) > 10
    # A loop blocked by this work would stall for as long as the held jobs (seconds);
    # the bound leaves a busy 2-core machine its scheduling hiccups.
    assert max(latencies) < 0.5, f"/health took up to {max(latencies) * 1000:.0f} ms"


# ---------------------------------------------------------------------------------------
# A small engine: one worker, a small composite memory limit
# ---------------------------------------------------------------------------------------

LIMIT_MB = 500


@pytest.fixture(scope="module")
def small_engine(data_root, tmp_path_factory):
    logs = tmp_path_factory.mktemp("small_engine")
    env = local_env(
        data_root,
        ENGINE_WORKERS=1,
        COMPOSITE_CACHE_DIR=logs / "cache",
        MAX_COMPOSITE_MEMORY_BYTES=LIMIT_MB * 1_000_000,
    )
    with run_service("main", env, logs / "engine.log") as (base, _proc):
        yield base, logs / "cache"


def test_disconnect_cancels_the_job_and_frees_the_worker(small_engine, stream_files, data_root):
    base, cache = small_engine
    body = {
        "channels": [
            channel([stream_files["lum"]], {"hue": 0}, label="first"),
            channel([stream_files["tiles"][8]], {"hue": 120}, label="held"),
            channel([stream_files["tiles"][7]], {"hue": 240}, label="never"),
        ],
        "width": 210,
        "height": 170,
    }
    held = lock_path(body, data_root, cache, 1)
    never = lock_path(body, data_root, cache, 2).name[: -len(".lock")]
    follower = three_channels(stream_files, width=130, height=97)
    with holding(held):
        with httpx.stream(
            "POST", base + "/composite/generate-nchannel-stream", json=body, timeout=TIMEOUT
        ) as response:
            first = StreamResult()
            read_lines(response, first, stop_after=1)
            assert first.stages == ["reproject"]
            # The one worker is busy with this job: the next one has to queue.
            second = StreamThread(base, follower)
            second.start()
            wait_for(lambda: "queued" in second.result.stages, "the follower to queue")
        # The client has gone; the job is still held by the lock, and stops at its next
        # stage boundary once it is released.
    second.join(TIMEOUT)
    assert second.error is None and second.result.terminal["event"] == "complete"
    # The cancelled job never reached its third channel.
    assert not (cache / never).exists()
    assert sorted(p.name for p in cache.iterdir() if p.suffix == ".npy")  # the follower's


def _too_large(stream_files) -> dict:
    """Three channels to 4096 x 3000: over the small engine's composite memory limit."""
    return three_channels(stream_files, width=4096, height=3000)


def _verdict(base: str, body: dict) -> dict:
    estimate = httpx.post(base + "/composite/estimate", json=body, timeout=TIMEOUT)
    assert estimate.status_code == 200
    return estimate.json()


def test_estimate_of_a_too_large_composite_is_a_fail_verdict(small_engine, stream_files):
    base, _ = small_engine
    body = _too_large(stream_files)
    verdict = _verdict(base, body)
    assert verdict["status"] == "fail"
    assert type(verdict["memory_limit_mb"]) is int and verdict["memory_limit_mb"] == LIMIT_MB
    assert all(type(v) is int for v in verdict["original_shape"] + verdict["output_shape"])
    assert verdict["original_shape"] == [3000, 4096]
    assert verdict["fail_threshold"] == 0.85
    # The estimate ignores allow_force_downscale: what a render would force is a fail.
    assert _verdict(base, {**body, "allow_force_downscale": True}) == verdict


def test_413_detail_is_the_estimates_and_names_the_settings(small_engine, stream_files):
    base, _ = small_engine
    body = _too_large(stream_files)
    verdict = _verdict(base, body)
    refused = httpx.post(base + "/composite/generate-nchannel", json=body, timeout=TIMEOUT)
    assert refused.status_code == 413
    detail = refused.json()["detail"]
    assert detail == verdict["detail"]
    match = re.fullmatch(
        r"Composite output would shrink to (\d+)% of requested side length \((\d+)x(\d+) "
        r"from (\d+)x(\d+)\)\. Memory limit MAX_COMPOSITE_MEMORY_BYTES = (\d+) MB; "
        r"COMPOSITE_DOWNSCALE_FAIL_THRESHOLD = 0\.85\. To allow this composite: lower "
        r"COMPOSITE_DOWNSCALE_FAIL_THRESHOLD, raise MAX_COMPOSITE_MEMORY_BYTES, or reduce "
        r"inputs \(fewer files / fewer channels\)\.",
        detail,
    )
    assert match, detail
    pct, new_w, new_h, w, h, mb = map(int, match.groups())
    assert (w, h) == (4096, 3000) and mb == LIMIT_MB
    assert [new_h, new_w] == verdict["output_shape"]
    factor = verdict["side_factor"]
    assert pct == round(factor * 100) and factor < 0.85
    assert abs(new_h - 3000 * factor) <= 1 and abs(new_w - 4096 * factor) <= 1


def test_the_stream_refuses_a_too_large_composite_in_band(small_engine, stream_files):
    base, _ = small_engine
    body = _too_large(stream_files)
    detail = _verdict(base, body)["detail"]
    streamed = stream_composite(base, body)
    assert streamed.terminal == {"event": "error", "detail": detail, "status_code": 413}


def test_force_downscale_renders_and_says_what_it_forced(small_engine, stream_files):
    base, _ = small_engine
    body = _too_large(stream_files)
    verdict = _verdict(base, body)
    new_h, new_w = verdict["output_shape"]
    forced = httpx.post(
        base + "/composite/generate-nchannel",
        json={**body, "allow_force_downscale": True},
        timeout=TIMEOUT,
    )
    assert forced.status_code == 200
    assert forced.headers["x-composite-budget-status"] == "forced"
    assert forced.headers["x-composite-was-downscaled"] == "true"
    assert forced.headers["x-composite-original-shape"] == "3000,4096"
    assert forced.headers["x-composite-output-shape"] == f"{new_h},{new_w}"
    assert forced.headers["x-composite-side-factor"] == f"{verdict['side_factor']:.3f}"
    assert Image.open(io.BytesIO(forced.content)).size == (4096, 3000)


def test_warn_verdict_shrinks_and_says_so(small_engine, stream_files):
    """A size whose shrink factor is at or above the threshold renders with 'warn'."""
    base, _ = small_engine
    found = None
    for side in range(400, 3000, 100):
        body = three_channels(stream_files, width=side, height=side)
        verdict = httpx.post(base + "/composite/estimate", json=body, timeout=TIMEOUT).json()
        if verdict["status"] == "warn":
            found = body, verdict
            break
    assert found, "no size gave a warn verdict"
    body, verdict = found
    assert 0.85 <= verdict["side_factor"] < 1
    r = httpx.post(base + "/composite/generate-nchannel", json=body, timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["x-composite-budget-status"] == "warn"
    shape = verdict["output_shape"]
    assert r.headers["x-composite-output-shape"] == f"{shape[0]},{shape[1]}"
    assert Image.open(io.BytesIO(r.content)).size == (body["width"], body["height"])
    ok = three_channels(stream_files, width=200, height=200)
    small = httpx.post(base + "/composite/estimate", json=ok, timeout=TIMEOUT).json()
    assert small == {
        "status": "ok",
        "original_shape": [200, 200],
        "output_shape": [200, 200],
        "side_factor": 1.0,
        "detail": "",
        "memory_limit_mb": LIMIT_MB,
        "fail_threshold": 0.85,
    }
    r = httpx.post(base + "/composite/generate-nchannel", json=ok, timeout=TIMEOUT)
    assert r.headers["x-composite-budget-status"] == "ok"
    assert "x-composite-was-downscaled" not in r.headers


def test_estimate_file_cap_and_errors(engine_url, stream_files):
    many = {
        "channels": [
            channel([stream_files["f090w"]] * 300, {"hue": 0}),
            channel([stream_files["f200w"]] * 201, {"hue": 120}),
        ]
    }
    r = httpx.post(engine_url + "/composite/estimate", json=many, timeout=TIMEOUT)
    assert r.status_code == 413
    assert r.json()["detail"] == (
        "Estimate input exceeds soft cap: 501 files across 2 channels (limit: 500). Submit "
        "smaller batches or generate without pre-flight."
    )
    for keys, status in (
        (["nope/missing.fits"], 404),
        (["../x.fits"], 403),
        (["bad/not_fits.fits"], 400),
    ):
        r = httpx.post(
            engine_url + "/composite/estimate",
            json={"channels": [channel(keys, {"hue": 0})]},
            timeout=TIMEOUT,
        )
        assert r.status_code == status and isinstance(r.json()["detail"], str)


def test_budget_verdict_worked_example_of_the_contract():
    """§10.1: 3 channels at 3 GB with HEAD's model ((N + 17) x 8 bytes a pixel, 500 MB
    reserve) allow 15 625 000 pixels; about 21.6 Mpx is the edge of 'warn'."""
    per_pixel, fixed, limit = (3 + 17) * 8, 500_000_000, 3_000_000_000
    ok = budget_verdict((3950, 3950), per_pixel, fixed, limit, 0.85)
    assert ok.status == "ok" and ok.headers() == {"X-Composite-Budget-Status": "ok"}
    warn = budget_verdict((4600, 4600), per_pixel, fixed, limit, 0.85)
    assert warn.status == "warn"
    assert warn.side_factor == pytest.approx(np.sqrt(15_625_000 / 4600**2))
    assert warn.output_shape == (int(4600 * warn.side_factor),) * 2
    fail = budget_verdict((4700, 4700), per_pixel, fixed, limit, 0.85)
    assert fail.status == "fail"
    forced = budget_verdict((4700, 4700), per_pixel, fixed, limit, 0.85, allow_force_downscale=True)
    assert (
        forced.status == "forced"
        and forced.headers()["X-Composite-Side-Factor"] == f"{forced.side_factor:.3f}"
    )
    assert "(3952x3952 from 4700x4700)" in fail.detail and "= 3000 MB;" in fail.detail


def test_observation_mosaic_waits_for_the_busy_worker_instead_of_429(
    small_engine, stream_files, data_root
):
    """The one worker is held by a composite; an observation mosaic sent meanwhile waits
    (no 429) and is answered once the worker is free."""
    base, cache = small_engine
    body = {
        "channels": [
            channel([stream_files["f770w"]], {"hue": 0}),
            channel([stream_files["tiles"][6]], {"hue": 120}),
        ],
        "width": 222,
        "height": 111,
    }
    answer: dict = {}

    def mosaic() -> None:
        answer["response"] = httpx.post(
            base + "/mosaic/generate-observation",
            json={"file_paths": stream_files["tiles"][:4]},
            timeout=TIMEOUT,
        )

    with holding(lock_path(body, data_root, cache, 1)):
        holder = StreamThread(base, body)
        holder.start()
        wait_for(lambda: holder.result.stages[-1:] == ["reproject"], "the held composite")
        worker = threading.Thread(target=mosaic, daemon=True)
        worker.start()
        worker.join(1.0)
        assert "response" not in answer  # still waiting: the worker is held
    worker.join(TIMEOUT)
    holder.join(TIMEOUT)
    assert answer["response"].status_code == 200
    assert answer["response"].content.startswith(b"SIMPLE  =")
    assert holder.result.terminal["event"] == "complete"

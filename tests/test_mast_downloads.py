"""Downloads over HTTP and S3, and everything that can go wrong with them."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import mast_env
from tests.support.servers import run_service, s3_storage

F090W = "jw02733-o001_t001_nircam_clear-f090w"
MIRI = "jw02733-o002_t001_miri_f1130w"
TIMEOUT = 60


def standin_file(standin_files: Path, name: str) -> bytes:
    return (standin_files / name).read_bytes()


def wait_done(base: str, job_id: str, timeout: float = 60, until=None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{base}/mast/download/progress-chunked/{job_id}", timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        body = r.json()
        if (until and until(body)) or (until is None and body["is_complete"]):
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {body}")


def control(standin: str, **faults) -> None:
    httpx.post(standin + "/__control", json=faults, timeout=10).raise_for_status()


@pytest.fixture(scope="module")
def standin_files(standin, tmp_path_factory) -> Path:
    # The stand-in writes its product files under <its tmp>/files; find them by name.
    for candidate in Path(tmp_path_factory.getbasetemp()).glob("standin*/files"):
        if (candidate / f"{F090W}_i2d.fits").exists():
            return candidate
    raise AssertionError("stand-in files not found")


def start(base, obs_id=F090W, **extra) -> str:
    r = httpx.post(
        base + "/mast/download/start-chunked",
        json={
            "obs_id": obs_id,
            "product_type": "SCIENCE",
            "resume_job_id": None,
            "calib_level": None,
            **extra,
        },
        timeout=TIMEOUT,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["message"] == "Chunked download started" and body["is_resume"] is False
    assert len(body["job_id"]) == 12
    return body["job_id"]


def test_chunked_download_end_to_end(proxy, standin_files):
    base, root, _ = proxy
    job_id = start(base)
    body = wait_done(base, job_id)
    assert body["stage"] == "complete" and body["error"] is None and body["progress"] == 100
    expected = sorted(
        [f"{F090W}_i2d.fits", f"{F090W}_segm.fits", "jw02733001001_02101_00001_nrca1_cal.fits"]
    )  # x1d spectra dropped
    assert sorted(Path(p).name for p in body["files"]) == expected
    for path in body["files"]:
        assert os.path.isabs(path) and path.startswith(str(root / "mast" / F090W))
        assert Path(path).read_bytes() == standin_file(standin_files, Path(path).name)
    assert not list((root / "mast" / F090W).glob("*.part"))
    sizes = sum(len(standin_file(standin_files, n)) for n in expected)
    assert body["total_bytes"] == sizes and body["downloaded_bytes"] == sizes
    for key in ("progress", "total_files", "downloaded_files", "total_bytes", "downloaded_bytes"):
        assert type(body[key]) is int, key
    assert body["total_files"] == 3 and body["downloaded_files"] == 3
    assert body["is_complete"] is True and body["is_resumable"] is False
    assert body["download_progress_percent"] == 100.0 and body["eta_seconds"] is None
    assert {f["status"] for f in body["file_progress"]} == {"complete"}
    assert all(type(f["total_bytes"]) is int for f in body["file_progress"])
    assert body["started_at"] and body["completed_at"]


def test_calib_level_and_no_products(proxy):
    base, _, _ = proxy
    job = wait_done(base, start(base, MIRI, calib_level=[3]))
    assert [Path(p).name for p in job["files"]] == [f"{MIRI}_i2d.fits", f"{MIRI}_segm.fits"]
    empty = wait_done(base, start(base, "jw05555-o001_t001_miri_f560w"))
    assert empty["stage"] == "failed"
    assert empty["error"].startswith("NO_PRODUCTS:")
    assert empty["files"] == [] and empty["is_complete"] is True


def test_bad_obs_ids_and_unknown_jobs(proxy):
    base, _, _ = proxy
    for bad in ("../etc", "a/b", "x;rm", "", "..", "a" * 201):
        for path in ("/mast/download/start-chunked", "/mast/download/start-s3", "/mast/download"):
            r = httpx.post(base + path, json={"obs_id": bad}, timeout=TIMEOUT)
            assert r.status_code == 422, (path, bad)
            assert isinstance(r.json()["detail"], str)
    assert httpx.get(base + "/mast/download/progress-chunked/abcdef123456").status_code == 404
    assert (
        httpx.get(base + "/mast/download/progress-chunked/abcdef123456").json()["detail"]
        == "Job abcdef123456 not found"
    )
    assert httpx.post(base + "/mast/download/pause/abcdef123456", json={}).status_code == 404
    r = httpx.post(base + "/mast/download/resume/abcdef123456", json={})
    assert r.status_code == 404 and "No resumable state" in r.json()["detail"]
    assert httpx.delete(base + "/mast/download/resumable/abcdef123456").status_code == 404


def test_dropped_connection_is_retried_from_its_offset(proxy, standin, standin_files):
    base, _, _ = proxy
    control(standin, drop_after=20_000)
    body = wait_done(base, start(base, "jw02733-o001_t001_nircam_clear-f187n"))
    assert body["stage"] == "complete", body
    for path in body["files"]:
        assert Path(path).read_bytes() == standin_file(standin_files, Path(path).name)


def test_pause_and_resume_continue_partial_files(proxy, standin, standin_files):
    base, root, _ = proxy
    control(standin, hold_downloads=True, chunk_size=8192)
    try:
        job_id = start(base, "jw02733001001_02101_00001_nrca1")
        wait_done(base, job_id, until=lambda b: b["downloaded_bytes"] > 0)
        r = httpx.post(f"{base}/mast/download/pause/{job_id}", json={}, timeout=TIMEOUT)
        assert r.status_code == 200
        assert r.json() == {"job_id": job_id, "status": "paused", "message": "Download paused"}
        paused = wait_done(base, job_id, until=lambda b: b["stage"] == "paused")
        assert paused["is_complete"] is False and paused["is_resumable"] is True
        parts = list((root / "mast" / "jw02733001001_02101_00001_nrca1").glob("*.part"))
        assert parts, "partial files are kept on pause"
        kept = {p.name: p.stat().st_size for p in parts}
        listed = httpx.get(base + "/mast/download/resumable").json()
        mine = [j for j in listed["jobs"] if j["job_id"] == job_id]
        assert listed["count"] == len(listed["jobs"]) and len(mine) == 1
        assert mine[0]["status"] == "paused" and mine[0]["downloaded_bytes"] >= sum(kept.values())
        assert type(mine[0]["total_bytes"]) is int and type(mine[0]["completed_files"]) is int
    finally:
        control(standin, hold_downloads=False, chunk_size=1 << 20)
    r = httpx.post(f"{base}/mast/download/resume/{job_id}", json={}, timeout=TIMEOUT)
    assert r.json() == {"job_id": job_id, "status": "resuming", "message": "Download resumed"}
    body = wait_done(base, job_id)
    assert body["stage"] == "complete"
    for path in body["files"]:
        assert Path(path).read_bytes() == standin_file(standin_files, Path(path).name)
    r = httpx.post(f"{base}/mast/download/resume/{job_id}", json={}, timeout=TIMEOUT)
    assert r.status_code == 400 and "not resumable (status: complete)" in r.json()["detail"]


def test_concurrent_resume_is_409_and_progress_from_any_worker(proxy, standin):
    base, _, _ = proxy
    control(standin, hold_downloads=True, chunk_size=8192)
    try:
        job_id = start(base, MIRI)
        wait_done(base, job_id, until=lambda b: b["downloaded_bytes"] > 0)
        httpx.post(f"{base}/mast/download/pause/{job_id}", json={}, timeout=TIMEOUT)
        wait_done(base, job_id, until=lambda b: b["stage"] == "paused")
        first = httpx.post(f"{base}/mast/download/resume/{job_id}", json={}, timeout=TIMEOUT)
        second = httpx.post(f"{base}/mast/download/resume/{job_id}", json={}, timeout=TIMEOUT)
        assert first.status_code == 200
        assert second.status_code == 409, second.text
        assert second.json()["detail"] == f"Job {job_id} is already being resumed"
        again = httpx.post(
            base + "/mast/download/start-chunked",
            json={"obs_id": MIRI, "resume_job_id": job_id},
            timeout=TIMEOUT,
        )
        assert again.status_code == 409
        # Fresh connections spread over both uvicorn workers: every answer is 200.
        answers = [
            httpx.get(f"{base}/mast/download/progress-chunked/{job_id}").status_code
            for _ in range(20)
        ]
        assert answers == [200] * 20
    finally:
        control(standin, hold_downloads=False, chunk_size=1 << 20)
    assert wait_done(base, job_id)["stage"] == "complete"


def test_a_job_still_asking_for_its_products_is_not_started_twice(proxy, standin, standin_files):
    """start-chunked naming a job that runs but has no byte yet (queued, fetching its
    product list) is 409, as for a downloading one; it once started a second job
    writing into the same folder."""
    base, _, _ = proxy
    # An observation no other test downloads: the proxy keeps product lists for a
    # while, and a cached list would never wait on MAST.
    obs = "jw02733-o009_t001_nircam_clear-f200w"
    control(standin, hold_invoke=True)
    try:
        job_id = start(base, obs)
        wait_done(base, job_id, until=lambda b: b["stage"] == "fetching_products")
        again = httpx.post(
            base + "/mast/download/start-chunked",
            json={"obs_id": obs, "resume_job_id": job_id},
            timeout=TIMEOUT,
        )
        assert again.status_code == 409, again.text
        assert again.json()["detail"] == f"Job {job_id} is already being resumed"
        resumed = httpx.post(f"{base}/mast/download/resume/{job_id}", json={}, timeout=TIMEOUT)
        assert resumed.status_code == 409, resumed.text
    finally:
        control(standin, hold_invoke=False)
    body = wait_done(base, job_id)
    assert body["stage"] == "complete"
    for path in body["files"]:
        assert Path(path).read_bytes() == standin_file(standin_files, Path(path).name)


def test_dismiss_with_files_deletes_them_and_forgets_the_job(proxy):
    base, root, _ = proxy
    job_id = start(base, "jw02733-o001_t001_nircam_clear-f187n")
    done = wait_done(base, job_id)
    assert done["stage"] == "complete"
    r = httpx.delete(f"{base}/mast/download/resumable/{job_id}", params={"delete_files": "true"})
    assert r.json() == {"job_id": job_id, "dismissed": True, "deleted_files": len(done["files"])}
    assert not any(Path(p).exists() for p in done["files"])
    assert httpx.get(f"{base}/mast/download/progress-chunked/{job_id}").status_code == 404


def test_cancelling_a_finished_job_stops_nothing_and_says_so(proxy, standin_files):
    base, _, _ = proxy
    job_id = start(base, "jw02733-o001_t001_nircam_clear-f187n")
    done = wait_done(base, job_id)
    assert done["stage"] == "complete"
    r = httpx.post(f"{base}/mast/download/cancel/{job_id}", json={}, timeout=TIMEOUT)
    assert r.status_code == 200
    assert r.json() == {
        "job_id": job_id,
        "status": "complete",
        "message": "Download already complete; nothing to cancel",
    }
    after = wait_done(base, job_id)
    assert after["stage"] == "complete" and after["files"] == done["files"]
    for path in after["files"]:
        assert Path(path).read_bytes() == standin_file(standin_files, Path(path).name)
    httpx.delete(f"{base}/mast/download/resumable/{job_id}", params={"delete_files": "true"})


def test_cancel_removes_only_its_own_partial_files(proxy, standin):
    base, _, _ = proxy
    control(standin, hold_downloads=True, chunk_size=8192)
    try:
        job_id = start(base, F090W)
        body = wait_done(base, job_id, until=lambda b: b["downloaded_bytes"] > 0)
        # A partial file in the same folder that belongs to no file of this job.
        foreign = Path(body["download_dir"]) / "another_job_i2d.fits.part"
        foreign.write_bytes(b"someone else's bytes")
        r = httpx.post(f"{base}/mast/download/cancel/{job_id}", json={}, timeout=TIMEOUT)
        assert r.json()["status"] == "cancelled"
        body = wait_done(base, job_id)
        assert body["stage"] == "cancelled"
        assert not list(Path(body["download_dir"]).glob(f"{F090W}*.part"))  # its own: gone
        assert foreign.read_bytes() == b"someone else's bytes"
        foreign.unlink()
    finally:
        control(standin, hold_downloads=False, chunk_size=1 << 20)


def test_one_download_writes_into_an_observation_at_a_time(proxy, standin, standin_files):
    """Two jobs (or a job and a synchronous download) of one observation would append
    to the same .part files; the second is refused with a clear reason, and can be
    resumed once the first is done."""
    base, _, _ = proxy
    obs = "jw02733-o001_t001_nircam_clear-f187n"
    control(standin, hold_downloads=True, chunk_size=8192)
    try:
        first = start(base, obs)
        wait_done(base, first, until=lambda b: b["downloaded_bytes"] > 0)
        second = wait_done(base, start(base, obs))
        assert second["stage"] == "failed" and second["is_resumable"] is True
        assert second["error"].startswith(f"Another download of {obs} is running")
        sync = httpx.post(base + "/mast/download", json={"obs_id": obs}, timeout=TIMEOUT)
        assert sync.status_code == 200
        assert sync.json()["status"] == "failed" and "Another download" in sync.json()["error"]
    finally:
        control(standin, hold_downloads=False, chunk_size=1 << 20)
    done = wait_done(base, first)
    assert done["stage"] == "complete"
    for path in done["files"]:
        assert Path(path).read_bytes() == standin_file(standin_files, Path(path).name)
    r = httpx.post(f"{base}/mast/download/resume/{second['job_id']}", json={}, timeout=TIMEOUT)
    assert r.status_code == 200
    assert wait_done(base, second["job_id"])["stage"] == "complete"


def test_synchronous_download_time_limit_stops_its_transfers(standin, tmp_path):
    env = mast_env(standin, tmp_path, MAST_DOWNLOAD_TIMEOUT=1)
    control(standin, chunk_delay=0.05, chunk_size=8192)
    try:
        with run_service("main_mast", env, tmp_path / "p.log") as (base, _):
            r = httpx.post(base + "/mast/download", json={"obs_id": F090W}, timeout=TIMEOUT)
            assert r.status_code == 504
            assert r.json()["detail"].startswith("Download timed out after 1 seconds.")
            folder = tmp_path / "mast" / F090W
            # The transfers stopped before the answer (and before the folder's lock
            # was given back): nothing writes into the folder any more.
            sizes = {p: p.stat().st_size for p in folder.glob("*.part")}
            assert sizes, "the partial files stay for the next attempt"
            time.sleep(1.0)
            assert sizes == {p: p.stat().st_size for p in folder.glob("*.part")}
            job_id = start(base, F090W)  # the observation's folder is free again
            body = wait_done(base, job_id, until=lambda b: b["downloaded_bytes"] > 0)
            assert body["stage"] == "downloading"
    finally:
        control(standin, chunk_delay=0.0, chunk_size=1 << 20)


def test_synchronous_download(proxy, standin_files):
    base, root, _ = proxy
    r = httpx.post(
        base + "/mast/download", json={"obs_id": MIRI, "product_id": "_i2d"}, timeout=TIMEOUT
    )
    body = r.json()
    assert body["status"] == "completed" and body["file_count"] == 1 and body["error"] is None
    assert Path(body["files"][0]).read_bytes() == standin_file(standin_files, f"{MIRI}_i2d.fits")
    none = httpx.post(
        base + "/mast/download", json={"obs_id": "jw05555-o001_t001_miri_f560w"}, timeout=TIMEOUT
    ).json()
    assert none["status"] == "failed" and none["error"].startswith("NO_PRODUCTS:")


def test_unwritable_target_fails_cleanly(standin, tmp_path):
    (tmp_path / "mast").mkdir()
    (tmp_path / "mast" / MIRI).write_text("a file where the folder should be")
    with run_service("main_mast", mast_env(standin, tmp_path), tmp_path / "p.log") as (base, _):
        body = wait_done(base, start(base, MIRI))
    assert body["stage"] == "failed" and "Cannot create" in body["error"]
    assert body["files"] == []


def test_disk_full_fails_cleanly_without_corrupt_files(standin, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(small)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        env = mast_env(standin, small, MAST_MIN_FREE_BYTES=0)
        with run_service("main_mast", env, tmp_path / "p.log") as (base, _):
            body = wait_done(base, start(base, F090W))
        assert body["stage"] == "failed" and body["error"].startswith("Disk full")
        assert "MB are free" in body["error"]
        finals = [p for p in (small / "mast" / F090W).iterdir() if not p.name.endswith(".part")]
        for final in finals:  # whatever is complete is whole
            assert final.stat().st_size == next(
                f["total_bytes"] for f in body["file_progress"] if f["filename"] == final.name
            )
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_killed_proxy_leaves_a_resumable_job(standin, standin_files, tmp_path):
    env = mast_env(standin, tmp_path)
    control(standin, hold_downloads=True, chunk_size=8192)
    try:
        with run_service("main_mast", env, tmp_path / "a.log") as (base, proc):
            job_id = start(base, F090W)
            wait_done(base, job_id, until=lambda b: b["downloaded_bytes"] > 0)
            os.killpg(proc.pid, signal.SIGKILL)  # no goodbye: a crash
            proc.wait(10)
    finally:
        control(standin, hold_downloads=False, chunk_size=1 << 20)
    with run_service("main_mast", env, tmp_path / "b.log") as (base, _):
        body = httpx.get(f"{base}/mast/download/progress-chunked/{job_id}").json()
        assert body["stage"] == "failed" and body["is_resumable"] is True
        assert body["is_complete"] is True and "resume" in body["error"]
        jobs = httpx.get(base + "/mast/download/resumable").json()["jobs"]
        assert [j["job_id"] for j in jobs] == [job_id]
        assert jobs[0]["downloaded_bytes"] > 0
        r = httpx.post(f"{base}/mast/download/resume/{job_id}", json={}, timeout=TIMEOUT)
        assert r.status_code == 200
        done = wait_done(base, job_id)
    assert done["stage"] == "complete"
    for path in done["files"]:
        assert Path(path).read_bytes() == standin_file(standin_files, Path(path).name)


def test_orphaned_part_files_are_cleaned_at_start(standin, tmp_path):
    orphan = tmp_path / "mast" / "jw00001-o001_t001_nircam_clear-f090w" / "x_i2d.fits.part"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"partial")
    with run_service("main_mast", mast_env(standin, tmp_path), tmp_path / "p.log"):
        pass
    assert not orphan.exists()


# ------------------------------------------------------------------------------------------
# S3: the public archive bucket on a real S3 server (SeaweedFS)
# ------------------------------------------------------------------------------------------


def test_s3_download_from_public_bucket(standin, standin_files, seaweedfs, tmp_path):
    endpoint, client = seaweedfs
    from app.mast.mast_service import default_archive_key

    names = [f"{MIRI}_i2d.fits", f"{MIRI}_segm.fits", "jw02733001001_02101_00001_nrca1_cal.fits"]
    for name in names:
        obs = name.rsplit("_", 1)[0]
        client.put_object(
            Bucket="stpubdata",
            Key=default_archive_key(obs, name),
            Body=standin_file(standin_files, name),
        )
    env = mast_env(
        standin,
        tmp_path,
        MAST_S3_ENDPOINT=endpoint,
        **s3_storage(endpoint, tmp_path / "cache"),
    )
    with run_service("main_mast", env, tmp_path / "p.log") as (base, _):
        r = httpx.post(
            base + "/mast/download/start-s3",
            json={"obs_id": MIRI, "product_type": "SCIENCE", "calib_level": None},
            timeout=TIMEOUT,
        )
        assert r.json()["download_source"] == "s3" and r.json()["message"] == "S3 download started"
        body = wait_done(base, r.json()["job_id"])
    assert body["stage"] == "complete", body
    assert sorted(Path(p).name for p in body["files"]) == sorted(names)
    assert body["is_resumable"] is False
    for path in body["files"]:
        name = Path(path).name
        assert Path(path).read_bytes() == standin_file(standin_files, name)
        # Persisted through the storage provider: uploaded to the app bucket.
        stored = client.get_object(Bucket="jwst-data", Key=f"mast/{MIRI}/{name}")["Body"].read()
        assert hashlib.sha256(stored).digest() == hashlib.sha256(Path(path).read_bytes()).digest()


def test_s3_missing_object_fails_the_job(standin, seaweedfs, tmp_path):
    endpoint, _ = seaweedfs
    env = mast_env(standin, tmp_path, MAST_S3_ENDPOINT=endpoint)
    with run_service("main_mast", env, tmp_path / "p.log") as (base, _):
        r = httpx.post(
            base + "/mast/download/start-s3",
            json={"obs_id": "jw02733-o001_t001_nircam_clear-f187n"},
            timeout=TIMEOUT,
        )
        body = wait_done(base, r.json()["job_id"])
    assert body["stage"] == "failed" and "Not in the public bucket" in body["error"]


def test_s3_parts_are_pinned_to_one_object_version(seaweedfs, tmp_path):
    """An object replaced between two parts fails the file (412 on IfMatch) instead of
    stitching two versions together."""
    from app.mast.part_file import DownloadFailed
    from app.mast.s3_transfer import describe_object, download_object, make_archive_client

    endpoint, client = seaweedfs
    key = "jwst/public/jw09999/pinned/pinned_i2d.fits"
    first, second = os.urandom(3 * 65536), os.urandom(3 * 65536)
    client.put_object(Bucket="stpubdata", Key=key, Body=first)
    archive = make_archive_client(endpoint, "us-east-1")
    obj = describe_object(archive, "stpubdata", key)
    assert obj.size == len(first) and obj.etag

    replaced = []

    def replace_after_first_part(n: int) -> None:
        if not replaced:
            client.put_object(Bucket="stpubdata", Key=key, Body=second)
            replaced.append(n)

    final = tmp_path / "pinned_i2d.fits"
    with pytest.raises(DownloadFailed, match="changed in the bucket"):
        download_object(
            archive,
            obj,
            final,
            on_bytes=replace_after_first_part,
            should_stop=lambda: False,
            part_size=65536,
            parallel=1,
        )
    assert replaced and not final.exists()
    # The unchanged object downloads whole, part by part.
    obj = describe_object(archive, "stpubdata", key)
    assert download_object(
        archive,
        obj,
        final,
        on_bytes=lambda n: None,
        should_stop=lambda: False,
        part_size=65536,
        parallel=2,
    ) == len(second)
    assert final.read_bytes() == second


def test_s3_parts_retry_with_jittered_backoff(seaweedfs, tmp_path, monkeypatch):
    from botocore.exceptions import EndpointConnectionError

    from app.mast import s3_transfer

    endpoint, client = seaweedfs
    key = "jwst/public/jw09999/flaky/flaky_i2d.fits"
    data = os.urandom(100_000)
    client.put_object(Bucket="stpubdata", Key=key, Body=data)
    archive = s3_transfer.make_archive_client(endpoint, "us-east-1")
    obj = s3_transfer.describe_object(archive, "stpubdata", key)
    real_get, failures = archive.get_object, []

    def flaky_get(**kwargs):
        assert kwargs["IfMatch"] == obj.etag
        if len(failures) < 2:
            failures.append(kwargs["Range"])
            raise EndpointConnectionError(endpoint_url=endpoint)
        return real_get(**kwargs)

    bounds, sleeps = [], []
    monkeypatch.setattr(archive, "get_object", flaky_get)
    monkeypatch.setattr(
        s3_transfer.random, "uniform", lambda low, high: bounds.append((low, high)) or high / 2
    )
    monkeypatch.setattr(s3_transfer.time, "sleep", sleeps.append)
    final = tmp_path / "flaky_i2d.fits"
    s3_transfer.download_object(
        archive, obj, final, on_bytes=lambda n: None, should_stop=lambda: False, backoff=0.1
    )
    assert final.read_bytes() == data
    assert bounds == [(0, 0.1), (0, 0.2)]  # full jitter over an exponential ceiling
    assert sleeps == [0.05, 0.1]

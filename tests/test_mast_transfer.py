"""The blocking HTTP transfer layer (``transport``, ``http_transfer``, ``part_file``)
against scripted servers on 127.0.0.1 that misbehave in the ways real servers do:
chunked bodies, redirects (allowed and not), dropped connections, stalls, silence,
ignored ranges, ranges that start elsewhere, bodies longer than declared."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest
from urllib3.util import parse_url

from app.mast import transport
from app.mast.http_transfer import Connection, FileTarget, download_file, fetch_size
from app.mast.part_file import (
    WRITEBACK_EVERY,
    DownloadFailed,
    DownloadStopped,
    PartFile,
    exclusive_folder,
)
from app.mast.stopping import StopReason, StopSignal
from app.mast.transport import RedirectPolicy

DATA = os.urandom(3 * 1024 * 1024 + 12345)


class ScriptedServer:
    """Answers each request by its path; records the requests it saw."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Range
        self.headers: list[dict[str, str]] = []
        self.calls: dict[str, int] = {}
        self.release = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                piece = conn.recv(4096)
                if not piece:
                    return
                head += piece
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {
                k.lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if ":" in line)
            }
            self.requests.append((method, path, headers.get("range")))
            self.headers.append(headers)
            self.calls[path] = self.calls.get(path, 0) + 1
            try:
                getattr(self, "_" + path.strip("/").split("?")[0].replace("-", "_"))(
                    conn, method, headers, self.calls[path]
                )
            except (BrokenPipeError, ConnectionResetError):
                pass

    # -- behaviours -----------------------------------------------------------------------------
    @staticmethod
    def _send_range(conn, method, headers, always_full=False) -> None:
        start = 0
        match = re.match(r"bytes=(\d+)-$", headers.get("range", ""))
        if match and not always_full:
            start = int(match.group(1))
            conn.sendall(
                f"HTTP/1.1 206 Partial Content\r\nContent-Length: {len(DATA) - start}"
                f"\r\nContent-Range: bytes {start}-{len(DATA) - 1}/{len(DATA)}"
                "\r\n\r\n".encode()
            )
        else:
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(DATA)}\r\n\r\n".encode())
        if method != "HEAD":
            conn.sendall(DATA[start:])

    def _data(self, conn, method, headers, n) -> None:
        self._send_range(conn, method, headers)

    def _redirect(self, conn, method, headers, n) -> None:
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /data\r\nContent-Length: 0\r\n\r\n")

    def _chunked(self, conn, method, headers, n) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        position, sizes = 0, [1, 7, 65536, 300000, 3]
        while position < len(DATA):
            size = min(sizes[position % len(sizes)], len(DATA) - position)
            conn.sendall(
                f"{size:x};ext=1\r\n".encode() + DATA[position : position + size] + b"\r\n"
            )
            position += size
        conn.sendall(b"0\r\nX-Trailer: yes\r\n\r\n")

    def _until_close(self, conn, method, headers, n) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n" + DATA)

    def _drop_once(self, conn, method, headers, n) -> None:
        if n == 1:  # announces everything, sends a third, hangs up
            conn.sendall(
                f"HTTP/1.1 200 OK\r\nContent-Length: {len(DATA)}\r\n\r\n".encode()
                + DATA[: len(DATA) // 3]
            )
            return
        self._send_range(conn, method, headers)

    def _ignores_range(self, conn, method, headers, n) -> None:
        if n == 1:
            conn.sendall(
                f"HTTP/1.1 200 OK\r\nContent-Length: {len(DATA)}\r\n\r\n".encode() + DATA[:1000]
            )
            return
        self._send_range(conn, method, headers, always_full=True)

    def _stall(self, conn, method, headers, n) -> None:
        conn.sendall(
            f"HTTP/1.1 200 OK\r\nContent-Length: {len(DATA)}\r\n\r\n".encode() + DATA[:1000]
        )
        self.release.wait(30)

    def _silent(self, conn, method, headers, n) -> None:
        self.release.wait(30)

    def _garbage(self, conn, method, headers, n) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")

    def _missing(self, conn, method, headers, n) -> None:
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nNot Found")

    def _wrong_range(self, conn, method, headers, n) -> None:
        """Answers every range request with bytes from 0, labelled as such."""
        conn.sendall(
            f"HTTP/1.1 206 Partial Content\r\nContent-Length: {len(DATA)}\r\n"
            f"Content-Range: bytes 0-{len(DATA) - 1}/{len(DATA)}\r\n\r\n".encode()
            + DATA
        )

    def _range_disagrees(self, conn, method, headers, n) -> None:
        """A Content-Range and a Content-Length that cannot both be true."""
        start = int(re.match(r"bytes=(\d+)-", headers["range"]).group(1))
        conn.sendall(
            f"HTTP/1.1 206 Partial Content\r\nContent-Length: {len(DATA)}\r\n"
            f"Content-Range: bytes {start}-{len(DATA) - 1}/{len(DATA)}\r\n\r\n".encode()
            + DATA[start:]
            + DATA[:start]
        )

    def _too_long(self, conn, method, headers, n) -> None:
        """A chunked 206 that sends more than its Content-Range declares."""
        start = int(re.match(r"bytes=(\d+)-", headers["range"]).group(1))
        conn.sendall(
            f"HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n"
            f"Content-Range: bytes {start}-{len(DATA) - 1}/{len(DATA)}\r\n\r\n".encode()
        )
        body = DATA[start:] + b"extra bytes"
        conn.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")

    def _redirect_to(self, conn, method, headers, n) -> None:
        conn.sendall(
            f"HTTP/1.1 302 Found\r\nLocation: {self.elsewhere}\r\n"
            "Content-Length: 0\r\n\r\n".encode()
        )

    def _flaky(self, conn, method, headers, n) -> None:
        if n <= 2:
            conn.sendall(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy")
            return
        self._send_range(conn, method, headers)


@pytest.fixture()
def server():
    running = ScriptedServer()
    yield running
    running.close()


def connection(*servers, stop=None) -> Connection:
    """Transfers allowed to reach these servers only."""
    policy = RedirectPolicy.for_archive(
        servers[0].base, [s.base.split("//")[1] for s in servers[1:]]
    )
    return Connection(policy, stop or StopSignal())


def fetch(server, path, tmp_path, *, allow=(), **kwargs) -> tuple[Path, list[int]]:
    target = FileTarget(
        url=server.base + path,
        final_path=tmp_path / "out.fits",
        expected_size=kwargs.pop("expected_size", 0),
    )
    progress: list[int] = []
    size = download_file(
        target, connection(server, *allow), on_bytes=progress.append, backoff=0.01, **kwargs
    )
    assert size == len(DATA)
    return target.final_path, progress


@pytest.mark.parametrize("path", ["/data", "/redirect", "/chunked", "/until-close"])
def test_bodies_arrive_whole(server, tmp_path, path):
    final, progress = fetch(server, path, tmp_path)
    assert final.read_bytes() == DATA
    assert sum(progress) == len(DATA)
    assert not (tmp_path / "out.fits.part").exists()


def test_dropped_connection_resumes_from_its_offset(server, tmp_path):
    final, progress = fetch(server, "/drop-once", tmp_path, expected_size=len(DATA))
    assert final.read_bytes() == DATA
    ranges = [r for m, p, r in server.requests if p == "/drop-once"]
    assert ranges == [None, f"bytes={len(DATA) // 3}-"]
    assert sum(progress) == len(DATA)


def test_a_server_ignoring_ranges_restarts_the_file(server, tmp_path):
    final, progress = fetch(server, "/ignores-range", tmp_path, expected_size=len(DATA))
    assert final.read_bytes() == DATA
    assert -1000 in progress and sum(progress) == len(DATA)  # the restart is reported


def test_5xx_is_retried(server, tmp_path):
    final, _ = fetch(server, "/flaky", tmp_path, retries=3)
    assert final.read_bytes() == DATA and server.calls["/flaky"] == 3


def test_pause_during_a_stall_is_prompt_and_keeps_the_partial_file(server, tmp_path):
    """The server sends 1000 bytes and then nothing: a stop wakes the blocked read at
    once (it shuts the socket down) instead of waiting for the 120 s read timeout."""
    signal = StopSignal()
    target = FileTarget(url=server.base + "/stall", final_path=tmp_path / "out.fits")

    def stop_once_bytes_arrived(n: int) -> None:
        threading.Timer(0.2, signal.stop, args=(StopReason.PAUSE,)).start()

    t0 = time.monotonic()
    with pytest.raises(DownloadStopped):
        download_file(target, connection(server, stop=signal), on_bytes=stop_once_bytes_arrived)
    assert time.monotonic() - t0 < transport.READ_TIMEOUT / 4
    assert not server.release.is_set()  # the server was still stalling
    assert (tmp_path / "out.fits.part").read_bytes() == DATA[:1000]
    assert not target.final_path.exists()


def test_silence_times_out_then_fails(server, tmp_path, monkeypatch):
    monkeypatch.setattr(transport, "READ_TIMEOUT", 0.6)
    with pytest.raises(DownloadFailed, match=r"no answer in time.*after 1 retries"):
        fetch(server, "/silent", tmp_path, retries=1)
    assert server.calls["/silent"] == 2


def test_permanent_failures_are_not_retried(server, tmp_path):
    with pytest.raises(DownloadFailed, match="Not found on MAST: out.fits"):
        fetch(server, "/missing", tmp_path)
    assert server.calls["/missing"] == 1
    with pytest.raises(DownloadFailed, match="Cannot reach MAST"):
        fetch_size(
            "http://127.0.0.1:1/nothing-listens-here",
            Connection(RedirectPolicy.for_archive("http://127.0.0.1:1")),
        )


def test_a_malformed_answer_is_a_transient_failure(server, tmp_path):
    """An odd status line is a typed, retried failure (no ValueError escapes)."""
    with pytest.raises(DownloadFailed, match=r"not an HTTP/1.x response.*after 2 retries"):
        fetch(server, "/garbage", tmp_path, retries=2)
    assert server.calls["/garbage"] == 3


def test_a_range_that_starts_elsewhere_is_never_written(server, tmp_path):
    (tmp_path / "out.fits.part").write_bytes(DATA[:1000])
    for path in ("/wrong-range", "/range-disagrees"):
        with pytest.raises(DownloadFailed, match="server sent bytes from 0|disagree"):
            fetch(server, path, tmp_path, retries=1, expected_size=len(DATA))
        assert (tmp_path / "out.fits.part").read_bytes() == DATA[:1000]
        assert not (tmp_path / "out.fits").exists()


def test_a_body_longer_than_declared_is_taken_back_out(server, tmp_path):
    (tmp_path / "out.fits.part").write_bytes(DATA[:1000])
    progress: list[int] = []
    target = FileTarget(server.base + "/too-long", tmp_path / "out.fits", len(DATA))
    with pytest.raises(DownloadFailed, match="more bytes than it announced"):
        download_file(target, connection(server), on_bytes=progress.append, retries=1, backoff=0.01)
    assert (tmp_path / "out.fits.part").read_bytes() == DATA[:1000]
    assert sum(progress) == 0  # every byte reported was reported back
    assert server.calls["/too-long"] == 2


@pytest.fixture()
def elsewhere():
    other = ScriptedServer()
    yield other
    other.close()


def test_redirects_go_only_to_allowed_hosts(server, elsewhere, tmp_path):
    server.elsewhere = elsewhere.base + "/data"
    with pytest.raises(DownloadFailed, match="not an archive download host"):
        fetch(server, "/redirect-to", tmp_path)
    assert server.calls["/redirect-to"] == 1  # a refusal is not retried
    assert elsewhere.requests == []  # nothing was sent there
    # Allowed (MAST_DOWNLOAD_HOSTS): followed, without the caller's headers.
    policy = RedirectPolicy.for_archive(server.base, [elsewhere.base.split("//")[1]])
    with transport.request(
        server.base + "/redirect-to",
        policy=policy,
        headers={"Authorization": "secret"},
        range_from=5,
    ) as response:
        assert response.status == 206 and response.read(10) == DATA[5:15]
    assert server.headers[-1]["authorization"] == "secret"
    assert "authorization" not in elsewhere.headers[-1]
    assert elsewhere.headers[-1]["range"] == "bytes=5-"  # the range is ours: kept


def test_redirect_policy_never_downgrades_and_rejects_odd_urls():
    policy = RedirectPolicy.for_archive("https://mast.example.org", ["dl.example.org"])
    here = parse_url("https://mast.example.org/api/file")
    assert policy.follow(here, "https://dl.example.org/x").host == "dl.example.org"
    assert policy.follow(here, "/other").host == "mast.example.org"
    for location, reason in [
        ("http://dl.example.org/x", "from https to http"),
        ("https://evil.example.com/x", "not an archive download host"),
        ("https://dl.example.org:8443/x", "not an archive download host"),
        ("ftp://dl.example.org/x", "unsupported URL"),
        ("https://dl.example.org:99999/x", "invalid URL"),
    ]:
        with pytest.raises(transport.Refused, match=reason):
            policy.follow(here, location)


def test_the_server_size_wins_over_a_stale_catalogue_size(server, tmp_path):
    final, _ = fetch(server, "/data", tmp_path, expected_size=len(DATA) - 10)
    assert final.read_bytes() == DATA


def test_a_stale_longer_part_file_is_discarded(server, tmp_path):
    (tmp_path / "out.fits.part").write_bytes(os.urandom(len(DATA) + 5))
    final, progress = fetch(server, "/data", tmp_path, expected_size=len(DATA))
    assert final.read_bytes() == DATA
    assert progress[0] == -(len(DATA) + 5)


def test_head_gives_the_size(server):
    assert fetch_size(server.base + "/data", connection(server)) == len(DATA)
    assert server.requests[-1][0] == "HEAD"
    with pytest.raises(DownloadFailed, match="Not found"):
        fetch_size(server.base + "/missing", connection(server))


def test_requests_cannot_be_smuggled(server):
    policy = RedirectPolicy.for_archive(server.base)
    with pytest.raises(transport.Refused, match="control characters"):
        transport.request(server.base + "/a b\r\nX: y", policy=policy)
    with pytest.raises(transport.Refused):
        transport.request(server.base + "/data", policy=policy, headers={"X": "a\r\nY: b"})
    with pytest.raises(transport.Refused, match="unsupported URL"):
        transport.request("file:///etc/passwd", policy=policy)
    assert server.requests == []


def test_part_file_writes_resumes_and_finalises(tmp_path):
    final = tmp_path / "f.fits"
    blob = os.urandom(2 * WRITEBACK_EVERY + 17)
    with PartFile(final) as out:
        out.write(blob[: WRITEBACK_EVERY + 5])
    with PartFile(final, offset=WRITEBACK_EVERY + 5) as out:  # a resumed download appends
        out.write(blob[WRITEBACK_EVERY + 5 :])
        assert out.size() == len(blob)
        out.finalise()
    assert final.read_bytes() == blob and not (tmp_path / "f.fits.part").exists()
    with PartFile(tmp_path / "g.fits", size=10) as out:  # preallocated for parallel parts
        out.pwrite(b"world", 5)
        out.pwrite(b"hello", 0)
        out.finalise()
    assert (tmp_path / "g.fits").read_bytes() == b"helloworld"
    with pytest.raises(DownloadFailed, match="Cannot create|not a folder"):
        PartFile(final / "inside-a-file.fits")


def test_one_download_per_folder(tmp_path):
    with exclusive_folder(tmp_path, "obs-1"):
        with pytest.raises(DownloadFailed, match="Another download of obs-1 is running"):
            with exclusive_folder(tmp_path, "obs-1"):
                pass
    with exclusive_folder(tmp_path, "obs-1"):  # released on exit
        pass


def test_an_unexpected_error_fails_its_file_while_the_others_finish(tmp_path):
    """No transfer thread may outlive its job: one file's surprise must not end the job
    (and release its folder) while the other files are still being written."""
    import asyncio

    from app.config import load_settings
    from app.mast import download_jobs
    from app.mast.job_store import FileRow
    from app.mast.mast_service import MastService
    from app.storage.local_storage import LocalStorage

    finished = []

    class Surprising:
        source, parallel_files, keeps_partial_files = "http", 3, True

        def transfer(self, file):
            final_path = file.final_path
            if final_path.name == "bad.fits":
                raise RuntimeError("surprise")
            time.sleep(0.3)
            final_path.write_bytes(b"x" * 10)
            finished.append(final_path.name)
            return 10

    settings = load_settings(STORAGE_BASE_PATH=tmp_path, MAST_BASE_URL="http://127.0.0.1:9")
    manager = download_jobs.DownloadManager(
        settings, LocalStorage(tmp_path), MastService(settings.MAST_BASE_URL)
    )
    rows = [
        FileRow(filename=name, uri=f"mast:JWST/product/{name}", total_bytes=10)
        for name in ("bad.fits", "good.fits")
    ]
    recorder = download_jobs.Recorder(manager.store, None, rows)
    try:
        outcome = asyncio.run(
            manager._transfer_all(Surprising(), tmp_path, rows, recorder, StopSignal())
        )
    finally:
        manager.transfers.shutdown(wait=True)
    assert finished == ["good.fits"] and outcome.complete == [str(tmp_path / "good.fits")]
    assert outcome.failed == {"bad.fits": "bad.fits: RuntimeError: surprise"}

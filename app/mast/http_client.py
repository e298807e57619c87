"""A small blocking HTTP/1.1 client for file transfers, one thread per file.

Why not aiohttp or requests: a download is a long run of "read from the socket,
write to the file". Here each file's thread calls ``recv_into`` on one reusable
buffer and ``os.write`` on it; both release the GIL, so three transfers and the
web server's event loop run side by side with no per-chunk allocation, no extra
copy and no event-loop hop per chunk. Measured on loopback, that is as fast as
``curl``; aiohttp on its own event-loop thread reached about half of it.

Scope: ``GET``/``HEAD`` over ``http``/``https`` (system CA certificates), one
request per connection (``Connection: close``), redirects followed (at most
:data:`MAX_REDIRECTS`, http/https only), bodies framed by ``Content-Length``,
``Transfer-Encoding: chunked`` or the end of the connection. Compressed
encodings are never asked for. Reads wake up every :data:`POLL_SECONDS` so that a
``should_stop`` request is honoured promptly even when the server stalls.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Callable
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 5
MAX_HEAD_BYTES = 64 * 1024
POLL_SECONDS = 0.5
USER_AGENT = "jwst-mast-proxy"
_REDIRECTS = (301, 302, 303, 307, 308)


class HttpError(ConnectionError):
    """A transport failure (refused, reset, timed out, malformed); worth retrying."""


class Stopped(Exception):
    """``should_stop`` turned true while waiting for the server."""


def _never() -> bool:
    return False


class Response:
    """Status, lower-cased headers and a body read with :meth:`readinto`."""

    def __init__(self, sock: socket.socket, status: int, headers: dict[str, str],
                 leftover: bytes, method: str, read_timeout: float,
                 should_stop: Callable[[], bool]) -> None:
        self.sock = sock
        self.status = status
        self.headers = headers
        self._buffer = bytearray(leftover)
        self._read_timeout = read_timeout
        self._should_stop = should_stop
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._chunk_left = 0
        self._done = False
        length = headers.get("content-length")
        self.remaining: int | None = None  # bytes of the body still to come, if known
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            self._done = True
        elif not self._chunked and length is not None:
            try:
                self.remaining = int(length)
            except ValueError:
                raise HttpError(f"bad Content-Length {length!r}") from None
            self._done = self.remaining == 0

    # -- socket reads that honour stop requests and the read timeout -------------------------
    def _recv_into(self, view: memoryview) -> int:
        idle_since = time.monotonic()
        while True:
            try:
                return self.sock.recv_into(view)
            except (socket.timeout, ssl.SSLWantReadError):
                if self._should_stop():
                    raise Stopped() from None
                if time.monotonic() - idle_since > self._read_timeout:
                    raise HttpError(f"no data for {self._read_timeout:.0f} s") from None
            except OSError as exc:
                raise HttpError(f"connection lost: {exc.strerror or exc}") from None

    def _fill(self) -> bool:
        """Append what the socket has to the internal buffer; False at end of stream."""
        scratch = bytearray(65536)
        n = self._recv_into(memoryview(scratch))
        self._buffer += scratch[:n]
        return n > 0

    def _read_line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise HttpError("malformed chunked body")
            if not self._fill():
                raise HttpError("connection closed inside a chunked body")
        line, _, rest = bytes(self._buffer).partition(b"\r\n")
        self._buffer = bytearray(rest)
        return line

    def _take(self, view: memoryview) -> int:
        """Bytes already read past the head first, then straight from the socket."""
        if not self._buffer:
            return self._recv_into(view)
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        del self._buffer[:n]
        return n

    # -- body ------------------------------------------------------------------------------------
    def readinto(self, view: memoryview) -> int:
        """Fill the start of ``view`` with body bytes; 0 means the body is complete.

        A body that ends early raises :class:`HttpError` (the caller may resume
        from the bytes it already has).
        """
        if self._done:
            return 0
        if self._chunked:
            return self._readinto_chunked(view)
        if self.remaining is not None:
            view = view[: self.remaining]
        n = self._take(view)
        if n == 0:
            if self.remaining is not None:
                raise HttpError(f"connection closed with {self.remaining} bytes missing")
            self._done = True
            return 0
        if self.remaining is not None:
            self.remaining -= n
            self._done = self.remaining == 0
        return n

    def _readinto_chunked(self, view: memoryview) -> int:
        if self._chunk_left == 0:
            size_text = self._read_line().split(b";", 1)[0].strip()
            try:
                self._chunk_left = int(size_text, 16)
            except ValueError:
                raise HttpError("malformed chunk size") from None
            if self._chunk_left == 0:
                while self._read_line():  # trailers end with an empty line
                    pass
                self._done = True
                return 0
        n = self._take(view[: self._chunk_left])
        if n == 0:
            raise HttpError("connection closed inside a chunk")
        self._chunk_left -= n
        if self._chunk_left == 0:
            while len(self._buffer) < 2:
                if not self._fill():
                    raise HttpError("connection closed inside a chunked body")
            if self._buffer[:2] != b"\r\n":
                raise HttpError("malformed chunked body")
            del self._buffer[:2]
        return n

    def read_all(self, limit: int = 1 << 20) -> bytes:
        """The whole (small) body, e.g. an error page; at most ``limit`` bytes."""
        out = bytearray()
        scratch = memoryview(bytearray(65536))
        while len(out) < limit:
            n = self.readinto(scratch)
            if not n:
                break
            out += scratch[:n]
        return bytes(out[:limit])

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context (system CA certificates), built on first use."""
    global _tls
    if _tls is None:
        _tls = ssl.create_default_context()
    return _tls


def _connect(scheme: str, host: str, port: int, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise HttpError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
    try:
        if scheme == "https":
            sock = _tls_context().wrap_socket(sock, server_hostname=host)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        raise HttpError(f"TLS with {host} failed: {exc}") from None
    return sock


def _read_head(sock: socket.socket, read_timeout: float,
               should_stop: Callable[[], bool]) -> tuple[int, dict[str, str], bytes]:
    data = bytearray()
    scratch = bytearray(16384)
    idle_since = time.monotonic()
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD_BYTES:
            raise HttpError("response head too large")
        try:
            n = sock.recv_into(scratch)
        except (socket.timeout, ssl.SSLWantReadError):
            if should_stop():
                raise Stopped() from None
            if time.monotonic() - idle_since > read_timeout:
                raise HttpError(f"no answer for {read_timeout:.0f} s") from None
            continue
        except OSError as exc:
            raise HttpError(f"connection lost: {exc.strerror or exc}") from None
        if n == 0:
            raise HttpError("connection closed before a response")
        data += scratch[:n]
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"not an HTTP/1.x response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return int(parts[1]), headers, rest


def request(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
            connect_timeout: float = 30.0, read_timeout: float = 120.0,
            should_stop: Callable[[], bool] = _never) -> Response:
    """Send one request and return the response with its head read (redirects followed).

    Raises :class:`HttpError` on transport failures and :class:`Stopped`.
    """
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HttpError(f"unsupported URL {url[:200]!r}")
        if any(c in url for c in "\r\n\t ") or any(
                c in value for value in (headers or {}).values() for c in "\r\n"):
            raise HttpError("control characters in the request")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = port == (443 if parts.scheme == "https" else 80)
        name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        host = name if default_port else f"{name}:{port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"User-Agent: {USER_AGENT}",
                 "Accept-Encoding: identity", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock = _connect(parts.scheme, parts.hostname, port, connect_timeout)
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            sock.settimeout(POLL_SECONDS)
            status, response_headers, leftover = _read_head(sock, read_timeout, should_stop)
        except OSError as exc:
            sock.close()
            raise HttpError(f"connection lost: {exc.strerror or exc}") from None
        except BaseException:
            sock.close()
            raise
        if status in _REDIRECTS and "location" in response_headers:
            sock.close()
            url = urljoin(url, response_headers["location"])
            continue
        return Response(sock, status, response_headers, leftover, method, read_timeout,
                        should_stop)
    raise HttpError(f"more than {MAX_REDIRECTS} redirects")

"""Errors that carry an HTTP status, raised anywhere (science, storage, routes).

This module does not import FastAPI, so pure functions in ``app/processing`` and
worker processes can raise these; ``app/http_errors.py`` turns them into JSON
answers with a string ``detail``. They pickle cleanly, so an error raised in a
worker process arrives intact in the server process.
"""

from __future__ import annotations


class ServiceError(Exception):
    """An error with a status code and a human-readable, client-safe message."""

    status_code: int = 400

    def __init__(
        self, detail: str, *, status_code: int | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status_code is not None:
            self.status_code = status_code
        self.headers = dict(headers or {})

    def __reduce__(self):
        return (_rebuild, (type(self), self.detail, self.status_code, self.headers))


def _rebuild(cls, detail, status_code, headers):
    return cls(detail, status_code=status_code, headers=headers)


class BadRequest(ServiceError):
    """The request, or the file it names, cannot be processed (400)."""

    status_code = 400


class AccessDenied(ServiceError):
    """A storage key tries to leave the storage root (403)."""

    status_code = 403


class NotFound(ServiceError):
    """The named file, job or record does not exist (404)."""

    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class PayloadTooLarge(ServiceError):
    """The request can never be served within the configured limits (413)."""

    status_code = 413


class Unprocessable(ServiceError):
    status_code = 422


class Busy(ServiceError):
    """The request would fit, but not now: try again after ``retry_after`` s (429)."""

    status_code = 429

    def __init__(
        self,
        detail: str,
        *,
        retry_after: int = 2,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        merged = {"Retry-After": str(int(retry_after))}
        merged.update(headers or {})
        super().__init__(detail, status_code=status_code, headers=merged)


class UpstreamError(ServiceError):
    """A service we depend on (MAST, S3) failed or could not be reached (502)."""

    status_code = 502


class ServiceUnavailable(ServiceError):
    status_code = 503


class UpstreamTimeout(ServiceError):
    status_code = 504


class TimeLimitExceeded(ServiceError):
    """A computation ran past its time limit and was stopped (504)."""

    status_code = 504

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

    def __init_subclass__(cls, status: int | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status_code = status

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


class BadRequest(ServiceError, status=400):
    """The request, or the file it names, cannot be processed (400)."""


class AccessDenied(ServiceError, status=403):
    """A storage key tries to leave the storage root (403)."""


class NotFound(ServiceError, status=404):
    """The named file, job or record does not exist (404)."""


class Conflict(ServiceError, status=409):
    """The request clashes with work already under way (409)."""


class PayloadTooLarge(ServiceError, status=413):
    """The request can never be served within the configured limits (413)."""


class Unprocessable(ServiceError, status=422):
    """The request is well-formed JSON but its values are not acceptable (422)."""


class Busy(ServiceError, status=429):
    """The request would fit, but not now: try again after ``retry_after`` s (429)."""

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


class UpstreamError(ServiceError, status=502):
    """A service we depend on (MAST, S3) failed or could not be reached (502)."""


class ServiceUnavailable(ServiceError, status=503):
    """A part the request needs is missing or not ready (503)."""


class UpstreamTimeout(ServiceError, status=504):
    """A service we depend on (MAST, S3) did not answer in time (504)."""


class TimeLimitExceeded(ServiceError, status=504):
    """A computation ran past its time limit and was stopped (504)."""

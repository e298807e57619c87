"""Files resolved for a request stay pinned in the local cache until it ends.

With S3 storage, ``storage.local_path(key)`` downloads an object into the
bounded cache and returns its path; the request then hands the path to a worker
process that opens it, perhaps after waiting in the queue. Had another request
evicted the entry in between, the open would fail. Inside :func:`pinning` (the
apps wrap every request in it), the cache pins each entry it hands out until the
block ends, i.e. until the response has been sent (a streamed one included).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar

PIN_SCOPE: ContextVar[ExitStack | None] = ContextVar("PIN_SCOPE", default=None)


@contextmanager
def pinning() -> Iterator[ExitStack]:
    """Entries handed out by the cache inside this block stay pinned until it ends."""
    with ExitStack() as pins:
        token = PIN_SCOPE.set(pins)
        try:
            yield pins
        finally:
            PIN_SCOPE.reset(token)

"""A stop request shared by a download job and its transfer threads.

A job's transfers poll ``signal()`` between reads; a transfer blocked in a read
(a stalled server) is woken at once, because while it waits it registers an
*abort* (closing its socket) that :meth:`StopSignal.stop` calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import StrEnum


class StopReason(StrEnum):
    """Why a job was asked to stop; each ends the job in its own state."""

    PAUSE = "pause"
    CANCEL = "cancel"
    INTERRUPT = "interrupt"  # the service is shutting down: the job stays resumable


class StopSignal:
    """Set once (the first reason wins); callable as a ``should_stop`` predicate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._aborts: list[Callable[[], None]] = []
        self.reason: StopReason | None = None

    def __call__(self) -> bool:
        return self.reason is not None

    def stop(self, reason: StopReason) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
            aborts = list(self._aborts)
        for abort in aborts:
            _quietly(abort)

    def register(self, abort: Callable[[], None]) -> Callable[[], None]:
        """Until the returned function is called, a stop calls ``abort`` (e.g. shuts a
        blocked socket down); called at once if the signal is already set."""
        with self._lock:
            self._aborts.append(abort)
            stopped = self.reason is not None
        if stopped:
            _quietly(abort)

        def unregister() -> None:
            with self._lock:
                if abort in self._aborts:
                    self._aborts.remove(abort)

        return unregister


def never() -> bool:
    """A ``should_stop`` for callers that never stop a transfer."""
    return False


def _quietly(abort: Callable[[], None]) -> None:
    try:
        abort()
    except OSError:
        pass

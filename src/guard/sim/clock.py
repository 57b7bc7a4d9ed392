"""The fake cloud's notion of time: virtual for tests and `guard simulate`, real for the demo.

Every piece of fake state reads time only through a `SimClock`, so a 30-minute scenario can
replay in seconds (a `VirtualClock` that the scenario engine advances) or play out at the
pace a person can watch (a `RealClock`).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

#: Scenario time zero when a scenario does not name one: a fixed instant keeps runs reproducible.
DEFAULT_EPOCH = datetime(2026, 1, 15, 14, 0, 0, tzinfo=UTC)


class SimClock(Protocol):
    """What the fake cloud needs to know about time."""

    @property
    def epoch(self) -> datetime:
        """Scenario time zero (UTC)."""
        ...

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...

    def elapsed(self) -> float:
        """Seconds since the epoch (scenario seconds)."""
        ...


class VirtualClock:
    """A clock that moves only when told to; thread-safe, never goes backwards."""

    def __init__(self, epoch: datetime = DEFAULT_EPOCH) -> None:
        if epoch.tzinfo is None:
            raise ValueError("the epoch must be timezone-aware")
        self._epoch = epoch.astimezone(UTC)
        self._elapsed = 0.0
        self._lock = threading.Lock()

    @property
    def epoch(self) -> datetime:
        return self._epoch

    def now(self) -> datetime:
        return self._epoch + timedelta(seconds=self.elapsed())

    def elapsed(self) -> float:
        with self._lock:
            return self._elapsed

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` (which must not be negative)."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards ({seconds} s)")
        with self._lock:
            self._elapsed += seconds

    def advance_to(self, elapsed: float) -> None:
        """Move time forward to `elapsed` scenario seconds; earlier instants are a no-op."""
        with self._lock:
            self._elapsed = max(self._elapsed, elapsed)


class RealClock:
    """Wall-clock time, with the epoch at construction (or a given instant)."""

    def __init__(self, epoch: datetime | None = None) -> None:
        self._start_mono = time.monotonic()
        self._epoch = (epoch or datetime.now(UTC)).astimezone(UTC)

    @property
    def epoch(self) -> datetime:
        return self._epoch

    def now(self) -> datetime:
        return self._epoch + timedelta(seconds=self.elapsed())

    def elapsed(self) -> float:
        return time.monotonic() - self._start_mono

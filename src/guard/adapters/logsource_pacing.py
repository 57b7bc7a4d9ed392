"""Pacing for the log source: time, the list-quota token bucket, back-off and de-duplication.

Cloud Logging's limits shape the log source: entries.list allows 60 requests per minute per
project (shared with everyone reading that project's logs), a dropped tail must not be
re-opened in a tight loop, and every recovery path (reconnect gap fill, suppression
backfill, polling) re-reads entries the guard may already have. These small pieces keep
those rules in one place. Time comes from a `Timer`, so the same code runs on the wall
clock in production and on the fake cloud's virtual clock in tests and simulations, where
the quota and the tail's buffer window are counted in scenario seconds.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Protocol


class Timer(Protocol):
    """Where the log source reads time and waits."""

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this timer's time (yielding to the loop even for 0)."""
        ...


class RealTimer:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class TokenBucket:
    """At most `burst + per_minute` calls in any minute: keep `burst + per_minute` at or
    under the project's quota (60) minus what other readers need."""

    def __init__(self, timer: Timer, *, per_minute: float, burst: int) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self._timer = timer
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._tokens = float(burst)
        self._at = timer.now()

    def _refill(self) -> None:
        now = self._timer.now()
        elapsed = max((now - self._at).total_seconds(), 0.0)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._at = now

    async def take(self) -> None:
        """Wait until a call is allowed, then spend it."""
        self._refill()
        while self._tokens < 1.0 - 1e-6:  # a tolerance: clocks tick in microseconds
            await self._timer.sleep(max((1.0 - self._tokens) / self.rate, 0.01))
            self._refill()
        self._tokens = max(self._tokens - 1.0, 0.0)

    def drain(self) -> None:
        """The server said the quota is spent: start again from an empty bucket."""
        self._refill()
        self._tokens = min(self._tokens, 0.0)


class Backoff:
    """Exponential back-off with jitter (each delay in [half, all] of the capped step),
    so many guards reconnecting after one outage do not arrive in lockstep."""

    def __init__(self, initial: float, cap: float, rng: random.Random) -> None:
        self.initial, self.cap, self._rng = initial, cap, rng
        self.failures = 0

    def next(self) -> float:
        step = min(self.cap, self.initial * 2.0**self.failures)
        self.failures += 1
        return step * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.failures = 0


class Dedupe:
    """The identities of the last `size` entries delivered (bounded memory): enough to
    cover every overlap the recovery paths re-read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)

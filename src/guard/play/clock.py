"""The log source's time on a scenario's virtual clock.

Why: the guard's log source paces itself (backoff, buffering) through a `Timer`; on the
virtual clock of `guard simulate` nobody sleeps for real, so waiting means yielding until
the harness has moved scenario time on.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from guard.sim.clock import VirtualClock


class VirtualTimer:
    """`now` and `sleep` in scenario time (the harness advances the clock)."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock

    def now(self) -> datetime:
        return self.clock.now()

    async def sleep(self, seconds: float) -> None:
        target = self.clock.elapsed() + seconds
        await asyncio.sleep(0)
        while self.clock.elapsed() < target:  # noqa: ASYNC110 - another thread moves it
            await asyncio.sleep(0.001)

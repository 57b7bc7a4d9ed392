"""The interfaces the guard's core and service need from the outside world.

Each outside system (Cloud Run, Monitoring, Logging, Cloud SQL, Secret Manager, Cloud
Deploy, pagers, the store, time) is a `Protocol` here, implemented once in
`guard.adapters` with the official client or library. The service wires adapters to these
ports; tests wire the same adapters to the local fake cloud and real local servers.
Each port grows with the issue that first needs it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from guard.core.model import Revision, ServiceRef


class Clock(Protocol):
    """Time, so the service can run on the fake cloud's virtual clock in simulations."""

    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class CloudRun(Protocol):
    """Cloud Run Admin v2, as the guard uses it: read services, pin traffic."""

    async def revisions(self, service: ServiceRef) -> list[Revision]:
        """The service's revisions, newest first."""
        ...

    async def pin_traffic(self, service: ServiceRef, revision: str) -> None:
        """Send 100% of traffic to `revision` (traffic-only update) and wait until it is done."""
        ...

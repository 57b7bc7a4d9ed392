"""The guard's log source: one live Cloud Logging tail per project, and no silent gaps.

The strongest evidence of a bad deploy (the failing migration's file, a schema error) is in
Cloud Logging seconds after it happens, so the guard keeps ONE TailLogEntries stream per
project covering every watched service (a project allows only 10 sessions) with the filter
of `logsource_filter`. A tail is not reliable on its own: streams drop, sessions run out,
the server suppresses entries it cannot send (RATE_LIMIT) or that the client did not read
(NOT_CONSUMED), and the guard's own queue can fill. Each of these is counted and turned into
a *backfill from* an instant, served by ListLogEntries (ascending, paged, paced by a
per-project token bucket under the 60 calls/min quota), so an entry is delivered late rather
than lost:

- the stream drops: reconnect with jittered, capped exponential back-off; once the new
  session is up (after `settle`, and again at its first response, which proves it open),
  backfill from the last instant the old one covered, minus `overlap`;
- tail sessions are exhausted (RESOURCE_EXHAUSTED) or tailing is refused: poll with
  ListLogEntries every `poll_interval`, and try the tail again after `tail_retry_after`;
- suppression or a full queue: count it, and backfill from before it;
- the list quota is hit anyway: drain the bucket, back off, keep (never drop) the gap.
Re-read entries are dropped by identity (logName, timestamp, insertId) with bounded memory.
Records can therefore arrive out of timestamp order; consumers must not assume order.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from guard.adapters.google_clients import GoogleClients
from guard.adapters.logsource_feed import Feed
from guard.adapters.logsource_pacing import Dedupe, RealTimer, Timer
from guard.core.model import ServiceRef
from guard.core.signals import LogRecord

#: (method, canonical code) per API call; a tail reports when its stream ends.
CallCounter = Callable[[str, str], None]
#: (project, reason, count) for entries the tail suppressed or the queue could not take.
LossCounter = Callable[[str, str, int], None]


@dataclass(frozen=True, slots=True)
class LogSourceConfig:
    """Knobs, in seconds of the source's `Timer` unless said otherwise."""

    buffer_window: float = 2.0  # the tail's reordering window (0-60 s)
    overlap: float = 20.0  # re-read this much before a gap (late ingestion)
    list_per_minute: float = 40.0  # token bucket: burst + rate <= 60 minus other readers
    list_burst: int = 10
    page_size: int = 1000
    poll_interval: float = 5.0
    tail_retry_after: float = 60.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    quota_backoff: float = 10.0
    settle: float = 0.5
    call_timeout: float = 10.0
    tail_timeout: float = 3600.0
    dedupe_size: int = 100_000
    queue_size: int = 10_000


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """One project's feed, for readiness and metrics."""

    project: str
    mode: str  # "starting" | "tail" | "poll" | "stopped"
    connected: bool
    last_entry_at: datetime | None
    reconnects: int
    suppressed: dict[str, int]
    backfilling: bool
    delivered: int
    list_calls: int
    last_error: str


class LogSource:
    """Delivers the watched services' evidence entries as `LogRecord`s on `queue`."""

    def __init__(
        self,
        clients: GoogleClients,
        services: Sequence[ServiceRef],
        *,
        config: LogSourceConfig | None = None,
        timer: Timer | None = None,
        since: datetime | None = None,
        on_call: CallCounter | None = None,
        on_lost: LossCounter | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config or LogSourceConfig()
        self.timer = timer or RealTimer()
        self.queue: asyncio.Queue[LogRecord] = asyncio.Queue(self.config.queue_size)
        self.clients = clients
        self.on_call = on_call or (lambda method, code: None)
        self.on_lost = on_lost or (lambda project, reason, count: None)
        self.rng = random.Random(seed)  # noqa: S311 - jitter, not security
        self.dedupe = Dedupe(self.config.dedupe_size)
        projects: dict[str, list[ServiceRef]] = {}
        for ref in services:
            projects.setdefault(ref.project, []).append(ref)
        self.feeds = {p: Feed(self, p, refs, since) for p, refs in projects.items()}

    def filter_for(self, project: str) -> str:
        return self.feeds[project].filter

    async def start(self) -> None:
        for feed in self.feeds.values():
            feed.start()

    async def stop(self) -> None:
        """Cancel every stream and task; the clients stay open (their owner closes them)."""
        await asyncio.gather(*(feed.stop() for feed in self.feeds.values()))

    def status(self) -> list[FeedStatus]:
        return [
            FeedStatus(
                f.project,
                f.mode,
                f.connected,
                f.last_entry_at,
                f.reconnects,
                dict(f.suppressed),
                f.filling or f.pending is not None,
                f.delivered,
                f.list_calls,
                f.last_error,
            )
            for f in self.feeds.values()
        ]

    async def records(self) -> AsyncIterator[LogRecord]:
        """The records as they come (forever; stop by breaking out)."""
        while True:
            yield await self.queue.get()

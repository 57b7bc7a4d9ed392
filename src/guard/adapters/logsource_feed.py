"""One project's feed for the log source: its tail, its poller and its backfill worker.

Split from `guard.adapters.logsource` (the public `LogSource`, its configuration and status)
to keep each module readable; the recovery rules are described there. Everything here runs
on the owner's event loop and `Timer`, and reports through the owner's counters.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions
from google.cloud.logging_v2.types import ListLogEntriesRequest, LogEntry, TailLogEntriesRequest
from google.protobuf import duration_pb2

from guard.adapters.logsource_filter import (
    build_filter,
    entry_key,
    entry_time,
    since_filter,
    to_record,
)
from guard.adapters.logsource_pacing import Backoff, TokenBucket
from guard.core.model import ServiceRef
from guard.core.signals import LogRecord

if TYPE_CHECKING:  # the source builds its feeds
    from guard.adapters.logsource import LogSource


class Feed:
    """One project's tail, poller and backfill worker."""

    def __init__(
        self, owner: LogSource, project: str, refs: list[ServiceRef], since: datetime | None
    ) -> None:
        self.o, self.project, self.cfg = owner, project, owner.config
        self.watched = {(r.name, r.region): r for r in refs}
        self.filter = build_filter([r.name for r in refs], [r.region for r in refs])
        self.bucket = TokenBucket(
            owner.timer, per_minute=self.cfg.list_per_minute, burst=self.cfg.list_burst
        )
        self.backoff = Backoff(self.cfg.backoff_initial, self.cfg.backoff_max, owner.rng)
        self.mode, self.connected, self.last_error = "starting", False, ""
        self.covered: datetime | None = since  # everything before this was delivered
        self.last_entry_at: datetime | None = None
        self.reconnects = self.delivered = self.list_calls = 0
        self.suppressed: Counter[str] = Counter()
        self.pending: datetime | None = None  # backfill from here
        self.filling = False
        self.reached: datetime | None = None  # the newest entry the running listing read
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        if self.covered is None:
            self.covered = self.o.timer.now()
        else:
            self.backfill(self.covered)
        self.tasks = [asyncio.create_task(self._run_tail()), asyncio.create_task(self._run_fill())]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.mode, self.connected = "stopped", False

    # -- the tail ---------------------------------------------------------------------------

    async def _run_tail(self) -> None:
        while True:
            try:
                await self._tail_session()
                self.backoff.reset()  # a session that ended by its deadline: reopen at once
            except exceptions.ResourceExhausted as err:
                self.last_error = f"TailLogEntries: {err.message}"
                await self._poll(self.cfg.tail_retry_after)
                continue
            except exceptions.GoogleAPICallError as err:
                self.last_error = f"TailLogEntries: {err.message}"
            self.connected = False
            self.reconnects += 1
            await self.o.timer.sleep(self.backoff.next())

    async def _tail_session(self) -> None:
        gap_from = self._resume_point()
        closing = asyncio.Event()
        window = duration_pb2.Duration()
        window.FromMilliseconds(int(self.cfg.buffer_window * 1000))
        request = TailLogEntriesRequest(
            resource_names=[f"projects/{self.project}"], filter=self.filter, buffer_window=window
        )

        async def requests() -> AsyncIterator[TailLogEntriesRequest]:
            yield request
            await closing.wait()  # keep the request side open while the session lives

        client = self.o.clients.logging_async()
        stream: Any = await client.tail_log_entries(
            requests=requests(), retry=None, timeout=self.cfg.tail_timeout
        )
        settle = asyncio.create_task(self._settled(gap_from))
        code, first = "OK", True
        try:
            async for response in stream:
                alive = self.o.timer.now()
                if first:  # the session is certainly open now: close any gap it left
                    first = False
                    self.backfill(gap_from)
                for info in response.suppression_info:
                    reason = info.reason.name
                    self.suppressed[reason] += info.suppressed_count
                    self.o.on_lost(self.project, reason, info.suppressed_count)
                    self.backfill(self._resume_point())
                for entry in response.entries:
                    self._offer(entry)
                self._cover(alive - timedelta(seconds=self.cfg.buffer_window))
        except exceptions.GoogleAPICallError as err:
            code = _code(err)
            raise
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        finally:
            self.o.on_call("TailLogEntries", code)
            settle.cancel()
            closing.set()
            stream.cancel()

    async def _settled(self, gap_from: datetime) -> None:
        await self.o.timer.sleep(self.cfg.settle)
        self.mode, self.connected = "tail", True
        self.backoff.reset()
        self.backfill(gap_from)

    async def _poll(self, seconds: float) -> None:
        self.mode, self.connected = "poll", False
        until = self.o.timer.now() + timedelta(seconds=seconds)
        while self.o.timer.now() < until:
            self.backfill(self._resume_point())
            await self.o.timer.sleep(self.cfg.poll_interval)

    # -- delivery ---------------------------------------------------------------------------

    def _offer(self, entry: LogEntry) -> None:
        """From the tail: never blocks; a full queue is counted and backfilled later."""
        key = entry_key(entry)
        if key in self.o.dedupe:
            return
        record = to_record(entry, self.watched)
        if record is None:
            self.o.dedupe.add(key)
            return
        try:
            self.o.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.o.on_lost(self.project, "QUEUE_FULL", 1)
            self.suppressed["QUEUE_FULL"] += 1
            self.backfill(record.at)
            return
        self._delivered(key, record)

    async def _put(self, entry: LogEntry) -> None:
        """From a backfill: waits for room (the listing just goes slower)."""
        key = entry_key(entry)
        if key in self.o.dedupe:
            return
        record = to_record(entry, self.watched)
        self.o.dedupe.add(key)  # before waiting: the tail must not deliver it meanwhile
        if record is not None:
            await self.o.queue.put(record)
            self._delivered(key, record)

    def _delivered(self, key: str, record: LogRecord) -> None:
        self.o.dedupe.add(key)
        self.delivered += 1
        if self.last_entry_at is None or record.at > self.last_entry_at:
            self.last_entry_at = record.at

    def _cover(self, instant: datetime) -> None:
        if self.covered is None or instant > self.covered:
            self.covered = instant

    def _resume_point(self) -> datetime:
        return self.covered or self.o.timer.now()

    # -- backfill ---------------------------------------------------------------------------

    def backfill(self, since: datetime) -> None:
        """Ask for every entry from `since` (minus the overlap) to now."""
        start = since - timedelta(seconds=self.cfg.overlap)
        if self.pending is None or start < self.pending:
            self.pending = start
        self.wake.set()

    async def _run_fill(self) -> None:
        quota = Backoff(self.cfg.quota_backoff, self.cfg.backoff_max * 4, self.o.rng)
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending is not None:
                start, self.pending = self.pending, None
                self.filling = True
                try:
                    await self._list_from(start)
                    quota.reset()
                except exceptions.GoogleAPICallError as err:
                    self.last_error = f"ListLogEntries: {err.message}"
                    resume = self.reached or start  # keep the gap, from what was read
                    self.pending = min(self.pending or resume, resume)
                    if isinstance(err, exceptions.ResourceExhausted):
                        self.bucket.drain()
                        await self.o.timer.sleep(quota.next())
                    else:
                        await self.o.timer.sleep(self.backoff.next())
                finally:
                    self.filling = False

    async def _list_from(self, start: datetime) -> None:
        client = self.o.clients.logging_async()
        began = self.o.timer.now()
        self.reached, token = None, ""
        while True:
            request = ListLogEntriesRequest(
                resource_names=[f"projects/{self.project}"],
                filter=since_filter(self.filter, start),
                order_by="timestamp asc",
                page_size=self.cfg.page_size,
                page_token=token,
            )
            await self.bucket.take()
            self.list_calls += 1
            try:
                page = await client.list_log_entries(
                    request=request, retry=None, timeout=self.cfg.call_timeout
                )
            except exceptions.GoogleAPICallError as err:
                self.o.on_call("ListLogEntries", _code(err))
                raise
            self.o.on_call("ListLogEntries", "OK")
            for entry in page.entries:  # this page only: the pager would fetch the next
                await self._put(entry)
                self.reached = entry_time(entry)
            token = page.next_page_token
            if not token:
                break
        self._cover(began)


def _code(err: exceptions.GoogleAPICallError) -> str:
    grpc_code = getattr(err, "grpc_status_code", None)
    return str(grpc_code.name) if grpc_code is not None else f"HTTP_{err.code}"

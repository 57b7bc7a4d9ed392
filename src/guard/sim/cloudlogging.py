"""The fake Cloud Logging: a thread-safe log store served as google.logging.v2 over gRPC.

The guard reads its strongest evidence (the failing migration's filename, schema errors) from
Cloud Logging, through a live TailLogEntries stream with an entries.list fallback. Both have
production limits that shape the guard's design, and the fake enforces them so the guard
meets them in tests: the filter language (`guard.sim.logfilter`), ordering by timestamp then
insertId, page sizes (default 50, over `max_page_size` rejected as the API documents), page
tokens that must match the request, optional partial (even empty) pages with a token, the
per-project read quota on the simulated clock, and for the tail (`guard.sim.logtail`) the
buffer window, suppression counts and the per-project session limit.

Entries with the same logName, timestamp and insertId are stored once, as Cloud Logging
de-duplicates them. Entries are kept in (timestamp, insertId) order whatever order they are
appended in. Not modelled: the default time range some clients add (gcloud's --freshness),
sinks, buckets and views (a view name reads its project's entries), WriteLogEntries.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import re
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import grpc
from google.cloud.logging_v2.services.logging_service_v2.transports.grpc import (
    LoggingServiceV2GrpcTransport,
)
from google.cloud.logging_v2.types import LogEntry
from google.cloud.logging_v2.types import logging as logging_types

from guard.sim.clock import SimClock
from guard.sim.faults import FakeCloudError, FaultInjector
from guard.sim.grpcutil import build_handler, discover
from guard.sim.logdoc import entry_doc
from guard.sim.logtail import Stored, TailHub, checked_filter, projects_of, serve_tail
from guard.sim.protoutil import project_number
from guard.sim.record import CallRecorder
from guard.sim.runlogs import (
    cloud_run_request_entry,
    cloud_run_resource,
    cloud_run_stdout_entry,
    cloud_run_system_entry,
    log_name,
    revision_not_ready_audit_entry,
)

__all__ = [
    "LogsState",
    "cloud_run_request_entry",
    "cloud_run_resource",
    "cloud_run_stdout_entry",
    "cloud_run_system_entry",
    "log_name",
    "revision_not_ready_audit_entry",
]

MAX_RESOURCES = 100
DEFAULT_PAGE = 50
_LOG_PROJECT = re.compile(r"^projects/([^/]+)/logs/")


class LogsState:
    """The fake's log store; `append` and the RPCs may run on any thread.

    Extra knobs (keyword-only, with production-like defaults): `tail_entries_per_minute`
    (a session's delivery limit, above it RATE_LIMIT suppression), `tail_backlog` (entries a
    session may hold for a client that does not read, above it NOT_CONSUMED suppression),
    `scan_limit` (entries one list call examines before it returns a partial page with a
    token, None: no limit), `poll_interval` (real seconds a tail waits between checks).
    """

    def __init__(
        self,
        clock: SimClock,
        *,
        list_quota_per_minute: int = 60,
        tail_sessions_per_project: int = 10,
        max_page_size: int = 1000,
        tail_entries_per_minute: int = 60_000,
        tail_backlog: int = 60_000,
        scan_limit: int | None = None,
        poll_interval: float = 0.025,
    ) -> None:
        self.clock = clock
        self.list_quota_per_minute = list_quota_per_minute
        self.max_page_size = max_page_size
        self.scan_limit = scan_limit
        self._entries: list[Stored] = []
        self._seen: set[tuple[str, int, str]] = set()
        self._arrivals = 0
        self._lock = threading.Lock()
        self._list_calls: dict[str, deque[float]] = {}
        self.tail = TailHub(
            clock,
            sessions_per_project=tail_sessions_per_project,
            entries_per_minute=tail_entries_per_minute,
            backlog=tail_backlog,
            poll_interval=poll_interval,
            max_batch=max_page_size,
        )

    def append(self, entry: LogEntry) -> None:
        """Store one entry (copied): insertId, timestamp and receiveTimestamp filled if empty."""
        pb = type(LogEntry.pb(entry))()
        pb.CopyFrom(LogEntry.pb(entry))
        m = _LOG_PROJECT.match(pb.log_name)
        if m is None:
            raise ValueError(f"logName must be projects/P/logs/ID, not {pb.log_name!r}")
        now = self.clock.now()
        with self._lock:
            self._arrivals += 1
            if not pb.insert_id:
                pb.insert_id = f"sim{self._arrivals:013x}"
            if not pb.HasField("timestamp"):
                pb.timestamp.FromDatetime(now)
            if not pb.HasField("receive_timestamp"):
                pb.receive_timestamp.FromDatetime(now)
            ident = (pb.log_name, pb.timestamp.ToNanoseconds(), pb.insert_id)
            if ident in self._seen:
                return
            self._seen.add(ident)
            stored_entry = LogEntry.wrap(pb)
            stored = Stored(
                (ident[1], pb.insert_id, self._arrivals),
                m.group(1),
                stored_entry,
                entry_doc(stored_entry),
            )
            bisect.insort(self._entries, stored, key=lambda s: s.key)
        self.tail.offer(stored)

    def notify(self) -> None:
        """Wake the open tails (call after advancing a virtual clock)."""
        self.tail.notify()

    def entries(self) -> list[LogEntry]:
        """Every stored entry, oldest first (for tests and reports)."""
        with self._lock:
            return [s.entry for s in self._entries]

    def handler(self, recorder: CallRecorder, faults: FaultInjector) -> grpc.GenericRpcHandler:
        """A gRPC handler serving google.logging.v2.LoggingServiceV2 (list and tail)."""
        methods = discover(LoggingServiceV2GrpcTransport).values()
        return build_handler(
            "logging",
            methods,
            _LoggingService(self),
            clock=self.clock,
            recorder=recorder,
            faults=faults,
        )

    def _charge_quota(self, project: str) -> None:
        now = self.clock.elapsed()
        with self._lock:
            calls = self._list_calls.setdefault(project, deque())
            while calls and calls[0] <= now - 60.0:
                calls.popleft()
            if len(calls) >= self.list_quota_per_minute:
                raise FakeCloudError(
                    "RESOURCE_EXHAUSTED",
                    "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per "
                    "minute' of service 'logging.googleapis.com' for consumer "
                    f"'project_number:{project_number(project)}'.",
                )
            calls.append(now)

    def list_entries(
        self, request: logging_types.ListLogEntriesRequest
    ) -> logging_types.ListLogEntriesResponse:
        """ListLogEntries, validated and paged as the real API does."""
        names = list(request.resource_names)
        if not names:
            raise FakeCloudError(
                "INVALID_ARGUMENT", "resource_names must name at least one resource."
            )
        if len(names) > MAX_RESOURCES:
            raise FakeCloudError(
                "INVALID_ARGUMENT",
                "A maximum of 100 resources may be specified in a single request.",
            )
        projects = {p for p in projects_of(names) if p is not None}
        order = " ".join(request.order_by.lower().split()) or "timestamp asc"
        if order not in ("timestamp asc", "timestamp desc"):
            raise FakeCloudError("INVALID_ARGUMENT", f'Invalid order_by: "{request.order_by}"')
        if request.page_size < 0 or request.page_size > self.max_page_size:
            raise FakeCloudError(
                "INVALID_ARGUMENT",
                f"page_size must be between 0 and {self.max_page_size}, not {request.page_size}.",
            )
        size = request.page_size or DEFAULT_PAGE
        flt = checked_filter(request.filter)
        fingerprint = hashlib.sha256(
            json.dumps([names, request.filter, order]).encode()
        ).hexdigest()[:16]
        cursor = _decode_cursor(request.page_token, fingerprint)
        charged = next((p for p in projects_of(names) if p is not None), None)
        if charged is not None:
            self._charge_quota(charged)
        page: list[LogEntry] = []
        last = cursor
        more = False
        with self._lock:
            for scanned, stored in enumerate(
                _walk(self._entries, cursor, descending=order.endswith("desc"))
            ):
                if len(page) == size or (
                    self.scan_limit is not None and scanned >= self.scan_limit
                ):
                    more = True
                    break
                last = stored.key
                if stored.project in projects and flt.matches(stored.doc):
                    page.append(stored.entry)
        if more and len(page) == size:
            more = self._any_more(projects, flt, last, order.endswith("desc"))
        token = _encode_cursor(last, fingerprint) if more and last is not None else ""
        return logging_types.ListLogEntriesResponse(entries=page, next_page_token=token)

    def _any_more(self, projects: set[str], flt: Any, after: Any, descending: bool) -> bool:
        with self._lock:
            return any(
                s.project in projects and flt.matches(s.doc)
                for s in _walk(self._entries, after, descending=descending)
            )


def _walk(
    entries: list[Stored], after: tuple[int, str, int] | None, *, descending: bool
) -> Iterator[Stored]:
    """The entries after cursor `after` in the listing's order."""
    if not descending:
        start = 0 if after is None else bisect.bisect_right(entries, after, key=lambda s: s.key)
        yield from entries[start:]
        return
    # Newest first by timestamp; equal timestamps still in insertId order, as documented.
    if after is None:
        i = len(entries)
    else:
        group_end = bisect.bisect_right(entries, after[0], key=lambda s: s.key[0])
        yield from entries[bisect.bisect_right(entries, after, key=lambda s: s.key) : group_end]
        i = bisect.bisect_left(entries, after[0], key=lambda s: s.key[0])
    while i > 0:
        j = bisect.bisect_left(entries, entries[i - 1].key[0], 0, i, key=lambda s: s.key[0])
        yield from entries[j:i]
        i = j


def _encode_cursor(key: tuple[int, str, int], fingerprint: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([list(key), fingerprint]).encode()).decode()


def _decode_cursor(token: str, fingerprint: str) -> tuple[int, str, int] | None:
    if not token:
        return None
    try:
        (ts, insert_id, arrival), seen = json.loads(base64.urlsafe_b64decode(token.encode()))
        key = (int(ts), str(insert_id), int(arrival))
    except (ValueError, TypeError):
        raise FakeCloudError("INVALID_ARGUMENT", f'Invalid page token: "{token}"') from None
    if seen != fingerprint:
        raise FakeCloudError(
            "INVALID_ARGUMENT",
            "The page token does not match the parameters of the previous request.",
        )
    return key


class _LoggingService:
    def __init__(self, state: LogsState) -> None:
        self.state = state

    def ListLogEntries(
        self, request: logging_types.ListLogEntriesRequest, context: grpc.ServicerContext
    ) -> logging_types.ListLogEntriesResponse:
        return self.state.list_entries(request)

    def TailLogEntries(
        self, requests: Iterator[logging_types.TailLogEntriesRequest], context: grpc.ServicerContext
    ) -> Iterator[logging_types.TailLogEntriesResponse]:
        return serve_tail(self.state.tail, requests, context)

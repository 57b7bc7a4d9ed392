"""TailLogEntries for the fake Cloud Logging: live sessions, buffer window, suppression, limits.

The guard's fastest signal is a live tail, and its production failure modes are what this
models: entries are held for the session's buffer window (default 2 s, at most 60 s) and
then sent in timestamp order, so late arrivals are not reordered past it; a session that
receives more than its per-minute limit, or whose client does not read, loses entries, and
the next response says how many and why (`suppression_info` RATE_LIMIT / NOT_CONSUMED);
each project allows a limited number of open sessions (RESOURCE_EXHAUSTED beyond it); and a
client's cancellation is noticed at once (a gRPC callback) so the session slot is freed.

Time is the simulated clock's: with a VirtualClock an entry goes out once the clock has passed
its timestamp plus the buffer window. The serving loop waits on a condition that `append`
and `notify()` signal, and re-checks every `poll_interval` real seconds in any case.
Only entries appended after a session opens are sent (a tail shows new entries, not history).
Google sends no heartbeat on an idle tail as far as we know, so neither does the fake: the
sync client's `tail_log_entries` blocks until the first entry arrives.
"""

from __future__ import annotations

import re
import threading
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.cloud.logging_v2.types import LogEntry
from google.cloud.logging_v2.types import logging as logging_types

from guard.sim.clock import SimClock
from guard.sim.faults import FakeCloudError
from guard.sim.logfilter import LogFilter, parse_log_filter

MAX_FILTER = 20_000
DEFAULT_BUFFER = 2.0
_PROJECT = re.compile(r"^projects/([^/]+)(?:/locations/[^/]+/buckets/[^/]+/views/[^/]+)?$")
_OTHER = re.compile(
    r"^(?:organizations|folders|billingAccounts)/[^/]+"
    r"(?:/locations/[^/]+/buckets/[^/]+/views/[^/]+)?$"
)
_Reason = logging_types.TailLogEntriesResponse.SuppressionInfo.Reason


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored entry with what filtering and ordering need."""

    key: tuple[int, str, int]  # (timestamp ns, insertId, arrival number)
    project: str
    entry: LogEntry
    doc: dict[str, Any]


def projects_of(resource_names: list[str]) -> list[str | None]:
    """The project each resource name reads (None for organisations, folders, billing)."""
    out: list[str | None] = []
    for name in resource_names:
        m = _PROJECT.match(name)
        if m is None and _OTHER.match(name) is None:
            raise FakeCloudError("INVALID_ARGUMENT", f'Invalid resource name: "{name}"')
        out.append(m.group(1) if m else None)
    return out


def checked_filter(text: str) -> LogFilter:
    """Parse a request's filter after checking its length, as both RPCs do."""
    if len(text) > MAX_FILTER:
        raise FakeCloudError(
            "INVALID_ARGUMENT", f"The filter is {len(text)} characters long; the limit is 20000."
        )
    return parse_log_filter(text)


@dataclass(eq=False)
class TailSession:
    """One open tail."""

    projects: frozenset[str]
    flt: LogFilter
    buffer_ns: int
    pending: list[Stored] = field(default_factory=list)
    suppressed: Counter[str] = field(default_factory=Counter)
    delivered: deque[float] = field(default_factory=deque)
    closed: bool = False


class TailHub:
    """The open tail sessions of one LogsState; thread-safe."""

    def __init__(
        self,
        clock: SimClock,
        *,
        sessions_per_project: int,
        entries_per_minute: int,
        backlog: int,
        poll_interval: float,
        max_batch: int,
    ) -> None:
        self.clock = clock
        self.sessions_per_project = sessions_per_project
        self.entries_per_minute = entries_per_minute
        self.backlog = backlog
        self.poll_interval = poll_interval
        self.max_batch = max_batch
        self._sessions: list[TailSession] = []
        self._cond = threading.Condition()

    def open_sessions(self, project: str | None = None) -> int:
        """How many sessions are open (reading `project`, when given)."""
        with self._cond:
            return sum(1 for s in self._sessions if project is None or project in s.projects)

    def open(self, request: logging_types.TailLogEntriesRequest) -> TailSession:
        """Validate a session's first request and open it."""
        names = list(request.resource_names)
        if not names:
            raise FakeCloudError(
                "INVALID_ARGUMENT", "resource_names must name at least one resource."
            )
        projects = frozenset(p for p in projects_of(names) if p is not None)
        flt = checked_filter(request.filter)
        pb = logging_types.TailLogEntriesRequest.pb(request)
        buffer_ns = int(DEFAULT_BUFFER * 1e9)
        if pb.HasField("buffer_window"):
            buffer_ns = pb.buffer_window.ToNanoseconds()
            if not 0 <= buffer_ns <= 60 * 10**9:
                raise FakeCloudError(
                    "INVALID_ARGUMENT", "buffer_window must be between 0 and 60000 milliseconds."
                )
        session = TailSession(projects, flt, buffer_ns)
        with self._cond:
            for project in sorted(projects):
                count = sum(1 for s in self._sessions if project in s.projects)
                if count >= self.sessions_per_project:
                    raise FakeCloudError(
                        "RESOURCE_EXHAUSTED",
                        f"Too many concurrent TailLogEntries sessions for project {project}: "
                        f"the limit is {self.sessions_per_project}.",
                    )
            self._sessions.append(session)
        return session

    def close(self, session: TailSession) -> None:
        """Release a session (idempotent) and wake its serving loop."""
        with self._cond:
            session.closed = True
            if session in self._sessions:
                self._sessions.remove(session)
            self._cond.notify_all()

    def offer(self, stored: Stored) -> None:
        """Hand a newly appended entry to every session that wants it."""
        with self._cond:
            for s in self._sessions:
                if stored.project in s.projects and s.flt.matches(stored.doc):
                    s.pending.append(stored)
                    if len(s.pending) > self.backlog:
                        s.pending.pop(0)
                        s.suppressed["NOT_CONSUMED"] += 1
            self._cond.notify_all()

    def notify(self) -> None:
        """Wake every serving loop so it re-checks the clock."""
        with self._cond:
            self._cond.notify_all()

    def next_response(self, session: TailSession) -> logging_types.TailLogEntriesResponse | None:
        """The next response, waiting at most one poll interval; None when nothing is due."""
        with self._cond:
            response = self._take(session)
            if response is None and not session.closed:
                self._cond.wait(self.poll_interval)
                response = self._take(session)
            return response

    def _take(self, s: TailSession) -> logging_types.TailLogEntriesResponse | None:
        cutoff = int(self.clock.now().timestamp() * 1e9) - s.buffer_ns
        ready = sorted((x for x in s.pending if x.key[0] <= cutoff), key=lambda x: x.key)
        if ready:
            s.pending = [x for x in s.pending if x.key[0] > cutoff]
            elapsed = self.clock.elapsed()
            while s.delivered and s.delivered[0] <= elapsed - 60.0:
                s.delivered.popleft()
            allowance = max(self.entries_per_minute - len(s.delivered), 0)
            if len(ready) > allowance:
                s.suppressed["RATE_LIMIT"] += len(ready) - allowance
                ready = ready[:allowance]
            if len(ready) > self.max_batch:
                s.pending.extend(ready[self.max_batch :])  # due already: sent next time
                ready = ready[: self.max_batch]
            s.delivered.extend([elapsed] * len(ready))
        if not ready and not s.suppressed:
            return None
        info = [
            {"reason": _Reason.__members__[reason], "suppressed_count": count}
            for reason, count in sorted(s.suppressed.items())
        ]
        s.suppressed.clear()
        return logging_types.TailLogEntriesResponse(
            entries=[x.entry for x in ready], suppression_info=info
        )


def serve_tail(
    hub: TailHub,
    requests: Iterator[logging_types.TailLogEntriesRequest],
    context: grpc.ServicerContext,
) -> Iterator[logging_types.TailLogEntriesResponse]:
    """The TailLogEntries stream: open on the first request, then send until cancelled."""
    try:
        first = next(requests)
    except (StopIteration, grpc.RpcError):
        return
    session = hub.open(first)
    context.add_callback(lambda: hub.close(session))
    try:
        while context.is_active() and not session.closed:
            response = hub.next_response(session)
            if response is not None:
                yield response
    finally:
        hub.close(session)

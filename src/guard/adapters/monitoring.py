"""Read Cloud Run's 5xx and request counts from Cloud Monitoring: one call per project per cycle.

The 5xx judge (`guard.core.errorrate`) needs, per revision and per aligned period, how many
requests were served and how many were 5xx. One ListTimeSeries call for
`run.googleapis.com/request_count`, ALIGN_SUM (exact counts; ALIGN_DELTA/RATE interpolate
gaps) and REDUCE_SUM grouped by service, revision and response_code_class answers that for
every revision of every service in a project, so the cost stays one call per project per
cycle however many services are watched (pages of that one answer are counted, not avoided).

It also keeps apart what the judge must never confuse: an empty answer (no data yet: the
metric shows a point up to 120 s after its minute ends) and a failed read (a result with
`error` set to Google's canonical code name). It never raises a Google API error.

Retry policy. The library's default for ListTimeSeries retries UNAVAILABLE for up to 90 s
with a 90 s timeout: longer than the guard's 60 s cycle, so one slow read would delay every
verdict and hide the outage. Here the library's retry is off and each RPC gets a 10 s
deadline, with one retry after 0.5 s on UNAVAILABLE/DEADLINE_EXCEEDED and a 20 s budget for
the whole read; anything else ends the read as a provider error, and the next cycle reads
again. Every RPC attempt is reported to `on_call(method, code)` for the service's metrics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import monitoring_v3
from google.protobuf import duration_pb2, timestamp_pb2

from guard.adapters.google_clients import GoogleClients
from guard.core.signals import RequestCount

REQUEST_COUNT = "run.googleapis.com/request_count"
FILTER = f'metric.type="{REQUEST_COUNT}" AND resource.type="cloud_run_revision"'
GROUP_BY = (
    "resource.labels.service_name",
    "resource.labels.revision_name",
    "metric.labels.response_code_class",
)
METHOD = "ListTimeSeries"
_RETRYABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED")

CallCallback = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class RequestCountsResult:
    """One project's request counts over `[start, end]`, or why they could not be read.

    `counts`: per revision and aligned period (total = every response class, errors = 5xx).
    `newest`: the end of the newest visible point (None: nothing visible). `error`: the
    canonical code name of a failed read (e.g. "UNAVAILABLE"); then `counts` is empty.
    """

    project: str
    start: datetime
    end: datetime
    counts: tuple[RequestCount, ...] = ()
    newest: datetime | None = None
    pages: int = 0
    calls: int = 0
    error: str | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None

    def revision(self, service: str, revision: str) -> tuple[RequestCount, ...]:
        """The counts of one revision, oldest period first."""
        return tuple(c for c in self.counts if c.service == service and c.revision == revision)


def _floor(t: datetime, period: int) -> datetime:
    seconds = int(t.timestamp()) // period * period
    return datetime.fromtimestamp(seconds, UTC)


def _stamp(t: datetime) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=int(t.timestamp()))


def _code(exc: BaseException) -> str:
    status = getattr(exc, "grpc_status_code", None)
    if status is not None:
        return str(status.name)
    if isinstance(exc, TimeoutError | gexc.RetryError):
        return "DEADLINE_EXCEEDED"
    return "UNKNOWN"


class MonitoringReader:
    """Reads `run.googleapis.com/request_count` for the 5xx judge.

    `min_alignment` is 60 s as Google requires; lower it only for a demo whose fake cloud
    allows short periods. `attempt_timeout`, `budget` and `backoff` are seconds.
    """

    def __init__(
        self,
        clients: GoogleClients,
        *,
        on_call: CallCallback | None = None,
        min_alignment: int = 60,
        attempt_timeout: float = 10.0,
        budget: float = 20.0,
        backoff: float = 0.5,
        max_attempts: int = 2,
        page_size: int = 0,
    ) -> None:
        self._clients = clients
        self._on_call = on_call
        self.min_alignment = min_alignment
        self.attempt_timeout = attempt_timeout
        self.budget = budget
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.page_size = page_size  # 0: the server's default

    async def request_counts(
        self, project: str, *, start: datetime, end: datetime, alignment: int = 60
    ) -> RequestCountsResult:
        """Counts per revision per `alignment`-second period in `(start, end]`, both floored to
        the period so the periods coincide with Monitoring's one-minute samples."""
        if alignment < self.min_alignment:
            raise ValueError(f"alignment {alignment}s is under the minimum {self.min_alignment}s")
        end = _floor(end, alignment)
        start = min(_floor(start, alignment), end - timedelta(seconds=alignment))
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{project}",
            filter=FILTER,
            interval=monitoring_v3.TimeInterval(start_time=_stamp(start), end_time=_stamp(end)),
            aggregation=monitoring_v3.Aggregation(
                alignment_period=duration_pb2.Duration(seconds=alignment),
                per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_SUM,
                cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_SUM,
                group_by_fields=list(GROUP_BY),
            ),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
            page_size=self.page_size,
        )
        cells: dict[tuple[str, str, datetime, datetime], list[int]] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budget
        pages = calls = 0
        token = ""
        while True:
            request.page_token = token
            try:
                response, used = await self._call(request, deadline)
            except _ReadFailedError as failed:
                return RequestCountsResult(
                    project, start, end, pages=pages, calls=calls + failed.calls,
                    error=failed.code, message=failed.message,
                )  # fmt: skip
            calls += used
            pages += 1
            for series in response.time_series:
                _add(cells, series)
            token = response.next_page_token
            if not token:
                break
        counts = tuple(
            RequestCount(project, svc, rev, s, e, total, errors)
            for (svc, rev, s, e), (total, errors) in sorted(cells.items())
        )
        newest = max((c.end for c in counts), default=None)
        return RequestCountsResult(project, start, end, counts, newest, pages, calls)

    async def _call(
        self, request: monitoring_v3.ListTimeSeriesRequest, deadline: float
    ) -> tuple[Any, int]:
        """One page: up to `max_attempts` RPCs within the budget; returns (response, calls)."""
        client = self._clients.metrics_async()
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - loop.time()
            timeout = max(0.1, min(self.attempt_timeout, remaining))
            try:
                pager = await client.list_time_series(request=request, retry=None, timeout=timeout)
            except (gexc.GoogleAPIError, TimeoutError) as exc:
                code = _code(exc)
                self._count(code)
                room = deadline - loop.time() > self.backoff + 0.1
                if code in _RETRYABLE and attempt < self.max_attempts and room:
                    await asyncio.sleep(self.backoff)
                    continue
                raise _ReadFailedError(code, str(exc), attempt) from exc
            self._count("OK")
            return pager, attempt

    def _count(self, code: str) -> None:
        if self._on_call is not None:
            self._on_call(METHOD, code)


class _ReadFailedError(Exception):
    def __init__(self, code: str, message: str, calls: int) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.calls = code, message, calls


def _add(cells: dict[tuple[str, str, datetime, datetime], list[int]], series: Any) -> None:
    labels = series.resource.labels
    service, revision = labels["service_name"], labels["revision_name"]
    is_5xx = series.metric.labels.get("response_code_class", "") == "5xx"
    for point in series.points:
        s = datetime.fromtimestamp(point.interval.start_time.timestamp(), UTC)
        e = datetime.fromtimestamp(point.interval.end_time.timestamp(), UTC)
        cell = cells.setdefault((service, revision, s, e), [0, 0])
        value = int(point.value.int64_value)
        cell[0] += value
        if is_5xx:
            cell[1] += value

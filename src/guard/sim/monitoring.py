"""The fake Cloud Monitoring: Cloud Run's request_count samples and ListTimeSeries over gRPC.

The guard's 5xx decision reads `run.googleapis.com/request_count` with one ListTimeSeries call
per project. What makes that read hard in production is modelled here: samples land in
60-second DELTA buckets and stay invisible for an ingestion delay (so the first trustworthy
point comes minutes after traffic starts), the aligners differ (SUM exact, DELTA/RATE
interpolated: see `guard.sim.malign`), reducers drop the labels not grouped by, points come
newest first, and Google's validation errors come back as INVALID_ARGUMENT through the real
client library.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import grpc
from google.cloud.monitoring_v3.services.metric_service.transports.grpc import (
    MetricServiceGrpcTransport,
)
from google.cloud.monitoring_v3.types import common, metric_service

from guard.sim import malign
from guard.sim.clock import SimClock
from guard.sim.faults import FakeCloudError, FaultInjector
from guard.sim.grpcutil import build_handler, discover
from guard.sim.mfilter import parse_metric_filter
from guard.sim.monitoring_series import RawSeries, SeriesId, aggregate, page_of
from guard.sim.record import CallRecorder

REQUEST_COUNT = "run.googleapis.com/request_count"
#: Metric types that exist (a query for one with no data returns nothing, not NOT_FOUND).
KNOWN_METRIC_TYPES = frozenset(
    {
        REQUEST_COUNT,
        "run.googleapis.com/request_latencies",
        "run.googleapis.com/container/instance_count",
        "run.googleapis.com/container/completed_probe_count",
        "run.googleapis.com/container/cpu/utilizations",
        "run.googleapis.com/container/memory/utilizations",
    }
)
_PROJECT = re.compile(r"^projects/([^/]+)$")
_MAX_PAGE = 100_000


def _invalid(field: str, value: object, reason: str) -> FakeCloudError:
    return FakeCloudError(
        "INVALID_ARGUMENT", f'Field {field} had an invalid value of "{value}": {reason}'
    )


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


class MetricsState:
    """Cloud Monitoring data for the fake cloud; thread-safe.

    `ingestion_delay`: seconds after a sample's interval ends before queries see it.
    `sample_period`: the DELTA bucket length, aligned to the clock's epoch.
    `allow_short_alignment`: accept alignment periods under 60 s (Google rejects them).
    """

    def __init__(
        self,
        clock: SimClock,
        *,
        ingestion_delay: float = 120.0,
        sample_period: float = 60.0,
        allow_short_alignment: bool = False,
    ) -> None:
        if sample_period <= 0 or ingestion_delay < 0:
            raise ValueError("sample_period must be > 0 and ingestion_delay >= 0")
        self.clock = clock
        self.ingestion_delay = ingestion_delay
        self.sample_period = sample_period
        self.allow_short_alignment = allow_short_alignment
        self._epoch = clock.epoch.timestamp()
        self._buckets: dict[SeriesId, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self._lock = threading.Lock()

    def add_requests(
        self,
        *,
        project: str,
        location: str,
        service: str,
        revision: str,
        response_code: int,
        count: int,
        at: datetime | None = None,
    ) -> None:
        """Count `count` requests answered with `response_code` at `at` (default: now).

        A count of 0 writes nothing: Cloud Run reports no point for a code it did not serve.
        """
        if count < 0:
            raise ValueError(f"count must not be negative ({count})")
        if count == 0:
            return
        when = self.clock.now() if at is None else at
        if when.tzinfo is None:
            raise ValueError("`at` must be timezone-aware")
        resource = {
            "project_id": project,
            "service_name": service,
            "revision_name": revision,
            "location": location,
            "configuration_name": service,
        }
        labels = {
            "response_code": str(response_code),
            "response_code_class": f"{response_code // 100}xx",
            "route": "",
        }
        series = SeriesId.of(project, REQUEST_COUNT, "cloud_run_revision", resource, labels)
        bucket = int((when.timestamp() - self._epoch) // self.sample_period)
        with self._lock:
            self._buckets[series][bucket] += count

    def visible(self) -> list[RawSeries]:
        """Every series with the samples a query can see now (ingestion delay applied)."""
        horizon = self.clock.now().timestamp() - self.ingestion_delay
        out: list[RawSeries] = []
        with self._lock:
            for sid, buckets in self._buckets.items():
                samples = []
                for k, value in sorted(buckets.items()):
                    start = self._epoch + k * self.sample_period
                    end = start + self.sample_period
                    if end <= horizon:
                        samples.append(malign.Sample(start, end, value))
                if samples:
                    out.append(RawSeries(sid, tuple(samples)))
        return out

    def handler(self, recorder: CallRecorder, faults: FaultInjector) -> grpc.GenericRpcHandler:
        """A gRPC handler serving google.monitoring.v3.MetricService (ListTimeSeries)."""
        methods = discover(MetricServiceGrpcTransport).values()
        return build_handler(
            "monitoring", methods, _MetricService(self), clock=self.clock,
            recorder=recorder, faults=faults,
        )  # fmt: skip


class _MetricService:
    def __init__(self, state: MetricsState) -> None:
        self.state = state

    def ListTimeSeries(
        self, request: metric_service.ListTimeSeriesRequest, context: grpc.ServicerContext
    ) -> metric_service.ListTimeSeriesResponse:
        pb = metric_service.ListTimeSeriesRequest.pb(request)
        match = _PROJECT.match(request.name)
        if match is None:
            raise _invalid("name", request.name, "Expected projects/[PROJECT_ID_OR_NUMBER].")
        project = match.group(1)
        mfilter = parse_metric_filter(request.filter)
        visible = self.state.visible()
        if mfilter.metric_type not in KNOWN_METRIC_TYPES and not any(
            r.sid.metric_type == mfilter.metric_type for r in visible
        ):
            raise FakeCloudError(
                "NOT_FOUND", f'Cannot find metric(s) that match type = "{mfilter.metric_type}".'
            )
        if not pb.interval.HasField("end_time"):
            raise FakeCloudError("INVALID_ARGUMENT", "Field interval.endTime is required.")
        end = pb.interval.end_time.ToNanoseconds() / 1e9
        start = (
            pb.interval.start_time.ToNanoseconds() / 1e9
            if pb.interval.HasField("start_time")
            else end
        )
        if start > end:
            raise _invalid(
                "interval.startTime", _stamp(start),
                f"The start time must be before the end time ({_stamp(end)}).",
            )  # fmt: skip
        agg = pb.aggregation
        aligner = common.Aggregation.Aligner(agg.per_series_aligner).name
        reducer = common.Aggregation.Reducer(agg.cross_series_reducer).name
        period = agg.alignment_period.ToNanoseconds() / 1e9
        self._check_aggregation(aligner, reducer, period, list(agg.group_by_fields))
        if pb.secondary_aggregation.ByteSize():
            raise FakeCloudError(
                "UNIMPLEMENTED", "secondary_aggregation is not modelled by the fake"
            )
        if request.order_by:
            raise _invalid("order_by", request.order_by, "Unsupported: must be left blank.")
        if request.page_size < 0:
            raise _invalid("page_size", request.page_size, "must not be negative.")
        selected = [
            raw
            for raw in visible
            if raw.sid.project == project
            and raw.sid.metric_type == mfilter.metric_type
            and mfilter.matches(
                project=project,
                resource_type=raw.sid.resource_type,
                resource_labels=dict(raw.sid.resource_labels),
                metric_labels=dict(raw.sid.metric_labels),
            )
        ]
        series = aggregate(
            selected, start=start, end=end, aligner=aligner, reducer=reducer, period=period,
            group_by=list(agg.group_by_fields),
        )  # fmt: skip
        headers = request.view == metric_service.ListTimeSeriesRequest.TimeSeriesView.HEADERS
        fingerprint = _fingerprint(pb)
        offset = _decode_token(request.page_token, fingerprint)
        size = request.page_size if 0 < request.page_size <= _MAX_PAGE else _MAX_PAGE
        page, next_offset = page_of(series, offset, size, headers=headers)
        token = "" if next_offset is None else _encode_token(next_offset, fingerprint)
        return metric_service.ListTimeSeriesResponse(
            time_series=page, next_page_token=token, unit="1" if page else ""
        )

    def _check_aggregation(
        self, aligner: str, reducer: str, period: float, group_by: list[str]
    ) -> None:
        if aligner not in malign.ALIGNERS:
            raise FakeCloudError("UNIMPLEMENTED", f"{aligner} is not modelled by the fake cloud")
        if reducer not in ("REDUCE_NONE", "REDUCE_SUM"):
            raise FakeCloudError("UNIMPLEMENTED", f"{reducer} is not modelled by the fake cloud")
        if aligner != "ALIGN_NONE":
            if period <= 0:
                raise _invalid(
                    "aggregation.alignmentPeriod", f"{period:g}s",
                    "An alignment period must be specified with a per-series aligner.",
                )  # fmt: skip
            if period < 60 and not self.state.allow_short_alignment:
                raise _invalid(
                    "aggregation.alignmentPeriod", f"{period:g}s",
                    "The alignment period must be at least 60 seconds.",
                )  # fmt: skip
            if period > 104 * 7 * 86400:
                raise _invalid(
                    "aggregation.alignmentPeriod", f"{period:g}s",
                    "The alignment period must be at most 104 weeks.",
                )  # fmt: skip
        if reducer != "REDUCE_NONE" and aligner == "ALIGN_NONE":
            raise _invalid(
                "aggregation.perSeriesAligner", aligner,
                "A per-series aligner other than ALIGN_NONE must be specified with a "
                "cross-series reducer.",
            )  # fmt: skip
        for field in group_by:
            head, _, label = field.partition(".")
            if field not in ("resource.type", "metric.type") and not (
                head in ("resource", "metric")
                and label.partition(".")[0] in ("label", "labels")
                and label.partition(".")[2]
            ):
                raise _invalid("aggregation.groupByFields", field, "Unknown field.")


def _fingerprint(pb: Any) -> str:
    copy = type(pb)()
    copy.CopyFrom(pb)
    copy.page_token = ""
    copy.page_size = 0
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:16]


def _encode_token(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"o": offset, "f": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_token(token: str, fingerprint: str) -> int:
    if not token:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset, seen = int(data["o"]), str(data["f"])
    except (ValueError, KeyError, TypeError):
        raise _invalid("page_token", token, "The page token is not valid.") from None
    if seen != fingerprint:
        raise _invalid("page_token", token, "The page token does not match the request.")
    return offset

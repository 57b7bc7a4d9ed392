"""The fake Cloud Monitoring, read through the real google-cloud-monitoring client over gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import monitoring_v3

from guard.sim import malign
from guard.sim.clock import VirtualClock
from guard.sim.faults import Fault, FaultInjector
from guard.sim.mfilter import parse_metric_filter
from guard.sim.monitoring import REQUEST_COUNT, MetricsState
from guard.sim.record import CallRecorder

P = "delta-student-486911-n5"
RC = f'metric.type = "{REQUEST_COUNT}"'
CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
Client = monitoring_v3.MetricServiceClient
AsyncClient = monitoring_v3.MetricServiceAsyncClient


@dataclass
class Fake:
    clock: VirtualClock
    state: MetricsState
    recorder: CallRecorder
    faults: FaultInjector
    target: str
    client: monitoring_v3.MetricServiceClient


def _serve(
    state: MetricsState, recorder: CallRecorder, faults: FaultInjector
) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([state.handler(recorder, faults)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


@contextmanager
def _fake(**kwargs: Any) -> Iterator[Fake]:
    clock = VirtualClock()
    state = MetricsState(clock, **kwargs)
    recorder, faults = CallRecorder(), FaultInjector()
    server, target = _serve(state, recorder, faults)
    channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    client = Client(transport=Client.get_transport_class("grpc")(channel=channel))
    yield Fake(clock, state, recorder, faults, target, client)
    channel.close()
    server.stop(None)


@pytest.fixture
def fake() -> Iterator[Fake]:
    with _fake() as f:
        yield f


def _traffic(fake: Fake, minutes: int = 10) -> None:
    """api-1 serves 100 requests a minute (2 of them 500s), api-2 50 a minute (10 of them 503s)."""
    for m in range(minutes):
        at = fake.clock.epoch + timedelta(minutes=m, seconds=30)
        add = fake.state.add_requests
        add(
            project=P,
            location="europe-west1",
            service="api",
            revision="api-1",
            response_code=200,
            count=98,
            at=at,
        )
        add(
            project=P,
            location="europe-west1",
            service="api",
            revision="api-1",
            response_code=500,
            count=2,
            at=at,
        )
        add(
            project=P,
            location="europe-west1",
            service="api",
            revision="api-2",
            response_code=200,
            count=40,
            at=at,
        )
        add(
            project=P,
            location="europe-west1",
            service="api",
            revision="api-2",
            response_code=503,
            count=10,
            at=at,
        )


def _request(end: datetime, minutes: int, **aggregation: Any) -> dict[str, Any]:
    req: dict[str, Any] = {
        "name": f"projects/{P}",
        "filter": f'{RC} AND resource.type = "cloud_run_revision"',
        "interval": {"start_time": end - timedelta(minutes=minutes), "end_time": end},
        "view": "FULL",
    }
    if aggregation:
        req["aggregation"] = aggregation
    return req


def _grouped(end: datetime, minutes: int, aligner: str = "ALIGN_SUM") -> dict[str, Any]:
    return _request(
        end,
        minutes,
        alignment_period=timedelta(seconds=60),
        per_series_aligner=aligner,
        cross_series_reducer="REDUCE_SUM",
        group_by_fields=["resource.labels.revision_name", "metric.labels.response_code_class"],
    )


def _by_group(series: list[monitoring_v3.TimeSeries]) -> dict[tuple[str, str], list[Any]]:
    out = {}
    for ts in series:
        key = (ts.resource.labels["revision_name"], ts.metric.labels["response_code_class"])
        out[key] = [p.value.int64_value for p in ts.points]
    return out


def test_sum_grouped_by_revision_and_class_reads_back_exactly(fake: Fake) -> None:
    _traffic(fake)
    fake.clock.advance(13 * 60)  # every sample (ending at 1..10 min) is past the 120 s delay
    series = list(fake.client.list_time_series(request=_grouped(fake.clock.now(), 13)))
    assert _by_group(series) == {
        ("api-1", "2xx"): [98] * 10,
        ("api-1", "5xx"): [2] * 10,
        ("api-2", "2xx"): [40] * 10,
        ("api-2", "5xx"): [10] * 10,
    }
    ts = series[0]
    assert dict(ts.resource.labels) == {"revision_name": ts.resource.labels["revision_name"]}
    assert ts.resource.type == "cloud_run_revision"
    assert ts.metric.type == REQUEST_COUNT
    assert ts.metric_kind == monitoring_v3.TimeSeries.pb(ts).metric_kind  # DELTA
    assert ts.value_type == 2  # INT64
    ends = [p.interval.end_time for p in ts.points]
    assert ends == sorted(ends, reverse=True)  # newest first
    assert ends[0] == fake.clock.epoch + timedelta(minutes=10)  # empty periods get no point
    assert all((ends[i] - ends[i + 1]) == timedelta(minutes=1) for i in range(len(ends) - 1))
    assert fake.recorder.counts()[("monitoring", "ListTimeSeries")] == 1


def test_periods_count_back_from_end_time_not_from_the_minute(fake: Fake) -> None:
    _traffic(fake, minutes=4)
    fake.clock.advance(10 * 60)
    end = fake.clock.epoch + timedelta(minutes=4, seconds=20)
    series = list(fake.client.list_time_series(request=_grouped(end, 4)))
    points = next(ts for ts in series if ts.resource.labels["revision_name"] == "api-1"
                  and ts.metric.labels["response_code_class"] == "2xx").points  # fmt: skip
    assert [p.interval.end_time.second for p in points] == [20, 20, 20, 20]
    # Samples end on whole minutes; each lands in the period whose end follows it.
    assert [p.value.int64_value for p in points] == [98, 98, 98, 98]


def test_ingestion_delay_hides_recent_points(fake: Fake) -> None:
    _traffic(fake, minutes=5)
    fake.clock.advance(5 * 60)  # samples end at 1..5 min; only those ending by 3 min are visible
    raw = list(fake.client.list_time_series(request=_request(fake.clock.now(), 10)))
    assert {len(ts.points) for ts in raw} == {3}
    assert all(
        ts.points[0].interval.end_time == fake.clock.epoch + timedelta(minutes=3) for ts in raw
    )
    fake.clock.advance(120)
    raw = list(fake.client.list_time_series(request=_request(fake.clock.now(), 10)))
    assert {len(ts.points) for ts in raw} == {5}


def test_no_data_yet_is_an_empty_answer(fake: Fake) -> None:
    _traffic(fake, minutes=1)
    fake.clock.advance(90)
    response = fake.client.list_time_series(request=_grouped(fake.clock.now(), 10))
    assert list(response) == []
    assert response.next_page_token == ""


def test_alignment_shorter_than_60s_is_rejected_like_google(fake: Fake) -> None:
    req = _grouped(fake.clock.now(), 10)
    req["aggregation"]["alignment_period"] = timedelta(seconds=30)
    with pytest.raises(exceptions.InvalidArgument, match="at least 60 seconds"):
        list(fake.client.list_time_series(request=req))


def test_short_alignment_allowed_when_configured() -> None:
    with _fake(allow_short_alignment=True, sample_period=10, ingestion_delay=0) as fake:
        fake.state.add_requests(project=P, location="l", service="s", revision="r",
                                response_code=200, count=7, at=fake.clock.now())  # fmt: skip
        fake.clock.advance(10)
        req = _grouped(fake.clock.now(), 1)
        req["aggregation"]["alignment_period"] = timedelta(seconds=10)
        series = list(fake.client.list_time_series(request=req))
        assert [p.value.int64_value for p in series[0].points] == [7]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"aggregation": {"cross_series_reducer": "REDUCE_SUM"}}, "perSeriesAligner"),
        (
            {"aggregation": {"per_series_aligner": "ALIGN_SUM"}},
            "alignment period must be specified",
        ),
        ({"filter": 'resource.type = "cloud_run_revision"'}, "exactly one metric type"),
        ({"filter": f'{RC} OR metric.type = "x"'}, "exactly one metric type"),
        ({"filter": "metric.type = = 3"}, "syntax error"),
        ({"name": "nonsense"}, "Field name"),
        ({"order_by": "x"}, "order_by"),
    ],
)
def test_invalid_requests_are_invalid_argument(
    fake: Fake, change: dict[str, Any], message: str
) -> None:
    req = {**_request(fake.clock.now(), 10), **change}
    with pytest.raises(exceptions.InvalidArgument, match=message):
        list(fake.client.list_time_series(request=req))


def test_start_after_end_is_rejected(fake: Fake) -> None:
    now = fake.clock.now()
    req = _request(now, 10)
    req["interval"] = {"start_time": now, "end_time": now - timedelta(minutes=1)}
    with pytest.raises(exceptions.InvalidArgument, match="start time must be before the end time"):
        list(fake.client.list_time_series(request=req))


def test_unknown_metric_type_is_not_found(fake: Fake) -> None:
    req = {**_request(fake.clock.now(), 10), "filter": 'metric.type = "custom.googleapis.com/nope"'}
    with pytest.raises(exceptions.NotFound, match="Cannot find metric"):
        list(fake.client.list_time_series(request=req))


def test_paging_over_series_headers_and_full(fake: Fake) -> None:
    _traffic(fake, minutes=3)
    fake.clock.advance(10 * 60)
    req = {**_request(fake.clock.now(), 10), "view": "HEADERS", "page_size": 1}
    pager = fake.client.list_time_series(request=req)
    pages = list(pager.pages)
    assert [len(p.time_series) for p in pages] == [1, 1, 1, 1]
    assert all(not ts.points for p in pages for ts in p.time_series)
    # FULL: page_size counts points, and a page holds whole series (3 points each).
    req = {**_request(fake.clock.now(), 10), "page_size": 7}
    pages = list(fake.client.list_time_series(request=req).pages)
    assert [len(p.time_series) for p in pages] == [2, 2]
    assert sum(len(ts.points) for p in pages for ts in p.time_series) == 12


def test_page_token_from_another_request_is_rejected(fake: Fake) -> None:
    _traffic(fake, minutes=3)
    fake.clock.advance(10 * 60)
    req = {**_request(fake.clock.now(), 10), "view": "HEADERS", "page_size": 1}
    token = fake.client.list_time_series(request=req).next_page_token
    other = {
        **req,
        "filter": f'{RC} AND resource.labels.revision_name = "api-1"',
        "page_token": token,
    }
    with pytest.raises(exceptions.InvalidArgument, match="page token"):
        list(fake.client.list_time_series(request=other))


@pytest.mark.parametrize(
    ("extra", "revisions"),
    [
        ('resource.labels.revision_name = "api-2"', {"api-2"}),
        ("resource.label.revision_name = api-2", {"api-2"}),
        ('resource.labels.revision_name = one_of("api-1", "api-9")', {"api-1"}),
        ('resource.labels.revision_name = starts_with("api-")', {"api-1", "api-2"}),
        ('NOT resource.labels.revision_name = "api-1"', {"api-2"}),
        (
            'metric.label.response_code_class = 5xx AND resource.labels.revision_name != "api-2"',
            {"api-1"},
        ),
        (
            '(resource.labels.revision_name = "api-1" OR resource.labels.revision_name = "api-2")',
            {"api-1", "api-2"},
        ),
        ('resource.labels.service_name = "worker"', set()),
    ],
)
def test_filter_forms(fake: Fake, extra: str, revisions: set[str]) -> None:
    _traffic(fake, minutes=2)
    fake.clock.advance(10 * 60)
    req = {**_request(fake.clock.now(), 10), "filter": f"{RC} AND {extra}"}
    got = {ts.resource.labels["revision_name"] for ts in fake.client.list_time_series(request=req)}
    assert got == revisions


def test_rate_is_per_second_and_delta_interpolates_where_sum_is_exact(fake: Fake) -> None:
    add = fake.state.add_requests
    for minute, count in ((0, 60), (1, 120), (3, 60)):  # minute 2 had no traffic
        add(project=P, location="l", service="api", revision="api-1", response_code=200,
            count=count, at=fake.clock.epoch + timedelta(minutes=minute, seconds=1))  # fmt: skip
    fake.clock.advance(10 * 60)
    end = fake.clock.epoch + timedelta(minutes=4)
    sums = list(fake.client.list_time_series(request=_grouped(end, 4, "ALIGN_SUM")))
    assert [p.value.int64_value for p in sums[0].points] == [60, 120, 60]
    deltas = list(fake.client.list_time_series(request=_grouped(end, 4, "ALIGN_DELTA")))
    assert [p.value.int64_value for p in deltas[0].points] == [60, 90, 120, 60]  # 90: interpolated
    rates = list(fake.client.list_time_series(request=_grouped(end, 4, "ALIGN_RATE")))
    assert [p.value.double_value for p in rates[0].points] == [1.0, 1.5, 2.0, 1.0]
    assert rates[0].value_type == 3  # DOUBLE


def test_delta_prorates_samples_across_unaligned_periods(fake: Fake) -> None:
    fake.state.add_requests(project=P, location="l", service="api", revision="api-1",
                            response_code=200, count=60, at=fake.clock.epoch)  # fmt: skip
    fake.clock.advance(10 * 60)
    end = fake.clock.epoch + timedelta(seconds=90)  # periods (-30s, 30s] and (30s, 90s]
    deltas = list(fake.client.list_time_series(request=_grouped(end, 2, "ALIGN_DELTA")))
    assert [p.value.int64_value for p in deltas[0].points] == [30, 30]
    sums = list(fake.client.list_time_series(request=_grouped(end, 2, "ALIGN_SUM")))
    assert [p.value.int64_value for p in sums[0].points] == [60]  # the sample ends at 60 s


def test_reducer_without_group_by_sums_everything(fake: Fake) -> None:
    _traffic(fake, minutes=2)
    fake.clock.advance(10 * 60)
    req = _grouped(fake.clock.now(), 10)
    req["aggregation"]["group_by_fields"] = []
    (series,) = list(fake.client.list_time_series(request=req))
    assert [p.value.int64_value for p in series.points] == [150, 150]
    assert dict(series.resource.labels) == {}
    assert dict(series.metric.labels) == {}


def test_injected_fault_reaches_the_client(fake: Fake) -> None:
    fake.faults.arm(
        Fault(api="monitoring", method="ListTimeSeries", code="PERMISSION_DENIED", times=1)
    )
    with pytest.raises(exceptions.PermissionDenied):
        list(fake.client.list_time_series(request=_request(fake.clock.now(), 10)))
    assert list(fake.client.list_time_series(request=_request(fake.clock.now(), 10))) == []


async def test_async_client_reads_the_same(fake: Fake) -> None:
    _traffic(fake, minutes=3)
    fake.clock.advance(10 * 60)
    channel = grpc.aio.insecure_channel(fake.target, options=CHANNEL_OPTIONS)
    client = AsyncClient(transport=AsyncClient.get_transport_class("grpc_asyncio")(channel=channel))
    try:
        pager = await client.list_time_series(request=_grouped(fake.clock.now(), 10))
        series = [ts async for ts in pager]
    finally:
        await channel.close()
    assert _by_group(series)[("api-2", "5xx")] == [10, 10, 10]


def test_filter_parser_unit() -> None:
    f = parse_metric_filter(f'{RC} AND metric.labels.response_code_class:"5"')
    assert f.metric_type == REQUEST_COUNT
    kw: dict[str, Any] = {
        "project": P,
        "resource_type": "cloud_run_revision",
        "resource_labels": {},
    }
    assert f.matches(**kw, metric_labels={"response_code_class": "5xx"})
    assert not f.matches(**kw, metric_labels={"response_code_class": "2xx"})
    assert not f.matches(**kw, metric_labels={})
    regex = parse_metric_filter(
        f'{RC} AND metric.labels.response_code = monitoring.regex.full_match("5..")'
    )
    assert regex.matches(**kw, metric_labels={"response_code": "503"})
    assert not regex.matches(**kw, metric_labels={"response_code": "5030"})


def test_period_ends_and_reduce_unit() -> None:
    assert malign.period_ends(0, 180, 60) == [180, 120, 60]
    assert malign.period_ends(10, 180, 60) == [180, 120, 60]  # (0, 60] still ends after start
    a = [malign.Aligned(0, 60, 1), malign.Aligned(60, 120, 2)]
    b = [malign.Aligned(60, 120, 5)]
    assert malign.reduce_sum([a, b]) == [malign.Aligned(60, 120, 7), malign.Aligned(0, 60, 1)]

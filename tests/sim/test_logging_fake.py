"""The fake Cloud Logging, through the real google-cloud-logging GAPIC client over gRPC."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.cloud.audit import audit_log_pb2
from google.cloud.logging_v2.services.logging_service_v2 import (
    LoggingServiceV2AsyncClient,
    LoggingServiceV2Client,
)
from google.cloud.logging_v2.types import LogEntry, TailLogEntriesRequest, TailLogEntriesResponse

from guard.sim.clock import RealClock, SimClock, VirtualClock
from guard.sim.cloudlogging import (
    LogsState,
    cloud_run_request_entry,
    cloud_run_stdout_entry,
    cloud_run_system_entry,
    revision_not_ready_audit_entry,
)
from guard.sim.faults import Fault, FaultInjector
from guard.sim.record import CallRecorder

P = "delta-student-486911-n5"
R = "europe-west1"
CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
Client = LoggingServiceV2Client
AsyncClient = LoggingServiceV2AsyncClient
Suppression = TailLogEntriesResponse.SuppressionInfo.Reason


@dataclass
class Fake:
    clock: SimClock
    state: LogsState
    faults: FaultInjector
    target: str
    client: LoggingServiceV2Client
    streams: list[Any] = field(default_factory=list)


@contextmanager
def _fake(clock: SimClock | None = None, **kwargs: Any) -> Iterator[Fake]:
    clock = clock or VirtualClock()
    state = LogsState(clock, **kwargs)
    faults = FaultInjector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers([state.handler(CallRecorder(), faults)])
    target = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    fake = Fake(
        clock,
        state,
        faults,
        target,
        Client(transport=Client.get_transport_class("grpc")(channel=channel)),
    )
    yield fake
    for stream in fake.streams:
        stream.cancel()
    channel.close()
    server.stop(None)


@pytest.fixture
def fake() -> Iterator[Fake]:
    with _fake() as f:
        yield f


def _at(fake: Fake, seconds: float) -> datetime:
    return fake.clock.epoch + timedelta(seconds=seconds)


def _requests(
    fake: Fake, statuses: list[int], *, start: float = 0.0, revision: str = "api-2"
) -> None:
    for i, status in enumerate(statuses):
        fake.state.append(
            cloud_run_request_entry(
                P, R, "api", revision, status, f"https://api/x/{i}", 0.05, _at(fake, start + i)
            )
        )


def _list(fake: Fake, **request: Any) -> list[LogEntry]:
    return list(
        fake.client.list_log_entries(request={"resource_names": [f"projects/{P}"], **request})
    )


def test_list_orders_by_timestamp_whatever_the_append_order(fake: Fake) -> None:
    for second in (5, 1, 3, 2, 4):
        fake.state.append(
            cloud_run_stdout_entry(
                P, R, "api", "api-2", text=f"line {second}", at=_at(fake, second)
            )
        )
    assert [e.text_payload for e in _list(fake)] == [f"line {s}" for s in (1, 2, 3, 4, 5)]
    assert [e.text_payload for e in _list(fake, order_by="timestamp desc")] == [
        f"line {s}" for s in (5, 4, 3, 2, 1)
    ]
    assert all(e.insert_id and e.receive_timestamp for e in _list(fake))


def test_equal_timestamps_come_in_insert_id_order_both_ways(fake: Fake) -> None:
    for insert_id in ("c", "a", "b"):
        entry = cloud_run_stdout_entry(P, R, "api", "api-2", text=insert_id, at=_at(fake, 1))
        entry.insert_id = insert_id
        fake.state.append(entry)
    fake.state.append(cloud_run_stdout_entry(P, R, "api", "api-2", text="later", at=_at(fake, 2)))
    assert [e.insert_id for e in _list(fake)][:3] == ["a", "b", "c"]
    desc = _list(fake, order_by="timestamp desc", page_size=2)  # pages split the equal group
    assert [e.text_payload for e in desc] == ["later", "a", "b", "c"]


def test_duplicates_are_stored_once(fake: Fake) -> None:
    entry = cloud_run_stdout_entry(P, R, "api", "api-2", text="once", at=_at(fake, 1))
    entry.insert_id = "dup"
    fake.state.append(entry)
    fake.state.append(entry)
    assert len(_list(fake)) == 1


def test_filters_select_over_the_wire(fake: Fake) -> None:
    _requests(fake, [200, 500, 503, 404, 200])
    _requests(fake, [500], start=10, revision="api-1")
    fake.state.append(
        cloud_run_stdout_entry(
            P,
            R,
            "api",
            "api-2",
            text='{"severity": "ERROR", "message": "relation \\"users\\" does not exist"}',
            at=_at(fake, 20),
        )
    )
    fake.state.append(
        cloud_run_stdout_entry(
            "other-project", R, "api", "api-2", text="elsewhere", at=_at(fake, 21)
        )
    )
    errors = _list(fake, filter='httpRequest.status>=500 AND resource.labels.revision_name="api-2"')
    assert [e.http_request.status for e in errors] == [500, 503]
    assert all(e.severity == 500 for e in errors)  # ERROR
    schema = _list(
        fake,
        filter='log_id("run.googleapis.com/stdout") severity>=ERROR '
        'jsonPayload.message:"does not exist"',
    )
    assert len(schema) == 1
    assert schema[0].json_payload["message"] == 'relation "users" does not exist'
    assert "severity" not in schema[0].json_payload
    assert len(_list(fake)) == 7  # the other project's entry is not read


def test_audit_and_system_entries(fake: Fake) -> None:
    fake.state.append(
        revision_not_ready_audit_entry(
            P,
            R,
            "api",
            "api-3",
            "The user-provided container failed to start and listen on the port defined provided "
            "by the PORT=8080 environment variable.",
            _at(fake, 1),
        )
    )
    fake.state.append(
        cloud_run_system_entry(P, R, "api", "api-3", "Container called exit(1).", _at(fake, 2))
    )
    (audit,) = _list(
        fake,
        filter='logName:"cloudaudit.googleapis.com%2Fsystem_event" '
        'protoPayload.status.message:"Ready condition status changed to False"',
    )
    payload = audit_log_pb2.AuditLog()
    assert LogEntry.pb(audit).proto_payload.Unpack(payload)
    assert payload.status.message.startswith(
        "Ready condition status changed to False for Revision api-3"
    )
    (system,) = _list(
        fake, filter='log_id("run.googleapis.com/varlog/system") textPayload=~"exit\\([0-9]+\\)"'
    )
    assert system.text_payload == "Container called exit(1)."


def test_paging_default_50_and_all_pages(fake: Fake) -> None:
    _requests(fake, [200] * 120)
    pager = fake.client.list_log_entries(request={"resource_names": [f"projects/{P}"]})
    pages = list(pager.pages)
    assert [len(p.entries) for p in pages] == [50, 50, 20]
    assert pages[-1].next_page_token == ""
    urls = [e.http_request.request_url for p in pages for e in p.entries]
    assert urls == [f"https://api/x/{i}" for i in range(120)]


def test_partial_and_empty_pages_carry_a_token() -> None:
    with _fake(scan_limit=10) as fake:
        _requests(fake, [200] * 30)
        _requests(fake, [500, 502], start=100)
        pages = list(
            fake.client.list_log_entries(
                request={"resource_names": [f"projects/{P}"], "filter": "httpRequest.status>=500"}
            ).pages
        )
        assert [len(p.entries) for p in pages] == [0, 0, 0, 2]
        assert all(p.next_page_token for p in pages[:-1])


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"page_size": 1001}, "page_size"),
        ({"page_size": -1}, "page_size"),
        ({"resource_names": [f"projects/p{i}" for i in range(101)]}, "maximum of 100"),
        ({"resource_names": []}, "resource_names"),
        ({"resource_names": ["buckets/x"]}, "Invalid resource name"),
        ({"filter": "x" * 20_001}, "20000"),
        ({"order_by": "severity desc"}, "order_by"),
        ({"filter": "httpRequest.status >= AND x"}, "line 1, column 23"),
        ({"page_token": "garbage"}, "page token"),
    ],
)
def test_invalid_list_requests(fake: Fake, request_: dict[str, Any], message: str) -> None:
    with pytest.raises(exceptions.InvalidArgument, match=message):
        _list(fake, **request_)


def test_page_token_must_match_the_request(fake: Fake) -> None:
    _requests(fake, [200] * 3)
    token = fake.client.list_log_entries(
        request={"resource_names": [f"projects/{P}"], "page_size": 1}
    ).next_page_token
    with pytest.raises(exceptions.InvalidArgument, match="does not match"):
        _list(fake, page_size=1, page_token=token, filter="severity>=ERROR")


def test_read_quota_per_project_per_minute() -> None:
    with _fake(list_quota_per_minute=3) as fake:
        for _ in range(3):
            _list(fake)
        with pytest.raises(
            exceptions.ResourceExhausted, match="Quota exceeded for quota metric 'Read requests'"
        ):
            _list(fake)
        assert isinstance(fake.clock, VirtualClock)
        fake.clock.advance(60)
        _list(fake)


# ---- TailLogEntries ------------------------------------------------------------------------


class SyncTail:
    """A sync tail read on a thread (the sync client blocks until the first response)."""

    def __init__(self, fake: Fake, **request: Any) -> None:
        self.responses: queue.Queue[TailLogEntriesResponse] = queue.Queue()
        self.error: Exception | None = None
        self.stream: Any = None
        req = TailLogEntriesRequest(resource_names=[f"projects/{P}"], **request)
        self._opened = threading.Event()

        def run() -> None:
            try:
                self.stream = fake.client.tail_log_entries(requests=iter([req]))
                fake.streams.append(self.stream)
                self._opened.set()
                for response in self.stream:
                    self.responses.put(response)
            except Exception as err:  # the test inspects it
                self.error = err
            finally:
                self._opened.set()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def next(self, timeout: float = 5.0) -> TailLogEntriesResponse:
        return self.responses.get(timeout=timeout)

    def cancel(self) -> None:
        assert self._opened.wait(5), "the stream never returned a first response"
        self.stream.cancel()
        self.thread.join(5)


def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _stdout(fake: Fake, text: str, at: datetime) -> None:
    fake.state.append(cloud_run_stdout_entry(P, R, "api", "api-2", text=text, at=at))


def test_tail_delivers_in_order_after_the_buffer_window_virtual_clock(fake: Fake) -> None:
    assert isinstance(fake.clock, VirtualClock)
    _stdout(fake, "before the session: never sent", _at(fake, 0))
    tail = SyncTail(fake, filter='log_id("run.googleapis.com/stdout")')
    _wait_for(lambda: fake.state.tail.open_sessions(P) == 1)
    for second, text in ((1.0, "b"), (0.5, "a"), (1.5, "c"), (4.0, "d")):
        _stdout(fake, text, _at(fake, second))
    time.sleep(0.1)
    assert tail.responses.empty()  # the clock has not passed timestamp + 2 s
    fake.clock.advance(3.5)
    fake.state.notify()
    assert [e.text_payload for e in tail.next().entries] == ["a", "b", "c"]
    fake.clock.advance(3)
    fake.state.notify()
    assert [e.text_payload for e in tail.next().entries] == ["d"]
    tail.cancel()
    _wait_for(lambda: fake.state.tail.open_sessions(P) == 0, timeout=2)


def test_tail_on_a_real_clock() -> None:
    with _fake(RealClock()) as fake:
        tail = SyncTail(fake, buffer_window=timedelta(milliseconds=200))
        _wait_for(lambda: fake.state.tail.open_sessions(P) == 1)
        now = fake.clock.now()
        started = time.monotonic()
        _stdout(fake, "late", now + timedelta(milliseconds=50))  # appended first, stamped later
        _stdout(fake, "early", now)
        got = [e.text_payload for e in tail.next().entries]
        assert time.monotonic() - started >= 0.2
        while len(got) < 2:
            got += [e.text_payload for e in tail.next().entries]
        assert got == ["early", "late"]
        tail.cancel()


def test_tail_counts_rate_limited_entries() -> None:
    with _fake(tail_entries_per_minute=5) as fake:
        tail = SyncTail(fake, buffer_window=timedelta(0))
        _wait_for(lambda: fake.state.tail.open_sessions(P) == 1)
        for i in range(8):
            _stdout(fake, f"line {i}", _at(fake, 0))
        response = tail.next()
        assert len(response.entries) == 5
        assert [(s.reason, s.suppressed_count) for s in response.suppression_info] == [
            (Suppression.RATE_LIMIT, 3)
        ]
        tail.cancel()


def test_tail_counts_entries_a_slow_client_did_not_consume() -> None:
    with _fake(tail_backlog=3) as fake:
        tail = SyncTail(fake)
        _wait_for(lambda: fake.state.tail.open_sessions(P) == 1)
        for i in range(5):
            _stdout(fake, f"line {i}", _at(fake, i * 0.1))
        assert isinstance(fake.clock, VirtualClock)
        fake.clock.advance(5)
        response = tail.next()
        assert [e.text_payload for e in response.entries] == ["line 2", "line 3", "line 4"]
        assert [(s.reason, s.suppressed_count) for s in response.suppression_info] == [
            (Suppression.NOT_CONSUMED, 2)
        ]
        tail.cancel()


def test_tail_session_limit_per_project() -> None:
    with _fake(tail_sessions_per_project=2) as fake:
        tails = [SyncTail(fake, buffer_window=timedelta(0)) for _ in range(2)]
        _wait_for(lambda: fake.state.tail.open_sessions(P) == 2)
        third = SyncTail(fake)
        third.thread.join(5)
        assert isinstance(third.error, exceptions.ResourceExhausted)
        _stdout(fake, "hello", _at(fake, 0))  # the sync client can cancel after a first response
        for t in tails:
            t.next()
        tails[0].cancel()
        _wait_for(lambda: fake.state.tail.open_sessions(P) == 1, timeout=2)
        SyncTail(fake)  # the freed slot can be taken again
        _wait_for(lambda: fake.state.tail.open_sessions(P) == 2)
        tails[1].cancel()


def test_tail_rejects_a_buffer_window_over_60s(fake: Fake) -> None:
    tail = SyncTail(fake, buffer_window=timedelta(seconds=61))
    tail.thread.join(5)
    assert isinstance(tail.error, exceptions.InvalidArgument)


def test_injected_drop_ends_the_stream_with_unavailable(fake: Fake) -> None:
    assert isinstance(fake.clock, VirtualClock)
    fake.faults.arm(Fault(api="logging", method="TailLogEntries", code=None, drop_after=1))
    tail = SyncTail(fake, buffer_window=timedelta(0))
    _wait_for(lambda: fake.state.tail.open_sessions(P) == 1)
    _stdout(fake, "one", _at(fake, 0))
    assert [e.text_payload for e in tail.next().entries] == ["one"]
    _stdout(fake, "two", _at(fake, 0))
    tail.thread.join(5)
    assert isinstance(tail.error, exceptions.ServiceUnavailable)
    _wait_for(lambda: fake.state.tail.open_sessions(P) == 0, timeout=2)


async def test_async_tail_delivers_and_releases_on_cancel(fake: Fake) -> None:
    assert isinstance(fake.clock, VirtualClock)
    channel = grpc.aio.insecure_channel(fake.target, options=CHANNEL_OPTIONS)
    client = AsyncClient(transport=AsyncClient.get_transport_class("grpc_asyncio")(channel=channel))

    async def requests() -> Any:
        yield TailLogEntriesRequest(resource_names=[f"projects/{P}"], filter="severity>=ERROR")

    try:
        stream: Any = await client.tail_log_entries(requests=requests())
        await asyncio.to_thread(_wait_for, lambda: fake.state.tail.open_sessions(P) == 1)
        _requests(fake, [200, 500, 503])
        fake.clock.advance(10)
        fake.state.notify()
        iterator = stream.__aiter__()
        response = await asyncio.wait_for(iterator.__anext__(), 5)
        assert [e.http_request.status for e in response.entries] == [500, 503]
        stream.cancel()
        await asyncio.to_thread(_wait_for, lambda: fake.state.tail.open_sessions(P) == 0, 2)
    finally:
        await channel.close()

"""The Logging query language subset of the fake: parsing, semantics and their algebra."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.sim.faults import FakeCloudError
from guard.sim.logdoc import entry_doc
from guard.sim.logfilter import parse_log_filter
from guard.sim.runlogs import (
    cloud_run_request_entry,
    cloud_run_stdout_entry,
    revision_not_ready_audit_entry,
)

T0 = datetime(2026, 1, 15, 14, 0, 0, tzinfo=UTC)
P, R = "delta-student-486911-n5", "europe-west1"


def request_doc(status: int = 503, revision: str = "api-2", second: float = 5) -> dict[str, Any]:
    entry = cloud_run_request_entry(
        P, R, "api", revision, status, "https://api/courses", 0.25, T0 + timedelta(seconds=second)
    )
    entry.insert_id = "abc123"
    return entry_doc(entry)


def stdout_doc(text: str = "", **json: Any) -> dict[str, Any]:
    if json:
        return entry_doc(cloud_run_stdout_entry(P, R, "api", "api-2", json=json, at=T0))
    return entry_doc(
        cloud_run_stdout_entry(P, R, "api", "api-2", text=text, at=T0, stream="stderr")
    )


def matches(text: str, doc: dict[str, Any]) -> bool:
    return parse_log_filter(text).matches(doc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("httpRequest.status>=500", True),
        ("httpRequest.status >= 500 AND httpRequest.status < 600", True),
        ("httpRequest.status=404", False),
        ("http_request.status=503", True),  # snake_case field names work too
        ("severity>=WARNING", True),
        ("severity=error", True),  # names ignore case
        ("severity>=CRITICAL", False),
        ("severity=500", True),
        ('resource.type="cloud_run_revision"', True),
        ('resource.labels.service_name="API"', True),  # string = ignores case
        ("resource.labels.service_name=api", True),  # unquoted value
        ('resource.labels.revision_name=("api-1" OR "api-2")', True),
        ('resource.labels.revision_name=("api-1" OR "api-3")', False),
        ('logName="projects/delta-student-486911-n5/logs/run.googleapis.com%2Frequests"', True),
        ('logName:"run.googleapis.com%2Frequests"', True),
        ('log_id("run.googleapis.com/requests")', True),
        ('log_id("run.googleapis.com/stdout")', False),
        ('timestamp>="2026-01-15T14:00:05Z"', True),
        ('timestamp>"2026-01-15T14:00:05.000000001Z"', False),
        ('timestamp<"2026-01-15T15:00:05+01:00"', False),  # the same instant in another zone
        ('timestamp<="2026-01-15T15:00:05+01:00"', True),
        ('insertId="abc123"', True),
        ('labels.instanceId:"00f4"', True),
        ('httpRequest.requestUrl=~"/courses$"', True),
        ('httpRequest.requestUrl=~"/COURSES$"', False),  # regular expressions keep case
        ('httpRequest.requestUrl!~"lectures"', True),
        ("httpRequest.latency:*", True),
        ("jsonPayload:*", False),
        ("jsonPayload.message!=x", True),  # != holds for a missing field
        ("jsonPayload.message=x", False),
        ('"api/courses"', True),  # global restriction
        ("COURSES", True),
        ("lectures", False),
        ("-severity=ERROR", False),
        ("NOT severity=ERROR", False),
        ("severity=INFO OR httpRequest.status=503", True),
        ("severity=INFO httpRequest.status=503", False),  # juxtaposition is AND
        ('SEARCH("courses")', True),
        ('SEARCH("cour")', False),  # SEARCH matches whole tokens
        ('SEARCH(httpRequest.requestUrl, "courses")', True),
    ],
)
def test_request_entry_semantics(text: str, expected: bool) -> None:
    assert matches(text, request_doc()) is expected


def test_json_payload_fields_and_lifted_severity() -> None:
    doc = stdout_doc(
        severity="ERROR",
        message="applying backend/migrations/003_add_col.sql failed",
        attempt=2,
        ok=False,
    )
    assert doc["severity"] == "ERROR"
    assert "severity" not in doc["jsonPayload"]
    assert matches('jsonPayload.message:"003_add_col.sql"', doc)
    assert matches("jsonPayload.attempt>=2", doc)
    assert matches("jsonPayload.attempt=2", doc)
    assert matches("jsonPayload.ok=false", doc)
    assert matches('jsonPayload.message=~"migrations/\\d{3}_\\w+\\.sql"', doc)
    assert matches('jsonPayload.message=~"migrations/[0-9]{3}_[a-z_]+[.]sql"', doc)


def test_one_line_json_text_becomes_json_payload_and_other_text_stays_text() -> None:
    doc = entry_doc(
        cloud_run_stdout_entry(
            P, R, "api", "api-2", text='{"severity":"warning","message":"slow"}', at=T0
        )
    )
    assert doc["jsonPayload"] == {"message": "slow"}
    assert doc["severity"] == "WARNING"
    multi = stdout_doc(
        'Traceback (most recent call last):\n  File "x.py"\n'
        'psycopg.errors.UndefinedColumn: column "email" does not exist'
    )
    assert "textPayload" in multi
    assert multi["severity"] == "DEFAULT"  # Cloud Run does not mark stderr as ERROR
    assert matches('textPayload:"UndefinedColumn"', multi)
    assert matches("severity<INFO", multi)


def test_audit_proto_payload_fields() -> None:
    doc = entry_doc(
        revision_not_ready_audit_entry(P, R, "api", "api-3", "Container failed to start.", T0)
    )
    assert matches('protoPayload.status.message:"Ready condition status changed to False"', doc)
    assert matches('protoPayload.serviceName="run.googleapis.com"', doc)
    assert matches('log_id("cloudaudit.googleapis.com/system_event")', doc)


def test_precedence_is_not_then_or_then_and() -> None:
    # Google documents: a OR NOT b AND NOT c OR d == (a OR (NOT b)) AND ((NOT c) OR d)
    doc = {"a": "1", "b": "1", "c": "1", "d": "0"}
    text = "a=1 OR NOT b=1 AND NOT c=1 OR d=1"
    assert matches(text, doc) is False  # under AND-before-OR it would be True
    assert matches("(a=1 OR NOT b=1) AND (NOT c=1 OR d=1)", doc) is False
    assert matches("a=1 OR (NOT b=1 AND NOT c=1) OR d=1", doc) is True


def test_lower_case_and_is_a_search_term() -> None:
    doc = {"textPayload": "cats and dogs"}
    assert matches("cats and dogs", doc)
    assert not matches("cats and birds", doc)


def test_quoted_path_segments_and_escapes() -> None:
    doc = {"labels": {"k8s-pod/app": "guard"}, "textPayload": 'say "hi"\tnow'}
    assert matches('labels."k8s-pod/app"="guard"', doc)
    assert matches('textPayload:"say \\"hi\\"\\t"', doc)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("httpRequest.status >=", "line 1, column 22, token '<end of filter>'"),
        ("(severity=ERROR", "line 1, column 16"),
        ("severity=ERROR)", "line 1, column 15, token ')'"),
        ("a = b\n  AND = c", "line 2, column 7, token '='"),
        ('textPayload=~"(unclosed"', "invalid regular expression"),
        ('timestamp>"yesterday"', "invalid timestamp"),
        ("severity>=LOUD", "invalid severity"),
        ('"no end', "unterminated string"),
        ("a ! b", "token '!'"),
        ("x = OR", "token 'OR'"),
    ],
)
def test_parse_errors_say_where(text: str, where: str) -> None:
    with pytest.raises(FakeCloudError) as info:
        parse_log_filter(text)
    assert info.value.code == "INVALID_ARGUMENT"
    assert info.value.message.startswith("Unparseable filter: ")
    assert where in info.value.message


def test_unmodelled_functions_are_unimplemented_not_silently_wrong() -> None:
    with pytest.raises(FakeCloudError) as info:
        parse_log_filter("sample(insertId, 0.1)")
    assert info.value.code == "UNIMPLEMENTED"


# ---- properties ----------------------------------------------------------------------------

ATOMS = [
    "httpRequest.status>=500",
    "httpRequest.status=200",
    "severity>=WARNING",
    "severity=DEFAULT",
    'resource.labels.revision_name="api-2"',
    'textPayload:"does not exist"',
    'jsonPayload.message=~"^boom"',
    "jsonPayload.n>2",
    "labels.instanceId:*",
    'log_id("run.googleapis.com/requests")',
    "courses",
]


@st.composite
def filters(draw: st.DrawFn, depth: int = 3) -> str:
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from(ATOMS))
    kind = draw(st.sampled_from(["AND", "OR", "NOT", "-", "juxt"]))
    left = draw(filters(depth - 1))
    if kind in ("NOT", "-"):
        return f"{kind}{' ' if kind == 'NOT' else ''}({left})"
    right = draw(filters(depth - 1))
    return f"({left}) ({right})" if kind == "juxt" else f"({left}) {kind} ({right})"


@st.composite
def docs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["request", "json", "text"]))
    if kind == "request":
        return request_doc(
            draw(st.sampled_from([200, 404, 500, 503])), draw(st.sampled_from(["api-1", "api-2"]))
        )
    if kind == "json":
        return stdout_doc(
            severity=draw(st.sampled_from(["INFO", "ERROR", "DEBUG"])),
            message=draw(st.sampled_from(["boom", "fine", "boom: relation does not exist"])),
            n=draw(st.integers(0, 5)),
        )
    return stdout_doc(draw(st.sampled_from(["column does not exist", "GET /courses", "ok"])))


@settings(max_examples=150, deadline=None)
@given(filters(), docs())
def test_not_not_is_identity(f: str, doc: dict[str, Any]) -> None:
    assert matches(f"NOT (NOT ({f}))", doc) == matches(f, doc)
    assert matches(f"-(-({f}))", doc) == matches(f, doc)


@settings(max_examples=150, deadline=None)
@given(filters(), filters(), docs())
def test_and_or_commute_and_juxtaposition_is_and(a: str, b: str, doc: dict[str, Any]) -> None:
    assert matches(f"({a}) AND ({b})", doc) == matches(f"({b}) AND ({a})", doc)
    assert matches(f"({a}) OR ({b})", doc) == matches(f"({b}) OR ({a})", doc)
    assert matches(f"({a}) ({b})", doc) == (matches(a, doc) and matches(b, doc))
    assert matches(f"NOT (({a}) OR ({b}))", doc) == (not matches(a, doc) and not matches(b, doc))


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(
        ["httpRequest.status", "severity", "jsonPayload.n", "textPayload", "nope.field"]
    ),
    st.sampled_from(["500", "ERROR", "2", '"ok"']),
    docs(),
)
def test_not_equal_is_the_negation_of_equal(field: str, value: str, doc: dict[str, Any]) -> None:
    try:
        eq = matches(f"{field}={value}", doc)
    except FakeCloudError:  # e.g. severity="ok"
        return
    assert matches(f"{field}!={value}", doc) is (not eq)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('ab.=!<>:~()"- \\\nANDORNT*5')), max_size=30))
def test_any_text_parses_or_fails_with_invalid_argument(text: str) -> None:
    try:
        f = parse_log_filter(text)
    except FakeCloudError as err:
        code = err.code
    else:
        f.matches(request_doc())
        code = "OK"
    assert code in ("OK", "INVALID_ARGUMENT", "UNIMPLEMENTED")

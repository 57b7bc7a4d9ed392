"""What the log source asks Cloud Logging for, and how an entry becomes a `LogRecord`.

The classifier's evidence is scattered over five shapes of Cloud Run entry, and the obvious
filter (`severity>=ERROR`) would lose most of it: Cloud Run stores plain-text stdout/stderr
with severity DEFAULT, so a Python traceback printed by a crashing migration runner has no
severity at all, and when a runtime writes it one line per entry most lines carry no error
word either. So the filter selects, for the watched services only:

- request logs with `httpRequest.status>=500` (seconds ahead of Monitoring's 5xx series);
- container output (stdout, stderr) that is WARNING or worse, or whose text or JSON
  `message` looks like evidence: error words, the migration runners' own progress lines
  ("Applying migration backend/migrations/003_x.sql", Alembic's "Running upgrade", Django's
  "Applying app.0002_x"), driver names, SQLSTATE, and indented or `LINE n:` continuation
  lines of a traceback split one line per entry;
- platform lines in `varlog/system` that are WARNING or worse or mention `exit`
  ("Container called exit(1).");
- the `cloudaudit.googleapis.com/system_event` entries of revisions whose Ready condition
  turned False (a container that never starts never serves a 5xx).

The service names go in one value group, so 100 services cost ~3,000 characters, far below
Logging's 20,000-character limit. The regular expression uses only what RE2 and Python's `re`
both accept.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from google.cloud.audit import audit_log_pb2
from google.cloud.logging_v2.types import LogEntry
from google.logging.type import log_severity_pb2
from google.protobuf import json_format

from guard.core.signals import LogRecord

#: Plain text (or a JSON message) worth the classifier's time, whatever its severity.
EVIDENCE_PATTERN = (
    "(?i)error|exception|traceback|fatal|panic|fail|critical|migrat|alembic|applying|"
    "upgrade|[.]sql|sqlstate|psycopg|sqlalchemy|asyncpg|does not exist|already exists|violat|"
    "^\\\\s|^(line [0-9]+|detail|hint|context):|^.(sql|parameters): |"
    "^(create|alter|drop|insert|update|delete|select|with) "
)
#: JSON payload fields that carry an error besides `message` (logging formatters' names).
ERROR_FIELDS = ("exception", "exc_info", "stack_trace", "stacktrace", "traceback", "error", "err")
MAX_FILTER = 20_000
_READY_FALSE = "Ready condition status changed to False"


def _group(values: Iterable[str]) -> str:
    quoted = [json_quote(v) for v in sorted(set(values))]
    return "(" + " OR ".join(quoted) + ")"


def json_quote(value: str) -> str:
    """A Logging filter string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_filter(services: Iterable[str], locations: Iterable[str]) -> str:
    """The filter selecting every entry of `services` the classifier needs."""
    text = f'textPayload=~"{EVIDENCE_PATTERN}" OR jsonPayload.message=~"{EVIDENCE_PATTERN}"'
    container = (
        '(log_id("run.googleapis.com/stdout") OR log_id("run.googleapis.com/stderr")) '
        f"AND (severity>=WARNING OR {text})"
    )
    requests = 'log_id("run.googleapis.com/requests") AND httpRequest.status>=500'
    system = (
        'log_id("run.googleapis.com/varlog/system") AND (severity>=WARNING OR textPayload:"exit")'
    )
    audit = (
        'log_id("cloudaudit.googleapis.com/system_event") '
        f'AND protoPayload.status.message:"{_READY_FALSE}"'
    )
    flt = (
        'resource.type="cloud_run_revision" '
        f"AND resource.labels.service_name={_group(services)} "
        f"AND resource.labels.location={_group(locations)} "
        f"AND (({requests}) OR ({container}) OR ({system}) OR ({audit}))"
    )
    if len(flt) > MAX_FILTER - 100:  # room for the list's timestamp bound
        raise ValueError(f"the log filter is {len(flt)} characters; Logging allows {MAX_FILTER}")
    return flt


def since_filter(base: str, since: datetime) -> str:
    """`base` restricted to entries at or after `since` (for ListLogEntries)."""
    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f'({base}) AND timestamp>="{stamp}"'


def entry_key(entry: LogEntry) -> str:
    """Cloud Logging's identity of an entry: logName, timestamp and insertId."""
    pb = LogEntry.pb(entry)
    return f"{pb.log_name}|{pb.timestamp.seconds}.{pb.timestamp.nanos:09d}|{pb.insert_id}"


def entry_time(entry: LogEntry) -> datetime:
    return LogEntry.pb(entry).timestamp.ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]


def to_record(entry: LogEntry, watched: Mapping[tuple[str, str], object]) -> LogRecord | None:
    """The entry as the core sees it; None when it is not a watched Cloud Run revision's."""
    pb = LogEntry.pb(entry)
    labels = pb.resource.labels
    service, location = labels.get("service_name", ""), labels.get("location", "")
    if (service, location) not in watched:
        return None
    project, _, log_id = pb.log_name.removeprefix("projects/").partition("/logs/")
    payload: dict[str, Any] = {}
    kind = pb.WhichOneof("payload")
    if kind == "text_payload":
        text = pb.text_payload
    elif kind == "json_payload":
        payload = json_format.MessageToDict(pb.json_payload)
        text = json_text(payload)
    elif kind == "proto_payload":
        text = audit_text(pb.proto_payload)
    else:
        text = ""
    status = pb.http_request.status if pb.HasField("http_request") else 0
    return LogRecord(
        at=pb.timestamp.ToDatetime(tzinfo=UTC),
        project=labels.get("project_id", "") or project,
        service=service,
        revision=labels.get("revision_name", ""),
        log_name=urllib.parse.unquote(log_id),
        severity=log_severity_pb2.LogSeverity.Name(pb.severity),
        text=text,
        insert_id=pb.insert_id,
        http_status=status or None,
        json_payload=payload,
    )


def json_text(payload: Mapping[str, Any]) -> str:
    """`message` followed by the other string fields that carry an error."""
    message = payload.get("message")
    parts = [message] if isinstance(message, str) else []
    for key in ERROR_FIELDS:
        value = payload.get(key)
        if isinstance(value, str) and value and not (parts and value in parts[0]):
            parts.append(value)
    return "\n".join(p.rstrip("\n") for p in parts)


def audit_text(packed: Any) -> str:
    """The status message of an audit entry (the "Ready condition … False" text)."""
    audit = audit_log_pb2.AuditLog()
    if packed.Is(audit.DESCRIPTOR) and packed.Unpack(audit):
        return str(audit.status.message)
    return ""

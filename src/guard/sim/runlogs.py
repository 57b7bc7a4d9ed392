"""Builders for the log entries Cloud Run writes, in the shapes the guard meets in production.

The guard's log classifier and its filters are tested against these, so each builder copies
what Cloud Run emits: the URL-encoded log names, the `cloud_run_revision` resource and its
labels, `labels.instanceId`, request logs with `httpRequest`, container output where plain
text becomes `textPayload` and a one-line JSON object becomes `jsonPayload` (its `severity`
lifted to the entry, `message` kept in the payload, the `logging.googleapis.com/*` keys
applied), platform lines in `varlog/system`, and the system-event audit entry of a revision
that fails to become ready.

Choices where Google's behaviour is not documented: request severity is INFO below 400,
WARNING for 4xx, ERROR for 5xx (what Cloud Run is seen to do); container output on either
stream is DEFAULT unless its JSON names a severity (Cloud Run, unlike GKE, does not mark
stderr as ERROR); platform `varlog/system` lines default to ERROR. The audit entry's
`protoPayload` is a real `google.cloud.audit.AuditLog` packed in the Any (the
google-cloud-audit-log package is installed), with `status.code` 9 (FAILED_PRECONDITION) and
the "Ready condition status changed to False for Revision R with message: M" text.
"""

from __future__ import annotations

import json as jsonlib
import urllib.parse
from datetime import datetime, timedelta
from typing import Any

from google.cloud.audit import audit_log_pb2
from google.cloud.logging_v2.types import LogEntry
from google.protobuf import any_pb2, struct_pb2

_LIFTED_SEVERITIES = frozenset(
    {"DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"}
)


def log_name(project: str, log_id: str) -> str:
    """`projects/P/logs/<URL-encoded log id>`, as Cloud Logging stores it."""
    return f"projects/{project}/logs/{urllib.parse.quote(log_id, safe='')}"


def cloud_run_resource(project: str, location: str, service: str, revision: str) -> dict[str, Any]:
    """The `cloud_run_revision` monitored resource."""
    return {
        "type": "cloud_run_revision",
        "labels": {
            "project_id": project,
            "service_name": service,
            "revision_name": revision,
            "location": location,
            "configuration_name": service,
        },
    }


def _base(
    where: tuple[str, str, str, str], log_id: str, *, at: datetime | None, instance_id: str | None
) -> dict[str, Any]:
    project, location, service, revision = where
    fields: dict[str, Any] = {
        "log_name": log_name(project, log_id),
        "resource": cloud_run_resource(project, location, service, revision),
    }
    if at is not None:
        fields["timestamp"] = at
    if instance_id:
        fields["labels"] = {"instanceId": instance_id}
    return fields


def request_severity(status: int) -> str:
    """The severity Cloud Run gives a request log line."""
    return "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"


def cloud_run_request_entry(  # noqa: PLR0917 - the positional shape is the World's contract
    project: str,
    location: str,
    service: str,
    revision: str,
    status: int,
    url: str,
    latency: float,
    at: datetime | None = None,
    *,
    method: str = "GET",
    instance_id: str | None = "00f46b9285",
    user_agent: str = "guard-sim/1.0",
    remote_ip: str = "203.0.113.7",
    response_size: int = 128,
    trace: str | None = None,
) -> LogEntry:
    """A `run.googleapis.com/requests` entry for one request (latency in seconds)."""
    fields = _base(
        (project, location, service, revision),
        "run.googleapis.com/requests",
        at=at,
        instance_id=instance_id,
    )
    fields["severity"] = request_severity(status)
    fields["http_request"] = {
        "request_method": method,
        "request_url": url,
        "status": status,
        "response_size": response_size,
        "user_agent": user_agent,
        "remote_ip": remote_ip,
        "latency": timedelta(seconds=latency),
        "protocol": "HTTP/1.1",
    }
    if trace:
        fields["trace"] = f"projects/{project}/traces/{trace}"
    return LogEntry(**fields)


def _structured(payload: dict[str, Any], fields: dict[str, Any]) -> None:
    """Apply Cloud Run's special JSON keys to the entry, as its logging agent does."""
    severity = payload.get("severity")
    if isinstance(severity, str) and severity.upper() in _LIFTED_SEVERITIES:
        fields["severity"] = severity.upper()
        del payload["severity"]
    labels = payload.pop("logging.googleapis.com/labels", None)
    if isinstance(labels, dict):
        fields["labels"] = {**fields.get("labels", {}), **{k: str(v) for k, v in labels.items()}}
    for key, field in (
        ("logging.googleapis.com/trace", "trace"),
        ("logging.googleapis.com/spanId", "span_id"),
        ("logging.googleapis.com/insertId", "insert_id"),
    ):
        value = payload.pop(key, None)
        if isinstance(value, str):
            fields[field] = value
    struct = struct_pb2.Struct()
    struct.update(payload)
    fields["json_payload"] = struct


def cloud_run_stdout_entry(
    project: str,
    location: str,
    service: str,
    revision: str,
    *,
    text: str | None = None,
    json: dict[str, Any] | None = None,
    stream: str = "stdout",
    at: datetime | None = None,
    instance_id: str | None = "00f46b9285",
    severity: str | None = None,
) -> LogEntry:
    """One line (or one multi-line write) of container output on `stream`.

    `text` that is a one-line JSON object is parsed as Cloud Run does; `json` is the same
    object given directly. `severity` overrides (e.g. a scenario's own choice).
    """
    if stream not in ("stdout", "stderr"):
        raise ValueError(f"stream must be stdout or stderr, not {stream!r}")
    if (text is None) == (json is None):
        raise ValueError("give exactly one of text= and json=")
    fields = _base(
        (project, location, service, revision),
        f"run.googleapis.com/{stream}",
        at=at,
        instance_id=instance_id,
    )
    payload = json
    if text is not None and "\n" not in text.strip() and text.strip().startswith("{"):
        try:
            parsed = jsonlib.loads(text)
        except ValueError:
            parsed = None
        payload = parsed if isinstance(parsed, dict) else None
    if payload is not None:
        _structured(dict(payload), fields)
    else:
        fields["text_payload"] = text
    if severity is not None:
        fields["severity"] = severity
    return LogEntry(**fields)


def cloud_run_system_entry(  # noqa: PLR0917 - the positional shape is the World's contract
    project: str,
    location: str,
    service: str,
    revision: str,
    text: str,
    at: datetime | None = None,
    *,
    severity: str = "ERROR",
    instance_id: str | None = "00f46b9285",
) -> LogEntry:
    """A platform line in `run.googleapis.com/varlog/system`, e.g. "Container called exit(1)."."""
    fields = _base(
        (project, location, service, revision),
        "run.googleapis.com/varlog/system",
        at=at,
        instance_id=instance_id,
    )
    fields["severity"] = severity
    fields["text_payload"] = text
    return LogEntry(**fields)


def revision_not_ready_audit_entry(  # noqa: PLR0917 - the positional shape is the World's contract
    project: str,
    location: str,
    service: str,
    revision: str,
    message: str,
    at: datetime | None = None,
) -> LogEntry:
    """The `cloudaudit.googleapis.com/system_event` entry of a revision that is not Ready."""
    fields = _base(
        (project, location, service, revision),
        "cloudaudit.googleapis.com/system_event",
        at=at,
        instance_id=None,
    )
    audit = audit_log_pb2.AuditLog(
        service_name="run.googleapis.com",
        method_name="/Services.CreateService",
        resource_name=f"namespaces/{project}/revisions/{revision}",
    )
    audit.status.code = 9
    audit.status.message = (
        f"Ready condition status changed to False for Revision {revision} with message: {message}"
    )
    packed = any_pb2.Any()
    packed.Pack(audit)
    fields["severity"] = "ERROR"
    fields["proto_payload"] = packed
    return LogEntry(**fields)

"""What the adapters hand the core: plain values read from Cloud Run, Logging and Monitoring.

The adapters translate Google's messages into these at the edge, so discovery, the log
classifier, the 5xx statistics and the rules can be tested with plain values and never see
a protobuf. Times are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from guard.core.model import Revision, ServiceRef

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One Cloud Logging entry of a watched Cloud Run revision, as the core needs it.

    `text` is what a human would read: `textPayload`; for a `jsonPayload`, its `message`
    followed by any other string fields that carry an error (e.g. `exception`, `stack_trace`);
    for an audit entry, its status message. `json_payload` keeps the structured fields.
    """

    at: datetime
    project: str
    service: str
    revision: str
    log_name: str  # the log id, unescaped: "run.googleapis.com/stderr", ".../requests", ...
    severity: str  # "DEFAULT", "INFO", "ERROR", ...
    text: str
    insert_id: str
    http_status: int | None = None
    json_payload: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class RequestCount:
    """Requests one revision served in one aligned period, and how many were 5xx."""

    project: str
    service: str
    revision: str
    start: datetime
    end: datetime
    total: int
    errors: int  # response_code_class 5xx


@dataclass(frozen=True, slots=True)
class ServiceState:
    """One read of a Cloud Run service: who serves, what was created, what is Ready.

    `traffic` is the *effective* split from `traffic_statuses` with LATEST resolved to the
    latest ready revision, by revision short name. `revisions` holds the revisions read so
    far (at least the latest created and everything serving).
    """

    service: ServiceRef
    read_at: datetime
    generation: int
    observed_generation: int
    reconciling: bool
    latest_created: str
    latest_ready: str
    traffic: Mapping[str, int]
    revisions: Mapping[str, Revision]
    etag: str = ""

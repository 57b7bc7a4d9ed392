"""The guard's logs as one JSON object per line, in Cloud Logging's structured-logging format.

The guard runs on Cloud Run, where a line written to stdout that is a JSON object becomes a
structured log entry: `severity`, `message`, `time`, `logging.googleapis.com/sourceLocation`,
`.../trace`, `.../spanId` and `.../labels` are lifted into the entry's own fields, everything
else lands in `jsonPayload`. Writing that format makes the guard's own logs filterable by
severity and by what it was working on (`jsonPayload.app="shop" AND jsonPayload.rule=...`),
and puts tracebacks where Error Reporting finds them (in `message`).

Context is passed with `extra`: the guard's fields `app`, `service`, `revision`, `incident`
(the incident id), `rule` and `step` come first; `trace`, `span_id` and `labels` go to the
special fields; any other extra becomes a top-level field too (values JSON cannot hold are
written with `str()`). `context(app=..., rule=...)` builds the `extra=` argument. Formatting
never raises: a record that cannot be formatted still yields one JSON line saying so.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

SOURCE_LOCATION = "logging.googleapis.com/sourceLocation"
TRACE = "logging.googleapis.com/trace"
SPAN_ID = "logging.googleapis.com/spanId"
LABELS = "logging.googleapis.com/labels"

#: The guard's context fields, written first, in this order, when a record has them.
CONTEXT_FIELDS = ("app", "service", "revision", "incident", "rule", "step")

#: Extras with a special meaning: short name -> Cloud Logging's field.
SPECIAL_EXTRAS = {"trace": TRACE, "span_id": SPAN_ID, "labels": LABELS}

#: Loggers too chatty at INFO for a service's logs: (name, level).
QUIET_LOGGERS = (
    ("uvicorn.access", logging.WARNING),  # one line per HTTP request (health checks)
    ("uvicorn.error", logging.INFO),  # start-up, shutdown and errors: keep
    ("apscheduler", logging.WARNING),  # two lines per scheduled job run
    ("httpx", logging.WARNING),  # one line per HTTP request
    ("httpcore", logging.WARNING),
    ("urllib3", logging.WARNING),
    ("google.auth", logging.WARNING),
)

# Attributes every LogRecord has: anything else on a record came from `extra`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_HANDLER_MARK = "_guard_jsonlog"


def severity(levelno: int) -> str:
    """Cloud Logging's severity for a `logging` level (a custom level: the one below it)."""
    if levelno >= logging.CRITICAL:
        return "CRITICAL"
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARNING"
    if levelno >= logging.INFO:
        return "INFO"
    return "DEBUG"


def rfc3339(created: float) -> str:
    """`2024-05-01T12:00:00.123456Z`: RFC 3339 in UTC with microseconds."""
    return datetime.fromtimestamp(created, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class CloudLoggingFormatter(logging.Formatter):
    """Formats a record as one line of JSON in Cloud Logging's structured format."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            return self._dumps(self.payload(record))
        except Exception as err:  # never raise from logging
            return _last_resort(record, err)

    def payload(self, record: logging.LogRecord) -> dict[str, Any]:
        """The JSON object for `record` (before encoding)."""
        out: dict[str, Any] = {
            "severity": severity(record.levelno),
            "message": self._message(record),
            "time": rfc3339(record.created),
        }
        extras = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRIBUTES}
        for key in CONTEXT_FIELDS:
            value = extras.pop(key, None)
            if value is not None:
                out[key] = value
        for short, field in SPECIAL_EXTRAS.items():
            value, full = extras.pop(short, None), extras.pop(field, None)
            value = full if value is None else value
            if value is None:
                continue
            out[field] = _labels(value) if field == LABELS else _safe_str(value)
        out["logger"] = record.name
        for key, value in extras.items():
            out.setdefault(key, value)  # an extra never overrides the fields above
        out[SOURCE_LOCATION] = {
            "file": record.pathname,
            "line": record.lineno,
            "function": record.funcName,
        }
        return out

    def _message(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception as err:  # bad %-arguments: keep what there is
            args, why = _safe_str(record.args), _safe_str(err)
            message = f"{_safe_str(record.msg)} (unformattable arguments {args}: {why})"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            message = f"{message}\n{record.exc_text}" if message else record.exc_text
        if record.stack_info:
            message = f"{message}\n{self.formatStack(record.stack_info)}"
        return message

    @staticmethod
    def _dumps(payload: dict[str, Any]) -> str:
        try:
            return json.dumps(payload, default=str, ensure_ascii=False, allow_nan=False)
        except Exception:  # NaN, a cycle, a failing __str__: field by field
            fields = {k: _jsonable(v) for k, v in payload.items()}
            return json.dumps(fields, default=str, ensure_ascii=False, allow_nan=False)


def _jsonable(value: Any) -> Any:
    """`value` if it encodes (with `str()` of what JSON cannot hold), else `str(value)`."""
    try:
        json.dumps(value, default=str, allow_nan=False)
    except Exception:
        return _safe_str(value)
    return value


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {"label": _safe_str(value)}
    return {_safe_str(k): _safe_str(v) for k, v in value.items() if v is not None}


def _last_resort(record: logging.LogRecord, err: Exception) -> str:
    try:
        return json.dumps(
            {
                "severity": severity(record.levelno),
                "message": f"unformattable log record {_safe_str(record.msg)!r}: {err!r}",
                "logger": _safe_str(record.name),
            }
        )
    except Exception:
        return '{"severity": "ERROR", "message": "unformattable log record"}'


def context(**fields: str | None) -> dict[str, Any]:
    """`log.info("...", **context(app="shop", rule="migration"))`: the fields given, as extra."""
    return {"extra": {k: v for k, v in fields.items() if v is not None}}


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Log JSON lines to `stream` (stdout) from the root logger at `level`.

    Idempotent: the handler installed by an earlier call is replaced, never duplicated; other
    handlers on the root logger are left alone. Chatty libraries are quieted (QUIET_LOGGERS);
    their records, like uvicorn's when it runs with `log_config=None`, go to the root handler
    and so are JSON too.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(CloudLoggingFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name, quiet in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)

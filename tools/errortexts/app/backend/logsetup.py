"""Logging setup shared by the backend's entry points (the migration runner and the API).

`LOG_FORMAT` picks one or more comma-separated outputs: `text` (classic lines on stderr),
`json` (one JSON object per line on stdout, the traceback in an `exception` field) and
`gcp` (google-cloud-logging's StructuredLogHandler on stdout, the traceback in `message`).
"""

from __future__ import annotations

import json
import logging
import os
import sys

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; Cloud Run lifts `severity` and `message`."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def _handler(kind: str) -> logging.Handler:
    if kind == "json":
        handler: logging.Handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        return handler
    if kind == "gcp":
        from google.cloud.logging_v2.handlers import StructuredLogHandler  # noqa: PLC0415

        return StructuredLogHandler(stream=sys.stdout)  # type: ignore[no-untyped-call]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging() -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.setLevel(logging.INFO)
    for kind in os.environ.get("LOG_FORMAT", "text").split(","):
        root.addHandler(_handler(kind.strip()))

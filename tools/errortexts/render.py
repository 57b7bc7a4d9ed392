"""From captured writes to Cloud Run log entries: one write is one entry, in its app's style.

Text lines go to stderr and become `textPayload`; a one-line JSON object on stdout becomes
`jsonPayload`, with `severity` and the `logging.googleapis.com/*` fields lifted out of it
by Cloud Logging (what remains is stored as `json_payload`; `text` keeps the line exactly
as the container printed it). Multi-line records stay whole: the simulator splits them
when it wants one entry per line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .capture import ScriptRun
from .normalize import Normalizer

_TEXT_HEAD = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<message>.*)")
# Alembic's own logging config: "INFO  [alembic.runtime.migration] Running upgrade ..."
_ALEMBIC_HEAD = re.compile(r"^(?P<level>[A-Z]+)\s+\[(?P<logger>[\w.]+)\] (?P<message>.*)")
_LIFTED = {"severity", "httpRequest", "time", "timestamp", "timestampSeconds", "timestampNanos"}


@dataclass(frozen=True)
class Entry:
    style: str  # text | json | gcp | crash
    stream: str
    severity: str
    text: str
    payload: dict[str, Any] | None
    failure: bool  # carries a traceback
    message: str  # the first line of the message, for ids


def _lift(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in obj.items()
        if key not in _LIFTED and not key.startswith("logging.googleapis.com/")
    }


def text_entry(raw: str, norm: Normalizer, style: str = "text") -> Entry:
    text = norm(raw.rstrip("\n"))
    norm.check_clean(text)
    head = _TEXT_HEAD.match(text) or _ALEMBIC_HEAD.match(text)
    severity = head.group("level") if head else "ERROR"
    message = head.group("message") if head else text.splitlines()[-1]
    failure = "Traceback (most recent call last)" in text
    return Entry(style, "stderr", severity, text, None, failure, message)


def json_entry(raw: str, norm: Normalizer) -> Entry:
    text = norm(raw.rstrip("\n"))
    norm.check_clean(text)
    obj = json.loads(text)
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object: {text[:200]}")
    style = "gcp" if "logging.googleapis.com/trace" in obj else "json"
    message = str(obj.get("message", ""))
    failure = "exception" in obj or "Traceback (most recent call last)" in message
    severity = str(obj.get("severity", "DEFAULT"))
    return Entry(
        style, "stdout", severity, text, _lift(obj), failure, message.split("\n", maxsplit=1)[0]
    )


def entries(run: ScriptRun, norm: Normalizer) -> list[Entry]:
    """Every entry of a run, stderr text first, then stdout JSON, then the crash."""
    found = [text_entry(raw, norm) for raw in run.stderr if raw.strip()]
    found += [json_entry(raw, norm) for raw in run.stdout if raw.strip()]
    if run.crash is not None:
        found.append(text_entry(run.crash, norm, "crash"))
    return found


def failure(found: list[Entry], style: str) -> Entry:
    matches = [entry for entry in found if entry.style == style and entry.failure]
    if len(matches) != 1:
        raise ValueError(f"expected one {style} failure entry, found {len(matches)}")
    return matches[0]


def slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit].rstrip("-")

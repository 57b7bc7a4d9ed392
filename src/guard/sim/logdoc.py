"""How a Logging filter sees one LogEntry: its JSON form, field paths and value comparisons.

Cloud Logging evaluates filters against the entry's JSON representation (camelCase names such
as `httpRequest.status`, `jsonPayload.x`, `protoPayload.status.message`), compares severities
by their numbers, timestamps as instants, numbers as numbers and strings without regard to
case. `guard.sim.logfilter` parses the query; this module supplies those semantics, so the
guard's filters select here what they would select in production.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime
from typing import Any

from google.cloud.logging_v2.types import LogEntry
from google.protobuf import json_format

SEVERITIES = {
    "DEFAULT": 0,
    "DEBUG": 100,
    "INFO": 200,
    "NOTICE": 300,
    "WARNING": 400,
    "ERROR": 500,
    "CRITICAL": 600,
    "ALERT": 700,
    "EMERGENCY": 800,
}
TIME_FIELDS = frozenset({"timestamp", "receiveTimestamp"})
_FRACTION = re.compile(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", re.IGNORECASE)
_SNAKE = re.compile(r"_([a-z0-9])")


def entry_doc(entry: LogEntry) -> dict[str, Any]:
    """The entry as Cloud Logging's JSON (camelCase), with `severity` always present."""
    doc: dict[str, Any] = json_format.MessageToDict(LogEntry.pb(entry))
    doc.setdefault("severity", "DEFAULT")
    return doc


@functools.lru_cache(maxsize=65536)
def parse_time(text: str) -> datetime | None:
    """An RFC 3339 instant (nanosecond fractions allowed), or None when it is not one."""
    m = _FRACTION.match(text.strip())
    if m is None:
        return None
    head, fraction, zone = m.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    try:
        parsed = datetime.fromisoformat(
            f"{head}.{micro}{'+00:00' if zone.upper() == 'Z' else zone}"
        )
    except ValueError:
        return None
    return parsed.astimezone(UTC)


def lookup(doc: dict[str, Any], path: tuple[str, ...]) -> list[Any]:
    """Every value at `path` (lists fan out); [] when the field is missing.

    A segment is tried as written, then in camelCase, so `http_request.status` works too.
    """
    current: list[Any] = [doc]
    for segment in path:
        nxt: list[Any] = []
        for node in current:
            node_items = node if isinstance(node, list) else [node]
            for item in node_items:
                if not isinstance(item, dict):
                    continue
                if segment in item:
                    nxt.append(item[segment])
                else:
                    camel = _SNAKE.sub(lambda m: m.group(1).upper(), segment)
                    if camel in item:
                        nxt.append(item[camel])
        current = nxt
    flat: list[Any] = []
    for value in current:
        flat.extend(value if isinstance(value, list) else [value])
    return flat


def leaves(value: Any) -> list[Any]:
    """The scalar values inside `value` (itself when it is a scalar)."""
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in leaves(v)]
    return [value]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def severity_number(value: str) -> int | None:
    """A severity name (any case) or number as its number."""
    named = SEVERITIES.get(value.upper())
    if named is not None:
        return named
    number = _number(value)
    return None if number is None else int(number)


def _ordered(op: str, left: Any, right: Any) -> bool:
    if op == "=":
        return bool(left == right)
    if op == "<":
        return bool(left < right)
    if op == "<=":
        return bool(left <= right)
    if op == ">":
        return bool(left > right)
    return bool(left >= right)  # ">="


def compare(op: str, field: str, leaf: Any, value: str) -> bool:
    """`leaf OP value` for one of = < <= > >= on field `field` (its last path segment)."""
    if isinstance(leaf, dict | list):
        return False
    if field == "severity":
        left, right = severity_number(_text(leaf)), severity_number(value)
        return left is not None and right is not None and _ordered(op, left, right)
    if field in TIME_FIELDS:
        lt, rt = parse_time(_text(leaf)), parse_time(value)
        return lt is not None and rt is not None and _ordered(op, lt, rt)
    ln, rn = _number(leaf), _number(value)
    if ln is not None and rn is not None:
        return _ordered(op, ln, rn)
    return _ordered(op, _text(leaf).lower(), value.lower())


def has(leaf: Any, value: str) -> bool:
    """The has operator (`:`): a case-insensitive substring of any scalar inside `leaf`."""
    needle = value.lower()
    return any(needle in _text(x).lower() for x in leaves(leaf))


def search_text(leaf: Any) -> str:
    """The text a regular expression is matched against."""
    return _text(leaf)

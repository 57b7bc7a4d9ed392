"""Real error texts for scenarios: the fixture produced by running real database drivers.

Scenario log lines may name a `fixture` instead of inventing text, so the guard is tested on
what psycopg, asyncpg, SQLAlchemy, Alembic and Django really print against a real PostgreSQL
(tools/errortexts regenerates the file; docs/error-texts.md explains it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "error_texts.json"


@dataclass(frozen=True, slots=True)
class ErrorText:
    """One fixture case: how it appears in logs, and the generator's ground-truth label."""

    id: str
    text: str
    json_payload: dict[str, Any] | None
    severity: str
    label: dict[str, Any]


@cache
def error_texts() -> dict[str, ErrorText]:
    """Every fixture case by id."""
    doc = json.loads(DATA.read_text(encoding="utf-8"))
    return {
        case["id"]: ErrorText(
            id=case["id"],
            text=case["text"],
            json_payload=case.get("json_payload"),
            severity=case.get("severity") or "ERROR",
            label=case.get("label") or {},
        )
        for case in doc["cases"]
    }


def error_text(case_id: str) -> ErrorText:
    """The fixture case `case_id`; a KeyError that lists near names when it does not exist."""
    cases = error_texts()
    try:
        return cases[case_id]
    except KeyError:
        close = [c for c in cases if case_id.split("-", maxsplit=1)[0] in c][:5]
        raise KeyError(f"no error-text fixture {case_id!r}; e.g. {', '.join(close)}") from None

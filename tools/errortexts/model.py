"""The fixture's record types, and how the ground truth is read off a real exception.

A case is one Cloud Run log entry (the full multi-line text of one write) plus its label.
The label is decided by the generator from what it did: which migration it was applying,
which SQLSTATE the driver's exception object carries, which object the catalog broke. It
is never derived from the text, so it can measure a classifier that reads the text.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

Kind = Literal["migration_failure", "schema_mismatch"]
Phase = Literal["migration", "request", "startup", "runtime"]


@dataclass(frozen=True)
class Label:
    kind: Kind | None
    migration_file: str | None = None
    migration_file_by_blame: str | None = None
    sqlstate: str | None = None
    relation: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "migration_file": self.migration_file,
            "migration_file_by_blame": self.migration_file_by_blame,
            "sqlstate": self.sqlstate,
            "relation": self.relation,
        }


@dataclass(frozen=True)
class Case:
    id: str
    driver: str
    style: str
    phase: Phase
    severity: str
    stream: str
    text: str
    label: Label
    json_payload: dict[str, Any] | None = None
    applied_migrations: tuple[str, ...] = ()
    exception: str | None = None
    cause_migration: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "driver": self.driver,
            "style": self.style,
            "phase": self.phase,
            "severity": self.severity,
            "stream": self.stream,
            "text": self.text,
            "json_payload": self.json_payload,
            "applied_migrations": list(self.applied_migrations),
            "exception": self.exception,
            "cause_migration": self.cause_migration,
            "label": self.label.to_json(),
        }


class Collector:
    """The cases of one run, with unique ids; benign lines are kept once per distinct text."""

    def __init__(self) -> None:
        self.cases: list[Case] = []
        self._ids: set[str] = set()
        self._texts: set[str] = set()

    def add(self, case: Case, *, dedupe: bool = False) -> None:
        if dedupe and case.text in self._texts:
            return
        self._texts.add(case.text)
        unique, n = case.id, 1
        while unique in self._ids:
            n += 1
            unique = f"{case.id}-{n}"
        self._ids.add(unique)
        self.cases.append(replace(case, id=unique))


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what it wraps (SQLAlchemy's `orig`), its cause and its context."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        for nxt in (getattr(current, "orig", None), current.__cause__, current.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)
    return seen


def sqlstate_of(exc: BaseException | None) -> str | None:
    """The SQLSTATE the driver reported (psycopg `sqlstate`, psycopg2 `pgcode`, asyncpg)."""
    if exc is None:
        return None
    for item in _chain(exc):
        for attr in ("sqlstate", "pgcode"):
            code = getattr(item, attr, None)
            if isinstance(code, str) and len(code) == 5:
                return code
    return None


def exception_name(exc: BaseException | None) -> str | None:
    """The driver-level exception class: the one carrying the SQLSTATE, else the outermost."""
    if exc is None:
        return None
    chosen = exc
    for item in _chain(exc):
        for attr in ("sqlstate", "pgcode"):
            code = getattr(item, attr, None)
            if isinstance(code, str) and len(code) == 5:
                chosen = item
                break
        else:
            continue
        break
    cls = type(chosen)
    return f"{cls.__module__}.{cls.__qualname__}"


class GroundTruthError(RuntimeError):
    """Reality disagreed with the catalog: the fixture would lie, so generation stops."""


def expect_sqlstate(what: str, exc: BaseException | None, expected: str | None) -> str | None:
    got = sqlstate_of(exc)
    if got != expected:
        raise GroundTruthError(
            f"{what}: expected SQLSTATE {expected}, the driver reported {got} ({exc!r})"
        )
    return got

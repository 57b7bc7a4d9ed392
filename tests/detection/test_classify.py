"""The log classifier against real driver output: every fixture case, split or whole, and the
edge cases a busy service produces (success lines, ordinary request errors, huge lines)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from guard.core.classify import Classification, MigrationLedger, classify, classify_text
from guard.core.rules import LogKind
from guard.core.signals import LogRecord

FIXTURE = Path(__file__).resolve().parents[2] / "src/guard/sim/data/error_texts.json"
CASES: list[dict[str, Any]] = json.loads(FIXTURE.read_text(encoding="utf-8"))["cases"]
T0 = datetime(2025, 6, 3, 9, 14, 7, tzinfo=UTC)
MF, SM = LogKind.MIGRATION_FAILURE, LogKind.SCHEMA_MISMATCH


def record(
    text: str,
    *,
    at: datetime = T0,
    revision: str = "pegasus-api-00002-abc",
    payload: dict[str, Any] | None = None,
    severity: str = "ERROR",
) -> LogRecord:
    return LogRecord(
        at=at,
        project="delta-student-486911-n5",
        service="pegasus-api",
        revision=revision,
        log_name="run.googleapis.com/stderr",
        severity=severity,
        text=text,
        insert_id=f"{at.timestamp()}",
        json_payload=payload or {},
    )


def case_record(case: dict[str, Any], at: datetime = T0) -> LogRecord:
    """The entry as the adapters hand it over: a JSON line becomes its jsonPayload, whose
    message is the text (the classifier reads the other string fields itself)."""
    payload = case["json_payload"]
    if payload:
        return record(payload.get("message", ""), at=at, payload=payload)
    return record(case["text"], at=at, severity=case["severity"])


def kind_of(value: str | None) -> LogKind | None:
    return LogKind(value) if value else None


def test_the_fixture_is_what_this_suite_expects() -> None:
    assert len(CASES) == 294
    kinds = {case["label"]["kind"] for case in CASES}
    assert kinds == {None, "migration_failure", "schema_mismatch"}


def test_every_case_gets_its_label_kind() -> None:
    wrong = [
        f"{case['id']}: expected {case['label']['kind']}, got {got.kind}"
        for case in CASES
        if (got := classify(case_record(case))).kind != kind_of(case["label"]["kind"])
    ]
    assert not wrong, f"{len(wrong)} of {len(CASES)} misclassified:\n" + "\n".join(wrong)


def test_filename_sqlstate_and_relation_follow_the_labels() -> None:
    wrong = []
    for case in CASES:
        label, got = case["label"], classify(case_record(case))
        if label["kind"] and got.migration_file != label["migration_file"]:
            wrong.append(
                f"{case['id']}: file {got.migration_file!r} != {label['migration_file']!r}"
            )
        if label["migration_file"] and got.file_source != "text":
            wrong.append(f"{case['id']}: file_source {got.file_source!r}")
        if (got.sqlstate, got.relation) != (label["sqlstate"], label["relation"]):
            wrong.append(
                f"{case['id']}: sqlstate/relation {got.sqlstate}/{got.relation} != "
                f"{label['sqlstate']}/{label['relation']}"
            )
    assert not wrong, "\n".join(wrong)


def test_classify_text_agrees_with_classify_on_plain_texts() -> None:
    for case in CASES:
        if not case["json_payload"]:
            assert classify_text(case["text"]) == classify(case_record(case)), case["id"]


def _applying(migrations: list[str], revision: str = "pegasus-api-00002-abc") -> list[LogRecord]:
    return [
        record(f"INFO backend.migrate: Applying migration {m}", revision=revision, severity="INFO")
        for m in migrations
    ]


def test_blame_names_the_newest_migration_when_the_text_names_none() -> None:
    blamed = [case for case in CASES if case["label"]["migration_file_by_blame"]]
    assert len(blamed) == 82  # crash styles, Alembic, Django and every schema mismatch
    wrong = []
    for case in blamed:
        ledger = MigrationLedger()
        for line in _applying(case["applied_migrations"]):
            ledger.observe(line)
        entry = case_record(case)
        ledger.observe(entry)
        got = classify(entry, ledger)
        want = (kind_of(case["label"]["kind"]), case["label"]["migration_file_by_blame"], "blame")
        if (got.kind, got.migration_file, got.file_source) != want:
            wrong.append(f"{case['id']}: {got}")
    assert not wrong, "\n".join(wrong)


def test_no_blame_without_a_ledger_or_an_announced_migration() -> None:
    crash = next(c for c in CASES if c["style"] == "runner-crash")
    assert classify(case_record(crash)).migration_file is None
    assert classify(case_record(crash), MigrationLedger()).migration_file is None


def _preamble(case: dict[str, Any]) -> list[str]:
    """What the revision logged before the case, as its runner really does: migrations
    announced (and, for a serving revision, reported applied and the server up)."""
    migrations = case["applied_migrations"]
    if case["phase"] == "migration":
        return [f"Applying migration {m}" for m in migrations]
    done = [x for m in migrations for x in (f"Applying migration {m}", f"Migration {m} applied")]
    return [*done, "INFO uvicorn.error: Application startup complete."]


def _one_entry_per_line(case: dict[str, Any], preamble: list[str]) -> list[Classification]:
    """Replay the case as Cloud Run stores a multi-line write: one entry per line."""
    ledger, results = MigrationLedger(), []
    lines = [*preamble, *case["text"].split("\n")]
    for n, line in enumerate(lines):
        entry = record(line, at=T0 + timedelta(milliseconds=n), severity=case["severity"])
        ledger.observe(entry)
        results.append(classify(entry, ledger))
    return results


MULTILINE = [c for c in CASES if not c["json_payload"] and "\n" in c["text"]]


def test_one_entry_per_line_still_judges_the_revision_right() -> None:
    assert len(MULTILINE) == 107
    wrong = []
    for case in MULTILINE:
        label = case["label"]
        results = [r for r in _one_entry_per_line(case, _preamble(case)) if r.match]
        kinds = {r.kind for r in results}
        want = {kind_of(label["kind"])} - {None}
        files = {r.migration_file for r in results}
        want_files = {label["migration_file"] or label["migration_file_by_blame"]} - {None}
        if kinds != want or files != want_files:
            wrong.append(f"{case['id']}: kinds {kinds} files {files}")
    assert not wrong, "\n".join(wrong)


def test_one_entry_per_line_without_history_finds_the_kind() -> None:
    # No "Applying …" lines before the traceback: the frames alone give the context. The
    # known limit: a chained traceback whose first exception precedes the migration frames
    # (SQLAlchemy, Alembic, Django's wrapper) also yields one schema_mismatch line.
    wrong = []
    for case in MULTILINE:
        kinds = {r.kind for r in _one_entry_per_line(case, []) if r.match}
        want = kind_of(case["label"]["kind"])
        chained = "The above exception was the direct cause" in case["text"]
        allowed = {want, SM} if want is MF and chained else {want}
        if (want is None and kinds) or (
            want is not None and (want not in kinds or kinds - allowed)
        ):
            wrong.append(f"{case['id']}: {kinds}")
    assert not wrong, "\n".join(wrong)


def test_a_lone_exception_line_classifies() -> None:
    got = classify_text('psycopg.errors.UndefinedColumn: column "title" does not exist')
    assert got == Classification(SM, None, "42703", "title", None)
    ledger = MigrationLedger()
    ledger.observe(record("Applying migration backend/migrations/003_index_course_title.sql"))
    bare = record('psycopg.errors.UndefinedColumn: column "title" does not exist')
    assert classify(bare, ledger) == Classification(
        MF, "backend/migrations/003_index_course_title.sql", "42703", "title", "blame"
    )

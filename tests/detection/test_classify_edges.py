"""The classifier on what the fixture does not cover: success lines, ordinary request errors,
other tools' wording, the ledger's bounds and windows, huge and hostile input."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.core.classify import Classification, MigrationLedger, classify, classify_text
from guard.core.classify_context import MARKS
from guard.core.classify_ledger import GATE_WORDS
from guard.core.rules import LogKind
from tests.detection.test_classify import T0, record

MF, SM = LogKind.MIGRATION_FAILURE, LogKind.SCHEMA_MISMATCH
NOTHING = Classification()


@pytest.mark.parametrize(
    "text",
    [
        "2025-06-03 09:14:07,512 INFO backend.migrate: Migration 003_x.sql applied successfully",
        "INFO backend.migrate: Applying migration backend/migrations/003_x.sql",
        "INFO backend.migrate: No pending migrations",
        "All 0 migration(s) applied",
        "INFO  [alembic.runtime.migration] Running upgrade 002 -> 003, index course title",
        "  Applying courses.0002_rename_course_title... OK",
        '169.254.1.1:0 - "GET /courses/999 HTTP/1.1" 404',
        '2025-06-03 09:14:07,512 INFO uvicorn.access: 169.254.1.1:0 - "POST /users HTTP/1.1" 422',
        "WARNING django.request: Not Found: /courses/999/",
        "pydantic_core._pydantic_core.ValidationError: 1 validation error for Course\ntitle\n"
        "  Field required [type=missing, input_value={}, input_type=dict]",
        "Uvicorn running on http://0.0.0.0:8080 (Press CTRL+C to quit)",
        "",
    ],
)
def test_benign_lines_are_left_alone(text: str) -> None:
    assert classify_text(text) == NOTHING


@pytest.mark.parametrize(
    ("text", "sqlstate", "relation"),
    [
        (
            "Exception in ASGI application\npsycopg.errors.UniqueViolation: duplicate key value "
            'violates unique constraint "schema_migrations_pkey"',
            "23505",
            "schema_migrations_pkey",
        ),
        (
            'Traceback (most recent call last):\n  File "/app/backend/migrate.py", line 50\n'
            "psycopg.errors.UniqueViolation: duplicate key value violates unique constraint "
            '"schema_migrations_pkey"\nDETAIL:  Key (version)=(003) already exists.',
            "23505",
            "schema_migrations_pkey",
        ),
        (
            "ERROR uvicorn.error: Exception in ASGI application\n"
            "psycopg.errors.LockNotAvailable: canceling statement due to lock timeout",
            "55P03",
            None,
        ),
        (
            "psycopg2.errors.QueryCanceled: canceling statement due to statement timeout",
            "57014",
            None,
        ),
        ("asyncpg.exceptions.DeadlockDetectedError: deadlock detected", "40P01", None),
        ('ERROR:  insert or update on table "lectures" violates foreign key', "23503", "lectures"),
        (
            "sqlalchemy.exc.TimeoutError: QueuePool limit of size 5 overflow 10 reached",
            None,
            None,
        ),
        ("psycopg.OperationalError: connection failed: Connection refused", None, None),
        (
            'asyncpg.exceptions.TooManyConnectionsError: too many connections for role "a"',
            "53300",
            None,
        ),
    ],
)
def test_ordinary_errors_are_left_alone_but_described(
    text: str, sqlstate: str | None, relation: str | None
) -> None:
    # The migration-table race (two instances recording the same version) included: the
    # other instance applied the migration; Cloud Run retries this one.
    assert classify_text(text) == Classification(None, None, sqlstate, relation, None)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('ERROR:  column "title" does not exist at character 12', (SM, None, "42703", "title")),
        (
            'ERROR: relation "public.course_reviews" does not exist (SQLSTATE 42P01)',
            (SM, None, "42P01", "course_reviews"),
        ),
        ("error: function course_slug(text) does not exist", (SM, None, "42883", "course_slug")),
        (
            "sqlalchemy.exc.ProgrammingError: (sqlalchemy.dialects.postgresql.asyncpg.Program"
            "mingError) <class 'asyncpg.exceptions.UndefinedColumnError'>: column \"title\" "
            "does not exist",
            (SM, None, "42703", "title"),
        ),
        (
            "asyncpg.exceptions.InvalidCachedStatementError: cached statement plan is invalid "
            "due to a database schema or configuration change",
            (SM, None, "0A000", None),
        ),
        ("INSERT has more expressions than target columns", (SM, None, "42601", None)),
        (
            'Migration V3__add_slug.sql failed: syntax error at or near "CREATE"',
            (MF, "V3__add_slug.sql", "42601", None),
        ),
        (
            "alembic.util.exc.CommandError: Can't locate revision identified by 'abc123'",
            (MF, None, None, None),
        ),
        (
            "django.db.migrations.exceptions.InconsistentMigrationHistory: Migration "
            "courses.0003_x is applied before its dependency courses.0002_y",
            (MF, None, None, None),
        ),
        (
            'error: migration failed: column "slug" contains null values in line 0: ALTER TABLE '
            '(details: pq: column "slug" contains null values) file=db/migrations/002_slug.sql',
            (MF, "db/migrations/002_slug.sql", None, None),
        ),
    ],
)
def test_other_tools_and_formats(text: str, want: tuple[object, ...]) -> None:
    got = classify_text(text)
    assert (got.kind, got.migration_file, got.sqlstate, got.relation) == want


def test_a_migration_run_from_the_server_lifespan_is_still_a_migration() -> None:
    text = (
        "ERROR uvicorn.error: Traceback (most recent call last):\n"
        '  File "/usr/local/lib/python3.11/site-packages/starlette/routing.py", line 1\n'
        '  File "/app/backend/migrate.py", line 34, in apply\n'
        "psycopg.errors.LockNotAvailable: canceling statement due to lock timeout"
    )
    assert classify_text(text).kind is MF


def test_a_runner_naming_its_failed_migration_is_believed_even_on_connection_errors() -> None:
    got = classify_text("Migration 004_z.sql failed: server closed the connection unexpectedly")
    assert (got.kind, got.migration_file, got.sqlstate) == (MF, "004_z.sql", None)


@pytest.mark.parametrize(
    "path",
    ["backend/migrations/002_x.sql", "002_x.sql", "/app/backend/migrations/002_x.sql"],
)
def test_the_filename_is_kept_as_written(path: str) -> None:
    got = classify_text(f"ERROR backend.migrate: Migration {path} failed: deadlock detected")
    assert (got.kind, got.migration_file, got.file_source) == (MF, path, "text")


def test_structured_payload_fields_are_read() -> None:
    payload = {"message": "query failed", "error": {"sqlstate": "42P01", "stack": "at db.js"}}
    got = classify(record("query failed", payload=payload))
    assert (got.kind, got.sqlstate) == (SM, "42P01")


def test_the_ledger_learns_each_runner_style_and_keeps_revisions_apart() -> None:
    ledger = MigrationLedger()
    for revision, line in [
        ("a", "Applying 002_x.sql"),
        ("a", "Applied 002_x.sql"),
        ("a", "Applying 003_y.sql"),
        ("b", "INFO  [alembic.runtime.migration] Running upgrade 002 -> 003, index title"),
        ("c", "  Applying courses.0002_add_course_slug..."),
        ("f", "Applying migration `20240101_init`"),
        ("d", "Applying discount to order 12"),
    ]:
        ledger.observe(record(line, revision=revision))
    ledger.observe(record("started", revision="e", payload={"migration": "004_z.sql"}))
    assert ledger.migrations("pegasus-api", "a") == ("002_x.sql", "003_y.sql")
    assert ledger.newest("pegasus-api", "b") == "002 -> 003, index title"
    assert ledger.newest("pegasus-api", "c") == "courses.0002_add_course_slug"
    assert ledger.newest("pegasus-api", "d") is None
    assert ledger.newest("pegasus-api", "f") == "20240101_init"
    assert ledger.newest("pegasus-api", "e") == "004_z.sql"
    assert ledger.newest("other-service", "a") is None


def test_the_ledger_gate_lets_every_marker_and_event_through() -> None:
    # A path marker ("uvicorn/", "starlette/") only ever appears in a `File "…"` frame.
    for mark in MARKS:
        assert any(w in mark for w in GATE_WORDS) or "/" in mark, mark
    for event in [
        "Applying 002_x.sql", "Applied 002_x.sql", "Migration 003_x.sql failed: deadlock",
        "Running upgrade 002 -> 003, x", "Database schema is up to date", "Booting worker",
        "INFO uvicorn.error: Application startup complete.", "Started server process [1]",
        "Uvicorn running on http://0.0.0.0:8080", "Listening at: http://0.0.0.0:8080 (1)",
    ]:  # fmt: skip
        assert any(w in event for w in GATE_WORDS), event


def test_a_retried_migration_becomes_the_newest_again() -> None:
    ledger = MigrationLedger()
    for line in ("Applying 002_x.sql", "Applying 003_y.sql", "Applying 002_x.sql"):
        ledger.observe(record(line))
    assert ledger.newest("pegasus-api", "pegasus-api-00002-abc") == "002_x.sql"


def test_the_ledger_is_bounded() -> None:
    ledger = MigrationLedger(max_revisions=3, max_migrations=2)
    for n in range(5):
        ledger.observe(record(f"Applying 00{n}_x.sql", revision="r"))
        ledger.observe(record("Applying 001_x.sql", revision=f"rev-{n}"))
    assert ledger.migrations("pegasus-api", "r") == ("003_x.sql", "004_x.sql")
    assert ledger.newest("pegasus-api", "rev-0") is None  # evicted, least recently seen
    assert ledger.newest("pegasus-api", "rev-4") == "001_x.sql"


def test_a_lone_line_takes_the_context_of_recent_lines_only() -> None:
    ledger = MigrationLedger()
    bare = "psycopg.errors.LockNotAvailable: canceling statement due to lock timeout"
    ledger.observe(record('  File "/app/backend/migrate.py", line 34, in apply'))
    assert classify(record(bare, at=T0 + timedelta(seconds=1)), ledger).kind is MF
    # Long after, with the server up: a lock timeout is an ordinary request error.
    ledger.observe(record("Application startup complete.", at=T0 + timedelta(minutes=1)))
    later = record(bare, at=T0 + timedelta(minutes=2))
    assert classify(later, ledger).kind is None


def test_a_migration_still_running_gives_the_context() -> None:
    ledger = MigrationLedger()
    ledger.observe(record("Applying 002_x.sql"))
    bare = 'psycopg2.errors.UndefinedTable: relation "course" does not exist'
    assert classify(record(bare, at=T0 + timedelta(minutes=1)), ledger).kind is MF
    ledger.observe(record("Applied 002_x.sql", at=T0 + timedelta(minutes=1)))
    assert classify(record(bare, at=T0 + timedelta(minutes=2)), ledger).kind is SM


PATHOLOGICAL = [
    "a" * 1_000_000,
    "Migration " * 100_000 + "failed",
    'column "' * 125_000,
    "psycopg.errors." + "a." * 500_000 + ": x",
    ('Error: "a' * 100 + "\n") * 1_000,
    "Applying migration " * 50_000,
    ".sql" * 250_000,
    "a/" * 500_000 + ".sql",
    "SQLSTATE " * 100_000,
    ("function a(" + "b" * 400) * 2_400,
    "is of type " * 90_000,
    ("\n" + "x" * 99 + ": " + "does not exist " * 5) * 5_000,
]


@pytest.mark.parametrize("text", PATHOLOGICAL, ids=lambda t: repr(t[:16]))
def test_megabyte_lines_take_linear_time(text: str) -> None:
    # Quadratic backtracking on a megabyte takes minutes; linear takes milliseconds.
    ledger = MigrationLedger()
    entry = record(text)
    started = time.perf_counter()
    ledger.observe(entry)
    classify(entry, ledger)
    classify_text(text)
    assert time.perf_counter() - started < 5.0


FRAGMENTS = st.sampled_from(
    [
        "psycopg.errors.UndefinedColumn: ", 'column "', "relation ", " does not exist",
        "Migration ", " failed: ", ".sql", "Applying migration ", "Traceback", "\n",
        '  File "/app/backend/migrate.py"', "ERROR:  ", "(psycopg.errors.X) ", "SQLSTATE ",
        "<class 'asyncpg.exceptions.DataError'>: ", "function f(", ") ", "Running upgrade ",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(FRAGMENTS, st.text(max_size=20)), max_size=30).map("".join))
def test_the_classifier_never_raises(text: str) -> None:
    classify_text(text)
    ledger = MigrationLedger()
    entry = record(text, payload={"message": text, "n": {"sqlstate": text[:5]}})
    ledger.observe(entry)
    classify(entry, ledger)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_never_raises(text: str) -> None:
    classify_text(text)

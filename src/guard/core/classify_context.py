"""Where an error happened: while a migration ran, or while the application served requests.

The same SQLSTATE means two different incidents. `column "title" does not exist` raised by
`CREATE INDEX` in a migration means the migration did not apply; raised by a `SELECT` in a
request handler it means the running code no longer fits the schema; and a lock timeout or
a unique violation is a broken migration in the first case but an ordinary request error in
the second. So the classifier looks for the context a text carries: the runner's own
"Migration X failed" line, migration frames (a `migrate.py`, Alembic, Django's migrate
command) or serving frames (uvicorn, Starlette, Django's request handler). A line that
carries none (Cloud Run splits tracebacks into one entry per line) gets its context from
the revision's recent lines instead: see `classify_ledger`.
"""

from __future__ import annotations

import re
from enum import Enum


class Context(Enum):
    """What the process was doing when the error was logged."""

    MIGRATION = "migration"
    RUNTIME = "runtime"


# Substrings only found while a migration tool runs: runner frames, the migration
# directories, Alembic's and Django's migration machinery.
_MIGRATION_MARKS = (
    'migrate.py"',
    "/migrations/",
    "/alembic/",
    "alembic.runtime.migration",
    "django/db/migrations/",
    "manage.py migrate",
)
# Substrings only found while serving: ASGI/WSGI servers and frameworks, their error logs.
_RUNTIME_MARKS = (
    "Exception in ASGI application",
    "Internal Server Error",
    "uvicorn/",
    "uvicorn.error",
    "starlette/",
    "fastapi/",
    "django/core/handlers/",
    "django.request",
    "gunicorn/",
    "werkzeug/",
    "flask/app.py",
    "Exception on /",
    "aiohttp/web_",
    "celery/app/trace.py",
)

# The runner says which migration failed: "Migration backend/migrations/003_x.sql failed: …"
# (also Flyway's "Migration V3__x.sql failed"). Group 1 is the name as written, group 2 the
# error message when the same line carries it. It starts with a literal so the engine jumps
# from one "igration " to the next; the capital or small "M" before it is checked in code.
_RUNNER_FAILED = re.compile(
    r"igration [`'\"]?([^\s`'\"]{1,300}?)[`'\"]? failed\b(?:[:,] ?([^\n]*+))?"
)
# Other tools' wording for "a migration did not apply", without a name (tested lower-cased).
_TOOL_FAILED = (
    "migration failed",
    "failed to apply migration",
    "failed to run migration",
    "error applying migration",
    "error running migration",
)
# Migration tools' own exceptions: the migration did not apply even without a SQLSTATE.
_TOOL_EXCEPTION = re.compile(
    r"^[ \t]*+(?:alembic\.util\.exc\.\w++|alembic\.script\.revision\.\w++"
    r"|django\.db\.migrations\.exceptions\.\w++): ",
    re.M,
)


#: Every marker (the ledger's cheap gate must let each of them through; a test checks).
MARKS = _MIGRATION_MARKS + _RUNTIME_MARKS


def _has(text: str, marks: tuple[str, ...]) -> bool:
    # A plain loop over `in`: C-speed substring search, stopping at the first hit; any()
    # over a generator costs more than the searches on a short line.
    for mark in marks:  # noqa: SIM110
        if mark in text:
            return True
    return False


def text_context(text: str) -> Context | None:
    """The context a text itself shows; migration wins when both show (a migration's
    traceback can pass through shared code, a request's never runs a migration tool)."""
    if _has(text, _MIGRATION_MARKS):
        return Context.MIGRATION
    if _has(text, _RUNTIME_MARKS):
        return Context.RUNTIME
    return None


def runner_failure(text: str) -> tuple[str | None, str | None] | None:
    """(migration as written or None, error message or None) when a tool says a migration
    failed; None when the text says no such thing."""
    # Substring tests first: the regexes scan every position of a 10 kB traceback, and
    # almost no traceback mentions a migration in words.
    if "igration" in text or "IGRATION" in text:
        for named in _RUNNER_FAILED.finditer(text):
            if named.start() > 0 and text[named.start() - 1] in "Mm":
                return named.group(1), named.group(2) or None
        if _has(text.lower(), _TOOL_FAILED):
            return None, None
    if ("alembic." in text or "migrations.exceptions." in text) and _TOOL_EXCEPTION.search(text):
        return None, None
    return None

"""Which migrations each revision ran, and what it was doing a moment ago: the classifier's memory.

Two facts cannot be read from one log entry. First, crash tracebacks, Alembic and Django
name no SQL file, yet the page must say which migration to look at: the design's blame rule
points at the newest migration the revision started, which the runner announced earlier
("Applying migration backend/migrations/003_x.sql", Alembic's "Running upgrade 002 -> 003,
…", Django's "Applying courses.0003_x..."). Second, Cloud Run turns every line of a
traceback into its own entry, so the line `psycopg.errors.UndefinedColumn: …` arrives
without the frames that said "this was a migration" or "this was a request": the ledger
remembers the last such marker per revision for a few seconds, and whether a migration is
still running (started, not reported done, server not up yet).

Pure and bounded: revisions are evicted least-recently-seen first, migrations per revision
are capped, and nothing here reads a clock; record timestamps are the only time.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from guard.core.classify_context import Context, runner_failure, text_context
from guard.core.signals import LogRecord

# A migration start, name as written: the team runner ("Applying migration <path>",
# "Applying 003_x.sql"), Prisma ("Applying migration `2024_x`"), Django ("Applying
# courses.0003_x..." and, once done, "... OK"), Alembic ("Running upgrade 002 -> 003, msg").
# A bare "Applying <word>" is not enough: "Applying discount" is not a migration. Literal
# prefixes, so the regex engine skips to candidates instead of trying every position.
_APPLYING = re.compile(
    r"Applying (?:migration [`'\"]?([^\s`'\"]{1,300})"
    r"|([^\s`'\"]{1,300}\.sql)\b"
    r"|(\w{1,100}\.\d{4}\w{0,200})\.\.\.( OK| FAKED)?)"
)
_UPGRADE = re.compile(r"Running upgrade ([^\n]{1,300})")
# The runner reports success ("Migration X applied", "Applied X", "5 migration(s) applied",
# "Migrations complete", "up to date", "No pending migrations"), or the application server
# is up: no migration is running. Such a report is one short line; longer texts
# (tracebacks) are not searched for it.
_DONE = (
    *("pplied", "Migrations complete", "up to date", "o pending migrations"),
    *("o migrations to apply", "tartup complete", "tarted server process", "unning on http"),
    *("Listening at: ", "Booting worker"),
)
_DONE_MAX = 2000
# Substrings every entry that can teach the ledger something contains: its own events
# ("Applying", "Applied", "Application startup complete", "migration", "Running upgrade",
# "Started server", "Listening at", "Booting worker") and every context marker
# (classify_context.MARKS: framework paths only ever appear in `File "…"` frames). A request
# line contains none, and one short loop rejects it; test_classify_edges checks the cover.
GATE_WORDS = (
    *("ppl", "igrat", "pgrade", "up to date", "tart", "unning on", "isten", "Booting"),
    *('File "', "xception", "Internal Server Error", "uvicorn.error", "django.request"),
    "alembic",
)


@dataclass(slots=True)
class _Revision:
    migrations: OrderedDict[str, None] = field(default_factory=OrderedDict)
    migrating_since: datetime | None = None
    context: Context | None = None
    context_at: datetime | None = None


class MigrationLedger:
    """Per (service, revision): the migrations it started, newest last, and recent context."""

    def __init__(
        self,
        *,
        max_revisions: int = 2048,
        max_migrations: int = 256,
        context_window: timedelta = timedelta(seconds=10),
        migration_window: timedelta = timedelta(minutes=15),
    ) -> None:
        self._revisions: OrderedDict[tuple[str, str], _Revision] = OrderedDict()
        self._max_revisions = max_revisions
        self._max_migrations = max_migrations
        self._context_window = context_window
        self._migration_window = migration_window

    def observe(self, record: LogRecord) -> None:
        """Learn from one entry of the revision's log (every entry, in arrival order)."""
        text = record.text
        message = record.json_payload.get("message") if record.json_payload else None
        if isinstance(message, str) and message not in text:
            text = f"{text}\n{message}" if text else message
        named = _payload_migration(record.json_payload)
        if named is None and not _any_in(text, GATE_WORDS):
            return
        context = text_context(text)
        state = self._state(record.service, record.revision)
        if context is not None:
            state.context, state.context_at = context, record.at
        if named is not None:
            self._started(state, named, record.at)
        for found in _APPLYING.finditer(text) if "Applying " in text else ():
            name = found.group(1) or found.group(2) or found.group(3)
            self._started(state, name.strip(), record.at)
            if found.group(4):  # Django's "... OK": applied, nothing running now
                state.migrating_since = None
        for found in _UPGRADE.finditer(text) if "Running upgrade " in text else ():
            self._started(state, found.group(1).strip(), record.at)
        failure = runner_failure(text)
        if failure is not None and failure[0] is not None:
            self._started(state, failure[0], record.at)
        elif failure is None and len(text) <= _DONE_MAX and _any_in(text, _DONE):
            state.migrating_since = None

    def newest(self, service: str, revision: str) -> str | None:
        """The migration the revision started last, as its log named it; None if none."""
        state = self._revisions.get((service, revision))
        if state is None or not state.migrations:
            return None
        return next(reversed(state.migrations))

    def migrations(self, service: str, revision: str) -> tuple[str, ...]:
        """Every migration the revision started, oldest first."""
        state = self._revisions.get((service, revision))
        return tuple(state.migrations) if state else ()

    def context(self, service: str, revision: str, at: datetime) -> Context | None:
        """What the revision was doing at `at`: the last marker within the context window,
        else MIGRATION while a migration it started is not reported done."""
        state = self._revisions.get((service, revision))
        if state is None:
            return None
        if state.context_at is not None and abs(at - state.context_at) <= self._context_window:
            return state.context
        since = state.migrating_since
        if since is not None and timedelta(0) <= at - since <= self._migration_window:
            return Context.MIGRATION
        return None

    def _state(self, service: str, revision: str) -> _Revision:
        key = (service, revision)
        state = self._revisions.get(key)
        if state is None:
            state = self._revisions[key] = _Revision()
            if len(self._revisions) > self._max_revisions:
                self._revisions.popitem(last=False)
        else:
            self._revisions.move_to_end(key)
        return state

    def _started(self, state: _Revision, name: str, at: datetime) -> None:
        state.migrations[name] = None
        state.migrations.move_to_end(name)  # a retry makes it the newest again
        if len(state.migrations) > self._max_migrations:
            state.migrations.popitem(last=False)
        state.migrating_since = at


def _any_in(text: str, words: tuple[str, ...]) -> bool:
    for word in words:  # noqa: SIM110 - a loop beats any(<generator>) on short lines
        if word in text:
            return True
    return False


def _payload_migration(payload: Mapping[str, Any]) -> str | None:
    """A structured runner's `{"migration": "003_x.sql", ...}` field, when it has one."""
    if not payload:
        return None
    value = payload.get("migration")
    return value if isinstance(value, str) and 0 < len(value) <= 300 else None

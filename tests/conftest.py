"""Test-suite policy shared by every test: real PostgreSQL or a loud skip.

Tests marked `postgres` use the real server at GUARD_TEST_POSTGRES_URL (default
127.0.0.1:5432, trust auth). On a developer machine without one they are skipped, and the
run ends with a line saying exactly what was skipped; in CI (GUARD_REQUIRE_POSTGRES=1) an
unreachable server fails the run instead, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from guard.adapters.store import SqlStore, Store
from guard.adapters.store_migrations import normalize_url

from .support.postgres import fresh_postgres

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

POSTGRES_URL = os.environ.get(
    "GUARD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_skipped_postgres: list[str] = []


def _postgres_reachable() -> bool:
    parts = urlsplit(POSTGRES_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 2):
            return True
    except OSError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = [item for item in items if item.get_closest_marker("postgres")]
    if not wanted or _postgres_reachable():
        return
    if os.environ.get("GUARD_REQUIRE_POSTGRES") == "1":
        raise pytest.UsageError(
            f"PostgreSQL is required (GUARD_REQUIRE_POSTGRES=1) but {POSTGRES_URL} is not "
            f"reachable; {len(wanted)} test(s) need it"
        )
    skip = pytest.mark.skip(reason=f"no PostgreSQL at {POSTGRES_URL}")
    for item in wanted:
        item.add_marker(skip)
        _skipped_postgres.append(item.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _skipped_postgres:
        terminalreporter.write_line(
            f"SKIPPED {len(_skipped_postgres)} PostgreSQL test(s): no server at {POSTGRES_URL}. "
            "Start one (or set GUARD_TEST_POSTGRES_URL) to run them.",
            yellow=True,
        )


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The real PostgreSQL server the `postgres`-marked tests use."""
    return POSTGRES_URL


@pytest.fixture(scope="session")
def pg_admin(postgres_url: str) -> Iterator[sa.Engine]:
    """An AUTOCOMMIT engine on the server's admin database (CREATE/DROP DATABASE)."""
    engine = sa.create_engine(
        normalize_url(postgres_url), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    yield engine
    engine.dispose()


@pytest.fixture
def pg_url(pg_admin: sa.Engine) -> Iterator[str]:
    """A fresh, empty PostgreSQL database (for tests only PostgreSQL can run)."""
    yield from fresh_postgres(pg_admin)


# The `store` fixture: every store test runs on SQLite and on a fresh PostgreSQL database,
# because the exactly-once guarantees rest on each backend's own locking (SQLite's BEGIN
# IMMEDIATE, PostgreSQL's row locks and advisory locks).
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database: a SQLite file in a temp dir, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('store') / 'guard.db'}"
    else:
        yield from fresh_postgres(request.getfixturevalue("pg_admin"))


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    s = Store.open(store_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def twin(store: SqlStore, store_url: str) -> Iterator[SqlStore]:
    """A second Store on the same database, as a second replica would hold it.

    SQLite allows one guard per file, so there the twin is the store itself (racing threads).
    """
    if store.engine.dialect.name == "sqlite":
        yield store
        return
    s = Store.open(store_url)
    try:
        yield s
    finally:
        s.close()

"""The `store` fixture: every store test runs on SQLite and on a fresh PostgreSQL database.

Why: the exactly-once guarantees rest on each backend's own locking (SQLite's BEGIN
IMMEDIATE, PostgreSQL's row locks and advisory locks), so a test that passes on one proves
nothing about the other. Each PostgreSQL test gets its own uniquely named database, created
through the admin URL and dropped (WITH FORCE) afterwards, even when the test fails.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from guard.adapters.store import SqlStore, Store

from ..support.postgres import fresh_postgres


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

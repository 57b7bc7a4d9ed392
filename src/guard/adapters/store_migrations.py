"""Opening the store's database: engines, the single-replica SQLite lock, schema upgrades.

Why: a guard that starts on a database must bring it to the schema its code knows, exactly
once even when two PostgreSQL replicas start together, and must refuse a database written by
a newer guard rather than misread it. SQLite has no server to arbitrate between processes, so
a second guard on the same file is refused outright by an exclusive lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from guard.adapters import store_schema as t


class StoreError(RuntimeError):
    """The store cannot be opened as asked."""


class StoreLockedError(StoreError):
    """Another guard process holds this SQLite database."""


class StoreVersionError(StoreError):
    """The database's schema is newer than this guard's code."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1(conn: Connection) -> None:
    # v1 creates the tables as store_schema defines them today. When a v2 changes a table,
    # freeze v1 first: copy the v1 definitions here so an old database upgrades step by step.
    t.metadata.create_all(conn, tables=list(t.V1_TABLES))


def _v2(conn: Connection) -> None:
    # The incident remembers its deploy (a restarted guard must still know what to revert
    # to). A store created at v2 already has the column from v1's create_all (v1 creates
    # today's tables), so add it only where a v1 store lacks it.
    columns = {c["name"] for c in sa.inspect(conn).get_columns("incidents")}
    if "deploy" not in columns:
        conn.execute(sa.text("ALTER TABLE incidents ADD COLUMN deploy JSON"))


def _v3(conn: Connection) -> None:
    # A page row holds the latest version of an incident's page per backend (an outbox
    # that coalesces updates). As in v2, a store created at v3 already has the columns.
    columns = {c["name"] for c in sa.inspect(conn).get_columns("pages")}
    for name, ddl in (
        ("version", "INTEGER NOT NULL DEFAULT 1"),
        ("sent_version", "INTEGER NOT NULL DEFAULT 0"),
        ("content_key", "VARCHAR(64) NOT NULL DEFAULT ''"),
    ):
        if name not in columns:
            conn.execute(sa.text(f"ALTER TABLE pages ADD COLUMN {name} {ddl}"))


def _v4(conn: Connection) -> None:
    # Restores get their own tables (`restores`, `restore_votes`, `restore_steps`). The v1
    # tables `restore_proposals` and `approvals` were never written by any guard, so they
    # go, but only when empty: rows there were put by someone, and an upgrade never loses
    # data. A store created at v4 gets them from v1 and drops them here, empty.
    present = set(sa.inspect(conn).get_table_names())
    old = [table for table in (t.approvals, t.restore_proposals) if table.name in present]
    for table in old:
        rows = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        if rows:
            raise StoreError(
                f"cannot upgrade the store to schema version 4: table {table.name} holds "
                f"{rows} row(s), but no guard ever wrote that table and version 4 drops it "
                f"(restores now live in `restores` and `restore_votes`). Back up and delete "
                f"those rows (or the table), then start the guard again; nothing was changed."
            )
    for table in old:  # approvals first: it references restore_proposals
        table.drop(conn)
    t.metadata.create_all(conn, tables=list(t.V4_TABLES))  # checkfirst: idempotent


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create everything", _v1),
    Migration(2, "incidents remember their deploy", _v2),
    Migration(3, "pages are versioned per backend", _v3),
    Migration(4, "restores, their votes and steps replace restore_proposals", _v4),
)
CODE_VERSION = MIGRATIONS[-1].version
_PG_LOCK_KEY = 0x6775617264  # "guard": pg_advisory_xact_lock key for schema upgrades


def normalize_url(url: str | URL) -> URL:
    """The URL with psycopg 3 as the PostgreSQL driver (a bare postgresql:// means psycopg2)."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    if u.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported store URL scheme {u.drivername!r}: use sqlite or postgresql")
    return u


class FileLock:
    """An exclusive flock on `<db>.lock`, held for as long as the store is open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        try:
            f = self.path.open("a+", encoding="utf-8")
        except OSError as err:  # a missing or read-only directory: say which, not a traceback
            raise StoreError(
                f"cannot use the SQLite store next to {self.path}: {err.strerror} "
                f"(does the directory {self.path.parent} exist and is it writable?)"
            ) from err
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise StoreLockedError(
                f"SQLite store is in use by another guard process: lock file {self.path} is held"
                f" (PID {holder}). SQLite supports one replica; use PostgreSQL for several."
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.truncate(0)
            self._file.close()  # closing drops the flock
            self._file = None


def sqlite_path(url: URL) -> Path:
    db = url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        raise StoreError("the SQLite store needs a file path: sqlite:///path/to/guard.db")
    return Path(db).resolve()


def create_engine(url: URL) -> Engine:
    if url.get_backend_name() == "postgresql":
        return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let the "begin" hook below issue BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Take the write lock up front: read-then-write transactions never deadlock.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def upgrade(engine: Engine, *, now: datetime | None = None) -> int:
    """Bring the schema to CODE_VERSION in one transaction; return the version found."""
    at = now or datetime.now(UTC)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
        t.schema_version.create(conn, checkfirst=True)
        found = conn.execute(
            sa.select(t.schema_version.c.version).where(t.schema_version.c.id == 1)
        ).scalar_one_or_none()
        version = found or 0
        if version > CODE_VERSION:
            raise StoreVersionError(
                f"the store's schema is version {version} but this guard knows up to "
                f"{CODE_VERSION}: upgrade the guard (never downgrade a store)"
            )
        for m in MIGRATIONS:
            if m.version > version:
                m.apply(conn)
        if found is None:
            conn.execute(
                sa.insert(t.schema_version).values(id=1, version=CODE_VERSION, upgraded_at=at)
            )
        elif version < CODE_VERSION:
            conn.execute(
                sa.update(t.schema_version)
                .where(t.schema_version.c.id == 1)
                .values(version=CODE_VERSION, upgraded_at=at)
            )
        return version


def schema_version(engine: Engine) -> int:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(t.schema_version.c.version).where(t.schema_version.c.id == 1)
        ).scalar_one_or_none()
        return int(found or 0)

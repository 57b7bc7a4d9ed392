"""Scratch databases and roles on the real PostgreSQL, and the sessions that get in the way.

Every database and role the generator creates carries one random run tag, so concurrent
runs never collide and `cleanup` drops exactly what this run made, even after a failure.
The "other session" helpers reproduce lock waits, deadlocks and serialization failures
deterministically: they wait for the application's backend to be blocked on a lock
(pg_stat_activity) before making their next move, instead of sleeping and hoping.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from . import catalog

APP_NAME = "pegasus-api"
Step = Callable[[psycopg.Connection[tuple[object, ...]]], None]


@dataclass
class Scratch:
    """The databases and the role of one generator run, on one server."""

    admin_url: str
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    databases: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.admin = psycopg.connect(self.admin_url, autocommit=True)

    @property
    def base(self) -> str:
        return f"guard_et_{self.tag}_base"

    @property
    def role(self) -> str:
        return f"guard_et_{self.tag}_app"

    def url(self, database: str, **params: str | int) -> str:
        info = conninfo_to_dict(self.admin_url)
        info.update(dbname=database, **params)
        return make_conninfo("", **info)

    def uri(self, database: str, scheme: str = "postgresql") -> str:
        """A URL form for drivers that want one (asyncpg, SQLAlchemy)."""
        info = conninfo_to_dict(self.admin_url)
        host = info.get("host", "127.0.0.1")
        port = info.get("port", "5432")
        user = info.get("user", "postgres")
        return f"{scheme}://{user}@{host}:{port}/{database}"

    def server_version(self) -> str:
        row = self.admin.execute("SELECT current_setting('server_version')").fetchone()
        assert row is not None
        return str(row[0])

    def create_base(self) -> None:
        """Revision N: 001_init.sql applied, seed data loaded, recorded as applied."""
        self.create(self.base)
        with psycopg.connect(self.url(self.base), autocommit=True) as conn:
            conn.execute(catalog.INIT_SQL)
            conn.execute(catalog.SEED_SQL)
            conn.execute(
                "CREATE TABLE schema_migrations (version text PRIMARY KEY,"
                " applied_at timestamptz NOT NULL DEFAULT now());"
                "INSERT INTO schema_migrations (version) VALUES ('001_init.sql');"
                "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);"
                "INSERT INTO alembic_version VALUES ('001');"
            )

    def create(self, name: str, template: str | None = None) -> str:
        self.databases.append(name)
        suffix = f' TEMPLATE "{template}"' if template else ""
        self.admin.execute(f'CREATE DATABASE "{name}"{suffix}')
        return name

    def clone(self, label: str) -> str:
        """A fresh copy of revision N (CREATE DATABASE … TEMPLATE is a file copy: fast)."""
        name = self.create(f"guard_et_{self.tag}_{label.replace('-', '_')}", self.base)
        # Settings are not copied from a template. A short deadlock_timeout for the app's
        # sessions makes the app, not the blocker (10 s), the one that detects a deadlock.
        self.admin.execute(f"ALTER DATABASE \"{name}\" SET deadlock_timeout = '300ms'")
        return name

    def create_role(self) -> str:
        self.roles.append(self.role)
        self.admin.execute(f'CREATE ROLE "{self.role}" LOGIN CONNECTION LIMIT 0')
        return self.role

    def cleanup(self) -> None:
        for name in reversed(self.databases):
            self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in self.roles:
            self.admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        self.databases.clear()
        self.roles.clear()
        self.admin.close()


def wait_until_blocked(admin: psycopg.Connection[tuple[object, ...]], database: str) -> None:
    """Until some backend of the application (not ours) waits on a heavyweight lock."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
            " AND wait_event_type = 'Lock' AND application_name <> 'guard-blocker'",
            (database,),
        ).fetchone()
        if row and int(str(row[0])) > 0:
            return
        time.sleep(0.005)
    raise TimeoutError(f"nothing became blocked in {database}")


@contextmanager
def other_session(
    scratch: Scratch, database: str, first: str, then: Step | None = None
) -> Iterator[None]:
    """Another client: runs `first` in an open transaction; once the app blocks, `then`.

    `then` runs in a thread (it may itself block, as in a deadlock); the transaction ends
    (rolled back, or committed by `then`) when the block exits.
    """
    conn = psycopg.connect(
        scratch.url(database, application_name="guard-blocker"), autocommit=False
    )
    conn.execute("SET deadlock_timeout = '10s'")
    conn.execute(first)
    worker: threading.Thread | None = None
    failure: list[BaseException] = []
    if then is not None:
        after = then

        def move() -> None:
            try:
                with psycopg.connect(scratch.admin_url, autocommit=True) as watcher:
                    wait_until_blocked(watcher, database)
                after(conn)
            except BaseException as exc:
                failure.append(exc)

        worker = threading.Thread(target=move, daemon=True)
        worker.start()
    try:
        yield
    finally:
        if worker is not None:
            worker.join(timeout=15)
        if not conn.closed:
            conn.rollback()
            conn.close()
    if failure:
        raise failure[0]

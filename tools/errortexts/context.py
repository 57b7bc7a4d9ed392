"""What every case producer of one generator run shares: the server, the scratch area, the
normaliser that hides both, and the collector the cases go to.

Also the team's app as copied into a scratch `/app` per driver: each driver edition of the
backend (runner + API) lives in its own directory so their `backend` packages never mix.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from . import catalog
from .model import Collector
from .normalize import Normalizer
from .scratch import Scratch

TEMPLATES = Path(__file__).resolve().parent / "app"
DRIVERS = ("psycopg3", "psycopg2", "asyncpg", "sqlalchemy")
_EDITION = {
    "psycopg3": "psycopg",
    "psycopg2": "psycopg2",
    "asyncpg": "asyncpg",
    "sqlalchemy": "sqlalchemy",
}


@dataclass
class Context:
    scratch: Scratch
    norm: Normalizer
    cases: Collector
    tmp: Path

    def database(self, label: str) -> str:
        name = self.scratch.clone(label)
        self.norm.add(name, "pegasus")
        return name


@dataclass
class AppRoot:
    """One driver edition of the team's backend, unpacked where `/app` would be."""

    driver: str
    path: Path

    @classmethod
    def create(cls, ctx: Context, driver: str) -> AppRoot:
        root = ctx.tmp / driver
        backend = root / "backend"
        (backend / "migrations").mkdir(parents=True)
        edition = _EDITION[driver]
        for name in ("__init__.py", "logsetup.py"):
            shutil.copy(TEMPLATES / "backend" / name, backend / name)
        shutil.copy(TEMPLATES / "backend" / f"migrate_{edition}.py", backend / "migrate.py")
        shutil.copy(TEMPLATES / "backend" / f"api_{edition}.py", backend / "api.py")
        ctx.norm.add(str(root), "/app")
        return cls(driver, root)

    @property
    def migrate(self) -> Path:
        return self.path / "backend" / "migrate.py"

    def ship(self, names: Sequence[str]) -> None:
        """The revision's migrations directory: 001 plus `names`."""
        directory = self.path / "backend" / "migrations"
        for old in directory.glob("*.sql"):
            old.unlink()
        for name in ("001_init.sql", *names):
            (directory / name).write_text(catalog.migration_sql(name))

    def shown(self, name: str) -> str:
        """The migration's path as this edition's runner writes it in its log."""
        if self.driver == "psycopg2":
            return name
        if self.driver == "asyncpg":
            return f"/app/backend/migrations/{name}"
        return catalog.path(name)

    def dsn(self, ctx: Context, database: str, **query: str) -> str:
        scheme = "postgresql+psycopg" if self.driver == "sqlalchemy" else "postgresql"
        url = ctx.scratch.uri(database, scheme)
        if query:
            url += "?" + "&".join(f"{key}={value}" for key, value in query.items())
        return url


def applied(ctx: Context, database: str) -> set[str]:
    with psycopg.connect(ctx.scratch.url(database)) as conn:
        return {str(row[0]) for row in conn.execute("SELECT version FROM schema_migrations")}

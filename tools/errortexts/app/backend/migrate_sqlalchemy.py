"""Startup migration runner (SQLAlchemy over psycopg 3): applies backend/migrations/*.sql.

Runs each file with `exec_driver_sql` inside `engine.begin()`, so a failing file rolls back
whole. Logs paths relative to the working directory.
Set MIGRATE_ON_ERROR=raise to let a failure crash the container with the bare traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from backend.logsetup import configure_logging  # type: ignore[import-not-found]

log = logging.getLogger("backend.migrate")
MIGRATIONS_DIR = Path(os.environ.get("MIGRATIONS_DIR", "backend/migrations"))


def pending(engine: Engine) -> list[Path]:
    with engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
        )
        done = set(conn.execute(text("SELECT version FROM schema_migrations")).scalars())
    return [path for path in sorted(MIGRATIONS_DIR.glob("*.sql")) if path.name not in done]


def apply(engine: Engine, path: Path) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(path.read_text())
        conn.execute(text("INSERT INTO schema_migrations (version) VALUES (:v)"), {"v": path.name})


def main() -> int:
    configure_logging()
    engine = create_engine(os.environ["DATABASE_URL"])
    try:
        todo = pending(engine)
        for path in todo:
            log.info("Applying migration %s", path)
            try:
                apply(engine, path)
            except DBAPIError as exc:
                if os.environ.get("MIGRATE_ON_ERROR") == "raise":
                    raise
                log.error("Migration %s failed: %s", path, exc, exc_info=True)
                return 1
            log.info("Migration %s applied", path)
    finally:
        engine.dispose()
    log.info("Migrations complete: %d applied", len(todo))
    return 0


if __name__ == "__main__":
    sys.exit(main())

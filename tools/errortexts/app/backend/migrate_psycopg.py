"""Startup migration runner (psycopg 3): applies backend/migrations/*.sql in order.

Each file runs in its own transaction and is recorded in `schema_migrations`. The team logs
paths relative to the working directory (`backend/migrations/002_x.sql`).
Set MIGRATE_ON_ERROR=raise to let a failure crash the container with the bare traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import psycopg

from backend.logsetup import configure_logging  # type: ignore[import-not-found]

log = logging.getLogger("backend.migrate")
MIGRATIONS_DIR = Path(os.environ.get("MIGRATIONS_DIR", "backend/migrations"))


def pending(conn: psycopg.Connection[tuple[object, ...]]) -> list[Path]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    return [path for path in sorted(MIGRATIONS_DIR.glob("*.sql")) if path.name not in done]


def apply(conn: psycopg.Connection[tuple[object, ...]], path: Path) -> None:
    with conn.transaction():
        conn.execute(path.read_text())
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.name,))


def main() -> int:
    configure_logging()
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        todo = pending(conn)
        if not todo:
            log.info("No pending migrations")
            return 0
        for path in todo:
            log.info("Applying migration %s", path)
            try:
                apply(conn, path)
            except psycopg.Error as exc:
                if os.environ.get("MIGRATE_ON_ERROR") == "raise":
                    raise
                log.error("Migration %s failed: %s", path, exc, exc_info=True)
                return 1
            log.info("Migration %s applied", path)
    log.info("Database schema is up to date (%d migration(s) applied)", len(todo))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Startup migration runner (psycopg2): applies the SQL files next to it, in order.

This team logs bare file names (`002_x.sql`), and records each file in `schema_migrations`
in the same transaction that applies it.
Set MIGRATE_ON_ERROR=raise to let a failure crash the container with the bare traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import psycopg2

from backend.logsetup import configure_logging  # type: ignore[import-not-found]

log = logging.getLogger("backend.migrate")
MIGRATIONS_DIR = Path(os.environ.get("MIGRATIONS_DIR", "backend/migrations"))


def pending(conn: psycopg2.extensions.connection) -> list[Path]:
    with conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in cur.fetchall()}
    return [path for path in sorted(MIGRATIONS_DIR.glob("*.sql")) if path.name not in done]


def apply(conn: psycopg2.extensions.connection, path: Path) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(path.read_text())
        cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.name,))


def main() -> int:
    configure_logging()
    conn = psycopg2.connect(os.environ["DATABASE_URL"])
    try:
        todo = pending(conn)
        for path in todo:
            log.info("Applying %s", path.name)
            try:
                apply(conn, path)
            except psycopg2.Error as exc:
                if os.environ.get("MIGRATE_ON_ERROR") == "raise":
                    raise
                log.error("Migration %s failed: %s", path.name, exc, exc_info=True)
                return 1
            log.info("Applied %s", path.name)
    finally:
        conn.close()
    log.info("%d migration(s) applied", len(todo))
    return 0


if __name__ == "__main__":
    sys.exit(main())

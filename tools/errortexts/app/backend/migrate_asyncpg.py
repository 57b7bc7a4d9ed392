"""Startup migration runner (asyncpg): applies the migrations directory next to this file.

This team resolves the directory from `__file__`, so its logs carry absolute paths
(`/app/backend/migrations/002_x.sql`).
Set MIGRATE_ON_ERROR=raise to let a failure crash the container with the bare traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import asyncpg

from backend.logsetup import configure_logging  # type: ignore[import-not-found]

log = logging.getLogger("backend.migrate")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


async def pending(conn: asyncpg.Connection) -> list[Path]:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations"
        " (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
    return [path for path in sorted(MIGRATIONS_DIR.glob("*.sql")) if path.name not in done]


async def apply(conn: asyncpg.Connection, path: Path) -> None:
    async with conn.transaction():
        await conn.execute(path.read_text())  # noqa: ASYNC240 - a small file, once, at startup
        await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", path.name)


async def main() -> int:
    configure_logging()
    conn = await asyncpg.connect(os.environ["DATABASE_URL"])
    try:
        todo = await pending(conn)
        for path in todo:
            log.info("Applying migration %s", path)
            try:
                await apply(conn, path)
            except asyncpg.PostgresError as exc:
                if os.environ.get("MIGRATE_ON_ERROR") == "raise":
                    raise
                log.error("Migration %s failed: %s", path, exc, exc_info=True)
                return 1
            log.info("Migration %s applied", path)
    finally:
        await conn.close()
    log.info("All %d migration(s) applied", len(todo))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

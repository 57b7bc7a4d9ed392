"""A fresh, uniquely named PostgreSQL database per test, dropped afterwards (WITH FORCE)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import sqlalchemy as sa


def fresh_postgres(admin: sa.Engine) -> Iterator[str]:
    name = f"guard_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

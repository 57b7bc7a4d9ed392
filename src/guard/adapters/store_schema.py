"""The store's tables, written once in SQLAlchemy Core so SQLite and PostgreSQL share them.

Why a module of its own: the schema is what migrations create and what the queries in
`guard.adapters.store` name, and one definition keeps the two from drifting. Times go through
`UTCDateTime` so both backends hand back timezone-aware UTC (SQLite has no time zones), and
JSON columns only ever hold JSON-able values (`jsonable` turns datetimes into ISO strings).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that must be timezone-aware going in and is UTC-aware coming out."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the store only takes aware times")
        value = value.astimezone(UTC)
        # SQLite stores text without an offset: store UTC wall time, re-attach UTC on read.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def jsonable(value: Any) -> Any:
    """`value` with datetimes as ISO strings, enums as values, tuples and sets as lists."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} in JSON for the store")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"{type(value).__name__} is not JSON-able for the store: {value!r}")


metadata = sa.MetaData()  # the schema as it is today
v1_only = sa.MetaData()  # tables that only old schema versions have (see V1_TABLES)
_JSON = sa.JSON()
_ID = sa.String(32)

schema_version = sa.Table(
    "guard_schema",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1: a single row
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("upgraded_at", UTCDateTime, nullable=False),
)

incidents = sa.Table(
    "incidents",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("app", sa.String(200), nullable=False),
    sa.Column("service", sa.String(200), nullable=False),
    sa.Column("bad_revision", sa.String(200), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("opened_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("rules", _JSON, nullable=False),
    sa.Column("migration_file", sa.Text),
    sa.Column("file_source", sa.Text),
    sa.Column("reverted_to", sa.String(200)),
    sa.Column("escalated", sa.Boolean, nullable=False, default=False),
    sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("superseded_by", _ID),
    sa.Column("deploy", _JSON),  # v2: DeployInfo (kind, started_at, last_known_good, share)
    sa.UniqueConstraint("app", "service", "bad_revision", name="uq_incidents_deploy"),
    sa.Index("ix_incidents_app_state", "app", "state"),
)

evidence = sa.Table(
    "evidence",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("incident_id", _ID, sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("service", sa.String(200), nullable=False),
    sa.Column("revision", sa.String(200), nullable=False),
    sa.Column("data", _JSON, nullable=False),
    # sha256 of (kind, at, summary): the same fact added twice is kept once.
    sa.Column("digest", sa.String(64), nullable=False),
    sa.UniqueConstraint("incident_id", "digest", name="uq_evidence_fact"),
)

actions = sa.Table(
    "actions",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("incident_id", _ID, sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("key", sa.String(500), nullable=False, unique=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("intent", _JSON, nullable=False),
    sa.Column("outcome", _JSON),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Index("ix_actions_status", "status"),
    sa.Index("ix_actions_incident", "incident_id"),
)

freezes = sa.Table(
    "freezes",
    metadata,
    sa.Column("app", sa.String(200), primary_key=True),
    sa.Column("frozen", sa.Boolean, nullable=False),
    sa.Column("incident_id", _ID),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("frozen_at", UTCDateTime),
    sa.Column("lifted_at", UTCDateTime),
    sa.Column("lifted_by", sa.String(200)),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("subject", sa.String(500), nullable=False),
    sa.Column("detail", _JSON, nullable=False),
    sa.Index("ix_audit_subject", "subject"),
)

pages = sa.Table(
    "pages",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("incident_id", _ID, sa.ForeignKey("incidents.id"), nullable=False),
    sa.Column("backend", sa.String(50), nullable=False),
    sa.Column("dedup_key", sa.String(500), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("payload", _JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("last_error", sa.Text),
    # v3: a page row is the latest version of one incident's page for one backend
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("sent_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("content_key", sa.String(64), nullable=False, server_default=""),
    sa.UniqueConstraint("backend", "dedup_key", name="uq_pages_dedup"),
    sa.Index("ix_pages_due", "status", "next_attempt_at"),
)

restores = sa.Table(  # v4: a gated database restore (guard.core.restore.Restore)
    "restores",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("app", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    # "incident:<id>:<kind>" or "human:<id>": one restore per reason to restore
    sa.Column("origin", sa.String(300), nullable=False),
    sa.Column("incident_id", _ID, sa.ForeignKey("incidents.id")),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("required_approvals", sa.Integer, nullable=False),
    sa.Column("plan", _JSON, nullable=False),  # frozen at proposal: what is approved runs
    sa.Column("outcome", _JSON),
    sa.UniqueConstraint("origin", name="uq_restores_origin"),
    sa.Index("ix_restores_app_state", "app", "state"),
)

restore_votes = sa.Table(  # v4: one vote per approver per restore
    "restore_votes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("restore_id", _ID, sa.ForeignKey("restores.id"), nullable=False),
    sa.Column("approver", sa.String(200), nullable=False),
    sa.Column("decision", sa.String(10), nullable=False),  # approve | reject
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default="", server_default=""),
    sa.UniqueConstraint("restore_id", "approver", name="uq_restore_votes_approver"),
    sa.CheckConstraint("decision IN ('approve', 'reject')", name="ck_restore_votes_decision"),
)

restore_steps = sa.Table(  # v4: a restore's intent log, keyed like `actions`
    "restore_steps",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("restore_id", _ID, sa.ForeignKey("restores.id"), nullable=False),
    sa.Column("step", sa.String(20), nullable=False),
    sa.Column("key", sa.String(500), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("intent", _JSON, nullable=False),
    sa.Column("outcome", _JSON),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.UniqueConstraint("key", name="uq_restore_steps_key"),
    sa.Index("ix_restore_steps_restore", "restore_id"),
)

# Tables only schema versions 1 to 3 have: no code ever wrote them, and v4 drops them (when
# empty) for `restores` and `restore_votes`. They live in their own MetaData so `metadata`
# is exactly today's schema; kept only so v1 still creates what it always created.
restore_proposals = sa.Table(
    "restore_proposals",
    v1_only,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("incident_id", _ID, sa.ForeignKey(incidents.c.id), nullable=False),
    sa.Column("app", sa.String(200), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("point_in_time", UTCDateTime, nullable=False),
    sa.Column("clone_name", sa.String(200), nullable=False),
    sa.Column("plan", _JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime),
)

approvals = sa.Table(
    "approvals",
    v1_only,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("proposal_id", _ID, sa.ForeignKey("restore_proposals.id"), nullable=False),
    sa.Column("approver", sa.String(200), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("decision", sa.String(10), nullable=False),  # approve | reject
    sa.UniqueConstraint("proposal_id", "approver", name="uq_approvals_approver"),
    sa.CheckConstraint("decision IN ('approve', 'reject')", name="ck_approvals_decision"),
)

# The tables schema version 1 creates (everything but guard_schema, which bootstraps itself).
V1_TABLES = (incidents, evidence, actions, freezes, restore_proposals, approvals, audit, pages)
# The tables schema version 4 adds.
V4_TABLES = (restores, restore_votes, restore_steps)

"""The store keeps what the guard decided, on SQLite and PostgreSQL alike.

Why: the responder trusts the store to say whether an incident, an action or a freeze
already exists; these tests pin the schema upgrade rules, the compare-and-set state moves,
the intent log's once-only finish, freezes with their audit lines, and UTC round trips.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from guard import ports
from guard.adapters import store_schema
from guard.adapters.store import SqlStore, Store, StoreError, StoreVersionError
from guard.adapters.store_migrations import CODE_VERSION, normalize_url
from guard.core.model import (
    ActionKind,
    ActionStatus,
    DeployInfo,
    DeployKind,
    Evidence,
    IncidentState,
    SignalKind,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_upgrade_from_empty_creates_every_table(store: SqlStore) -> None:
    assert store.schema_version() == CODE_VERSION
    tables = set(sa.inspect(store.engine).get_table_names())
    assert {t.name for t in store_schema.metadata.sorted_tables} <= tables
    assert store.ping()


def test_reopen_is_a_no_op_and_keeps_data(store: SqlStore, store_url: str) -> None:
    incident, _ = store.open_incident("pegasus", "api", "api-00042", at=T0)
    store.close()
    with Store.open(store_url) as again:
        assert again.schema_version() == CODE_VERSION
        assert again.incident(incident.id) == incident
        with again.engine.connect() as conn:
            rows = conn.execute(sa.select(store_schema.schema_version)).all()
        assert len(rows) == 1


def test_newer_schema_is_refused(store: SqlStore, store_url: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.update(store_schema.schema_version).values(version=CODE_VERSION + 1))
    store.close()
    with pytest.raises(StoreVersionError, match=f"version {CODE_VERSION + 1}"):
        Store.open(store_url)
    # A refused open releases what it took: fixing the version lets the next open through.
    engine = sa.create_engine(normalize_url(store_url))
    with engine.begin() as conn:
        conn.execute(sa.update(store_schema.schema_version).values(version=CODE_VERSION))
    engine.dispose()
    Store.open(store_url).close()


def test_a_v1_store_upgrades_to_v2_and_incidents_remember_their_deploy(
    store: SqlStore, store_url: str
) -> None:
    old, _ = store.open_incident("pegasus", "api", "api-00041", at=T0)
    with store.engine.begin() as conn:  # make it a v1 store: no `deploy` column
        conn.exec_driver_sql("ALTER TABLE incidents DROP COLUMN deploy")
        conn.execute(sa.update(store_schema.schema_version).values(version=1))
    store.close()
    info = DeployInfo(DeployKind.TRAFFIC, T0 - timedelta(minutes=3), ("api-00041",), 10)
    with Store.open(store_url) as again:
        assert again.schema_version() == CODE_VERSION
        assert again.incident(old.id) == old  # old rows read back, with no deploy
        assert old.deploy is None
        new, _ = again.open_incident("pegasus", "api", "api-00042", at=T0, deploy=info)
        assert new.deploy == info
        assert again.incident(new.id) == new


def test_one_incident_per_deploy(store: SqlStore) -> None:
    first, created = store.open_incident(
        "pegasus", "api", "api-00042", at=T0, rules=["schema"], migration_file="0042_x.sql"
    )
    again, created_again = store.open_incident("pegasus", "api", "api-00042", at=T0)
    other, other_created = store.open_incident("pegasus", "api", "api-00043", at=T0)
    assert (created, created_again, other_created) == (True, False, True)
    assert again == first
    assert first.rules == ("schema",)
    assert first.migration_file == "0042_x.sql"
    assert first.state is IncidentState.OPEN
    assert other.id != first.id
    assert store.incident("nope") is None


def test_transition_moves_forward_once(store: SqlStore) -> None:
    inc, _ = store.open_incident("pegasus", "api", "r1", at=T0)
    later = T0 + timedelta(minutes=1)
    frm = [IncidentState.OPEN]
    assert store.transition(inc.id, frm, IncidentState.FROZEN, at=later)
    assert not store.transition(inc.id, frm, IncidentState.FROZEN, at=later)
    assert store.transition(
        inc.id, [IncidentState.FROZEN], IncidentState.REVERTED, at=later, reverted_to="r0"
    )
    got = store.incident(inc.id)
    assert got is not None
    assert (got.state, got.reverted_to) == (IncidentState.REVERTED, "r0")
    assert store.set_incident_state(inc.id, IncidentState.RESOLVED, at=later)
    assert not store.set_incident_state("missing", IncidentState.RESOLVED, at=later)


def test_incidents_filters_newest_first(store: SqlStore) -> None:
    a, _ = store.open_incident("pegasus", "api", "r1", at=T0)
    b, _ = store.open_incident("pegasus", "api", "r2", at=T0 + timedelta(hours=1))
    c, _ = store.open_incident("orion", "api", "r9", at=T0 + timedelta(hours=2))
    store.set_incident_state(a.id, IncidentState.RESOLVED, at=T0)
    assert [i.id for i in store.incidents()] == [c.id, b.id, a.id]
    assert [i.id for i in store.incidents("pegasus")] == [b.id, a.id]
    assert [i.id for i in store.incidents("pegasus", open_only=True)] == [b.id]
    assert len(store.incidents(limit=1)) == 1


def test_evidence_is_kept_once_and_round_trips(store: SqlStore) -> None:
    inc, _ = store.open_incident("pegasus", "api", "r1", at=T0)
    e = Evidence(
        SignalKind.LOG, T0, 'relation "users" does not exist', "api", "r1",
        {"sqlstate": "42P01", "seen": T0, "lines": ("a", "b")},
    )  # fmt: skip
    assert store.add_evidence(inc.id, [e, e]) == 1
    assert store.add_evidence(inc.id, [e]) == 0
    assert store.add_evidence(inc.id, []) == 0
    [got] = store.evidence(inc.id)
    assert got.data == {"sqlstate": "42P01", "seen": T0.isoformat(), "lines": ["a", "b"]}
    assert (got.kind, got.at, got.summary) == (e.kind, e.at, e.summary)


def test_intend_then_finish_exactly_once(store: SqlStore) -> None:
    inc, _ = store.open_incident("pegasus", "api", "r1", at=T0)
    rec, created = store.intend(inc.id, ActionKind.REVERT, "k", {"target": "r0"}, at=T0)
    same, created_again = store.intend(inc.id, ActionKind.REVERT, "k", {"target": "zz"}, at=T0)
    assert (created, created_again) == (True, False)
    assert same == rec
    assert rec.status is ActionStatus.INTENDED
    assert store.open_intents() == [rec]
    assert store.record_attempt(rec.id) == 2
    done = T0 + timedelta(seconds=5)
    assert store.finish(rec.id, ActionStatus.SUCCEEDED, {"detail": "pinned", "at": done}, at=done)
    assert not store.finish(rec.id, ActionStatus.FAILED, {}, at=done)
    assert store.record_attempt(rec.id) == 0
    got = store.action(rec.id)
    assert got is not None
    assert got.status is ActionStatus.SUCCEEDED
    assert got.outcome == {"detail": "pinned", "at": done.isoformat()}
    assert got.finished_at == done
    assert got.as_action().target == "r0"
    assert got.as_action().detail == "pinned"
    assert store.open_intents() == []
    assert store.actions(inc.id) == [got]
    with pytest.raises(ValueError, match="final status"):
        store.finish(rec.id, ActionStatus.INTENDED, {}, at=done)


def test_freeze_and_lift_are_audited(store: SqlStore) -> None:
    inc, _ = store.open_incident("pegasus", "api", "r1", at=T0)
    assert store.freeze_of("pegasus") is None
    assert store.freeze("pegasus", inc.id, "schema errors", at=T0)
    assert not store.freeze("pegasus", inc.id, "again", at=T0)
    f = store.freeze_of("pegasus")
    assert f is not None
    assert (f.frozen, f.incident_id, f.reason, f.frozen_at) == (True, inc.id, "schema errors", T0)
    assert [x.app for x in store.frozen_apps()] == ["pegasus"]
    lift = T0 + timedelta(hours=1)
    assert store.lift_freeze("pegasus", "alice", at=lift)
    assert not store.lift_freeze("pegasus", "alice", at=lift)
    assert not store.lift_freeze("never-frozen", "alice", at=lift)
    f = store.freeze_of("pegasus")
    assert f is not None
    assert (f.frozen, f.lifted_by, f.lifted_at) == (False, "alice", lift)
    assert store.frozen_apps() == []
    assert store.freeze("pegasus", inc.id, "refrozen", at=lift)  # a lifted freeze re-freezes
    log = store.audit_log("pegasus")
    assert [(a.actor, a.action) for a in log] == [
        ("guard", "freeze"), ("alice", "lift_freeze"), ("guard", "freeze")
    ]  # fmt: skip
    assert log[-1].detail == {"incident": inc.id, "reason": "schema errors"}
    store.audit("bob", "approve", "proposal-1", {"at": lift}, at=lift)
    assert store.audit_log(limit=1)[0].detail == {"at": lift.isoformat()}
    assert len(store.audit_log()) == 4


def test_times_come_back_aware_utc(store: SqlStore) -> None:
    paris = datetime(2026, 3, 1, 13, 30, 15, 123456, tzinfo=timezone(timedelta(hours=1)))
    inc, _ = store.open_incident("pegasus", "api", "r1", at=paris)
    got = store.incident(inc.id)
    assert got is not None
    assert got.opened_at == paris
    assert got.opened_at.utcoffset() == timedelta(0)
    assert got.opened_at.tzinfo is not None
    naive = datetime(2026, 3, 1, 12, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(sa.exc.StatementError, match="naive"):
        store.open_incident("pegasus", "api", "r2", at=naive)


def test_sql_store_is_the_store_port(store: SqlStore) -> None:
    port: ports.Store = store  # mypy checks the structure; the test keeps it in the suite
    assert port.ping()


def test_a_missing_sqlite_directory_is_a_clear_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"does the directory .*nowhere exist"):
        Store.open(f"sqlite:///{tmp_path}/nowhere/guard.db")

"""The store keeps restores once, on SQLite and PostgreSQL alike.

Why: a restore destroys or forks production data, so its bookkeeping must not bend under
retries or racing replicas: one restore per origin, one vote per approver (the first stands),
a state that moves by compare-and-set with one winner, steps intended once and finished once.
And schema v4, which brings these tables, must upgrade a v3 store without losing a row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from guard.adapters import store_schema
from guard.adapters.store import SqlStore, Store, StoreError
from guard.adapters.store_migrations import (
    CODE_VERSION,
    MIGRATIONS,
    create_engine,
    normalize_url,
)
from guard.core.model import ActionStatus
from guard.core.restore import (
    Decision,
    Restore,
    RestoreKind,
    RestoreState,
    RestoreStepKind,
    Vote,
)

from .test_store_concurrency import race

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PLAN = {"point_in_time": T0, "services": ("api", "worker"), "clone": "pegasus-db-restore"}
OLD_TABLES = {"restore_proposals", "approvals"}
NEW_TABLES = {"restores", "restore_votes", "restore_steps"}


def propose(
    store: SqlStore,
    origin: str = "incident:i1:clone",
    *,
    app: str = "pegasus",
    incident_id: str | None = None,
    at: datetime = T0,
    plan: dict[str, Any] = PLAN,
) -> tuple[Restore, bool]:
    return store.restore_open(
        app=app, kind=RestoreKind.CLONE, origin=origin, incident_id=incident_id,
        created_by="guard", plan=plan, required_approvals=2, at=at,
        expires_at=at + timedelta(hours=1),
    )  # fmt: skip


def test_open_is_idempotent_per_origin(store: SqlStore) -> None:
    inc, _ = store.open_incident("pegasus", "api", "api-00042", at=T0)
    first, created = propose(store, incident_id=inc.id)
    later = T0 + timedelta(minutes=5)
    again, created_again = propose(store, incident_id=inc.id, at=later, plan={"other": 1})
    assert (created, created_again) == (True, False)
    assert again == first
    assert (first.app, first.kind, first.state, first.origin) == (
        "pegasus", RestoreKind.CLONE, RestoreState.PROPOSED, "incident:i1:clone"
    )  # fmt: skip
    assert (first.incident_id, first.created_by, first.required_approvals) == (inc.id, "guard", 2)
    assert (first.created_at, first.updated_at, first.expires_at) == (
        T0, T0, T0 + timedelta(hours=1)
    )  # fmt: skip
    assert first.plan == {
        "point_in_time": T0.isoformat(), "services": ["api", "worker"],
        "clone": "pegasus-db-restore",
    }  # fmt: skip
    assert first.outcome is None
    assert not first.destructive
    assert store.restore(first.id) == first
    assert store.restore("nope") is None
    [line] = store.audit_log(first.id)
    assert (line.actor, line.action, line.at) == ("guard", "restore_proposed", T0)
    assert line.detail == {
        "app": "pegasus", "kind": "clone", "origin": "incident:i1:clone", "incident_id": inc.id
    }  # fmt: skip
    human, created_human = propose(store, "human:h1")
    assert created_human
    assert human.id != first.id
    assert human.incident_id is None
    with pytest.raises(ValueError, match="at least one approval"):
        store.restore_open(
            app="pegasus", kind=RestoreKind.BACKUP, origin="human:h2", incident_id=None,
            created_by="alice", plan={}, required_approvals=0, at=T0, expires_at=T0,
        )  # fmt: skip


def test_one_vote_per_approver_and_the_first_stands(store: SqlStore) -> None:
    r, _ = propose(store)
    t1, t2, t3 = (T0 + timedelta(minutes=m) for m in (1, 2, 3))
    assert store.restore_vote(r.id, "alice", Decision.APPROVE, reason="checked", at=t1)
    assert not store.restore_vote(r.id, "alice", Decision.REJECT, reason="changed mind", at=t2)
    assert store.restore_vote(r.id, "bob", Decision.REJECT, reason="", at=t3)
    assert store.restore_votes(r.id) == [
        Vote(r.id, "alice", Decision.APPROVE, t1, "checked"),
        Vote(r.id, "bob", Decision.REJECT, t3, ""),
    ]
    log = store.audit_log(r.id)[::-1]  # oldest first
    assert [(a.actor, a.action) for a in log] == [
        ("guard", "restore_proposed"), ("alice", "restore_approve"),
        ("alice", "restore_vote_repeated"), ("bob", "restore_reject"),
    ]  # fmt: skip
    assert log[2].detail == {"decision": "reject", "reason": "changed mind"}
    assert store.restore_votes("nope") == []
    with pytest.raises(KeyError, match="nope"):
        store.restore_vote("nope", "alice", Decision.APPROVE, reason="", at=t1)
    assert store.audit_log("nope") == []


def test_transition_is_a_compare_and_set(store: SqlStore) -> None:
    r, _ = propose(store)
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    frm = [RestoreState.PROPOSED]
    assert store.restore_transition(
        r.id, frm, RestoreState.APPROVED, at=t1, actor="guard", detail={"approvers": ("a", "b")}
    )
    assert not store.restore_transition(r.id, frm, RestoreState.APPROVED, at=t2, actor="guard")
    assert not store.restore_transition(r.id, frm, RestoreState.EXPIRED, at=t2, actor="guard")
    assert not store.restore_transition("nope", frm, RestoreState.APPROVED, at=t2, actor="guard")
    got = store.restore(r.id)
    assert got is not None
    assert (got.state, got.updated_at, got.outcome) == (RestoreState.APPROVED, t1, None)
    assert store.restore_transition(
        r.id, [RestoreState.APPROVED, RestoreState.RUNNING], RestoreState.FAILED, at=t2,
        actor="guard", outcome={"step": "clone", "at": t2},
    )  # fmt: skip
    got = store.restore(r.id)
    assert got is not None
    assert (got.state, got.updated_at) == (RestoreState.FAILED, t2)
    assert got.outcome == {"step": "clone", "at": t2.isoformat()}
    log = store.audit_log(r.id)[::-1]
    assert [(a.actor, a.action) for a in log] == [
        ("guard", "restore_proposed"), ("guard", "restore_approved"), ("guard", "restore_failed")
    ]  # fmt: skip
    assert (log[1].detail, log[2].detail) == ({"approvers": ["a", "b"]}, {})


def test_racing_replicas_agree_on_a_restore(store: SqlStore, twin: SqlStore) -> None:
    opened = race([store, twin], propose)
    assert sum(created for _, created in opened) == 1
    assert len({r.id for r, _ in opened}) == 1
    rid = opened[0][0].id
    votes = race(
        [store, twin],
        lambda s: s.restore_vote(rid, "alice", Decision.APPROVE, reason="", at=T0),
    )
    assert votes.count(True) == 1
    assert len(store.restore_votes(rid)) == 1
    moved = race(
        [store, twin],
        lambda s: s.restore_transition(
            rid, [RestoreState.PROPOSED], RestoreState.APPROVED, at=T0, actor="guard"
        ),
    )
    assert moved.count(True) == 1
    assert [a.action for a in store.audit_log(rid)].count("restore_approved") == 1


def test_steps_are_intended_once_and_finished_once(store: SqlStore) -> None:
    r, _ = propose(store)
    key = f"{r.id}:clone"
    rec, created = store.restore_step_intend(
        r.id, RestoreStepKind.CLONE, key, {"instance": "db", "at": T0}, at=T0
    )
    same, created_again = store.restore_step_intend(
        r.id, RestoreStepKind.CLONE, key, {"instance": "other"}, at=T0
    )
    assert (created, created_again) == (True, False)
    assert same == rec
    assert (rec.restore_id, rec.step, rec.key, rec.status) == (
        r.id, RestoreStepKind.CLONE, key, ActionStatus.INTENDED
    )  # fmt: skip
    assert (rec.intent, rec.outcome, rec.created_at, rec.finished_at) == (
        {"instance": "db", "at": T0.isoformat()}, None, T0, None
    )  # fmt: skip
    assert store.restore_step_attempt(rec.id) == 2
    assert store.restore_step_attempt(rec.id) == 3
    done = T0 + timedelta(minutes=1)
    store.restore_step_finish(rec.id, ActionStatus.SUCCEEDED, {"operation": "op-1"}, at=done)
    store.restore_step_finish(rec.id, ActionStatus.FAILED, {"error": "late"}, at=done)
    assert store.restore_step_attempt(rec.id) == 0
    with pytest.raises(ValueError, match="final status"):
        store.restore_step_finish(rec.id, ActionStatus.INTENDED, {}, at=done)
    wait, _ = store.restore_step_intend(r.id, RestoreStepKind.WAIT, f"{r.id}:wait", {}, at=done)
    first, second = store.restore_steps(r.id)
    assert (first.id, first.status, first.outcome, first.finished_at) == (
        rec.id, ActionStatus.SUCCEEDED, {"operation": "op-1"}, done
    )  # fmt: skip
    assert second == wait
    assert store.restore_steps("nope") == []


def test_restores_filter_newest_first(store: SqlStore) -> None:
    inc, _ = store.open_incident("pegasus", "api", "r1", at=T0)
    a, _ = propose(store, "incident:a", incident_id=inc.id, at=T0)
    b, _ = propose(store, "human:b", at=T0 + timedelta(hours=1))
    c, _ = propose(store, "human:c", app="orion", at=T0 + timedelta(hours=2))
    store.restore_transition(
        a.id, [RestoreState.PROPOSED], RestoreState.EXPIRED, at=T0, actor="guard"
    )
    assert [r.id for r in store.restores()] == [c.id, b.id, a.id]
    assert [r.id for r in store.restores("pegasus")] == [b.id, a.id]
    assert [r.id for r in store.restores(states=[RestoreState.PROPOSED])] == [c.id, b.id]
    live = [RestoreState.PROPOSED, RestoreState.APPROVED]
    assert [r.id for r in store.restores("pegasus", states=live)] == [b.id]
    assert [r.id for r in store.restores(incident_id=inc.id)] == [a.id]
    assert [r.id for r in store.restores(limit=1)] == [c.id]
    assert store.restores(states=[]) == []


def test_naive_datetimes_are_refused(store: SqlStore) -> None:
    naive = datetime(2026, 3, 1, 12, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="naive"):
        propose(store, at=naive)
    with pytest.raises(ValueError, match="naive"):
        propose(store, plan={"point_in_time": naive})
    assert store.restores() == []
    r, _ = propose(store)
    with pytest.raises(ValueError, match="naive"):
        store.restore_vote(r.id, "alice", Decision.APPROVE, reason="", at=naive)
    with pytest.raises(ValueError, match="naive"):
        store.restore_transition(
            r.id, [RestoreState.PROPOSED], RestoreState.APPROVED, at=naive, actor="guard"
        )
    with pytest.raises(ValueError, match="naive"):
        store.restore_step_intend(r.id, RestoreStepKind.CLONE, "k", {}, at=naive)
    assert store.restore_votes(r.id) == []
    assert store.restore_steps(r.id) == []
    assert store.restore(r.id) == r


# --- schema version 4 -----------------------------------------------------------------------


def v3_database(url: str) -> sa.Engine:
    """A database as a v3 guard left it: migrations 1 to 3 only (with the v1 restore tables)."""
    old = [m for m in MIGRATIONS if m.version <= 3]
    assert [m.version for m in old] == [1, 2, 3]
    engine = create_engine(normalize_url(url))
    with engine.begin() as conn:
        store_schema.schema_version.create(conn)
        for m in old:
            m.apply(conn)
        conn.execute(sa.insert(store_schema.schema_version).values(id=1, version=3, upgraded_at=T0))
        conn.execute(
            sa.insert(store_schema.incidents).values(
                id="inc1", app="pegasus", service="api", bad_revision="api-00042",
                state="open", opened_at=T0, updated_at=T0, rules=[],
            )
        )  # fmt: skip
    assert table_names(engine) >= OLD_TABLES
    return engine


def table_names(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_a_fresh_store_is_v4_without_the_old_restore_tables(store: SqlStore) -> None:
    assert store.schema_version() == CODE_VERSION == 4
    tables = table_names(store.engine)
    assert tables >= NEW_TABLES
    assert not OLD_TABLES & tables


def test_a_v3_store_upgrades_to_v4(store_url: str) -> None:
    v3_database(store_url).dispose()
    with Store.open(store_url) as store:
        assert store.schema_version() == CODE_VERSION
        tables = table_names(store.engine)
        assert tables >= NEW_TABLES
        assert not OLD_TABLES & tables
        assert store.incident("inc1") is not None  # the v3 data is still there
        r, created = propose(store, incident_id="inc1")
        assert created
        assert store.restores(incident_id="inc1") == [r]
    with Store.open(store_url) as again:  # and opening it again changes nothing
        assert again.schema_version() == CODE_VERSION
        assert [x.id for x in again.restores()] == [r.id]


def test_a_v3_store_with_restore_proposals_is_not_upgraded(store_url: str) -> None:
    engine = v3_database(store_url)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(store_schema.restore_proposals).values(
                id="p1", incident_id="inc1", app="pegasus", state="proposed", point_in_time=T0,
                clone_name="pegasus-clone", plan={}, created_at=T0,
            )
        )  # fmt: skip
    engine.dispose()
    with pytest.raises(StoreError, match=r"restore_proposals holds 1 row.*nothing was changed"):
        Store.open(store_url)
    engine = create_engine(normalize_url(store_url))
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.select(store_schema.schema_version.c.version)).scalar()
            rows = conn.execute(sa.select(store_schema.restore_proposals.c.id)).scalars().all()
        assert (version, rows) == (3, ["p1"])
        tables = table_names(engine)
        assert tables >= OLD_TABLES
        assert not NEW_TABLES & tables
    finally:
        engine.dispose()

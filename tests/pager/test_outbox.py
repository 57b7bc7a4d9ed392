"""The page outbox on SQLite and PostgreSQL: versions coalesce, repeats are no-ops, every
outcome is recorded, and Alertmanager's re-send keeps the version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from guard.adapters.store import SqlStore

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _incident(store: SqlStore) -> str:
    incident, _ = store.open_incident("pegasus", "pegasus-api", "api-00042", at=T0)
    return incident.id


def test_versions_coalesce_and_repeats_are_no_ops(store: SqlStore) -> None:
    iid = _incident(store)
    assert store.page_put(iid, "pd", "dk", "c1", {"title": "one"}, at=T0) == 1
    assert store.page_put(iid, "pd", "dk", "c1", {"title": "one"}, at=T0) is None
    assert store.page_put(iid, "pd", "dk", "c2", {"title": "two"}, at=T0) == 2
    [row] = store.pages_due(T0)
    assert (row.version, row.sent_version, row.payload["title"]) == (2, 0, "two")
    assert row.payload["version"] == 2
    store.page_sent(row.id, 2, at=T0)
    assert store.pages_due(T0 + timedelta(hours=1)) == []
    assert store.page_put(iid, "pd", "dk", "c2", {"title": "two"}, at=T0) is None


def test_a_version_sent_while_a_newer_one_was_queued_keeps_the_newer_pending(
    store: SqlStore,
) -> None:
    iid = _incident(store)
    store.page_put(iid, "slack", "dk", "c1", {"v": 1}, at=T0)
    [row] = store.pages_due(T0)
    store.page_put(iid, "slack", "dk", "c2", {"v": 2}, at=T0)  # arrives during the send
    store.page_sent(row.id, row.version, at=T0)
    [again] = store.pages_due(T0)
    assert (again.version, again.sent_version, again.status) == (2, 1, "pending")


def test_retry_then_failure_are_recorded(store: SqlStore) -> None:
    iid = _incident(store)
    store.page_put(iid, "pd", "dk", "c1", {}, at=T0)
    [row] = store.pages_due(T0)
    assert store.page_retry(row.id, 1, "500: boom", next_at=T0 + timedelta(seconds=30)) == 1
    assert store.pages_due(T0 + timedelta(seconds=29)) == []
    [row] = store.pages_due(T0 + timedelta(seconds=30))
    assert row.last_error == "500: boom"
    store.page_failed(row.id, 1, "400: invalid event")
    [failed] = store.pages(iid)
    assert (failed.status, failed.attempts) == ("failed", 2)
    assert store.page_put(iid, "pd", "dk", "c2", {}, at=T0) == 2, "a new version still goes"


def test_resend_keeps_the_version(store: SqlStore) -> None:
    iid = _incident(store)
    store.page_put(iid, "am", "dk", "c1", {"event": "trigger"}, at=T0)
    [row] = store.pages_due(T0)
    store.page_sent(row.id, 1, at=T0)
    store.page_resend(row.id, at=T0 + timedelta(seconds=60))
    [again] = store.pages_due(T0 + timedelta(seconds=60))
    assert (again.version, again.sent_version) == (1, 0)
    store.page_sent(again.id, 1, at=T0 + timedelta(seconds=61))
    [done] = store.pages(iid)
    assert (done.status, done.sent_version) == ("sent", 1)

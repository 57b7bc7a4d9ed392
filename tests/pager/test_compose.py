"""Composing a page: the whole story, redacted, and the same content for the same facts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from guard.core.model import Evidence, Incident, IncidentState, SignalKind
from guard.core.page import PageEvent, PageMessage, PageSeverity, from_json, to_json
from guard.core.page_compose import ActionLine, compose, content_key
from guard.core.redact import MASK, Redactor

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRETS = [
    "postgresql://pegasus:hunter2-db-pass@10.0.0.5:5432/pegasus",
    "password=hunter2-db-pass",
    "Authorization: Bearer sk-live-abcdefghijklmnop1234",
    "routing-key-0123456789abcdef",
]


def _incident(state: IncidentState = IncidentState.REVERTED, **kw: object) -> Incident:
    base: dict[str, object] = {
        "id": "abc123", "app": "pegasus", "service": "pegasus-api",
        "bad_revision": "pegasus-api-00042-zed", "state": state, "opened_at": T0,
        "rules": ("migration-failure",), "reverted_to": "pegasus-api-00041-vum",
        "migration_file": "backend/migrations/002_rename_course_title.sql", "file_source": "text",
    }  # fmt: skip
    base.update(kw)
    return Incident(**base)  # type: ignore[arg-type]


def _evidence() -> list[Evidence]:
    lines = [
        'psycopg.errors.UndefinedColumn: column "title" does not exist',
        f"could not connect to {SECRETS[0]}",
        f"retrying with {SECRETS[1]} and {SECRETS[2]}",
    ]
    return [
        Evidence(
            SignalKind.LOG,
            T0 + timedelta(seconds=i),
            f"log: {t}",
            "pegasus-api",
            "pegasus-api-00042-zed",
            {"text": t},
        )
        for i, t in enumerate(lines)
    ]


ACTIONS = [
    ActionLine("freeze", "succeeded", {"frozen": "pegasus"}),
    ActionLine("revert", "succeeded", {"target": "pegasus-api-00041-vum"}),
    ActionLine("page", "intended", {}),
]


def _page(incident: Incident, actions: list[ActionLine] = ACTIONS) -> PageMessage:
    return compose(
        incident, evidence=_evidence(), actions=actions,
        reasons={"migration-failure": ["1 migration_failure failure (failureLimit 1)"]},
        severity=PageSeverity.CRITICAL, redact=Redactor([SECRETS[3]]), at=T0,
        api_url="https://guard.example.com",
    )  # fmt: skip


def test_the_page_tells_the_whole_story_and_no_secret() -> None:
    page = _page(_incident())
    text = page.text()
    assert "pegasus-api-00042-zed -> pegasus-api-00041-vum" in text
    assert "backend/migrations/002_rename_course_title.sql (named in the log)" in text
    assert "migration-failure: 1 migration_failure failure (failureLimit 1)" in text
    assert "revert to pegasus-api-00041-vum: succeeded" in text
    assert "page" not in [a.split(":")[0] for a in page.actions]
    assert "https://guard.example.com/v1/incidents/abc123" in str(page.links)
    for secret in ("hunter2-db-pass", "sk-live-abcdefghijklmnop1234"):
        assert secret not in text
    assert MASK in text


def test_escalated_page_carries_the_proposal_and_resolved_page_resolves() -> None:
    proposal = {
        "point_in_time": "2026-03-01T11:50:00Z", "clone_name": "pegasus-db-eu-pitr-0301-1150",
        "gcloud": ["gcloud sql instances clone pegasus-db-eu pegasus-db-eu-pitr-0301-1150 "
                   "--point-in-time=2026-03-01T11:50:00Z"],
        "option_b_file": "backend/migrations/003_fix_rename_course_title.sql", "problems": [],
        "restore_id": "r0123456789a", "backup_restore_id": "rb123456789a", "approvals_required": 2,
    }  # fmt: skip
    escalated = _page(
        _incident(IncidentState.ESCALATED),
        [*ACTIONS, ActionLine("escalate", "succeeded", {"proposal": proposal})],
    )
    assert escalated.severity is PageSeverity.CRITICAL
    text = escalated.text()
    assert "guard restore plan r0123456789a, then guard restore approve r0123456789a" in text
    assert "(2 distinct approvers)" in text
    assert (
        "DESTRUCTIVE, restore the last backup in place: guard restore approve rb123456789a" in text
    )
    unopened = _page(  # no restore was opened (no desk): say how to propose one
        _incident(IncidentState.ESCALATED),
        [*ACTIONS, ActionLine("escalate", "succeeded", {"proposal": {
            "point_in_time": "2026-03-01T11:50:00Z", "clone_name": "x", "gcloud": []}})],
    )  # fmt: skip
    assert "guard restore propose pegasus --at 2026-03-01T11:50:00Z" in unopened.text()
    assert "003_fix_rename_course_title.sql" in text
    assert "--point-in-time=2026-03-01T11:50:00Z" in text
    restored = _page(
        _incident(IncidentState.RESOLVED),
        [*ACTIONS, ActionLine("restore", "succeeded", {"summary": "database restored: clone x"})],
    )
    assert "restore (database restored: clone x): succeeded" in restored.text()
    resolved = _page(_incident(IncidentState.RESOLVED))
    assert resolved.event is PageEvent.RESOLVE
    assert resolved.dedup_key == escalated.dedup_key


def test_same_facts_same_content_and_json_round_trip() -> None:
    a = _page(_incident())
    b = compose(
        _incident(), evidence=_evidence(), actions=ACTIONS,
        reasons={"migration-failure": ["1 migration_failure failure (failureLimit 1)"]},
        severity=PageSeverity.CRITICAL, redact=Redactor([SECRETS[3]]), at=T0 + timedelta(hours=1),
        api_url="https://guard.example.com", version=7,
    )  # fmt: skip
    assert content_key(a) == content_key(b)
    c = _page(_incident(IncidentState.RESOLVED))
    assert content_key(a) != content_key(c)
    assert from_json(to_json(b)) == b


def test_redactor_patterns() -> None:
    r = Redactor(["my-literal-secret"])
    assert r("postgres://u:p%40ss@h/d") == f"postgres://u:{MASK}@h/d"
    assert "hunter2" not in r('{"password": "hunter2"}')
    assert "abcdefghijklmnop" not in r("Authorization: Bearer abcdefghijklmnop")
    assert r("the my-literal-secret here") == f"the {MASK} here"
    assert r('column "title" does not exist') == 'column "title" does not exist'

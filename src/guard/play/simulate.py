"""`guard simulate SCENARIO.yaml --json`: a scenario on the virtual clock, as one JSON document.

Why: every behaviour of the guard can be checked end to end, offline and in seconds, and
the answer is one document a test (or a person) reads: what incidents the guard opened and
how it answered each, what pages reached the receiver, which restores it proposed and ran,
and every write call the fake cloud recorded. Times are scenario seconds (0 = the
scenario's start). The same scenario and seed give the same document.
"""

from __future__ import annotations

import asyncio
from typing import Any

from guard.adapters.store import SqlStore
from guard.core.model import ActionKind, ActionStatus, Incident
from guard.core.restore import RestoreKind, StepRecord
from guard.play.harness import Play
from guard.service.restores import in_plan_order
from guard.sim.scenario_model import Scenario

#: The format of the document; bumped on any incompatible change (docs/simulate.md).
FORMAT = "deploy-guard.simulation/v1"


async def simulate(
    scenario: Scenario, *, approve_after: float | None = None, until: float | None = None
) -> dict[str, Any]:
    """Play `scenario` to its end (or `until`) with the guard acting; the JSON document."""
    async with Play(scenario, approve_after=approve_after) as play:
        await play.run_until(until if until is not None else scenario.duration)
        return await asyncio.to_thread(document, play)


def document(play: Play) -> dict[str, Any]:
    """What happened, from the guard's store, the page receiver and the fake's write log."""
    store = play.store
    incidents = sorted(store.incidents(limit=1000), key=lambda i: (i.opened_at, i.id))
    # Proposed in the same instant: the clone (Option A) first, then the backup.
    restores = sorted(
        store.restores(limit=1000), key=lambda r: (r.created_at, r.kind is not RestoreKind.CLONE)
    )
    return {
        "format": FORMAT,
        "scenario": play.scenario.name,
        "seed": play.scenario.seed,
        "duration": round(play.t, 3),
        "incidents": [_incident(play, store, i) for i in incidents],
        "restores": [
            {
                "id": r.id,
                "app": r.app,
                "kind": r.kind.value,
                "state": r.state.value,
                "incident": r.incident_id,
                "proposed_at": play.seconds(r.created_at),
                "point_in_time": r.plan.get("point_in_time"),
                "clone_name": r.plan.get("clone_name"),
                "approvals": [v.approver for v in store.restore_votes(r.id)],
                "steps": [
                    {"step": s.key.split(":", 1)[1], "status": s.status.value}
                    for s in _ordered(play, r.id)
                ],
            }
            for r in restores
        ],
        "pages": [
            {
                "at": page.at,
                "incident": page.body.get("incident_id"),
                "version": page.body.get("version"),
                "event": page.body.get("event"),
                "severity": page.body.get("severity"),
                "title": page.body.get("title"),
                "migration_file": page.body.get("migration_file"),
            }
            for page in play.receiver.pages()
        ],
        "writes": [
            {
                "at": round(w.elapsed, 3),
                "api": w.api,
                "method": w.method,
                "by": w.request.get("actor", "guard"),
                "error": w.error,
            }
            for w in play.engine.world.recorder.writes()
        ],
    }


def _incident(play: Play, store: SqlStore, i: Incident) -> dict[str, Any]:
    actions = {a.kind: a for a in store.actions(i.id)}
    revert = actions.get(ActionKind.REVERT)
    reverted = revert is not None and revert.status is ActionStatus.SUCCEEDED
    escalate = actions.get(ActionKind.ESCALATE)
    proposal = (escalate.outcome or {}).get("proposal") if escalate else None
    return {
        "id": i.id,
        "app": i.app,
        "service": i.service,
        "bad_revision": i.bad_revision,
        "state": i.state.value,
        "rules": list(i.rules),
        "detected_at": play.seconds(i.opened_at),
        "migration_file": i.migration_file,
        "migration_file_source": i.file_source,
        "reverted_to": i.reverted_to if reverted else None,
        "reverted_at": (
            play.seconds(revert.finished_at)
            if reverted and revert is not None and revert.finished_at
            else None
        ),
        "escalated": escalate is not None,
        "restore_proposal": proposal,
        "dry_run": i.dry_run,
        "actions": [
            {
                "kind": a.kind.value,
                "status": a.status.value,
                "at": play.seconds(a.finished_at or a.created_at),
            }
            for a in store.actions(i.id)
        ],
    }


def _ordered(play: Play, restore_id: str) -> list[StepRecord]:
    restore = play.store.restore(restore_id)
    steps = play.store.restore_steps(restore_id)
    return in_plan_order(restore, steps) if restore is not None else steps

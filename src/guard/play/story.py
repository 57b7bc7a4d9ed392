"""The demo's story: what is new since the last look, as timeline lines.

Why apart from the demo's runner: this is the narrator. Every line comes from what the
guard recorded (its store, its detector's classified log hits and deploys), what reached
the page receiver, and what the fake cloud saw (revisions, write calls, Cloud SQL
operations); it never acts, except to cast the approvals a person would, as the named demo
approvers, saying so. When nothing new happens for a few seconds it says what the guard is
waiting for, so nothing looks stuck.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from guard.adapters.store import SqlStore
from guard.core.model import ActionKind, ActionStatus, Incident
from guard.core.restore import (
    FINAL,
    Restore,
    RestoreKind,
    RestoreState,
    RestoreStepKind,
    StepRecord,
    Vote,
    steps_for,
)
from guard.core.restore_plan import plan_lines
from guard.core.rules import LogKind
from guard.play.harness import Play
from guard.play.timeline import Timeline
from guard.ports import ActionRecord, AuditRecord
from guard.service.restores import RestoreRequestError

_EXCEPTION_LINE = re.compile(
    r"^(?:[A-Za-z_]\w*\.)+[A-Z]\w*: \S|^[A-Z]\w*(?:Error|Exception|Violation): \S"
)

#: The demo approves a proposed clone restore this many seconds after it opens.
APPROVE_AFTER = 4.0
#: How often the timeline looks for news (wall seconds).
OBSERVE_EVERY = 0.25
#: A heartbeat line when nothing was printed for this long (wall seconds).
QUIET_AFTER = 3.0


@dataclass
class Snapshot:
    """The guard's store at one moment: incidents and restores with everything about them."""

    incidents: list[Incident] = field(default_factory=list)
    actions: dict[str, list[ActionRecord]] = field(default_factory=dict)
    opened: dict[str, list[AuditRecord]] = field(default_factory=dict)  # verdicts' reasons
    restores: list[Restore] = field(default_factory=list)
    votes: dict[str, list[Vote]] = field(default_factory=dict)
    steps: dict[str, list[StepRecord]] = field(default_factory=dict)


def _read(store: SqlStore) -> Snapshot:
    """One look at the store (short transactions: run it off the event loop)."""
    snap = Snapshot()
    # Restores first: a restore's end moves its incident on, so the incident read after it
    # is at least as recent (a finished restore finds its incident resolved).
    snap.restores = sorted(store.restores(limit=100), key=lambda r: r.created_at)
    for r in snap.restores:
        snap.votes[r.id] = store.restore_votes(r.id)
        snap.steps[r.id] = store.restore_steps(r.id)
    snap.incidents = sorted(store.incidents(limit=100), key=lambda i: i.opened_at)
    for i in snap.incidents:
        snap.actions[i.id] = store.actions(i.id)
        snap.opened[i.id] = store.audit_log(i.id, limit=50)
    return snap


@dataclass(order=True)
class _Event:
    at: datetime
    seq: int
    label: str = field(compare=False)
    text: str = field(compare=False)
    more: tuple[str, ...] = field(compare=False, default=())


class Story:
    """Watches the play and prints what is new, in the order it happened."""

    def __init__(self, play: Play, timeline: Timeline) -> None:
        self.play, self.timeline = play, timeline
        self.runtime = play.runtime
        self.world = play.engine.world
        self.settle = float(play.config.settle_seconds)
        self._seq = 0
        self._events: list[_Event] = []
        self._initial = {s: set(self.world.run.revisions(s)) for s in self.world.run.services()}
        self._seen_new: set[str] = set()  # revisions created since the start
        self._new_revisions: set[str] = set()  # of them, the deploys
        self._rolled: set[str] = set()  # revisions a restore created (not deploys)
        self._migrations_seen: set[str] = set()
        self._deploys = 0
        self._hit_revisions: set[str] = set()
        self._incidents: dict[str, tuple[str, ...]] = {}
        self._states: dict[str, str] = {}
        self._pages = 0
        self._page_lines: list[str] = []
        self._writes = 0
        self.snapshot = Snapshot()
        self.outcome: str | None = None  # "succeeded", or why it failed

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, deadline: float) -> int:
        """Narrate until the restore ends (0 if it succeeded) or `deadline` (monotonic)."""
        while True:
            try:
                await self.play.approve_due("approved by `guard demo`, as a named demo approver")
            except RestoreRequestError as err:
                self.timeline.line("FAILED", f"the demo's approval was refused: {err.message}")
                self.outcome = err.message
            await self.look()
            if self.outcome is not None:
                return 0 if self.outcome == "succeeded" else 1
            if time.monotonic() >= deadline:
                stage, why = self.waiting()
                self.timeline.line(
                    "FAILED",
                    f"stopped after {self.timeline.elapsed():.0f} s, stuck at stage {stage}: {why}",
                )
                return 1
            if self.timeline.quiet_for() >= QUIET_AFTER:
                self.timeline.line("…", self.waiting()[1])
            await asyncio.sleep(OBSERVE_EVERY)

    async def last_page(self, wait: float) -> None:
        """Let the resolving page arrive (the pager delivers every second)."""
        until = time.monotonic() + wait
        while time.monotonic() < until:
            await self.look()
            if any(p.body.get("event") == "resolve" for p in self.play.receiver.pages()):
                return
            await asyncio.sleep(OBSERVE_EVERY)

    async def look(self) -> None:
        """Read everything new and print it, oldest first."""
        self.snapshot = await asyncio.to_thread(_read, self.play.store)
        self._fake_deploys()
        self._guard_deploys()
        self._errors()
        for incident in self.snapshot.incidents:
            self._incident(incident)
        self._received_pages()
        for restore in self.snapshot.restores:
            self._restore(restore)
        self._fake_writes()
        for event in sorted(self._events):
            self.timeline.line(event.label, event.text, event.more)
        self._events.clear()

    def _add(self, at: datetime | None, label: str, text: str, more: Sequence[str] = ()) -> None:
        self._seq += 1
        when = at if at is not None else self.play.clock.now()
        self._events.append(_Event(when, self._seq, label, text, tuple(more)))

    # -- the fake cloud and the detector ---------------------------------------------------

    def _fake_deploys(self) -> None:
        run = self.world.run
        for service in run.services():
            short = service.rsplit("/", 1)[-1]
            for revision in run.revisions(service):
                if revision in self._initial.get(service, set()) or revision in self._seen_new:
                    continue
                self._seen_new.add(revision)
                if revision in self._rolled:
                    continue
                self._new_revisions.add(revision)
                migrations = run.migrations(service, revision)
                created = run.revision(service, revision).create_time
                self._add(
                    created if isinstance(created, datetime) else None,
                    "DEPLOY",
                    f"{short}: a deploy creates revision {revision}",
                    [f"it runs {', '.join(migrations)} at startup"] if migrations else [],
                )
        ledger = self.runtime.detector.ledger
        services = [ref.name for app in self.runtime.watched for ref in app.services]
        for revision in sorted(self._new_revisions - self._migrations_seen):
            applied = next((m for s in services if (m := ledger.migrations(s, revision))), ())
            if applied:
                self._migrations_seen.add(revision)
                self._add(
                    None,
                    "DEPLOY",
                    f"{revision}'s startup log, as the guard tails it: applying {applied[-1]}",
                )

    def _guard_deploys(self) -> None:
        seen = self.runtime.detector.deploys_seen
        for deploy in seen[self._deploys :]:
            if deploy.revision in self._rolled:
                continue  # a restore's roll, told as ROLL
            rules = next(
                (a.rules for a in self.runtime.watched if deploy.service in a.services), ()
            )
            self._add(
                None,
                "DEPLOY",
                f"the guard sees it: {deploy.revision} serves {deploy.traffic_percent}% of "
                f"{deploy.service.name}; last known good "
                f"{', '.join(deploy.last_known_good) or 'none'}",
                [f"judging it by rules {', '.join(r.name for r in rules)}"] if rules else [],
            )
        self._deploys = len(seen)

    def _errors(self) -> None:
        for ref, hits in self.runtime.detector.hits.items():
            for hit in list(hits):
                revision = hit.record.revision
                if revision in self._hit_revisions:
                    continue
                self._hit_revisions.add(revision)
                c = hit.classification
                code = "new" if revision in self._new_revisions else "old"
                if revision in self._rolled:
                    code = "restored"
                facts = [f"classified {c.kind.value if c.kind else 'a match'}"]
                if c.sqlstate:
                    facts.append(f"SQLSTATE {c.sqlstate}")
                if c.relation:
                    facts.append(f"relation {c.relation}")
                more = [", ".join(facts)]
                if code == "old" and self._new_revisions:
                    more.append("the old code already meets the new schema: the migration ran")
                if c.migration_file:
                    how = "named in the log" if c.file_source == "text" else "its newest migration"
                    more.append(f"failing migration: {c.migration_file} ({how})")
                self._add(
                    hit.record.at,
                    "ERROR",
                    f"{revision} ({ref.role.value}, {code} code): {_error_line(hit.record.text)}",
                    more,
                )

    # -- incidents ---------------------------------------------------------------------------

    def _incident(self, incident: Incident) -> None:
        before = self._incidents.get(incident.id)
        if before is None:
            self._verdict(incident, incident.rules)
        elif len(incident.rules) > len(before):
            self._verdict(incident, incident.rules[len(before) :], also=True)
        self._incidents[incident.id] = tuple(incident.rules)
        for action in self.snapshot.actions.get(incident.id, []):
            self._action(incident, action)

    def _verdict(self, incident: Incident, rules: Sequence[str], *, also: bool = False) -> None:
        audit = self.snapshot.opened.get(incident.id, [])
        reasons: list[str] = []
        for record in sorted(audit, key=lambda a: a.id):
            if record.detail.get("rule") in rules:
                reasons += [f"reason: {r}" for r in record.detail.get("reasons", ())]
        for rule in rules:
            spec = self.runtime.rules.get(rule)
            trigger = spec.metadata.labels.get("runbook-trigger") if spec else None
            about = ""
            if spec is not None and trigger:
                about = f" (runbook trigger {trigger}: {spec.spec.description.rstrip('.')})"
            text = (
                f"{incident.bad_revision} FAILED rule {rule}{about}"
                if not also
                else f"{incident.bad_revision} also FAILED rule {rule}{about}"
            )
            more = list(reasons)
            if not also:
                more.append(f"incident {incident.id} opened for {incident.app}/{incident.service}")
            self._add(incident.opened_at, "VERDICT", text, more)

    def _action(self, incident: Incident, action: ActionRecord) -> None:
        key = f"action:{action.id}"
        status = action.status.value
        if self._states.get(key) == status:
            return
        self._states[key] = status
        outcome = dict(action.outcome or {})
        kind = action.kind
        if action.status is ActionStatus.INTENDED:
            if kind is ActionKind.REVERT:
                target = action.intent.get("target", "")
                self._add(
                    action.created_at,
                    "REVERT",
                    f"pinning 100% of {incident.service}'s traffic to {target}, the last known "
                    "good revision (a traffic-only UpdateService)",
                )
            return
        at = action.finished_at or action.created_at
        failed = action.status is ActionStatus.FAILED
        if kind is ActionKind.FREEZE:
            extra = []
            pipeline = outcome.get("pipeline")
            if isinstance(pipeline, Mapping):
                extra.append(f"Cloud Deploy pipeline suspended: {pipeline.get('ok')}")
            self._add(
                action.created_at,
                "FAILED" if failed else "FREEZE",
                f"app {incident.app} frozen: `guard gate {incident.app}` now exits 1 and GET "
                f"/v1/freezes/{incident.app} says frozen, so no pipeline ships over the incident",
                extra,
            )
        elif kind is ActionKind.REVERT:
            label = "FAILED" if failed else "REVERT"
            self._add(at, label, f"done: {outcome.get('message') or status}")
        elif kind is ActionKind.VALIDATE:
            self._validated(incident, action, outcome)
        elif kind is ActionKind.ESCALATE:
            self._escalated(action, outcome)

    def _validated(
        self, incident: Incident, action: ActionRecord, outcome: Mapping[str, Any]
    ) -> None:
        errors = int(outcome.get("schema_error_count") or 0)
        checks = outcome.get("checks") or ""
        serving = incident.reverted_to or "the reverted-to revision"
        if outcome.get("schema_errors") or not outcome.get("passed"):
            text = (
                f"FAILED: {errors} schema error(s) from {serving} since the revert "
                f"({self.settle:g} s of traffic): the old code breaks on the new schema"
            )
        else:
            text = f"passed: no schema errors from {serving} since the revert"
        self._add(action.created_at, "VALIDATE", text, [f"HTTP checks and smoke test: {checks}"])

    def _escalated(self, action: ActionRecord, outcome: Mapping[str, Any]) -> None:
        proposal = outcome.get("proposal")
        if not isinstance(proposal, Mapping):
            self._add(action.created_at, "ESCALATE", str(outcome.get("why") or "escalated"))
            return
        more = []
        if proposal.get("restore_id"):
            more.append(
                f"Option A: point-in-time clone, restore {proposal['restore_id']} "
                f"({proposal.get('approvals_required')} distinct approvals required)"
            )
        if proposal.get("backup_restore_id"):
            more.append(
                f"or, DESTRUCTIVE: the last backup restored in place, restore "
                f"{proposal['backup_restore_id']}"
            )
        if proposal.get("option_b_note"):
            more.append(f"Option B: {proposal['option_b_note']}")
        more.append("nothing touches the database until humans approve")
        self._add(
            action.created_at,
            "ESCALATE",
            "the schema changed under the old code: reverting traffic cannot fix it",
            more,
        )

    # -- pages -------------------------------------------------------------------------------

    def _received_pages(self) -> None:
        pages = self.play.receiver.pages()
        for page in pages[self._pages :]:
            body = page.body
            lines = str(body.get("text") or body.get("title") or "").splitlines()
            version = body.get("version")
            at = self.play.clock.epoch + timedelta(seconds=page.at)
            event = body.get("event")
            if not self._page_lines:
                head = (
                    f"page v{version} ({event}, {body.get('severity')}) arrives at the webhook, "
                    "as the on-call person reads it:"
                )
                shown = lines
            else:
                head = f"page update v{version} ({event}) arrives; what is new since the last:"
                old = set(self._page_lines)
                shown = lines[:1] + [line for line in lines[1:] if line not in old]
            self._add(at, "PAGE", head, [f"│ {line}" for line in shown])
            self._page_lines = lines
        self._pages = len(pages)

    # -- restores ----------------------------------------------------------------------------

    def _restore(self, r: Restore) -> None:
        for s in r.plan.get("services", ()):
            self._rolled.add(str(s.get("new_revision")))
        if r.incident_id and not self._escalation_told(r.incident_id):
            return  # its escalation is told first
        key = f"restore:{r.id}"
        if key not in self._states:
            self._proposed(r)
        for vote in self.snapshot.votes.get(r.id, []):
            vkey = f"vote:{r.id}:{vote.approver}"
            if vkey not in self._states:
                self._states[vkey] = vote.decision.value
                self._add(
                    vote.at,
                    "APPROVE",
                    f"{vote.approver} {vote.decision.value}s restore {r.id}: this is the demo "
                    f"approving, as the named demo approver {vote.approver}",
                )
        for step in self.snapshot.steps.get(r.id, []):
            self._step(r, step)
        if self._states.get(key) != r.state.value:
            self._states[key] = r.state.value
            self._restore_state(r)

    def _escalation_told(self, incident_id: str) -> bool:
        for action in self.snapshot.actions.get(incident_id, []):
            if action.kind is ActionKind.ESCALATE:
                return self._states.get(f"action:{action.id}") not in (None, "intended")
        return True  # opened by a human, not an escalation

    def _proposed(self, r: Restore) -> None:
        if r.kind is RestoreKind.BACKUP:
            run = r.plan.get("backup_run") or {}
            self._add(
                r.created_at,
                "PLAN",
                f"restore {r.id}: DESTRUCTIVE in-place restore of backup run {run.get('id')} "
                "(proposed too; the demo does not approve it)",
            )
            return
        self._add(
            r.created_at,
            "PLAN",
            f"restore {r.id} ({r.kind.value}), {r.required_approvals} distinct approvals "
            f"required; `guard restore plan {r.id}` shows:",
            [f"│ {line}" for line in plan_lines(r.plan)],
        )

    def _restore_state(self, r: Restore) -> None:
        state, at = r.state, r.updated_at
        if state is RestoreState.APPROVED or (
            state is RestoreState.RUNNING and f"approved:{r.id}" not in self._states
        ):
            self._states[f"approved:{r.id}"] = "told"
            names = [v.approver for v in self.snapshot.votes.get(r.id, [])]
            self._add(
                at,
                "APPROVE",
                f"restore {r.id} approved by {', '.join(names)} "
                f"({len(names)} of {r.required_approvals} distinct approvers required)",
                [
                    f"for real, each approver runs `guard restore approve {r.id}` with their "
                    "own token, or POSTs /v1/restores/ID/approve"
                ],
            )
        if state is RestoreState.RUNNING:
            self._add(
                at,
                "CLONE" if r.kind is RestoreKind.CLONE else "RESTORE",
                f"the guard starts restore {r.id}: traffic and secret version are as planned; "
                "its steps run one by one, each an intent before and an outcome after",
            )
        elif state is RestoreState.SUPERSEDED:
            self._add(at, "PLAN", f"restore {r.id} superseded: {_why(r)}")
        elif state is RestoreState.SUCCEEDED:
            incident = next((i for i in self.snapshot.incidents if i.id == r.incident_id), None)
            more = [str((r.outcome or {}).get("summary") or "")]
            if incident is not None:
                more.append(
                    f"incident {incident.id}: {incident.state.value}; the freeze on "
                    f"{incident.app} stays until a human lifts it (`guard unfreeze "
                    f"{incident.app}`): the fix (Option B) still has to ship"
                )
            self._add(at, "DONE", f"restore {r.id} succeeded", more)
            self.outcome = "succeeded"
        elif state in FINAL:
            summary = _why(r)
            self._add(at, "FAILED", f"restore {r.id} {state.value}: {summary}")
            self.outcome = f"restore {r.id} {state.value}: {summary}"

    def _step(self, r: Restore, step: StepRecord) -> None:
        key = f"step:{step.id}"
        if self._states.get(key) == step.status.value:
            return
        self._states[key] = step.status.value
        o = dict(step.outcome or {})
        p = r.plan
        kind, done = step.step, step.status is not ActionStatus.INTENDED
        at = step.finished_at if done and step.finished_at else step.created_at
        if step.status is ActionStatus.FAILED:
            why = o.get("message") or o.get("error") or o.get("checks") or o
            self._add(at, "FAILED", f"restore step {kind.value} failed: {why}")
            return
        if kind is RestoreStepKind.CLONE and done:
            op = f"; Cloud SQL operation {o['operation']}" if o.get("operation") else ""
            how = "adopted (it already existed)" if o.get("adopted") else "requested"
            self._add(
                at,
                "CLONE",
                f"instances.clone {how}: {p.get('source_instance')} → {p.get('clone_name')} at "
                f"{p.get('point_in_time')}{op}",
            )
        elif kind is RestoreStepKind.WAIT and not done:
            expected = self.play.scenario.delays.sql_operation + self.world.timings.sql_pending
            self._add(
                at,
                "CLONE",
                "waiting for the Cloud SQL operation: PENDING → RUNNING → DONE (a real clone "
                f"takes minutes; here about {expected:g} s)",
            )
        elif kind is RestoreStepKind.WAIT:
            took = (at - step.created_at).total_seconds()
            self._add(at, "CLONE", f"operation {o.get('status', 'done')} after {took:.1f} s")
        elif kind is RestoreStepKind.ADDRESS and done:
            self._add(
                at,
                "CLONE",
                f"{p.get('clone_name')} is RUNNABLE at {o.get('ip_address')} "
                f"({o.get('connection_name')})",
            )
        elif kind is RestoreStepKind.SECRET and done:
            secret = p.get("secret") or {}
            version = str(o.get("version", "")).rsplit("/", 1)[-1]
            was = str(secret.get("reads_now", "")).rsplit("/", 1)[-1]
            self._add(
                at,
                "SECRET",
                f"{secret.get('name')}: added version {version} (the services read version "
                f"{was} until now): {o.get('connection')}",
            )
        elif kind is RestoreStepKind.ROLL and not done:
            service = step.intent.get("service", "")
            plan: Mapping[str, Any] = next(
                (s for s in p.get("services", ()) if s["name"] == service), {}
            )
            self._add(
                at,
                "ROLL",
                f"{service}: new revision {plan.get('new_revision')} rebuilt from "
                f"{plan.get('base_revision')}, reading the new secret version",
            )
        elif kind is RestoreStepKind.ROLL:
            self._add(
                at,
                "ROLL",
                f"{o.get('service')}: now serving {o.get('new_revision')} "
                f"(traffic {o.get('after')})",
            )
        elif kind is RestoreStepKind.VALIDATE and done:
            errors = o.get("schema_error_count", 0)
            verdict = "passed" if step.status is ActionStatus.SUCCEEDED else "FAILED"
            self._add(
                at,
                "VALIDATE",
                f"restore validation {verdict}: {errors} schema error(s) from the new revisions "
                f"in the {self.settle:g} s after the roll",
                [f"HTTP checks and smoke test: {o.get('checks')}"],
            )
        elif kind is RestoreStepKind.RESTORE_BACKUP and done:
            self._add(at, "RESTORE", f"restoreBackup requested: operation {o.get('operation')}")

    # -- the fake's write log ----------------------------------------------------------------

    def _fake_writes(self) -> None:
        writes = self.world.recorder.writes()
        for w in writes[self._writes :]:
            by = w.request.get("actor", "the guard")
            error = f" → refused: {w.error}" if w.error else ""
            self._add(
                w.at, "WRITE", f"the fake Google Cloud records {w.api} {w.method} by {by}{error}"
            )
        self._writes = len(writes)

    # -- what is being waited for ------------------------------------------------------------

    def waiting(self) -> tuple[str, str]:
        """The stage the story is at and what it waits for, in words."""
        snap, play = self.snapshot, self.play
        deploy = next((e for e in play.scenario.events if e.deploy is not None), None)
        if not self._new_revisions:
            at = f" at {deploy.at:g} s" if deploy is not None else ""
            return "DEPLOY", (
                f"waiting for the deploy{at}; the guard reads Cloud Run every "
                f"{play.config.poll_interval_seconds:g} s and tails the logs live"
            )
        if self._deploys == 0:
            return "DEPLOY", (
                "the new revision is starting; the guard's next Cloud Run read finds it once "
                "it serves"
            )
        if not snap.incidents:
            counts = self._hit_counts()
            new = sum(n for rev, n in counts.items() if rev in self._new_revisions)
            rule = self.runtime.rules.get("schema-mismatch")
            needs = (
                f"; rule schema-mismatch needs {rule.spec.failure_limit} distinct failures"
                if rule is not None
                else ""
            )
            return "VERDICT", (
                f"the guard judges the new revision on its logs: {new} schema error entries "
                f"from it so far{needs}"
            )
        incident = snap.incidents[0]
        actions = {a.kind: a for a in snap.actions.get(incident.id, [])}
        if not _finished(actions.get(ActionKind.REVERT)):
            return "REVERT", "waiting for Cloud Run's UpdateService operation (traffic revert)"
        if not self._pages:
            return "PAGE", "the pager delivers due pages every second"
        revert = actions[ActionKind.REVERT]
        if not _finished(actions.get(ActionKind.VALIDATE)):
            left = self.settle
            if revert.finished_at is not None:
                left -= (play.clock.now() - revert.finished_at).total_seconds()
            errors = self._hit_counts().get(incident.reverted_to or "", 0)
            return "VALIDATE", (
                f"{incident.reverted_to} meets real traffic for {self.settle:g} s after the "
                f"revert before validation ({max(left, 0):.0f} s left; {errors} schema error "
                "entries from it so far)"
            )
        if not _finished(actions.get(ActionKind.ESCALATE)):
            return "ESCALATE", "the guard opens the restore proposals"
        clone = next((r for r in snap.restores if r.kind is RestoreKind.CLONE), None)
        if clone is None:
            return "PLAN", "the guard works out the restore plan"
        if clone.state is RestoreState.PROPOSED:
            age = (play.clock.now() - clone.created_at).total_seconds()
            return "APPROVE", (
                f"restore {clone.id} waits for {clone.required_approvals} distinct approvals; "
                f"nothing touches the database until then (the demo approves in "
                f"{max(APPROVE_AFTER - age, 0):.0f} s)"
            )
        if clone.state is RestoreState.APPROVED:
            return "CLONE", "the guard starts the approved restore on its next response tick"
        if clone.state is RestoreState.RUNNING:
            return self._running(clone)
        return "DONE", f"restore {clone.id} is {clone.state.value}"

    def _running(self, r: Restore) -> tuple[str, str]:
        steps = {s.key: s for s in self.snapshot.steps.get(r.id, [])}
        planned = steps_for(r.kind, [s["name"] for s in r.plan.get("services", ())])
        for planned_step in planned:
            record = steps.get(planned_step.key(r.id))
            if record is not None and record.status is not ActionStatus.INTENDED:
                continue
            kind = planned_step.step
            if kind in (RestoreStepKind.CLONE, RestoreStepKind.WAIT):
                return "CLONE", (
                    f"waiting for the clone {r.plan.get('clone_name')} (Cloud SQL operation "
                    f"{self._operation_status(r)})"
                )
            if kind is RestoreStepKind.ADDRESS:
                return "CLONE", f"reading {r.plan.get('clone_name')}'s address"
            if kind is RestoreStepKind.SECRET:
                return "SECRET", "adding the secret version"
            if kind is RestoreStepKind.ROLL:
                return "ROLL", f"waiting for Cloud Run to roll {planned_step.service}"
            if kind is RestoreStepKind.VALIDATE:
                return "VALIDATE", (
                    f"the new revisions meet real traffic for {self.settle:g} s after the roll "
                    "before validation"
                )
            return kind.value.upper(), f"restore step {kind.value}"
        return "DONE", f"restore {r.id} finishing"

    def _operation_status(self, r: Restore) -> str:
        clone = next(
            (s for s in self.snapshot.steps.get(r.id, []) if s.step is RestoreStepKind.CLONE), None
        )
        name = (clone.outcome or {}).get("operation") if clone is not None else None
        now = self.play.clock.elapsed()
        for op in self.world.sql.operations():
            if op.name == name:
                return "PENDING" if now < op.starts else "RUNNING" if now < op.ends else "DONE"
        return "not started"

    def _hit_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for hits in self.runtime.detector.hits.values():
            for hit in list(hits):
                if hit.classification.kind in (LogKind.SCHEMA_MISMATCH, LogKind.MIGRATION_FAILURE):
                    counts[hit.record.revision] = counts.get(hit.record.revision, 0) + 1
        return counts


def _finished(action: ActionRecord | None) -> bool:
    return action is not None and action.status is not ActionStatus.INTENDED


def _why(r: Restore) -> str:
    o = dict(r.outcome or {})
    if o.get("superseded_by"):
        return f"restore {o['superseded_by']} started instead"
    return str(o.get("summary") or o.get("reason") or o or "no reason recorded")


def _error_line(text: str) -> str:
    """The line of a log entry that says what went wrong (a traceback's exception line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found = [line for line in lines if _EXCEPTION_LINE.match(line)]
    line = found[-1] if found else (lines[0] if lines else "")
    return line if len(line) <= 160 else line[:157] + "..."


# -- the ending --------------------------------------------------------------------------------

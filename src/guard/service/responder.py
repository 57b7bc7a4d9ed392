"""The responder: turns a FAILED verdict into the runbook's response, exactly once.

For each verdict it opens (or finds) the one incident of that deploy, then drives it through
`guard.core.incident`: freeze, revert, page, validate, resolve or escalate. Every step is an
intent in the store before it runs and an outcome after, under a key that cannot be written
twice, and every step is idempotent against Google Cloud (a freeze already set, traffic
already pinned, a pipeline already suspended), so a guard killed between any two writes
resumes where it stopped when `tick` next runs, and nothing happens twice.

Dry run (global, per app, per rule): every decision is made and recorded as "would have", and
no write call reaches Google Cloud, nor does the app's freeze (a dry-run guard must not block
deploys either).

Delivering pages is the paging issue's work; here a page is composed and recorded on the
incident as the PAGE action's outcome, so the story is complete in the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from guard.adapters.clouddeploy import CloudDeploy
from guard.adapters.cloudrun_write import CloudRunWriter
from guard.adapters.store import SqlStore
from guard.adapters.validation import ValidationReport
from guard.core.incident import Decision, Facts, Step, action_key, next_step, strongest
from guard.core.model import (
    ActionKind,
    ActionStatus,
    DeployInfo,
    Incident,
    IncidentState,
    ServiceRef,
    Verdict,
)
from guard.core.proposal import propose_restore, rfc3339
from guard.core.rules import GuardRule, LogKind
from guard.ports import ActionRecord
from guard.service import crashpoints
from guard.service.detector import Detector
from guard.service.pager import Pager

#: How long after a revert the reverted-to revision's logs are watched for schema errors.
DEFAULT_SETTLE = timedelta(seconds=60)

Validator = Callable[[str], Awaitable[ValidationReport | None]]
#: Told of every finished step (metrics, logs): the incident, its action, the outcome.
ActionSink = Callable[[Incident, ActionRecord], Awaitable[None]]
RecoveryWindow = Callable[[str], Awaitable[tuple[datetime, datetime] | None]]


class RestoreOpener(Protocol):
    """Opens an escalated incident's restore proposals (`guard.service.restores`)."""

    async def propose_for_incident(
        self, incident: Incident, deploy_started: datetime
    ) -> dict[str, Any]: ...

    async def rolled(self, app: str, revision: str) -> bool:
        """Whether a restore of `app` created `revision` (its roll is no new deploy)."""
        ...


@dataclass(frozen=True, slots=True)
class AppResponse:
    """What the responder needs of an app's configuration."""

    name: str
    services: Mapping[str, ServiceRef]
    dry_run: bool = False
    pipeline: str | None = None  # full delivery pipeline name
    db_project: str | None = None
    db_instance: str | None = None
    db_secret: str | None = None
    restore_margin: timedelta = timedelta(minutes=5)


class Responder:
    """Drives incidents; `on_verdict` feeds it, `tick` moves every open incident on."""

    def __init__(
        self,
        apps: Mapping[str, AppResponse],
        rules: Mapping[str, GuardRule],
        *,
        store: SqlStore,
        detector: Detector,
        writer: CloudRunWriter,
        pipelines: CloudDeploy | None,
        validate: Validator,
        recovery_window: RecoveryWindow,
        now: Callable[[], datetime],
        dry_run: bool = False,
        settle: timedelta = DEFAULT_SETTLE,
        on_action: ActionSink | None = None,
        pager: Pager | None = None,
    ) -> None:
        self.apps, self.rules, self.store = apps, rules, store
        self.detector, self.writer, self.pipelines = detector, writer, pipelines
        self.validate, self.recovery_window = validate, recovery_window
        self.now, self.dry_run, self.settle = now, dry_run, settle
        self.on_action = on_action or _nothing
        self.pager = pager
        #: Opens the restore proposals of an escalation (set by the runtime).
        self.restores: RestoreOpener | None = None
        self._pending: list[tuple[str, Verdict]] = []
        #: Set when the guard stops acting: a drive ends after its current step, and the
        #: next step's intent is never written (the new leader or restart picks it up).
        self.stopping = False

    # -- inputs -----------------------------------------------------------------------------

    def on_verdict(self, app: str, verdict: Verdict) -> None:
        """Queue a FAILED verdict (the detector calls this synchronously)."""
        self._pending.append((app, verdict))

    async def tick(self) -> None:
        """Open incidents for queued verdicts, then move every open incident on."""
        pending, self._pending = self._pending, []
        for app, verdict in pending:
            await self._open(app, verdict)
        for incident in await self._db(self.store.incidents, open_only=True):
            await self.drive(incident)

    async def _open(self, app: str, verdict: Verdict) -> None:
        deploy = verdict.deploy
        file = _migration_file(verdict)
        incident, created = await self._db(
            self.store.open_incident,
            app,
            deploy.service.name,
            deploy.revision,
            at=verdict.at,
            rules=[verdict.rule],
            migration_file=file[0] if file else None,
            file_source=file[1] if file else None,
            dry_run=self._dry(app, verdict),
            deploy=DeployInfo.of(deploy),
        )
        await self._db(self.store.add_evidence, incident.id, verdict.evidence)
        who = "guard"
        what = "opened" if created else f"rule {verdict.rule} also failed"
        reasons = [r.text for r in verdict.reasons]
        await self._db(
            self.store.audit, who, what, incident.id, {"rule": verdict.rule, "reasons": reasons},
            at=self.now(),
        )  # fmt: skip

    # -- after a restart --------------------------------------------------------------------

    async def resume(self) -> int:
        """Re-adopt the deploys of open incidents (call after the first Cloud Run read).

        A restarted guard's deploy tracker starts from a baseline read and no longer knows a
        fully rolled-out bad revision as a deploy; the store does. Returns how many.
        """
        n = 0
        for incident in await self._db(self.store.incidents, open_only=True):
            if incident.deploy is None or incident.app not in self.apps:
                continue
            service = self._service(incident)
            self.detector.tracker.resume(
                incident.deploy.deploy(service, incident.bad_revision), at=self.now()
            )
            n += 1
        return n

    async def reconcile(self) -> list[str]:
        """Settle the intents a crash left open; what was done, one line per intent.

        Only a revert's outcome can be lost in a way that changes the next decision (once
        its write lands the bad revision serves nothing, and "nothing to revert" would
        follow): re-read Cloud Run, and record a landed pin as done. Every other open intent
        is re-run by `drive`, idempotently (freeze and suspend check the current state
        first, validation and proposals only read).
        """
        done: list[str] = []
        for record in await self._db(self.store.open_intents):
            if record.kind is not ActionKind.REVERT:
                continue
            incident = await self._db(self.store.incident, record.incident_id)
            if incident is None or incident.app not in self.apps:
                continue
            target = str(record.intent.get("target", ""))
            split = await self.writer.current_split(self._service(incident))
            if target and split.get(target) == 100:
                detail = {"target": target, "ok": True, "after": split, "reconciled": True}
                await self._db(self.store.finish, record.id, ActionStatus.SUCCEEDED, detail,
                               at=self.now())  # fmt: skip
                done.append(f"{incident.id}: revert to {target} had landed; recorded")
            elif not split.get(incident.bad_revision):
                detail = {
                    "target": target,
                    "ok": False,
                    "after": split,
                    "reconciled": True,
                    "message": "traffic moved elsewhere while the guard was down",
                }
                await self._db(self.store.finish, record.id, ActionStatus.FAILED, detail,
                               at=self.now())  # fmt: skip
                done.append(f"{incident.id}: traffic moved by others; revert not retried")
            else:
                done.append(f"{incident.id}: revert to {target} had not landed; will retry")
        return done

    # -- driving ----------------------------------------------------------------------------

    async def drive(self, incident: Incident) -> None:
        """Run the incident's next steps until it waits, fails a step, or ends; then bring
        its page up to date (once paged, every change of the story is an update)."""
        try:
            await self._drive(incident)
        finally:
            if self.pager is not None and not self.stopping:
                await self._update_page(incident.id)

    async def _update_page(self, incident_id: str) -> None:
        assert self.pager is not None
        current = await self._db(self.store.incident, incident_id)
        page = None if current is None else await self._action(current, ActionKind.PAGE)
        if current is not None and page is not None and page.status in _PAGED:
            await self._db(self.pager.put, current)

    async def _drive(self, incident: Incident) -> None:
        for _ in range(len(Step) + 1):
            if self.stopping:
                return
            current = await self._db(self.store.incident, incident.id)
            if current is None or await self._superseded(current):
                return
            if await self._caught_up(current):
                continue
            decision = next_step(current.state, await self._facts(current))
            if decision.step is None:
                return
            done = await self._perform(current, decision)
            if not done:
                return
            await self._db(
                self.store.transition, current.id, [current.state], decision.then, at=self.now(),
                reverted_to=(
                    await self._revert_target(current) if decision.step is Step.REVERT else None
                ),
                escalated=True if decision.step is Step.ESCALATE else None,
            )  # fmt: skip

    async def _superseded(self, incident: Incident) -> bool:
        service = self._service(incident)
        active = self.detector.tracker.active(service)
        if active is None or active.revision == incident.bad_revision:
            return False
        if self.restores is not None and await self.restores.rolled(incident.app, active.revision):
            return False  # the restore's own roll: the incident ends with the restore
        await self._db(
            self.store.transition, incident.id, [incident.state], IncidentState.SUPERSEDED,
            at=self.now(), superseded_by=active.revision,
        )  # fmt: skip
        return True

    async def _caught_up(self, incident: Incident) -> bool:
        """A revert that succeeded before a crash stopped the transition: record it now."""
        if incident.state is not IncidentState.FROZEN:
            return False
        revert = await self._action(incident, ActionKind.REVERT)
        if revert is None or revert.status is not ActionStatus.SUCCEEDED:
            return False
        await self._db(
            self.store.transition, incident.id, [incident.state], IncidentState.REVERTED,
            at=self.now(), reverted_to=str(revert.intent.get("target", "")) or None,
        )  # fmt: skip
        return True

    async def _action(self, incident: Incident, kind: ActionKind) -> ActionRecord | None:
        for action in await self._db(self.store.actions, incident.id):
            if action.kind is kind:
                found: ActionRecord = action
                return found
        return None

    async def _facts(self, incident: Incident) -> Facts:
        service = self._service(incident)
        actions = [self.rules[r].spec.action for r in incident.rules if r in self.rules]
        split = await self.writer.current_split(service)
        targets = self.detector.tracker.revert_targets(service)
        changed = self.detector.tracker.traffic_changed_by_others(service) is not None
        done = await self._db(self.store.actions, incident.id)
        validation = _validation_result(done)
        revert = next((a for a in done if a.kind is ActionKind.REVERT), None)
        return Facts(
            action=strongest(actions),
            bad_share=split.get(incident.bad_revision, 0),
            revert_target=targets[0] if targets else None,
            operator_changed=changed,
            validation_passed=None if validation is None else validation[0],
            schema_errors_after_revert=False if validation is None else validation[1],
            revert_failed=revert is not None and revert.status is ActionStatus.FAILED,
        )

    async def _perform(self, incident: Incident, decision: Decision) -> bool:
        """Run one step behind its intent; True when it succeeded (now or before a crash)."""
        step = decision.step
        assert step is not None
        if step is Step.RESOLVE:
            return True
        if step is Step.VALIDATE and not await self._settled(incident):
            return False  # the intent is written only when the step can run
        target = await self._revert_target(incident) if step is Step.REVERT else ""
        key = action_key(incident.id, step, target)
        intent = {"step": step.value, "why": decision.why, "target": target}
        record, _ = await self._db(
            self.store.intend, incident.id, ActionKind(step.value), key, intent, at=self.now()
        )
        if record.status is ActionStatus.SUCCEEDED or record.status is ActionStatus.SKIPPED:
            return True
        if record.status is ActionStatus.FAILED:
            return False
        crashpoints.reached(f"{step.value}:intended")
        status, detail = await self._execute(step, incident, decision)
        crashpoints.reached(f"{step.value}:executed")
        await self._db(self.store.finish, record.id, status, detail, at=self.now())
        crashpoints.reached(f"{step.value}:finished")
        finished = await self._db(self.store.action, record.id)
        if finished is not None:
            await self.on_action(incident, finished)
        return status is not ActionStatus.FAILED

    async def _execute(
        self, step: Step, incident: Incident, decision: Decision
    ) -> tuple[ActionStatus, dict[str, Any]]:
        app = self.apps[incident.app]
        dry = incident.dry_run or self.dry_run or app.dry_run
        if step is Step.FREEZE:
            return await self._freeze(incident, app, dry)
        if step is Step.REVERT:
            return await self._revert(incident, dry)
        if step is Step.PAGE:
            if self.pager is None:
                return ActionStatus.SUCCEEDED, {"page": await self._page_text(incident, decision)}
            message = await self._db(self.pager.compose, incident)
            queued = await self._db(self.pager.put, incident, message)
            return ActionStatus.SUCCEEDED, {"page": message.text(4000), "queued": queued}
        if step is Step.VALIDATE:
            return await self._validate(incident, app)
        return await self._escalate(incident, app)

    async def _freeze(
        self, incident: Incident, app: AppResponse, dry: bool
    ) -> tuple[ActionStatus, dict[str, Any]]:
        if dry:
            return ActionStatus.SKIPPED, {"would": f"freeze {app.name}", "dry_run": True}
        reason = (
            f"incident {incident.id}: {incident.bad_revision} failed {', '.join(incident.rules)}"
        )
        await self._db(self.store.freeze, app.name, incident.id, reason, at=self.now())
        detail: dict[str, Any] = {"frozen": app.name}
        if app.pipeline and self.pipelines is not None:
            result = await self.pipelines.suspend(app.pipeline)
            detail["pipeline"] = {"ok": result.ok, "code": result.code, "wrote": result.wrote}
            if not result.ok:  # the app stays frozen in the store; the page says the rest
                detail["pipeline_error"] = result.message
        return ActionStatus.SUCCEEDED, detail

    async def _revert(self, incident: Incident, dry: bool) -> tuple[ActionStatus, dict[str, Any]]:
        service, target = self._service(incident), await self._revert_target(incident)
        tracker = self.detector.tracker
        if not dry:
            tracker.expect_traffic(service, {target: 100})
        result = await self.writer.pin(service, target, dry_run=dry)
        detail = {
            "target": target, "ok": result.ok, "code": result.code, "message": result.message,
            "before": result.before, "after": result.after, "wrote": result.wrote,
        }  # fmt: skip
        if dry:
            return ActionStatus.SKIPPED, {**detail, "would": f"pin 100% to {target}"}
        if not result.ok:
            tracker.expect_traffic(service, None)
            return ActionStatus.FAILED, detail
        return ActionStatus.SUCCEEDED, detail

    async def _since(self, incident: Incident) -> datetime:
        """When the response took effect: the revert's end, or the incident's opening."""
        reverted_at = await self._step_time(incident, ActionKind.REVERT)
        return reverted_at or incident.opened_at

    async def _settled(self, incident: Incident) -> bool:
        """Validation waits `settle` after the revert, so the old code meets real traffic."""
        return self.now() >= await self._since(incident) + self.settle

    async def _validate(
        self, incident: Incident, app: AppResponse
    ) -> tuple[ActionStatus, dict[str, Any]]:
        since = await self._since(incident)
        report = await self.validate(app.name)
        # The revisions that serve now: the guard's revert target, or wherever a human sent
        # the traffic; schema errors from any of them mean the old code meets a new schema.
        split = await self.writer.current_split(self._service(incident))
        serving = set(split) or {incident.reverted_to or ""}
        errors = [
            h for h in self.detector.hits.get(self._service(incident), ())
            if h.record.revision in serving and h.record.at >= since
            and h.classification.kind in (LogKind.SCHEMA_MISMATCH, LogKind.MIGRATION_FAILURE)
        ]  # fmt: skip
        if report is not None:
            evidence = report.to_evidence(at=self.now(), service=incident.service)
            await self._db(self.store.add_evidence, incident.id, [evidence])
        passed = report is None or report.ok
        return ActionStatus.SUCCEEDED, {
            "passed": passed,
            "schema_errors": bool(errors),
            "schema_error_count": len(errors),
            "checks": report.summary() if report is not None else "no checks configured",
        }

    async def _escalate(
        self, incident: Incident, app: AppResponse
    ) -> tuple[ActionStatus, dict[str, Any]]:
        if not (app.db_project and app.db_instance and app.db_secret):
            return ActionStatus.SUCCEEDED, {"proposal": None, "why": "the app has no database"}
        deploy = self.detector.tracker.active(self._service(incident))
        started = deploy.started_at if deploy is not None else incident.opened_at
        window = await self.recovery_window(app.name)
        proposal = propose_restore(
            project=app.db_project, instance=app.db_instance, secret=app.db_secret,
            deploy_started=started, margin=app.restore_margin, window=window,
            migration_file=incident.migration_file,
        )  # fmt: skip
        opened: dict[str, Any] = {}
        if self.restores is not None:
            opened = await self.restores.propose_for_incident(incident, started)
        return ActionStatus.SUCCEEDED, {
            "proposal": {
                **opened,
                "point_in_time": rfc3339(proposal.point_in_time),
                "clone_name": proposal.clone_name,
                "in_window": proposal.in_window,
                "problems": list(proposal.problems),
                "gcloud": list(proposal.gcloud),
                "option_b_file": proposal.option_b_file,
                "option_b_note": proposal.option_b_note,
            }
        }

    async def _page_text(self, incident: Incident, decision: Decision) -> str:
        actions = await self._db(self.store.actions, incident.id)
        done = "; ".join(f"{a.kind.value}: {a.status.value}" for a in actions) or "nothing yet"
        file = incident.migration_file or "unknown"
        return (
            f"[{incident.app}] {incident.service} revision {incident.bad_revision} failed "
            f"{', '.join(incident.rules)}. Failing migration: {file}. Done so far: {done}. "
            f"Next: {decision.why}."
        )

    async def _step_time(self, incident: Incident, kind: ActionKind) -> datetime | None:
        for action in await self._db(self.store.actions, incident.id):
            if action.kind is kind and action.finished_at is not None:
                finished: datetime = action.finished_at
                return finished
        return None

    # -- helpers ----------------------------------------------------------------------------

    def _service(self, incident: Incident) -> ServiceRef:
        return self.apps[incident.app].services[incident.service]

    async def _revert_target(self, incident: Incident) -> str:
        """The target of a revert intended before a crash, else today's best target: one
        incident never gets two revert intents with different keys."""
        revert = await self._action(incident, ActionKind.REVERT)
        if revert is not None and revert.intent.get("target"):
            return str(revert.intent["target"])
        return self._target(incident)

    def _target(self, incident: Incident) -> str:
        targets = self.detector.tracker.revert_targets(self._service(incident))
        return incident.reverted_to or (targets[0] if targets else "")

    def _dry(self, app: str, verdict: Verdict) -> bool:
        return self.dry_run or self.apps[app].dry_run or verdict.dry_run

    @staticmethod
    async def _db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Store calls are short synchronous transactions: run them off the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)


def _validation_result(actions: list[ActionRecord]) -> tuple[bool, bool] | None:
    """(passed, schema errors) of a finished validation, or None before one ran."""
    for action in actions:
        if action.kind is ActionKind.VALIDATE and action.status is not ActionStatus.INTENDED:
            outcome = action.outcome or {}
            return bool(outcome.get("passed")), bool(outcome.get("schema_errors"))
    return None


async def _nothing(incident: Incident, action: ActionRecord) -> None:
    return None


_PAGED = frozenset({ActionStatus.SUCCEEDED, ActionStatus.SKIPPED})


def _migration_file(verdict: Verdict) -> tuple[str, str] | None:
    for evidence in verdict.evidence:
        file, source = evidence.data.get("migration_file"), evidence.data.get("file_source")
        if file and source == "text":
            return str(file), "text"
    for evidence in verdict.evidence:
        file, source = evidence.data.get("migration_file"), evidence.data.get("file_source")
        if file:
            return str(file), str(source or "blame")
    return None

"""The gated database restore: proposals, approvals, and the steps that run only after them.

Why its own module: the responder acts on its own judgement; a restore acts only on humans'.
Here a proposal is opened (by an escalation, or a person), its plan worked out from what
Google Cloud says now and frozen with it, approvals counted (distinct named approvers, one
vote each; any rejection ends it; an unapproved proposal expires), and an approved restore
executed step by step: Cloud SQL clone (or in-place backup restore), wait for the operation,
read the new address, add the secret version, roll each service, validate. Every step is an
intent in the store before it runs and an outcome after, and each is idempotent against
Google Cloud (an existing clone is adopted, a secret already repointed is recognised, a roll
finds its own revision), so a guard killed anywhere resumes without doing anything twice.
Nothing is written to Google Cloud before the approvals, and in dry run nothing at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from guard.adapters.cloudrun_roll import CloudRunRoller
from guard.adapters.cloudsql_admin import CloudSqlAdmin, SqlCallError
from guard.adapters.secrets import SecretCallError, Secrets
from guard.adapters.store import SqlStore
from guard.adapters.store_actions import new_id
from guard.core.model import ActionKind, ActionStatus, Incident, IncidentState, ServiceRef
from guard.core.proposal import clone_name, next_migration_file
from guard.core.restore import (
    FINAL,
    Decision,
    PlannedStep,
    Restore,
    RestoreKind,
    RestoreState,
    RestoreStepKind,
    StepRecord,
    next_step,
    steps_for,
    tally,
)
from guard.core.restore_plan import (
    ROLL_LABEL,
    BackupChoice,
    PlanFacts,
    ServicePlan,
    backup_before,
    build_plan,
    mask_connection,
    plan_lines,
    rewrite_connection,
)
from guard.core.rules import LogKind
from guard.service import crashpoints
from guard.service.detector import Detector
from guard.service.pager import Pager
from guard.service.responder import RecoveryWindow, Validator

log = logging.getLogger(__name__)

#: How long a Cloud SQL clone or restore may take before the guard calls it failed.
DEFAULT_OP_TIMEOUT = timedelta(hours=2)
#: How many ticks a clone refused as busy (operationInProgress) is retried.
BUSY_RETRIES = 30
StepResult = tuple[ActionStatus, dict[str, Any]] | None  # None: not done yet, next tick


class RestoreRequestError(Exception):
    """A human's request cannot be honoured; `status` is the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True, slots=True)
class RestoreApp:
    """What a restore needs of an app's configuration."""

    name: str
    project: str  # the database's project
    instance: str
    secret: str
    services: Mapping[str, ServiceRef]
    approvers: frozenset[str] | None  # None: every configured approver
    required: int
    ttl: timedelta
    margin: timedelta
    validation: tuple[str, ...]
    dry_run: bool = False


class RestoreDesk:
    """Opens, plans, counts approvals for, and executes restores."""

    def __init__(
        self,
        apps: Mapping[str, RestoreApp],
        *,
        store: SqlStore,
        admin: CloudSqlAdmin,
        secrets: Secrets,
        roller: CloudRunRoller,
        detector: Detector,
        validate: Validator,
        recovery_window: RecoveryWindow,
        now: Callable[[], datetime],
        dry_run: bool = False,
        settle: timedelta = timedelta(seconds=60),
        op_timeout: timedelta = DEFAULT_OP_TIMEOUT,
        pager: Pager | None = None,
        wake: Callable[[], None] = lambda: None,
        on_end: Callable[[Restore, RestoreState], None] = lambda r, state: None,
    ) -> None:
        self.apps, self.store, self.admin, self.secrets = apps, store, admin, secrets
        self.roller, self.detector, self.validate = roller, detector, validate
        self.recovery_window, self.now, self.dry_run = recovery_window, now, dry_run
        self.settle, self.op_timeout, self.pager, self.wake = settle, op_timeout, pager, wake
        #: Told when a restore reaches a final state (metrics).
        self.on_end = on_end
        #: Set when the guard stops acting: no new step starts.
        self.stopping = False

    # -- proposals --------------------------------------------------------------------------

    async def propose_for_incident(
        self, incident: Incident, deploy_started: datetime
    ) -> dict[str, Any]:
        """An escalation's proposals: the clone (Option A) and, when a backup run precedes
        the deploy, the destructive in-place restore. Idempotent per incident."""
        app = self.apps.get(incident.app)
        if app is None:
            return {}
        point = (deploy_started - app.margin).replace(microsecond=0)
        out: dict[str, Any] = {}
        clone = await self._open(
            app, RestoreKind.CLONE, point, origin=f"incident:{incident.id}:clone",
            incident=incident, by="guard",
        )  # fmt: skip
        assert clone is not None
        out["restore_id"] = clone.id
        out["approvals_required"] = clone.required_approvals
        backup = await self._open(
            app, RestoreKind.BACKUP, point, origin=f"incident:{incident.id}:backup",
            incident=incident, by="guard", only_if_executable=True,
        )  # fmt: skip
        if backup is not None:
            out["backup_restore_id"] = backup.id
        return out

    async def propose(
        self, app_name: str, *, at: datetime, kind: RestoreKind, by: str,
        incident_id: str | None = None,
    ) -> Restore:  # fmt: skip
        """A human's proposal: restore `app_name`'s database to instant `at`."""
        app = self._app(app_name)
        self._allowed(app, by)
        if at.tzinfo is None:
            raise RestoreRequestError(422, "the point in time needs a time zone (e.g. ...Z)")
        if at > self.now():
            raise RestoreRequestError(422, f"the point in time {at.isoformat()} is in the future")
        incident = None
        if incident_id is not None:
            incident = await self._db(self.store.incident, incident_id)
            if incident is None or incident.app != app_name:
                raise RestoreRequestError(404, f"no incident {incident_id} for app {app_name}")
        opened = await self._open(
            app, kind, at.replace(microsecond=0), origin=f"human:{new_id()}",
            incident=incident, by=by,
        )  # fmt: skip
        assert opened is not None
        self.wake()
        return opened

    async def _open(
        self, app: RestoreApp, kind: RestoreKind, point: datetime, *, origin: str,
        incident: Incident | None, by: str, only_if_executable: bool = False,
    ) -> Restore | None:  # fmt: skip
        restore_id = new_id()
        facts = await self._facts(app, kind, point, restore_id, incident)
        plan = build_plan(facts)
        if only_if_executable and not plan["executable"]:
            return None  # only the destructive backup offer is optional
        now = self.now()
        restore, _ = await self._db(
            self.store.restore_open, restore_id=restore_id, app=app.name, kind=kind,
            origin=origin, incident_id=incident.id if incident else None, created_by=by,
            plan=plan, required_approvals=app.required, at=now, expires_at=now + app.ttl,
        )  # fmt: skip
        found: Restore = restore
        return found

    async def _facts(
        self, app: RestoreApp, kind: RestoreKind, point: datetime, restore_id: str,
        incident: Incident | None,
    ) -> PlanFacts:  # fmt: skip
        """Read what the plan is made of; what cannot be read becomes a stated problem."""
        problems: list[str] = []
        window = await self.recovery_window(app.name)
        source = None
        try:
            source = await self.admin.instance(app.project, app.instance)
        except SqlCallError as err:
            problems.append(f"Cloud SQL instance {app.instance} unreadable: {err.message}")
        if source is None and not problems:
            problems.append(f"Cloud SQL instance {app.instance} does not exist")
        version = connection = None
        try:
            value = await self.secrets.latest(app.project, app.secret)
            version, connection = value.version, value.data.decode("utf-8", errors="replace")
        except SecretCallError as err:
            problems.append(f"secret {app.secret} unreadable: {err.code} {err.message}")
        backup: BackupChoice | None = None
        if kind is RestoreKind.BACKUP:
            try:
                runs = await self.admin.backup_runs(app.project, app.instance)
                backup = backup_before(((r.id, r.status, r.end) for r in runs), point)
            except SqlCallError as err:
                problems.append(f"backup runs unreadable: {err.message}")
        services = []
        for ref in app.services.values():
            try:
                serving = await self.roller.serving(ref)
            except Exception as err:
                problems.append(f"service {ref.name} unreadable: {err}")
                continue
            services.append(
                ServicePlan(
                    ref.name, ref.project, ref.region, serving.revision or "",
                    dict(serving.split), serving.latest,
                )
            )  # fmt: skip
        fix = incident.migration_file if incident is not None else None
        option_b = next_migration_file(fix) if fix else None
        return PlanFacts(
            restore_id=restore_id, kind=kind, app=app.name, project=app.project,
            instance=app.instance, secret=app.secret,
            point_in_time=point if kind is RestoreKind.CLONE else None,
            window=window, clone_name=clone_name(app.instance, point),
            backup=backup, secret_version=version, connection=connection,
            source_address=source.ip_address if source else None,
            source_connection_name=source.connection_name if source else "",
            services=services, validation=app.validation, option_b_file=option_b,
            option_b_note=(
                f"write {option_b}: every statement idempotent (IF EXISTS / IF NOT EXISTS), "
                "validated against a staging clone, then deploy" if option_b
                else "name the corrective migration after the newest one; make it idempotent"
            ),
            problems=problems,
        )  # fmt: skip

    # -- reading ----------------------------------------------------------------------------

    async def restores(self, app: str | None = None) -> list[dict[str, Any]]:
        """Every restore (newest first) with its approvals, in brief."""
        out = []
        for r in await self._db(self.store.restores, app):
            votes = await self._db(self.store.restore_votes, r.id)
            out.append(_brief(r, tally(votes, r.required_approvals).approvers))
        return out

    async def show(self, restore_id: str) -> dict[str, Any]:
        """One restore in full: the plan (as data and as text), votes and steps."""
        r = await self._get(restore_id)
        votes = await self._db(self.store.restore_votes, r.id)
        steps = in_plan_order(r, await self._db(self.store.restore_steps, r.id))
        t = tally(votes, r.required_approvals)
        return {
            **_brief(r, t.approvers),
            "plan": dict(r.plan),
            "plan_text": plan_lines(r.plan),
            "votes": [
                {
                    "approver": v.approver,
                    "decision": v.decision.value,
                    "at": v.at.isoformat(),
                    "reason": v.reason,
                }
                for v in votes
            ],
            "steps": [_step_doc(s) for s in steps],
            "outcome": dict(r.outcome) if r.outcome else None,
        }

    async def rolled(self, app: str, revision: str) -> bool:
        """Whether a restore of `app` rolled a service to `revision` (or is about to)."""
        started = [RestoreState.RUNNING, RestoreState.SUCCEEDED, RestoreState.FAILED]
        for r in await self._db(self.store.restores, app, states=started):
            if any(s.get("new_revision") == revision for s in r.plan.get("services", ())):
                return True
        return False

    async def pending(self) -> int:
        """Restores awaiting approval (the `guard_pending_restores` gauge)."""
        proposed = await self._db(self.store.restores, None, states=[RestoreState.PROPOSED])
        return sum(1 for r in proposed if r.expires_at > self.now())

    # -- votes ------------------------------------------------------------------------------

    async def vote(
        self, restore_id: str, approver: str, decision: Decision, reason: str = ""
    ) -> dict[str, Any]:
        """Record one approver's decision; approve or reject the restore when it decides."""
        r = await self._get(restore_id)
        self._allowed(self._app(r.app), approver)
        r = await self._expire_if_due(r)
        if r.state is not RestoreState.PROPOSED:
            raise RestoreRequestError(
                409, f"restore {r.id} is {r.state.value}: it takes no more votes"
            )
        if decision is Decision.APPROVE and not r.plan.get("executable"):
            problems = "; ".join(r.plan.get("problems", ()))
            raise RestoreRequestError(409, f"restore {r.id} cannot run as planned: {problems}")
        at = self.now()
        counted = await self._db(
            self.store.restore_vote, r.id, approver, decision, reason=reason, at=at
        )
        votes = await self._db(self.store.restore_votes, r.id)
        t = tally(votes, r.required_approvals)
        if t.rejected_by is not None:
            await self._move(
                r, [RestoreState.PROPOSED],
                RestoreState.REJECTED, at=at, actor=t.rejected_by,
                detail={"reason": reason}, outcome={"rejected_by": t.rejected_by,
                                                    "reason": reason},
            )  # fmt: skip
        elif t.enough:
            moved = await self._move(
                r, [RestoreState.PROPOSED],
                RestoreState.APPROVED, at=at, actor=approver,
                detail={"approvers": list(t.approvers)},
            )  # fmt: skip
            if moved:
                self.wake()
        now = await self._get(r.id)
        return {
            **_brief(now, t.approvers),
            "counted": counted,
            "note": None if counted else (
                f"{approver} had already voted on {r.id}: the first vote stands"
            ),
        }  # fmt: skip

    # -- execution --------------------------------------------------------------------------

    async def tick(self) -> None:
        """Expire stale proposals, start approved restores, move running ones on."""
        for r in await self._db(self.store.restores, None, states=[RestoreState.PROPOSED]):
            await self._expire_if_due(r)
        for r in await self._db(self.store.restores, None, states=[RestoreState.APPROVED]):
            await self._start(r)
        for r in await self._db(self.store.restores, None, states=[RestoreState.RUNNING]):
            if self.stopping:
                return
            await self.drive(r)

    async def _start(self, r: Restore) -> None:
        running = await self._db(self.store.restores, r.app, states=[RestoreState.RUNNING])
        if running or self.stopping:
            return  # one restore per app at a time; this one waits its turn
        changed = await self._changed_since_plan(r)
        if changed:
            summary = "the world changed since the plan: " + "; ".join(changed)
            await self._move(
                r, [RestoreState.APPROVED],
                RestoreState.FAILED, at=self.now(), actor="guard", detail={"summary": summary},
                outcome={"summary": summary + ". Nothing was written; propose again."},
            )  # fmt: skip
            return
        moved = await self._move(
            r, [RestoreState.APPROVED], RestoreState.RUNNING,
            at=self.now(), actor="guard", detail={"dry_run": self._dry(r)},
        )  # fmt: skip
        if not moved:
            return
        others = await self._db(
            self.store.restores, r.app, states=[RestoreState.PROPOSED, RestoreState.APPROVED]
        )
        for other in others:
            await self._move(
                other,
                [RestoreState.PROPOSED, RestoreState.APPROVED], RestoreState.SUPERSEDED,
                at=self.now(), actor="guard", detail={"by": r.id},
                outcome={"superseded_by": r.id},
            )  # fmt: skip

    async def _changed_since_plan(self, r: Restore) -> list[str]:
        """Before the first write: is the world still the one the approvers saw? A service's
        traffic or the secret's version changed since the plan means a human acted; the
        guard does not overwrite that, it stops and asks for a new proposal."""
        app, changed = self.apps[r.app], []
        for s in r.plan.get("services", ()):
            ref = app.services.get(s["name"])
            if ref is None:
                changed.append(f"service {s['name']} is no longer configured")
                continue
            serving = await self.roller.serving(ref)
            if dict(serving.split) != dict(s["traffic"]):
                changed.append(
                    f"{s['name']} traffic is {dict(serving.split)}, planned {s['traffic']}"
                )
        secret = r.plan.get("secret") or {}
        if r.kind is RestoreKind.CLONE and secret.get("reads_now"):
            try:
                now = (await self.secrets.latest(r.plan["project"], secret["name"])).version
            except SecretCallError as err:
                return [*changed, f"secret {secret['name']} unreadable: {err.message}"]
            if now != secret["reads_now"]:
                changed.append(
                    f"secret {secret['name']} is at {now}, planned {secret['reads_now']}"
                )
        return changed

    async def drive(self, r: Restore) -> None:
        """Run the restore's next steps until one waits or fails, or all are done."""
        planned = steps_for(r.kind, [s["name"] for s in r.plan.get("services", ())])
        for _ in range(len(planned) + 1):
            if self.stopping:
                return
            done = await self._db(self.store.restore_steps, r.id)
            step, record = next_step(r.id, planned, done)
            if step is None:
                await self._end(r, record, done)
                return
            if step.step is RestoreStepKind.VALIDATE and not self._settled(done):
                return
            if record is None:
                intent = await self._intent(r, step)
                record, _ = await self._db(
                    self.store.restore_step_intend, r.id, step.step, step.key(r.id), intent,
                    at=self.now(),
                )  # fmt: skip
                assert record is not None
                if record.status is not ActionStatus.INTENDED:
                    continue
                crashpoints.reached(f"{_point(step)}:intended")
            result = await self._run(r, step, record, done)
            if result is None:
                return  # waiting on Google: the intent stays open, the next tick looks again
            crashpoints.reached(f"{_point(step)}:executed")
            status, outcome = result
            await self._db(self.store.restore_step_finish, record.id, status, outcome,
                           at=self.now())  # fmt: skip
            crashpoints.reached(f"{_point(step)}:finished")

    async def _intent(self, r: Restore, step: PlannedStep) -> dict[str, Any]:
        intent: dict[str, Any] = {"step": step.step.value, "dry_run": self._dry(r)}
        if step.service:
            intent["service"] = step.service
        if step.step is RestoreStepKind.RESTORE_BACKUP and not self._dry(r):
            # Which restore operations exist before ours: after a crash, a new one is ours.
            ops = await self.admin.operations(r.plan["project"], r.plan["source_instance"])
            intent["operations_before"] = [o.name for o in ops if o.kind == "RESTORE_VOLUME"]
        return intent

    async def _run(
        self, r: Restore, step: PlannedStep, record: StepRecord, done: Sequence[StepRecord]
    ) -> StepResult:
        kind = step.step
        if self._dry(r) and kind is not RestoreStepKind.VALIDATE:
            return ActionStatus.SKIPPED, {"would": _would(r, step), "dry_run": True}
        try:
            if kind is RestoreStepKind.CLONE:
                return await self._clone(r, record)
            if kind is RestoreStepKind.RESTORE_BACKUP:
                return await self._restore_backup(r, record)
            if kind is RestoreStepKind.WAIT:
                return await self._wait(r, record, done)
            if kind is RestoreStepKind.ADDRESS:
                return await self._address(r)
            if kind is RestoreStepKind.SECRET:
                return await self._secret(r, done)
            if kind is RestoreStepKind.ROLL:
                return await self._roll(r, step.service, done)
            return await self._validate(r, done)
        except (SqlCallError, SecretCallError) as err:
            # A read failed: retry next tick, a few times, before calling it failed.
            attempts = await self._db(self.store.restore_step_attempt, record.id)
            if attempts < BUSY_RETRIES:
                log.warning("restore %s step %s: %s (will retry)", r.id, kind.value, err)
                return None
            return ActionStatus.FAILED, {"code": err.code, "message": err.message}

    async def _clone(self, r: Restore, record: StepRecord) -> StepResult:
        p = r.plan
        project, clone = p["project"], p["clone_name"]
        if await self.admin.instance(project, clone) is not None:
            return ActionStatus.SUCCEEDED, {"clone": clone, "operation": None, "adopted": True}
        point = datetime.fromisoformat(p["point_in_time"].replace("Z", "+00:00"))
        try:
            op = await self.admin.clone(project, p["source_instance"], clone, point)
        except SqlCallError as err:
            if err.reason == "instanceAlreadyExists":
                return ActionStatus.SUCCEEDED, {"clone": clone, "operation": None,
                                                "adopted": True}  # fmt: skip
            if err.reason == "operationInProgress" or err.code == "UNAVAILABLE":
                attempts = await self._db(self.store.restore_step_attempt, record.id)
                return None if attempts < BUSY_RETRIES else (
                    ActionStatus.FAILED, {"code": err.code, "message": err.message}
                )  # fmt: skip
            return ActionStatus.FAILED, {"code": err.code, "reason": err.reason,
                                         "message": err.message}  # fmt: skip
        return ActionStatus.SUCCEEDED, {"clone": clone, "operation": op.name}

    async def _restore_backup(self, r: Restore, record: StepRecord) -> StepResult:
        p = r.plan
        project, instance = p["project"], p["source_instance"]
        before = set(record.intent.get("operations_before", ()))
        ops = await self.admin.operations(project, instance)
        ours = [o for o in ops if o.kind == "RESTORE_VOLUME" and o.name not in before]
        if ours:  # sent before a crash: never restore over the instance twice
            return ActionStatus.SUCCEEDED, {"operation": ours[0].name, "adopted": True}
        backup_id = int(p["backup_run"]["id"])
        try:
            op = await self.admin.restore_backup(project, instance, backup_id)
        except SqlCallError as err:
            if err.reason == "operationInProgress":
                attempts = await self._db(self.store.restore_step_attempt, record.id)
                return None if attempts < BUSY_RETRIES else (
                    ActionStatus.FAILED, {"code": err.code, "message": err.message}
                )  # fmt: skip
            return ActionStatus.FAILED, {"code": err.code, "reason": err.reason,
                                         "message": err.message}  # fmt: skip
        return ActionStatus.SUCCEEDED, {"operation": op.name, "backup_run": backup_id}

    async def _wait(self, r: Restore, record: StepRecord, done: Sequence[StepRecord]) -> StepResult:
        p = r.plan
        started = next(
            (s for s in done if s.step in (RestoreStepKind.CLONE, RestoreStepKind.RESTORE_BACKUP)),
            None,
        )
        op_name = (started.outcome or {}).get("operation") if started else None
        late = self.now() - record.created_at > self.op_timeout
        if op_name:
            op = await self.admin.operation(p["project"], str(op_name))
            if op.done:
                if op.error:
                    return ActionStatus.FAILED, {"operation": op.name, "error": op.error}
                return ActionStatus.SUCCEEDED, {"operation": op.name, "status": op.status}
            if late:
                return ActionStatus.FAILED, {"operation": op.name, "message": _late(self)}
            return None
        # An adopted clone (its operation unknown): wait for the instance itself.
        target = p["clone_name"] if r.kind is RestoreKind.CLONE else p["source_instance"]
        inst = await self.admin.instance(p["project"], target)
        if inst is None:
            return ActionStatus.FAILED, {"message": f"instance {target} is gone: the clone failed"}
        if inst.state == "RUNNABLE":
            return ActionStatus.SUCCEEDED, {"instance": target, "state": inst.state}
        return (ActionStatus.FAILED, {"message": _late(self)}) if late else None

    async def _address(self, r: Restore) -> StepResult:
        p = r.plan
        inst = await self.admin.instance(p["project"], p["clone_name"])
        if inst is None or inst.state != "RUNNABLE" or not inst.ip_address:
            state = "missing" if inst is None else f"{inst.state}, address {inst.ip_address}"
            return ActionStatus.FAILED, {"message": f"clone {p['clone_name']} is {state}"}
        return ActionStatus.SUCCEEDED, {
            "ip_address": inst.ip_address, "connection_name": inst.connection_name,
        }  # fmt: skip

    async def _secret(self, r: Restore, done: Sequence[StepRecord]) -> StepResult:
        p = r.plan
        address = next(s for s in done if s.step is RestoreStepKind.ADDRESS).outcome or {}
        new_ip, new_name = str(address["ip_address"]), str(address["connection_name"])
        current = await self.secrets.latest(p["project"], p["secret"]["name"])
        value = current.data.decode("utf-8", errors="replace")
        planned = p["secret"].get("reads_now")
        if current.version != planned:
            if new_ip in value or new_name in value:  # ours, added before a crash
                return ActionStatus.SUCCEEDED, {"version": current.version, "adopted": True,
                                                "connection": mask_connection(value)}  # fmt: skip
            return ActionStatus.FAILED, {
                "message": f"secret {p['secret']['name']} changed since the plan (now "
                f"{current.version}, planned {planned}): someone else repointed it; "
                "the guard will not overwrite a human's change"
            }  # fmt: skip
        moved = rewrite_connection(
            value, old_ip=p.get("source_address"), new_ip=new_ip,
            old_name=str(p.get("source_connection_name") or ""), new_name=new_name,
        )  # fmt: skip
        if moved is None:
            return ActionStatus.FAILED, {"message": "the secret names neither the source's "
                                         "address nor its connection name"}  # fmt: skip
        version = await self.secrets.add(p["project"], p["secret"]["name"], moved.encode())
        return ActionStatus.SUCCEEDED, {"version": version, "connection": mask_connection(moved)}

    async def _roll(self, r: Restore, service_name: str, done: Sequence[StepRecord]) -> StepResult:
        plan = next(s for s in r.plan["services"] if s["name"] == service_name)
        service = self.apps[r.app].services[service_name]
        new = str(plan["new_revision"])
        tracker = self.detector.tracker
        tracker.expect_traffic(service, {new: 100})
        added = next((s for s in done if s.step is RestoreStepKind.SECRET), None)
        version = str((added.outcome or {}).get("version", "")) if added else ""
        secret = (r.plan["secret"]["name"], version.rsplit("/", 1)[-1]) if version else None
        result = await self.roller.roll(
            service, base_revision=str(plan["base_revision"]), new_revision=new,
            label=(ROLL_LABEL, r.id), expect_split=dict(plan["traffic"]), secret=secret,
        )  # fmt: skip
        detail = {
            "service": service_name, "base_revision": result.base_revision,
            "new_revision": result.new_revision, "ok": result.ok, "code": result.code,
            "message": result.message, "before": result.before, "after": result.after,
            "wrote": result.wrote,
        }  # fmt: skip
        if not result.ok:
            tracker.expect_traffic(service, None)
            return ActionStatus.FAILED, detail
        return ActionStatus.SUCCEEDED, detail

    def _settled(self, done: Sequence[StepRecord]) -> bool:
        """Validation waits `settle` after the last roll, so new instances meet traffic."""
        rolled = [s.finished_at for s in done if s.step is RestoreStepKind.ROLL and s.finished_at]
        return not rolled or self.now() >= max(rolled) + self.settle

    async def _validate(self, r: Restore, done: Sequence[StepRecord]) -> StepResult:
        rolled = [s for s in done if s.step is RestoreStepKind.ROLL]
        since = max((s.finished_at for s in rolled if s.finished_at), default=r.updated_at)
        new = {str((s.outcome or {}).get("new_revision")) for s in rolled}
        report = await self.validate(r.app)
        errors = 0
        for ref in self.apps[r.app].services.values():
            errors += sum(
                1 for h in self.detector.hits.get(ref, ())
                if h.record.revision in new and h.record.at >= since
                and h.classification.kind in (LogKind.SCHEMA_MISMATCH, LogKind.MIGRATION_FAILURE)
            )  # fmt: skip
        passed = (report is None or report.ok) and errors == 0
        outcome = {
            "passed": passed,
            "schema_error_count": errors,
            "checks": report.summary() if report is not None else "no checks configured",
        }
        if r.incident_id and report is not None:
            evidence = report.to_evidence(at=self.now(), service=next(iter(new), ""))
            await self._db(self.store.add_evidence, r.incident_id, [evidence])
        return (ActionStatus.SUCCEEDED if passed else ActionStatus.FAILED), outcome

    async def _end(self, r: Restore, failed: StepRecord | None, done: Sequence[StepRecord]) -> None:
        """Record how the restore ended, on the restore and on its incident, and page."""
        at = self.now()
        if failed is not None:
            outcome = {"failed_step": failed.key, **dict(failed.outcome or {})}
            to, summary = RestoreState.FAILED, f"failed at {failed.step.value}: " + str(
                (failed.outcome or {}).get("message") or (failed.outcome or {}).get("error")
                or (failed.outcome or {}).get("checks") or ""
            )  # fmt: skip
        else:
            outcome = {"steps": len(done), "dry_run": self._dry(r)}
            to, summary = RestoreState.SUCCEEDED, _success(r)
        moved = await self._move(
            r, [RestoreState.RUNNING], to, at=at,
            actor="guard", detail={"summary": summary}, outcome={**outcome, "summary": summary},
        )  # fmt: skip
        if not moved or r.incident_id is None:
            return
        key = f"{r.incident_id}:restore:{r.id}"
        record, created = await self._db(
            self.store.intend, r.incident_id, ActionKind.RESTORE, key,
            {"restore_id": r.id, "kind": r.kind.value}, at=at,
        )  # fmt: skip
        if created or record.status is ActionStatus.INTENDED:
            status = ActionStatus.SUCCEEDED if to is RestoreState.SUCCEEDED else (
                ActionStatus.FAILED
            )  # fmt: skip
            await self._db(self.store.finish, record.id, status,
                           {"restore_id": r.id, "summary": summary, "kind": r.kind.value},
                           at=at)  # fmt: skip
        if to is RestoreState.SUCCEEDED and not self._dry(r):
            await self._db(
                self.store.transition, r.incident_id, [IncidentState.ESCALATED],
                IncidentState.RESOLVED, at=at,
            )  # fmt: skip
        incident = await self._db(self.store.incident, r.incident_id)
        if self.pager is not None and incident is not None:
            await self._db(self.pager.put, incident)

    # -- helpers ----------------------------------------------------------------------------

    async def _move(
        self, r: Restore, from_states: Sequence[RestoreState], to: RestoreState, *,
        at: datetime, actor: str, detail: Mapping[str, Any] | None = None,
        outcome: Mapping[str, Any] | None = None,
    ) -> bool:  # fmt: skip
        """Move `r` to `to` if it is in one of `from_states` (audited); True if it moved."""
        moved: bool = await self._db(
            self.store.restore_transition, r.id, from_states, to, at=at, actor=actor,
            detail=detail, outcome=outcome,
        )  # fmt: skip
        if moved and to in FINAL:
            self.on_end(r, to)
        return moved

    async def _expire_if_due(self, r: Restore) -> Restore:
        if r.state is RestoreState.PROPOSED and self.now() >= r.expires_at:
            await self._move(
                r, [RestoreState.PROPOSED],
                RestoreState.EXPIRED, at=self.now(), actor="guard",
                detail={"expires_at": r.expires_at.isoformat()},
            )  # fmt: skip
            return await self._get(r.id)
        return r

    def _app(self, name: str) -> RestoreApp:
        app = self.apps.get(name)
        if app is None:
            raise RestoreRequestError(404, f"app {name!r} has no database to restore")
        return app

    @staticmethod
    def _allowed(app: RestoreApp, who: str) -> None:
        if app.approvers is not None and who not in app.approvers:
            raise RestoreRequestError(
                403, f"{who} is not an approver of {app.name}'s restores "
                f"(restore.approvers: {', '.join(sorted(app.approvers))})",
            )  # fmt: skip

    async def _get(self, restore_id: str) -> Restore:
        r = await self._db(self.store.restore, restore_id)
        if r is None:
            raise RestoreRequestError(404, f"no restore {restore_id}")
        found: Restore = r
        return found

    def _dry(self, r: Restore) -> bool:
        app = self.apps.get(r.app)
        return self.dry_run or (app is not None and app.dry_run)

    @staticmethod
    async def _db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)


def _point(step: PlannedStep) -> str:
    """The step's crash point prefix: `restore-clone`, `restore-roll-pegasus-api`, ..."""
    return f"restore-{step.step.value}" + (f"-{step.service}" if step.service else "")


def in_plan_order(r: Restore, steps: Sequence[StepRecord]) -> list[StepRecord]:
    """`steps` in the order the plan runs them (times can tie on a coarse clock)."""
    keys = [p.key(r.id) for p in steps_for(r.kind, [s["name"] for s in r.plan["services"]])]
    return sorted(steps, key=lambda s: keys.index(s.key) if s.key in keys else len(keys))


def _brief(r: Restore, approvers: Sequence[str]) -> dict[str, Any]:
    return {
        "id": r.id,
        "app": r.app,
        "kind": r.kind.value,
        "destructive": r.destructive,
        "state": r.state.value,
        "final": r.state in FINAL,
        "incident": r.incident_id,
        "created_by": r.created_by,
        "created_at": r.created_at.isoformat(),
        "expires_at": r.expires_at.isoformat(),
        "point_in_time": r.plan.get("point_in_time"),
        "clone_name": r.plan.get("clone_name"),
        "executable": bool(r.plan.get("executable")),
        "approvals": list(approvers),
        "required_approvals": r.required_approvals,
        "approve": f"guard restore approve {r.id}",
    }


def _step_doc(s: StepRecord) -> dict[str, Any]:
    return {
        "step": s.step.value,
        "key": s.key,
        "status": s.status.value,
        "intent": dict(s.intent),
        "outcome": dict(s.outcome) if s.outcome else None,
        "created_at": s.created_at.isoformat(),
        "finished_at": s.finished_at.isoformat() if s.finished_at else None,
    }


def _would(r: Restore, step: PlannedStep) -> str:
    p = r.plan
    return {
        RestoreStepKind.CLONE: f"clone {p.get('source_instance')} to {p.get('point_in_time')} "
        f"as {p.get('clone_name')}",
        RestoreStepKind.RESTORE_BACKUP: f"restore backup {(p.get('backup_run') or {}).get('id')}"
        f" over {p.get('source_instance')}",
        RestoreStepKind.WAIT: "wait for the Cloud SQL operation",
        RestoreStepKind.ADDRESS: "read the new instance's address",
        RestoreStepKind.SECRET: f"add a version to secret {(p.get('secret') or {}).get('name')}",
        RestoreStepKind.ROLL: f"roll {step.service} to a new revision",
    }.get(step.step, step.step.value)


def _success(r: Restore) -> str:
    p = r.plan
    if r.kind is RestoreKind.CLONE:
        return (
            f"database restored: clone {p.get('clone_name')} of {p.get('source_instance')} at "
            f"{p.get('point_in_time')}, secret repointed, services rolled, validation passed"
        )
    return (
        f"database restored in place from backup {(p.get('backup_run') or {}).get('id')}, "
        "services rolled, validation passed"
    )


def _late(desk: RestoreDesk) -> str:
    return f"the Cloud SQL operation is not done after {desk.op_timeout}"

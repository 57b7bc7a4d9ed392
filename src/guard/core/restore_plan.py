"""What a restore will do, worked out before anyone approves it: the plan humans sign.

Why apart from the executor: approving a restore means approving *exactly this*: the source
instance, the point in time (inside the recoverable window), the clone's name, the new
connection string (password masked), the secret version to add, the services to roll and
the revision each is rebuilt from, the validation, and the runbook's gcloud commands. The
plan is computed once, stored with the proposal, and executed as stored, so what runs is
what was approved. Pure: the service reads Cloud SQL, Secret Manager and Cloud Run first and
hands the facts in. Also here: masking a connection string's password, and rewriting the
string to point at the clone (the one place the guard edits a secret's content).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from guard.core.proposal import gcloud_commands, rfc3339
from guard.core.restore import RestoreKind, restore_revision_name

MASK = "****"
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)@")
_KV_PASSWORD = re.compile(r"(?P<head>\b(?:password|pwd)\s*=\s*)(?P<pw>'[^']*'|[^\s;&]*)", re.I)
#: The label a restore's new revisions carry: which restore rolled them.
ROLL_LABEL = "deploy-guard-restore"


def mask_connection(value: str) -> str:
    """`value` with any password replaced by ****: URL userinfo (`scheme://user:pw@host`)
    and key/value forms (`password=pw`, `pwd=pw`, also inside a URL's query)."""
    masked = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", value)
    return _KV_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", masked)


def rewrite_connection(
    value: str, *, old_ip: str | None, new_ip: str, old_name: str, new_name: str
) -> str | None:
    """The connection string pointed at the clone, or None when it names neither the
    source's address nor its connection name (the guard will not guess).

    The source's IP address becomes the clone's, and its connection name
    (`project:region:instance`, as the Cloud SQL connectors and `/cloudsql/` sockets spell
    it) becomes the clone's. Nothing else changes: user, password, database, options.
    """
    out = value
    if old_name and old_name in out:
        out = out.replace(old_name, new_name)
    if old_ip and re.search(rf"(?<![\d.]){re.escape(old_ip)}(?![\d.])", out):
        out = re.sub(rf"(?<![\d.]){re.escape(old_ip)}(?![\d.])", new_ip, out)
    return None if out == value else out


@dataclass(frozen=True, slots=True)
class BackupChoice:
    """The backup run an in-place restore would use."""

    id: int
    ended_at: datetime


def backup_before(runs: Iterable[tuple[int, str, datetime | None]], before: datetime) -> (
    BackupChoice | None
):  # fmt: skip
    """The newest SUCCESSFUL backup run (id, status, end time) that ended before `before`."""
    done = [
        BackupChoice(run_id, end)
        for run_id, status, end in runs
        if status == "SUCCESSFUL" and end is not None and end <= before
    ]
    return max(done, key=lambda b: b.ended_at, default=None)


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """One service to roll: the revision serving now is rebuilt under a new name."""

    name: str
    project: str
    region: str
    base_revision: str  # what serves 100% now (after the guard's revert, the good one)
    split: Mapping[str, int]  # the traffic now: the roll refuses if a human changes it
    keeps_latest: bool  # traffic follows LATEST: keep it so; else pin the new revision


@dataclass(frozen=True, slots=True)
class PlanFacts:
    """Everything read from Google Cloud (and the config) that the plan is made of."""

    restore_id: str
    kind: RestoreKind
    app: str
    project: str  # the database's project
    instance: str
    secret: str
    point_in_time: datetime | None  # CLONE: the point to clone to
    window: tuple[datetime, datetime] | None  # the instance's recoverable window, if read
    clone_name: str | None  # CLONE
    backup: BackupChoice | None  # BACKUP
    secret_version: str | None  # the version the app reads now (None: unreadable)
    connection: str | None  # its value, unmasked (masked before it is stored)
    source_address: str | None  # the source instance's IP address
    source_connection_name: str
    services: Sequence[ServicePlan]
    validation: Sequence[str]  # what the validation step checks, in words
    option_b_file: str | None
    option_b_note: str
    problems: Sequence[str] = ()  # what reading found wrong (unreadable service, ...)


def build_plan(f: PlanFacts) -> dict[str, Any]:
    """The JSON plan stored with the proposal; `problems` non-empty means it cannot run."""
    problems = list(f.problems)
    if f.kind is RestoreKind.CLONE:
        problems += _clone_problems(f)
    elif f.backup is None:
        problems.append("no successful backup run ended before the point in time")
    if f.kind is RestoreKind.CLONE and f.connection is not None:
        placeholder = "<clone address>"
        moved = rewrite_connection(
            f.connection, old_ip=f.source_address, new_ip=placeholder,
            old_name=f.source_connection_name,
            new_name=_connection_name(f.source_connection_name, f.clone_name or ""),
        )  # fmt: skip
        if moved is None:
            problems.append(
                f"secret {f.secret} names neither the source's address "
                f"{f.source_address or '(unknown)'} nor its connection name "
                f"{f.source_connection_name}: the guard cannot repoint it"
            )
        new_connection = mask_connection(moved) if moved else None
    else:
        new_connection = None
    services = [
        {
            "name": s.name,
            "project": s.project,
            "region": s.region,
            "base_revision": s.base_revision,
            "new_revision": restore_revision_name(s.name, f.restore_id),
            "traffic": dict(s.split),
            "keeps_latest": s.keeps_latest,
        }
        for s in f.services
    ]
    for s in f.services:
        if not s.base_revision:
            problems.append(
                f"service {s.name} does not serve 100% from one revision ({dict(s.split)}): "
                "a human must settle its traffic first"
            )
    plan: dict[str, Any] = {
        "kind": f.kind.value,
        "destructive": f.kind is RestoreKind.BACKUP,
        "app": f.app,
        "project": f.project,
        "source_instance": f.instance,
        "source_address": f.source_address,
        "source_connection_name": f.source_connection_name,
        "point_in_time": _iso(f.point_in_time),
        "recovery_window": (
            None
            if f.window is None
            else {"earliest": _iso(f.window[0]), "latest": _iso(f.window[1])}
        ),
        "clone_name": f.clone_name if f.kind is RestoreKind.CLONE else None,
        "backup_run": (
            {"id": f.backup.id, "ended_at": _iso(f.backup.ended_at)} if f.backup else None
        ),
        "secret": {
            "name": f.secret,
            "reads_now": f.secret_version,
            "connection_now": mask_connection(f.connection) if f.connection else None,
            "connection_new": new_connection,
            "adds_version": f.kind is RestoreKind.CLONE,
        },
        "services": services,
        "validation": list(f.validation),
        "gcloud": list(_gcloud(f, services)),
        "option_b": {"file": f.option_b_file, "note": f.option_b_note},
        "problems": problems,
        "executable": not problems,
    }
    return plan


def _clone_problems(f: PlanFacts) -> list[str]:
    if f.point_in_time is None or f.clone_name is None:
        return ["a clone needs a point in time and a clone name"]
    if f.window is None:
        return ["the recoverable window is unknown (getLatestRecoveryTime failed)"]
    earliest, latest = f.window
    if not earliest <= f.point_in_time <= latest:
        return [
            f"point in time {_iso(f.point_in_time)} is outside the recoverable window "
            f"{_iso(earliest)} .. {_iso(latest)}"
        ]
    problems = []
    if f.connection is None:
        problems.append(f"secret {f.secret} could not be read: the new version cannot be made")
    return problems


def _connection_name(source: str, clone: str) -> str:
    """`project:region:clone` from the source's `project:region:instance`."""
    head, _, _ = source.rpartition(":")
    return f"{head}:{clone}" if head else clone


def _gcloud(f: PlanFacts, services: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The runbook's commands for this plan, values filled in (humans can run them)."""
    if f.kind is RestoreKind.CLONE and f.point_in_time and f.clone_name:
        db = gcloud_commands(f.project, f.instance, f.clone_name, f.secret, f.point_in_time)
    elif f.backup is not None:
        db = (
            f"gcloud sql backups restore {f.backup.id} --restore-instance={f.instance} "
            f"--project={f.project}",
        )
    else:
        db = ()
    rolls: list[str] = []
    for s in services:
        where = f"--region={s['region']} --project={s['project']}"
        image = (
            f"$(gcloud run revisions describe {s['base_revision']} {where} --format='value(image)')"
        )
        suffix = str(s["new_revision"]).removeprefix(f"{s['name']}-")
        rolls.append(
            f"gcloud run services update {s['name']} {where} --image={image} "
            f"--revision-suffix={suffix} --update-labels={ROLL_LABEL}={f.restore_id}"
        )
        if not s["keeps_latest"]:
            rolls.append(
                f"gcloud run services update-traffic {s['name']} {where} "
                f"--to-revisions={s['new_revision']}=100"
            )
    return (*db, *rolls)


def plan_lines(plan: Mapping[str, Any]) -> list[str]:
    """The plan as a human reads it (`guard restore plan ID`)."""
    kind = plan.get("kind")
    lines = []
    if kind == RestoreKind.CLONE.value:
        lines.append(
            f"point-in-time clone of {plan['source_instance']} (project {plan['project']}) "
            f"to {plan.get('point_in_time')} as new instance {plan.get('clone_name')}"
        )
        window = plan.get("recovery_window")
        if window:
            lines.append(f"  recoverable window: {window['earliest']} .. {window['latest']}")
    else:
        run = plan.get("backup_run") or {}
        lines.append(
            f"DESTRUCTIVE: restore backup run {run.get('id')} (ended {run.get('ended_at')}) "
            f"IN PLACE over {plan['source_instance']} (project {plan['project']}); the "
            "instance restarts and its point-in-time logs are lost"
        )
    secret = plan.get("secret") or {}
    if secret.get("adds_version"):
        lines.append(
            f"secret {secret.get('name')}: add a version after {secret.get('reads_now')}: "
            f"{secret.get('connection_new')}"
        )
        lines.append(f"  (now: {secret.get('connection_now')})")
    for s in plan.get("services", ()):
        traffic = "keeps LATEST" if s["keeps_latest"] else f"traffic 100% to {s['new_revision']}"
        lines.append(
            f"roll {s['name']}: new revision {s['new_revision']} from {s['base_revision']}, "
            f"{traffic} (traffic now {s['traffic']})"
        )
    for check in plan.get("validation", ()):
        lines.append(f"validate: {check}")
    lines.append("equivalent gcloud commands:")
    lines += [f"  {c}" for c in plan.get("gcloud", ())]
    option_b = plan.get("option_b") or {}
    if option_b.get("file") or option_b.get("note"):
        lines.append(f"option B instead: {option_b.get('note')}")
    for problem in plan.get("problems", ()):
        lines.append(f"PROBLEM: {problem}")
    return lines


def _iso(t: datetime | None) -> str | None:
    return None if t is None else rfc3339(t)

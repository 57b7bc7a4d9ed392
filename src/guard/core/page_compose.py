"""Compose an incident's page: what happened, what the guard did, what a human decides.

Pure: it takes what the store holds (the incident, its evidence, its actions' outcomes and
the rules' reasons) and returns a redacted `PageMessage`. Composing the same facts twice
gives the same content, so the pager can tell a real update from a repeat (`content_key`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from guard.core.model import Evidence, Incident, IncidentState, SignalKind
from guard.core.page import PageEvent, PageMessage, PageSeverity, ProposalLines, RuleLine

#: Log lines quoted in a page: enough to recognise the failure, few enough to read.
MAX_EVIDENCE_LINES = 5
_TELLING = re.compile(
    r"\w*(?:Error|Exception)\b|\bERROR:|\berror:|does not exist|violates|FATAL|failed"
)
_NEVER = datetime(2000, 1, 1, tzinfo=UTC)
_ENDED_WELL = frozenset({IncidentState.RESOLVED, IncidentState.SUPERSEDED})


@dataclass(frozen=True, slots=True)
class ActionLine:
    """One action of the incident as the page needs it."""

    kind: str  # freeze, revert, page, validate, escalate
    status: str  # intended, succeeded, failed, skipped
    outcome: Mapping[str, Any]


def compose(
    incident: Incident,
    *,
    evidence: Sequence[Evidence],
    actions: Sequence[ActionLine],
    reasons: Mapping[str, Sequence[str]],
    severity: PageSeverity,
    redact: Callable[[str], str],
    at: datetime,
    version: int = 1,
    api_url: str | None = None,
) -> PageMessage:
    """The page for `incident` as it stands now (`version` is set by the pager)."""
    r = redact
    done = {a.kind: a for a in actions}
    ended_well = incident.state in _ENDED_WELL
    escalated = incident.state is IncidentState.ESCALATED
    rules = tuple(
        RuleLine(rule, r("; ".join(reasons.get(rule, ())) or "failed")) for rule in incident.rules
    )
    logs = [e for e in evidence if e.kind is SignalKind.LOG][:MAX_EVIDENCE_LINES]
    lines = tuple(dict.fromkeys(r(_first_line(e)) for e in logs))  # distinct, in order
    proposal = _proposal(done.get("escalate"), incident)
    title = _title(incident, escalated)
    links = (
        ((f"incident {incident.id}", f"{api_url}/v1/incidents/{incident.id}"),) if api_url else ()
    )
    return PageMessage(
        dedup_key=f"deploy-guard/{incident.app}/{incident.id}",
        version=version,
        event=PageEvent.RESOLVE if ended_well else PageEvent.TRIGGER,
        severity=severity,  # kept on resolve: Alertmanager identifies alerts by labels
        title=r(title),
        app=incident.app,
        service=incident.service,
        bad_revision=incident.bad_revision,
        incident_id=incident.id,
        state=incident.state.value,
        at=at,
        reverted_to=incident.reverted_to,
        rules=rules,
        migration_file=incident.migration_file,
        migration_file_source=_file_source(incident.file_source),
        evidence=lines,
        actions=tuple(r(_action_text(a)) for a in actions if a.kind != "page"),
        validation=r(_validation(done.get("validate"))) if "validate" in done else None,
        next_step=r(_next_step(incident, done)),
        proposal=proposal,
        links=links,
        dry_run=incident.dry_run,
        extra={"opened_at": incident.opened_at.isoformat()},
    )


def content_key(message: PageMessage) -> str:
    """A digest of what the page says (not when, which version, or the internal state
    name, which the title and next step already tell): equal means no news."""
    doc = asdict(replace(message, at=_NEVER, version=0, state=""))
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _title(incident: Incident, escalated: bool) -> str:
    what = f"[{incident.app}] {incident.service} {incident.bad_revision} failed"
    what += f" {', '.join(incident.rules)}"
    if incident.migration_file:
        what += f": migration {incident.migration_file.rsplit('/', 1)[-1]}"
    state = {
        IncidentState.RESOLVED: "resolved",
        IncidentState.SUPERSEDED: "superseded by a newer deploy",
        IncidentState.ESCALATED: "ESCALATED: the schema changed under the old code",
    }.get(incident.state)
    if state is None and incident.reverted_to:
        state = f"reverted to {incident.reverted_to}"
    if state:
        what += f" — {state}"
    return f"{what} (dry run: nothing was changed)" if incident.dry_run else what


def _first_line(e: Evidence) -> str:
    """The line that says what went wrong: in a traceback, the exception's own line (the
    last one naming an error), not "Traceback ..." or "Exception in ASGI application"."""
    text = str(e.data.get("text") or e.summary)
    lines = [x.strip() for x in text.splitlines() if x.strip()] or [text.strip()]
    telling = [x for x in lines if _TELLING.search(x) and not x.startswith('File "')]
    return (telling[-1] if len(lines) > 1 and telling else lines[0])[:300]


def _file_source(source: str | None) -> str | None:
    if source is None:
        return None
    return "named in the log" if source == "text" else "the revision's newest migration"


def _action_text(a: ActionLine) -> str:
    o = a.outcome
    if o.get("would"):
        return f"{a.kind}: would {str(o['would']).removeprefix('would ')} (dry run)"
    detail = ""
    if a.kind == "restore" and o.get("summary"):
        detail = f" ({o['summary']})"
    elif a.kind == "revert" and o.get("target"):
        detail = f" to {o['target']}"
        if a.status == "failed" and o.get("message"):
            detail += f" ({o.get('code', '')} {o['message']})"
    elif a.kind == "freeze" and isinstance(o.get("pipeline"), Mapping):
        detail = " (Cloud Deploy pipeline suspended)" if o["pipeline"].get("ok") else (
            f" (pipeline suspend failed: {o.get('pipeline_error', '')})"
        )  # fmt: skip
    return f"{a.kind}{detail}: {a.status}"


def _validation(a: ActionLine | None) -> str:
    if a is None:
        return ""
    o = a.outcome
    verdict = "passed" if o.get("passed") and not o.get("schema_errors") else "FAILED"
    text = f"{verdict}: {o.get('checks', '')}"
    if o.get("schema_errors"):
        text += f"; {o.get('schema_error_count', 0)} schema error(s) on the reverted-to revision"
    return text


def _next_step(incident: Incident, done: Mapping[str, ActionLine]) -> str:
    state = incident.state
    if state is IncidentState.ESCALATED:
        return (
            "decide: Option A, approve the point-in-time restore below, or Option B, ship the "
            "corrective forward migration; the freeze stays until a human lifts it"
        )
    if state is IncidentState.RESOLVED:
        if not incident.reverted_to:
            return f"fix the migration, then lift the freeze: guard unfreeze {incident.app}"
        return (
            f"fix the migration, then lift the freeze: guard unfreeze {incident.app} "
            "(traffic stays pinned until you move it: add --to-latest)"
        )
    if state is IncidentState.SUPERSEDED:
        return "a newer deploy replaced this revision; the guard watches it"
    revert = done.get("revert")
    if revert is None and state is not IncidentState.OPEN:
        page = done.get("page")
        why = page.outcome.get("why") if page is not None else None
        return f"the guard did not revert traffic ({why}): a human must decide" if why else (
            "the guard did not revert traffic: a human must decide (see actions)"
        )  # fmt: skip
    if revert is not None and revert.status == "failed":
        return "the revert failed: move traffic by hand (gcloud run services update-traffic)"
    return "the guard is validating the recovery; this page will be updated"


def _proposal(a: ActionLine | None, incident: Incident) -> ProposalLines | None:
    if a is None or not isinstance(a.outcome.get("proposal"), Mapping):
        return None
    p = a.outcome["proposal"]
    if p.get("restore_id"):
        approve = (
            f"guard restore plan {p['restore_id']}, then guard restore approve {p['restore_id']}"
        )
        if p.get("approvals_required"):
            approve += f" ({p['approvals_required']} distinct approvers)"
        if p.get("backup_restore_id"):
            approve += (
                f"; or, DESTRUCTIVE, restore the last backup in place: "
                f"guard restore approve {p['backup_restore_id']}"
            )
    else:
        approve = f"guard restore propose {incident.app} --at {p.get('point_in_time', '')}"
    return ProposalLines(
        point_in_time=str(p.get("point_in_time", "")),
        clone_name=str(p.get("clone_name", "")),
        gcloud=tuple(str(c) for c in p.get("gcloud", ())),
        approve=approve,
        option_b_file=p.get("option_b_file"),
        problems=tuple(str(x) for x in p.get("problems", ())),
    )

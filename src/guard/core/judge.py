"""Rule evaluation: one rule, one deploy, the evidence so far, and a verdict with its reasons.

This is where the runbook's trigger conditions become decisions. Each provider has its own
judgement (log hits counted against `failureLimit`, the revision's Ready condition, the 5xx
statistics of `guard.core.errorrate`), and all of them share the rules every operator expects
from Flagger and Argo: nothing is judged before `initialDelay`, evidence older than `window`
does not count, missing data is never a failure, and a verdict always says which rule, which
values against which thresholds, and which log lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from guard.core.classify import Classification
from guard.core.errorrate import ErrorRateJudgement
from guard.core.model import (
    Deploy,
    DeployKind,
    Evidence,
    Outcome,
    Readiness,
    Reason,
    Revision,
    SignalKind,
    Verdict,
)
from guard.core.rules import GuardRule, LogsProvider, ReadinessProvider, Scope
from guard.core.signals import LogRecord

#: Evidence lines kept per verdict: enough for a human to see the pattern, small enough to page.
MAX_EVIDENCE = 5
#: Log lines a little older than the revision's create time still belong to its startup.
STARTUP_SLACK = timedelta(seconds=5)
#: Hits of one revision with the same kind, SQLSTATE and relation this close together are one
#: failure: a traceback arrives as several entries (one per line, or a chained exception
#: repeating the driver's error), and `failureLimit` counts failures, not lines.
SAME_EVENT = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class Hit:
    """A classified log record: the evidence logs rules count."""

    record: LogRecord
    classification: Classification


def judge(
    rule: GuardRule,
    deploy: Deploy,
    now: datetime,
    *,
    hits: Sequence[Hit] = (),
    revision: Revision | None = None,
    error_rate: ErrorRateJudgement | None = None,
    dry_run: bool = False,
) -> Verdict:
    """The verdict of `rule` on `deploy` at `now` from the evidence given.

    `hits` are the classified records of the deploy's service (the judge applies the rule's
    scope and window); `revision` is the new revision as last read from Cloud Run;
    `error_rate` is the 5xx statistics' judgement for this cycle (None: none available).
    """
    spec = rule.spec
    dry = dry_run or spec.dry_run
    delay_ends = deploy.started_at + timedelta(seconds=spec.initial_delay)
    if now < delay_ends:
        wait = (delay_ends - now).total_seconds()
        reason = Reason(f"waiting for initialDelay: {wait:.0f}s left", wait, spec.initial_delay)
        return Verdict(rule.name, deploy, Outcome.NO_DATA, now, (reason,), dry_run=dry)
    provider = spec.provider
    if isinstance(provider, LogsProvider):
        outcome, reasons, evidence = _judge_logs(rule, provider, deploy, now, hits)
    elif isinstance(provider, ReadinessProvider):
        outcome, reasons, evidence = _judge_readiness(deploy, now, revision)
    else:
        outcome, reasons, evidence = _judge_error_rate(deploy, now, error_rate)
    return Verdict(rule.name, deploy, outcome, now, reasons, evidence, dry_run=dry)


Judged = tuple[Outcome, tuple[Reason, ...], tuple[Evidence, ...]]


def relevant_hits(
    provider: LogsProvider, deploy: Deploy, hits: Sequence[Hit], since: datetime
) -> list[Hit]:
    """The hits a logs rule counts: its kinds, its scope, inside the window, after the deploy."""
    start = max(since, deploy.started_at - STARTUP_SLACK)
    kinds = set(provider.kinds)
    return [
        h
        for h in hits
        if h.classification.kind in kinds
        and h.record.service == deploy.service.name
        and h.record.at >= start
        and (provider.scope is Scope.ANY_REVISION or h.record.revision == deploy.revision)
    ]


def _judge_logs(
    rule: GuardRule, provider: LogsProvider, deploy: Deploy, now: datetime, hits: Sequence[Hit]
) -> Judged:
    window = timedelta(seconds=rule.spec.window)
    found = relevant_hits(provider, deploy, hits, now - window)
    limit = rule.spec.failure_limit
    kinds = "/".join(k.value for k in provider.kinds)
    scope = (
        f"revision {deploy.revision}" if provider.scope is Scope.NEW_REVISION else "any revision"
    )
    if not found:
        return Outcome.PASSED, (Reason(f"no {kinds} entries from {scope}", 0, limit),), ()
    events = count_events(found)
    plural = "" if events == 1 else "s"
    text = f"{events} {kinds} failure{plural} ({len(found)} log entries) from {scope} "
    text += f"in the last {rule.spec.window:.0f}s (failureLimit {limit})"
    file = migration_file(found)
    if file is not None:
        how = "named in the log" if file[1] == "text" else "the revision's newest migration"
        text += f"; failing migration {file[0]} ({how})"
    reasons = (Reason(text, events, limit),)
    evidence = tuple(_log_evidence(h) for h in found[:MAX_EVIDENCE])
    outcome = Outcome.FAILED if events >= limit else Outcome.INCONCLUSIVE
    return outcome, reasons, evidence


def count_events(hits: Sequence[Hit]) -> int:
    """Distinct failures among `hits` (see SAME_EVENT).

    An event is anchored at its first entry and spans SAME_EVENT from there: a steady
    stream of failing requests is many failures, not one ever-growing event (anchoring at
    the previous entry would merge every entry closer than SAME_EVENT to its predecessor).
    """
    started: dict[tuple[object, ...], datetime] = {}
    events = 0
    for hit in sorted(hits, key=lambda h: h.record.at):
        c = hit.classification
        key = (hit.record.revision, c.kind, c.sqlstate, c.relation)
        first = started.get(key)
        if first is None or hit.record.at - first > SAME_EVENT:
            events += 1
            started[key] = hit.record.at
    return events


def migration_file(hits: Sequence[Hit]) -> tuple[str, str] | None:
    """The failing migration's filename and how it was found ("text" or "blame").

    A filename written in a log line beats one blamed on the revision's newest migration; the
    earliest such line wins, since later errors are usually consequences of the first.
    """
    for source in ("text", "blame"):
        for hit in sorted(hits, key=lambda h: h.record.at):
            c = hit.classification
            if c.migration_file and c.file_source == source:
                return c.migration_file, source
    return None


def _log_evidence(hit: Hit) -> Evidence:
    c, r = hit.classification, hit.record
    first_line = next((line for line in r.text.splitlines() if line.strip()), "")
    kind = c.kind.value if c.kind else "log"
    return Evidence(
        kind=SignalKind.LOG,
        at=r.at,
        summary=f"{kind}: {first_line[:200]}",
        service=r.service,
        revision=r.revision,
        data={
            "text": _head_and_tail(r.text, 4000),
            "log_name": r.log_name,
            "insert_id": r.insert_id,
            "migration_file": c.migration_file,
            "file_source": c.file_source,
            "sqlstate": c.sqlstate,
            "relation": c.relation,
        },
    )


def _head_and_tail(text: str, limit: int) -> str:
    """At most `limit` characters of `text`, keeping its end: a Python traceback says what
    went wrong on its last lines, after kilobytes of frames."""
    if len(text) <= limit:
        return text
    head = limit // 3
    return f"{text[:head]}\n[…]\n{text[-(limit - head - 5) :]}"


def _judge_readiness(deploy: Deploy, now: datetime, revision: Revision | None) -> Judged:
    if revision is None:
        return Outcome.NO_DATA, (Reason(f"revision {deploy.revision} not read yet"),), ()
    if revision.readiness is Readiness.FAILED or deploy.kind is DeployKind.FAILED_START:
        detail = f"{revision.reason}: {revision.message}".strip(": ")
        reason = Reason(f"revision {deploy.revision} failed to become Ready ({detail})")
        evidence = Evidence(
            kind=SignalKind.READINESS,
            at=now,
            summary=f"{deploy.revision} not Ready: {revision.reason or 'failed'}",
            service=deploy.service.name,
            revision=deploy.revision,
            data={"reason": revision.reason, "message": revision.message},
        )
        return Outcome.FAILED, (reason,), (evidence,)
    if revision.readiness is Readiness.PENDING:
        return Outcome.INCONCLUSIVE, (Reason(f"revision {deploy.revision} still starting"),), ()
    return Outcome.PASSED, (Reason(f"revision {deploy.revision} is Ready"),), ()


def _judge_error_rate(deploy: Deploy, now: datetime, result: ErrorRateJudgement | None) -> Judged:
    if result is None:
        return Outcome.NO_DATA, (Reason("no 5xx statistics for this cycle"),), ()
    evidence: tuple[Evidence, ...] = ()
    if result.outcome is Outcome.FAILED:
        evidence = (
            Evidence(
                kind=SignalKind.ERROR_RATE,
                at=now,
                summary="; ".join(r.text for r in result.reasons)[:300],
                service=deploy.service.name,
                revision=deploy.revision,
                data=result.data(),
            ),
        )
    return result.outcome, result.reasons, evidence

"""Pages as Prometheus Alertmanager alerts (API v2: `POST /api/v2/alerts`).

Why this shape: Alertmanager identifies an alert by its label set, and a page is a state of
one incident, so the labels are the same for every version of an incident and hold nothing
unbounded but the incident's identity: alertname, app, service, incident (the id: it IS the
dedup identity here) and severity. Everything that changes between versions or can be long
(revision, rules, evidence, actions, proposal, commands) goes into annotations, each capped
at `ANNOTATION_BYTES`; `description` carries the whole story as text.

Severity is a label (so routes can page on critical and chat on warning), but the composer
changes it within an incident (a resolve says `info`; an escalation may raise it). So the
notifier remembers, per open incident, the severity it last sent active: a trigger under a
new severity also resolves the old one, and a resolve clears the remembered one, or all four
when it does not know (after a restart). Only the severity that fired ever reaches a receiver.
After a restart, a severity change leaves the old alert until its own `endsAt`.

Alertmanager forgets alerts nobody re-sends: while an incident is open the alert's `endsAt`
is now + `active_for` (10 min), so a guard that dies leaves no phantom alert forever, and the
caller re-sends every `resend_every` (60 s). Resolving sends the same labels with `endsAt` =
the message's time (in the past). `startsAt` is the incident's first page time: the
composer's `extra["opened_at"]` when present, else the message's time (Alertmanager itself
keeps the earliest `startsAt` of overlapping versions, so the fallback drifts only in what
one request says, not in what Alertmanager shows).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from guard.adapters.notify.http import HttpNotifier
from guard.core.page import Delivery, PageEvent, PageMessage, PageSeverity

ALERTNAME = "DeployGuardIncident"
ANNOTATION_BYTES = 8192  # per annotation value, UTF-8 encoded
_MARK = "…"


def _cap(text: str, limit: int = ANNOTATION_BYTES) -> str:
    """`text` cut to at most `limit` UTF-8 bytes (on a character boundary), ending in …."""
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[: limit - len(_MARK.encode())].decode("utf-8", "ignore") + _MARK


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


def _rfc3339(at: datetime) -> str:
    return _utc(at).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _opened_at(message: PageMessage) -> datetime:
    opened = message.extra.get("opened_at")
    if isinstance(opened, str):
        try:
            opened = datetime.fromisoformat(opened)
        except ValueError:
            opened = None
    start = _utc(opened) if isinstance(opened, datetime) else _utc(message.at)
    return min(start, _utc(message.at))  # never after the version's time: startsAt <= endsAt


def _annotations(message: PageMessage, source: str) -> dict[str, str]:
    m = message
    p = m.proposal
    proposal = ""
    if p is not None:
        proposal = "\n".join(
            [f"clone {p.clone_name} at {p.point_in_time}"]
            + ([f"option B: forward migration {p.option_b_file}"] if p.option_b_file else [])
            + [f"problem: {x}" for x in p.problems]
        )
    migration = m.migration_file or ""
    if migration and m.migration_file_source:
        migration += f" ({m.migration_file_source})"
    values = {
        "summary": m.title,
        "description": m.text(ANNOTATION_BYTES),
        "state": m.state,
        "version": str(m.version),
        "dedup_key": m.dedup_key,
        "revision": m.bad_revision,
        "reverted_to": m.reverted_to or "",
        "rules": "\n".join(f"{r.rule}: {r.text}" for r in m.rules),
        "migration_file": migration,
        "evidence": "\n".join(m.evidence),
        "actions": "\n".join(m.actions),
        "validation": m.validation or "",
        "next_step": m.next_step,
        "proposal": proposal,
        "gcloud": "\n".join(p.gcloud) if p else "",
        "approve": p.approve if p else "",
        "links": "\n".join(f"{text}: {href}" for text, href in m.links),
        "dry_run": "true" if m.dry_run else "",
        "source": source,
    }
    return {k: _cap(v) for k, v in values.items() if v}


def render(
    message: PageMessage,
    *,
    active_for: float,
    now: datetime,
    source: str = "deploy-guard",
    earlier: Collection[PageSeverity] | None = (),
) -> list[dict[str, Any]]:
    """The body of `POST /api/v2/alerts` for one version of one incident's page.

    `earlier`: the severities this incident's alert may still be active under (None: not
    known, so every severity). A trigger is this version's alert, active until now +
    `active_for`, plus `earlier`'s other severities resolved; a resolve is `earlier`'s
    severities (this message's when empty) resolved at the message's time.
    """
    identity = {
        "alertname": ALERTNAME,
        "app": message.app,
        "service": message.service,
        "incident": message.incident_id,
    }
    common: dict[str, Any] = {
        "annotations": _annotations(message, source),
        "startsAt": _rfc3339(_opened_at(message)),
    }
    url = next((h for _, h in message.links if h.startswith(("https://", "http://"))), None)
    if url:
        common["generatorURL"] = url

    def alert(severity: PageSeverity, ends: datetime) -> dict[str, Any]:
        labels = {**identity, "severity": severity.value}
        # Alertmanager drops empty label values anyway; dropping them here keeps the identity.
        labels = {k: v for k, v in labels.items() if v}
        return {"labels": labels, **common, "endsAt": _rfc3339(ends)}

    stale = list(PageSeverity) if earlier is None else [s for s in PageSeverity if s in earlier]
    if message.event is PageEvent.RESOLVE:
        return [alert(s, message.at) for s in stale or [message.severity]]
    active = alert(message.severity, _utc(now) + timedelta(seconds=active_for))
    return [active, *(alert(s, message.at) for s in stale if s is not message.severity)]


def _detail(response: httpx.Response) -> str:
    """Alertmanager's error: a JSON string, or {"code", "message"}, or plain text."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body = body.get("message", body)
    text = body if isinstance(body, str) else json.dumps(body)
    return f"alertmanager {response.status_code}: {' '.join(text.split())[:200]}"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(float(response.headers.get("Retry-After", "")), 0.0)
    except ValueError:
        return None


class AlertmanagerNotifier(HttpNotifier):
    """One Alertmanager (or an HA pair behind one URL) as a paging backend."""

    KIND = "alertmanager"

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        *,
        base_url: str,
        active_for: float = 600.0,
        resend_every: float = 60.0,
        source: str = "deploy-guard",
    ) -> None:
        if not 0 < resend_every < active_for:
            raise ValueError(
                f"need 0 < resend_every ({resend_every}) < active_for ({active_for}): "
                "else an open incident's alert expires between re-sends"
            )
        super().__init__(name, client, source)
        self._url = base_url.rstrip("/") + "/api/v2/alerts"
        self._active_for = active_for
        self._resend_every = resend_every
        # incident id -> the severity its alert was last sent active under (open ones only)
        self._active: dict[str, frozenset[PageSeverity]] = {}

    @property
    def resend_every(self) -> float:
        """Seconds between re-sends of an open incident's latest page (well below active_for)."""
        return self._resend_every

    async def send(self, message: PageMessage) -> Delivery:
        incident = message.incident_id
        resolve = message.event is PageEvent.RESOLVE
        body = render(
            message,
            active_for=self._active_for,
            now=datetime.now(UTC),
            source=self._source,
            earlier=self._active.get(incident) if resolve else self._active.get(incident, ()),
        )
        try:
            response = await self._client.post(self._url, json=body)
        except httpx.HTTPError as e:  # connection refused, timeouts, protocol errors
            return Delivery(ok=False, detail=f"alertmanager unreachable: {type(e).__name__}: {e}")
        status = response.status_code
        if 200 <= status < 300:
            if resolve:
                self._active.pop(incident, None)
            else:
                self._active[incident] = frozenset({message.severity})
            return Delivery(ok=True, status=status)
        detail = _detail(response)
        if status == 429:
            return Delivery(
                ok=False, status=status, retry_after=_retry_after(response), detail=detail
            )
        if status >= 500:
            return Delivery(ok=False, status=status, detail=detail)
        return Delivery(ok=False, status=status, permanent=True, detail=detail)

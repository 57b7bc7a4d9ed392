"""The pager: puts each incident's page in the outbox, and delivers what is due.

Why two halves: the responder must never wait on PagerDuty or Slack, and a page must survive
the guard dying or a backend answering 429 for a while. So `put` composes the page from the
store (`guard.core.page_compose`), routes it (the app's backends for the page's severity,
plus every backend already paged for this incident, so updates and the resolve reach the
same people), and queues a new version only when the story changed. `deliver` sends what is
due: 2xx records it sent; 429 waits the backend's Retry-After (and pauses that backend);
5xx and network errors back off exponentially; any other 4xx is recorded and never retried.
Alertmanager forgets alerts that are not re-sent, so its active pages are re-queued every
`resend_every` seconds, as the same version.

Delivery is at least once per version: a guard killed after a backend accepted a page but
before recording it sends that version again on restart. PagerDuty, Opsgenie and
Alertmanager fold it into the same alert (same dedup key / alias / labels), the webhook
carries an Idempotency-Key; only Slack, which has no dedup, may show it twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from guard.adapters.store import SqlStore
from guard.core.model import Incident, IncidentState
from guard.core.page import PageMessage, PageSeverity, from_json, to_json
from guard.core.page_compose import ActionLine, compose, content_key
from guard.core.rules import GuardRule
from guard.ports import Notifier
from guard.service.metrics import Recorder

log = logging.getLogger(__name__)

#: Route per app: page severity -> notifier names (None: every notifier).
Routes = Mapping[str, Mapping[str, Sequence[str] | None]]
_RANK = {
    PageSeverity.INFO: 0,
    PageSeverity.WARNING: 1,
    PageSeverity.ERROR: 2,
    PageSeverity.CRITICAL: 3,
}


class Pager:
    """Composes, routes, queues and delivers pages."""

    def __init__(
        self,
        store: SqlStore,
        notifiers: Mapping[str, Notifier],
        *,
        routes: Routes,
        rules: Mapping[str, GuardRule],
        recorder: Recorder,
        now: Callable[[], datetime],
        redact: Callable[[str], str],
        api_url: str | None = None,
        resend_every: Mapping[str, float] | None = None,
        backoff: float = 2.0,
        backoff_max: float = 300.0,
        seed: int | None = None,
    ) -> None:
        self.store, self.notifiers, self.routes, self.rules = store, notifiers, routes, rules
        self.recorder, self.now, self.redact, self.api_url = recorder, now, redact, api_url
        self.resend_every = dict(resend_every or {})
        self.backoff, self.backoff_max = backoff, backoff_max
        self._paused: dict[str, datetime] = {}
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not security

    # -- composing and queueing (synchronous: short store transactions) --------------------

    def compose(self, incident: Incident) -> PageMessage:
        """The incident's page as it stands (version 0: the outbox numbers versions)."""
        actions = [
            ActionLine(
                a.kind.value, a.status.value, {**(a.outcome or {}), "why": a.intent.get("why")}
            )
            for a in self.store.actions(incident.id)
        ]
        reasons: dict[str, list[str]] = {}
        for line in reversed(self.store.audit_log(incident.id, limit=50)):
            rule = line.detail.get("rule")
            if isinstance(rule, str) and rule not in reasons:
                reasons[rule] = [str(r) for r in line.detail.get("reasons", ())]
        return compose(
            incident,
            evidence=self.store.evidence(incident.id),
            actions=actions,
            reasons=reasons,
            severity=self._severity(incident),
            redact=self.redact,
            at=self.now(),
            version=0,
            api_url=self.api_url,
        )

    def put(self, incident: Incident, message: PageMessage | None = None) -> dict[str, int | None]:
        """Queue the incident's page (`message`, when just composed) for its backends; the
        new version per backend (None: that backend already has this content)."""
        message = message or self.compose(incident)
        key = content_key(message)
        already = {p.backend for p in self.store.pages(incident.id)}
        queued: dict[str, int | None] = {}
        for backend in sorted(self._route(incident.app, message.severity) | already):
            if backend not in self.notifiers:
                continue
            queued[backend] = self.store.page_put(
                incident.id, backend, message.dedup_key, key, to_json(message), at=self.now()
            )
        return queued

    def _severity(self, incident: Incident) -> PageSeverity:
        if incident.state is IncidentState.ESCALATED:
            return PageSeverity.CRITICAL
        found = [
            PageSeverity(self.rules[r].spec.severity.value)
            for r in incident.rules
            if r in self.rules
        ]
        return max(found, key=_RANK.__getitem__, default=PageSeverity.CRITICAL)

    def _route(self, app: str, severity: PageSeverity) -> set[str]:
        names = self.routes.get(app, {}).get(severity.value)
        return set(self.notifiers) if names is None else set(names)

    # -- delivering ---------------------------------------------------------------------------

    async def deliver(self) -> int:
        """Send every due page once; how many were delivered."""
        now = self.now()
        sent = 0
        for row in await asyncio.to_thread(self.store.pages_due, now):
            notifier = self.notifiers.get(row.backend)
            if notifier is None:
                why = f"notifier {row.backend!r} is no longer configured"
                await asyncio.to_thread(self.store.page_failed, row.id, row.version, why)
                continue
            if self._paused.get(row.backend, now) > now:
                continue  # the backend asked us to wait (429)
            message = from_json(row.payload)
            result = await notifier.send(message)
            at = self.now()
            if result.ok:
                await asyncio.to_thread(self.store.page_sent, row.id, row.version, at=at)
                self.recorder.page(row.backend, "sent")
                sent += 1
                context = {"app": message.app, "incident": message.incident_id}
                log.info("page %s v%d delivered to %s", message.dedup_key, row.version,
                         row.backend, extra=context)  # fmt: skip
            elif result.permanent:
                await asyncio.to_thread(self.store.page_failed, row.id, row.version, result.detail)
                self.recorder.page(row.backend, "failed")
                log.error("page %s v%d refused by %s: %s (not retried)", message.dedup_key,
                          row.version, row.backend, result.detail,
                          extra={"app": message.app, "incident": message.incident_id})  # fmt: skip
            else:
                wait = self._wait(row.attempts, result.retry_after)
                if result.retry_after is not None:
                    self._paused[row.backend] = at + timedelta(seconds=wait)
                await asyncio.to_thread(
                    self.store.page_retry, row.id, row.version,
                    f"{result.status or 'no answer'}: {result.detail}",
                    next_at=at + timedelta(seconds=wait),
                )  # fmt: skip
                self.recorder.page(row.backend, "rate_limited" if result.status == 429 else "retry")
        await self._resend_active()
        return sent

    def _wait(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(retry_after, 0.0)
        base: float = min(self.backoff * 2.0**attempts, self.backoff_max)
        return base * (0.5 + self._rng.random() / 2)

    async def _resend_active(self) -> None:
        if not self.resend_every:
            return
        now = self.now()
        for row in await asyncio.to_thread(self.store.pages):
            every = self.resend_every.get(row.backend)
            if every is None or row.status != "sent" or row.sent_at is None:
                continue
            if row.payload.get("event") == "trigger" and now - row.sent_at >= timedelta(
                seconds=every
            ):
                await asyncio.to_thread(self.store.page_resend, row.id, at=now)

"""A generic JSON webhook: the whole page as one documented, signed JSON document.

Why: chat bots, ticket systems and in-house tools each want the page in their own format;
instead of a backend per tool, the guard POSTs every field of the `PageMessage` under a
stable schema (`deploy-guard.page/v1`, see docs/paging-backends.md) and lets the receiver
render it. Each version is one POST; the receiver tells versions apart and drops repeats
with the `Idempotency-Key: <dedup_key>:<version>` header (the outbox may deliver a version
more than once, e.g. after a crash between the POST and recording it).

Signing (when a secret is configured), like Stripe's and Slack's: `X-Guard-Timestamp` is the
unix time in seconds, and `X-Guard-Signature` is `sha256=` + the hex HMAC-SHA256, keyed
with the secret, of `f"{timestamp}.{body}"` over the exact body bytes. A receiver recomputes
it, compares in constant time, and rejects stale timestamps (replays). The secret and the
URL (which often carries a token) are scrubbed from every `Delivery.detail`, never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from guard.adapters.notify.http import HttpNotifier, encode_json, post_json
from guard.core.page import Delivery, PageMessage

SCHEMA = "deploy-guard.page/v1"


def render(message: PageMessage) -> dict[str, Any]:
    """The `deploy-guard.page/v1` document: every field of `message`, plus its plain text."""
    p = message.proposal
    proposal = None
    if p is not None:
        proposal = {
            "point_in_time": p.point_in_time,
            "clone_name": p.clone_name,
            "gcloud": list(p.gcloud),
            "approve": p.approve,
            "option_b_file": p.option_b_file,
            "problems": list(p.problems),
        }
    return {
        "schema": SCHEMA,
        "dedup_key": message.dedup_key,
        "version": message.version,
        "event": message.event.value,
        "severity": message.severity.value,
        "title": message.title,
        "text": message.text(),
        "app": message.app,
        "service": message.service,
        "bad_revision": message.bad_revision,
        "reverted_to": message.reverted_to,
        "incident_id": message.incident_id,
        "state": message.state,
        "at": message.at.isoformat(),
        "rules": [{"rule": r.rule, "text": r.text} for r in message.rules],
        "migration_file": message.migration_file,
        "migration_file_source": message.migration_file_source,
        "evidence": list(message.evidence),
        "actions": list(message.actions),
        "validation": message.validation,
        "next_step": message.next_step,
        "proposal": proposal,
        "links": [{"text": text, "href": href} for text, href in message.links],
        "dry_run": message.dry_run,
        "extra": {str(key): value for key, value in message.extra.items()},
    }


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Guard-Signature` value: `sha256=` + hex HMAC-SHA256 of `{timestamp}.{body}`."""
    signed = f"{timestamp}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def headers(
    message: PageMessage, body: bytes, secret: str | None, timestamp: int
) -> dict[str, str]:
    """The request headers: the idempotency key, and the signature when there is a secret."""
    out = {"Idempotency-Key": f"{message.dedup_key}:{message.version}"}
    if secret:
        out["X-Guard-Timestamp"] = str(timestamp)
        out["X-Guard-Signature"] = sign(secret, timestamp, body)
    return out


class WebhookNotifier(HttpNotifier):
    """One receiver URL, optionally with a shared signing secret."""

    KIND = "webhook"

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        url: str,
        *,
        secret: str | None = None,
        source: str = "deploy-guard",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name, client, source)
        self._url = url
        self._secret = secret
        self._clock = clock
        parts = urlsplit(url)
        hidden = (url, parts.path if len(parts.path) > 1 else "", parts.query, secret or "")
        self._secrets = tuple(s for s in hidden if s)

    async def send(self, message: PageMessage) -> Delivery:
        body = encode_json(render(message))
        sent = headers(message, body, self._secret, int(self._clock()))
        sent["User-Agent"] = self._source
        return await post_json(
            self._client, self._url, body, headers=sent, secrets=self._secrets, label=self._name
        )

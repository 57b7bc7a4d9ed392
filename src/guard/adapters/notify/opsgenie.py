"""Opsgenie (Alert API v2): an incident's page as one alert, keyed by its alias.

Why this shape: Opsgenie deduplicates alerts by `alias` while one is open, so the first page
and every update are the same create call with the incident's key as the alias (an update
raises the open alert's count and refreshes it), and the end of the incident closes the
alert by alias. Creates and closes are asynchronous at Opsgenie (202, "Request will be
processed"), so a 202 is a delivery.

Limits are Opsgenie's: `message` ≤ 130 chars (the title), `alias` ≤ 512, `description`
≤ 15000 (the whole story as plain text, log lines and then gcloud lines dropped before any
cut), `details` string to string (≤ 8000 chars in all), ≤ 20 tags of ≤ 50 chars, `source`
≤ 100, a close `note` ≤ 25000. Severity maps critical→P1, error→P2, warning→P3, info→P5.
The alias is the dedup key with `/` as `:` (see `alias`). The GenieKey goes only in the
Authorization header; it is scrubbed from every `Delivery.detail` and never logged. See
docs/paging-backends.md.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from guard.adapters.notify.http import HttpNotifier, encode_json, fit_key, fitted_text, post_json
from guard.core.page import Delivery, PageEvent, PageMessage, PageSeverity, truncate

DEFAULT_BASE_URL = "https://api.opsgenie.com"
MESSAGE_LIMIT = 130
ALIAS_LIMIT = 512
DESCRIPTION_LIMIT = 15000
NOTE_LIMIT = 25000
DETAILS_LIMIT = 8000  # all keys and values together
_DETAIL = 1000  # one value
TAGS_LIMIT = 20
TAG_LIMIT = 50
SOURCE_LIMIT = 100
PRIORITY = {
    PageSeverity.CRITICAL: "P1",
    PageSeverity.ERROR: "P2",
    PageSeverity.WARNING: "P3",
    PageSeverity.INFO: "P5",
}


def alias(message: PageMessage) -> str:
    """The alert's alias: the incident's dedup key, path-safe, within Opsgenie's 512 chars.

    The close call names the alias in the URL path, where an encoded `/` (`%2F`) is refused
    or split by many servers, so `deploy-guard/app/id` becomes `deploy-guard:app:id` (and a
    key that already holds a `:` is percent-encoded instead, so no two keys meet).
    """
    key = message.dedup_key
    safe = key.replace("/", ":") if ":" not in key else quote(key, safe="")
    return fit_key(safe, ALIAS_LIMIT)


def details(message: PageMessage) -> dict[str, str]:
    """Custom properties: every value a string (Opsgenie's rule), 8000 chars in all."""
    values = {
        "incident_id": message.incident_id,
        "version": str(message.version),
        "state": message.state,
        "app": message.app,
        "service": message.service,
        "bad_revision": message.bad_revision,
        "reverted_to": message.reverted_to or "",
        "rules": ", ".join(r.rule for r in message.rules),
        "migration_file": message.migration_file or "",
        "validation": message.validation or "",
        "next_step": message.next_step,
        "dry_run": str(message.dry_run).lower(),
    }
    out: dict[str, str] = {}
    room = DETAILS_LIMIT
    for key, value in values.items():
        if not value or room <= len(key) + 1:
            continue
        out[key] = truncate(value, min(_DETAIL, room - len(key)))
        room -= len(key) + len(out[key])
    return out


def tags(message: PageMessage) -> list[str]:
    """deploy-guard, the app, the severity, each rule: ≤ 20 tags of ≤ 50 chars, no repeats."""
    wanted = ["deploy-guard", message.app, message.severity.value]
    wanted += [r.rule for r in message.rules]
    if message.dry_run:
        wanted.append("dry-run")
    unique = dict.fromkeys(truncate(t, TAG_LIMIT) for t in wanted if t)
    return list(unique)[:TAGS_LIMIT]


def render(message: PageMessage, source: str = "deploy-guard") -> dict[str, Any]:
    """The create-alert body for a first page or an update (same alias: deduplicated)."""
    prefix = "[dry run] " if message.dry_run else ""
    return {
        "message": truncate(f"{prefix}{message.title.strip() or message.app}", MESSAGE_LIMIT),
        "alias": alias(message),
        "description": fitted_text(message, DESCRIPTION_LIMIT),
        "priority": PRIORITY[message.severity],
        "details": details(message),
        "tags": tags(message),
        "entity": truncate(message.service, ALIAS_LIMIT),
        "source": truncate(source, SOURCE_LIMIT),
    }


def render_close(message: PageMessage, source: str = "deploy-guard") -> dict[str, Any]:
    """The close-alert body for a resolved incident: who closes, and the final story."""
    note = f"resolved ({message.state}): " + fitted_text(message, NOTE_LIMIT)
    return {"source": truncate(source, SOURCE_LIMIT), "note": truncate(note, NOTE_LIMIT)}


class OpsgenieNotifier(HttpNotifier):
    """An Opsgenie API integration (one GenieKey)."""

    KIND = "opsgenie"

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        source: str = "deploy-guard",
    ) -> None:
        super().__init__(name, client, source)
        self._key = api_key
        self._base = base_url.rstrip("/")

    async def send(self, message: PageMessage) -> Delivery:
        if message.event is PageEvent.RESOLVE:
            target = quote(alias(message), safe="")
            url = f"{self._base}/v2/alerts/{target}/close?identifierType=alias"
            body = encode_json(render_close(message, self._source))
        else:
            url = f"{self._base}/v2/alerts"
            body = encode_json(render(message, self._source))
        headers = {"Authorization": f"GenieKey {self._key}"}
        return await post_json(
            self._client, url, body, headers=headers, secrets=(self._key,), label=self._name
        )

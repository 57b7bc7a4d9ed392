"""Slack (incoming webhook): each version of a page as one Block Kit message.

Why a new message per version: an incoming webhook can only post, never edit, and Slack
has no dedup, so the channel reads as a thread of states: the first page, then "update N of
incident X" for each change, then "resolved". Every message stands alone (the whole story,
not a diff), because the reader may only see the latest one.

Block Kit limits are hard errors (`invalid_blocks`), so every block is fitted: the header is
the title within 150 chars, each section within 3000 (long lists lose their last lines,
with a "… N more" note, before any line is cut), and a message never has more than 50
blocks. Log lines and gcloud commands go in code blocks. Text is mrkdwn-escaped (&, <, >).
The webhook URL is the credential: it is scrubbed from every `Delivery.detail`, never logged.
Rate (about one message a second) is the outbox's concern: a 429 comes back as a `Delivery`
with `retry_after`. See docs/paging-backends.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from guard.adapters.notify.http import HttpNotifier, encode_json, post_json
from guard.core.page import Delivery, PageEvent, PageMessage, PageSeverity, truncate

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
BLOCKS_LIMIT = 50
_LINE = 1000  # one list line at most, so a section always holds a few
SEVERITY = {
    PageSeverity.CRITICAL: ":red_circle: CRITICAL",
    PageSeverity.ERROR: ":large_orange_circle: ERROR",
    PageSeverity.WARNING: ":warning: WARNING",
    PageSeverity.INFO: ":information_source: INFO",
}
RESOLVED = ":white_check_mark: RESOLVED"


def escape(text: str) -> str:
    """`text` safe in mrkdwn: Slack's three control characters as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def section(
    head: str, lines: Sequence[str], *, code: bool = False, raw: bool = False
) -> dict[str, Any]:
    """A section: `head` (mrkdwn) over `lines` (escaped unless `raw`), within 3000 chars.

    When the lines do not fit, the last ones give way to a "… N more not shown" note; only a
    section that cannot hold even that is cut mid-text.
    """
    fitted = [line if raw else escape(line).replace("```", "'''") for line in lines]
    fitted = [truncate(line, _LINE) for line in fitted]

    def text(kept: Sequence[str]) -> str:
        body = "\n".join(kept)
        if code:
            body = f"```\n{body}\n```"
        return f"{head}\n{body}" if head else body

    if len(text(fitted)) > SECTION_LIMIT:
        worst = f"… {len(lines)} more not shown"
        kept: list[str] = []
        for line in fitted:
            if len(text([*kept, line, worst])) > SECTION_LIMIT:
                break
            kept.append(line)
        fitted = [*kept, f"… {len(lines) - len(kept)} more not shown"]
    return _mrkdwn(truncate(text(fitted), SECTION_LIMIT))


def intro(message: PageMessage) -> str:
    """One line: which page this is (first, update N, resolved) and of what."""
    if message.event is PageEvent.RESOLVE:
        what = f"resolved: incident {message.incident_id}"
    elif message.version > 1:
        what = f"update {message.version} of incident {message.incident_id}"
    else:
        what = f"new incident {message.incident_id}"
    return f"{'[dry run] ' if message.dry_run else ''}{what}"


def _blocks(message: PageMessage) -> list[dict[str, Any]]:
    word = RESOLVED if message.event is PageEvent.RESOLVE else SEVERITY[message.severity]
    title = truncate(
        message.title.strip() or f"{message.app}: {message.bad_revision}", HEADER_LIMIT
    )
    moved = f" → `{message.reverted_to}`" if message.reverted_to else ""
    status = [
        f"{word} · {intro(message)} · state *{message.state}*",
        f"*{message.app}* / `{message.service}`: `{message.bad_revision}`{moved}",
    ]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        section("", status),
    ]
    if message.rules:
        blocks.append(
            section("*What happened*", [f"• *{r.rule}*: {r.text}" for r in message.rules])
        )
    if message.migration_file:
        how = f" ({message.migration_file_source})" if message.migration_file_source else ""
        blocks.append(section("*Failing migration*", [f"`{message.migration_file}`{how}"]))
    if message.evidence:
        blocks.append(section("*Evidence* (log lines)", message.evidence, code=True))
    if message.actions:
        blocks.append(section("*Actions taken*", [f"• {a}" for a in message.actions]))
    if message.validation:
        blocks.append(section("*Validation*", [message.validation]))
    if message.next_step:
        blocks.append(section("*Next step*", [message.next_step]))
    if (p := message.proposal) is not None:
        lines = [f"clone `{p.clone_name}` at `{p.point_in_time}`"]
        lines += [f"• problem: {problem}" for problem in p.problems]
        if p.option_b_file:
            lines.append(f"option B: forward migration `{p.option_b_file}`")
        blocks.append(section("*Restore proposal* (needs approval)", lines))
        if p.gcloud:
            blocks.append(section("*Restore commands*", p.gcloud, code=True))
        blocks.append(section("*Approve with*", [p.approve], code=True))
    if message.links:
        links = [f"<{href.replace('|', '%7C').replace('>', '%3E')}|{escape(text)}>"
                 for text, href in message.links]  # fmt: skip
        blocks.append(section("*Links*", links, raw=True))
    return blocks


def render(message: PageMessage) -> dict[str, Any]:
    """The incoming-webhook payload: a fallback `text` and at most 50 fitted blocks."""
    context = (
        f"incident `{escape(message.incident_id)}` · version {message.version} · "
        f"{message.at.isoformat()} · deploy-guard{' · dry run' if message.dry_run else ''}"
    )
    blocks = _blocks(message)[: BLOCKS_LIMIT - 1]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    fallback = f"{escape(message.title)} ({intro(message)})"
    return {
        "text": truncate(fallback, SECTION_LIMIT),
        "blocks": blocks,
        "unfurl_links": False,
        "unfurl_media": False,
    }


class SlackNotifier(HttpNotifier):
    """One Slack incoming webhook (one channel)."""

    KIND = "slack"

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        webhook_url: str,
        *,
        source: str = "deploy-guard",
    ) -> None:
        super().__init__(name, client, source)
        self._url = webhook_url
        path = urlsplit(webhook_url).path
        self._secrets = (webhook_url, path) if len(path) > 1 else (webhook_url,)

    async def send(self, message: PageMessage) -> Delivery:
        body = encode_json(render(message))
        headers = {"User-Agent": self._source}
        return await post_json(
            self._client, self._url, body, headers=headers, secrets=self._secrets, label=self._name
        )

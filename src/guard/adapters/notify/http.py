"""The one HTTP round trip every paging backend makes, and what its answer means.

Why shared: PagerDuty, Slack, Opsgenie and a webhook differ in payloads, not in how an
answer is read. The outbox retries a page from its `Delivery`, so the mapping must be the
same everywhere: 2xx = delivered; 429 = wait (`Retry-After`, seconds or an HTTP-date);
5xx, network errors and timeouts = transient; any other answer = permanent (a retry sends
the same bad payload again). `send` never raises for any of those.

Credentials travel in URLs (Slack's webhook), bodies (PagerDuty's routing key) and headers
(Opsgenie's GenieKey), and some services echo them in error texts: every `detail` and log
line goes through `scrub` with the notifier's secrets, and the URL is never logged.

Also here, because every backend needs them: `fitted_text` (the page's plain text within a
limit, dropping log lines and then gcloud lines before cutting mid-text) and `fit_key` (a
dedup key within a backend's limit, still unique and stable across versions).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx

from guard.core.page import Delivery, PageMessage, truncate

log = logging.getLogger(__name__)

#: How much of an answer's body is kept in `Delivery.detail`.
DETAIL_LIMIT = 200
_TEXT_LINE = 300  # a line's length when a text is still too long without logs and commands
_REDACTED = "[redacted]"
_SPACES = re.compile(r"\s+")


def encode_json(document: Any) -> bytes:
    """`document` as compact UTF-8 JSON (the exact bytes sent, and signed for a webhook)."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str)
    return text.encode()


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (longest first) replaced, whitespace collapsed, cut short."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, _REDACTED)
    return truncate(_SPACES.sub(" ", text).strip(), DETAIL_LIMIT)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value (delay-seconds or HTTP-date), else None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds >= 0 and seconds != float("inf") else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT; `-0000` parses naive
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def to_delivery(response: httpx.Response, secrets: Iterable[str] = ()) -> Delivery:
    """The `Delivery` an HTTP answer means (see the module docstring for the mapping)."""
    status = response.status_code
    detail = scrub(response.text, secrets)
    if 200 <= status < 300:
        return Delivery(ok=True, status=status, detail=detail)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == 429 or status >= 500:
        return Delivery(ok=False, status=status, retry_after=retry_after, detail=detail)
    return Delivery(ok=False, status=status, permanent=True, detail=detail)


def failure(exc: Exception, secrets: Iterable[str] = ()) -> Delivery:
    """The `Delivery` for a request that got no answer: transient unless it cannot work."""
    permanent = isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol)
    detail = scrub(f"{type(exc).__name__}: {exc}", secrets)
    return Delivery(ok=False, status=None, permanent=permanent, detail=detail)


async def post_json(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
    label: str = "notifier",
) -> Delivery:
    """POST the JSON `body` to `url` with `client`; never raises for answers or the network."""
    secrets = tuple(secrets)
    sent = {"Content-Type": "application/json", **(headers or {})}
    try:
        response = await client.post(url, content=body, headers=sent)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        delivery = failure(exc, secrets)
    else:
        delivery = to_delivery(response, secrets)
    if not delivery.ok:
        log.warning(
            "page not delivered by %s: status=%s permanent=%s retry_after=%s detail=%s",
            label, delivery.status, delivery.permanent, delivery.retry_after, delivery.detail,
        )  # fmt: skip
    return delivery


def fit_key(key: str, limit: int) -> str:
    """`key` within `limit` chars: unchanged when short, else a prefix plus a digest of it."""
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{key[: limit - len(digest) - 1]}~{digest}"


def _dropping(
    items: tuple[str, ...], rebuild: Callable[[tuple[str, ...]], str], limit: int
) -> tuple[str, ...] | None:
    """The longest prefix of `items` (plus a "N more" note) whose rebuild fits, if any."""

    def kept(keep: int) -> tuple[str, ...]:
        return (*items[:keep], f"… {len(items) - keep} more not shown")

    if len(rebuild(kept(0))) > limit:
        return None
    low, high = 0, len(items) - 1  # kept(low) fits; binary search for the longest that does
    while low < high:
        middle = (low + high + 1) // 2
        if len(rebuild(kept(middle))) <= limit:
            low = middle
        else:
            high = middle - 1
    return kept(low)


def fitted_text(message: PageMessage, limit: int) -> str:
    """`message.text()` within `limit`: log lines go first, then gcloud lines, then a cut.

    The cut: every line is first shortened to 300 chars (so each part of the story still
    shows), and only then is the text cut at `limit`.
    """
    if len(text := message.text()) <= limit:
        return text
    if message.evidence:
        kept = _dropping(message.evidence, lambda e: replace(message, evidence=e).text(), limit)
        if kept is not None:
            return replace(message, evidence=kept).text()
        message = replace(message, evidence=(f"… {len(message.evidence)} lines not shown",))
    proposal = message.proposal
    if proposal is not None and proposal.gcloud:

        def rebuild(g: tuple[str, ...]) -> str:
            return replace(message, proposal=replace(proposal, gcloud=g)).text()

        kept = _dropping(proposal.gcloud, rebuild, limit)
        if kept is not None:
            return rebuild(kept)
        message = replace(message, proposal=replace(proposal, gcloud=("… commands not shown",)))
    lines = message.text().split("\n")  # still too long: every part a little, then a cut
    return truncate("\n".join(truncate(line, _TEXT_LINE) for line in lines), limit)


class HttpNotifier:
    """What every notifier shares: its configured name, its kind, the injected client and
    the `source` it reports. Subclasses set `KIND` and implement `send`."""

    KIND: ClassVar[str] = ""

    def __init__(self, name: str, client: httpx.AsyncClient, source: str) -> None:
        self._name, self._client, self._source = name, client, source

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return self.KIND

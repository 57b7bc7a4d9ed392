"""What a page says, independent of where it goes.

Why a core type: every backend (PagerDuty, Slack, Alertmanager, Opsgenie, a webhook) shows
the same story, in its own format and size limits. The story is composed once from the
incident, its evidence and its actions (`guard.core.page_compose`), already redacted, and
each notifier adapter only renders it. A page is a *state*, not an event: one incident has
one dedup key, and each new version of its page (opened, reverted, escalated, resolved)
replaces the previous one at the backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any


class PageEvent(StrEnum):
    TRIGGER = "trigger"  # the first page of an incident, and every update while open
    RESOLVE = "resolve"  # the incident ended well (resolved, superseded)


class PageSeverity(StrEnum):
    """PagerDuty's four severities; each backend maps them to its own scale."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class RuleLine:
    """A rule that fired, with its values against thresholds, as one line of text."""

    rule: str
    text: str


@dataclass(frozen=True, slots=True)
class ProposalLines:
    """An escalated incident's restore proposal, as a human reads it."""

    point_in_time: str
    clone_name: str
    gcloud: tuple[str, ...]
    approve: str  # the approval command / URL
    option_b_file: str | None = None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PageMessage:
    """One version of one incident's page. Every text field is already redacted."""

    dedup_key: str  # the same for every version of one incident (<= 255 chars)
    version: int  # 1 for the first page; each update +1
    event: PageEvent
    severity: PageSeverity
    title: str  # one line, e.g. "[pegasus] pegasus-api-00042 failed: migration 002_x.sql"
    app: str
    service: str
    bad_revision: str
    incident_id: str
    state: str  # the incident's state (open, frozen, reverted, validating, resolved, ...)
    at: datetime  # when this version was composed (timezone-aware)
    reverted_to: str | None = None
    rules: tuple[RuleLine, ...] = ()
    migration_file: str | None = None
    migration_file_source: str | None = None  # "named in the log" / "the revision's newest"
    evidence: tuple[str, ...] = ()  # a few log lines, redacted
    actions: tuple[str, ...] = ()  # "freeze: succeeded", "revert to X: succeeded", ...
    validation: str | None = None
    next_step: str = ""
    proposal: ProposalLines | None = None
    links: tuple[tuple[str, str], ...] = ()  # (text, href)
    dry_run: bool = False  # the guard only says what it *would* have done
    extra: dict[str, Any] = field(default_factory=dict)

    def text(self, limit: int | None = None) -> str:
        """The whole story as plain text (what a webhook or a log line carries)."""
        lines = [self.title, ""]
        if self.reverted_to:
            lines.append(f"{self.service}: {self.bad_revision} -> {self.reverted_to}")
        lines += [f"rule {r.rule}: {r.text}" for r in self.rules]
        if self.migration_file:
            how = f" ({self.migration_file_source})" if self.migration_file_source else ""
            lines.append(f"failing migration: {self.migration_file}{how}")
        lines += [f"log: {e}" for e in self.evidence]
        lines += [f"done: {a}" for a in self.actions]
        if self.validation:
            lines.append(f"validation: {self.validation}")
        if self.proposal is not None:
            p = self.proposal
            lines.append(f"restore proposal: clone {p.clone_name} at {p.point_in_time}")
            lines += [f"  {c}" for c in p.gcloud]
            if p.option_b_file:
                lines.append(f"option B: forward migration {p.option_b_file}")
            lines.append(f"approve: {p.approve}")
        if self.next_step:
            lines.append(f"next: {self.next_step}")
        out = "\n".join(lines)
        return out if limit is None else truncate(out, limit)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a backend said to one send. `retry_after` (seconds) when it asked to wait."""

    ok: bool
    status: int | None = None  # HTTP status, None when no answer (network error)
    permanent: bool = False  # a 4xx other than 429: do not retry this version
    retry_after: float | None = None
    detail: str = ""


def truncate(text: str, limit: int, marker: str = "…") -> str:
    """`text` cut to at most `limit` characters, ending in `marker` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(marker), 0)] + marker


def to_json(message: PageMessage) -> dict[str, Any]:
    """The message as JSON-able data (the page outbox stores it so)."""
    doc = asdict(message)
    doc["at"] = message.at.isoformat()
    return doc


def from_json(doc: Mapping[str, Any]) -> PageMessage:
    """The message `to_json` stored (unknown keys are ignored: older rows still load)."""
    known = {f.name for f in fields(PageMessage)}
    data = {k: v for k, v in doc.items() if k in known}
    data["at"] = datetime.fromisoformat(str(doc["at"]))
    data["event"] = PageEvent(doc["event"])
    data["severity"] = PageSeverity(doc["severity"])
    data["rules"] = tuple(RuleLine(**r) for r in doc.get("rules", ()))
    for key in ("evidence", "actions"):
        data[key] = tuple(doc.get(key, ()))
    data["links"] = tuple(tuple(x) for x in doc.get("links", ()))
    if doc.get("proposal"):
        p = dict(doc["proposal"])
        p["gcloud"], p["problems"] = tuple(p.get("gcloud", ())), tuple(p.get("problems", ()))
        data["proposal"] = ProposalLines(**p)
    return PageMessage(**data)

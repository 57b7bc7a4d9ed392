"""Loopback stand-ins for PagerDuty, Slack, Opsgenie and a signed webhook receiver.

Why real servers: a notifier's contract is the bytes it puts on the wire and how it reads
the answer, so the tests drive each notifier against a real HTTP server (Starlette under
uvicorn on 127.0.0.1, a free port) that validates the payload the way the real service
does: the documented required fields, enums and size limits, answering with the service's
own success and error shapes. Every receiver records what it got (for assertions) and can
be scripted to answer something else (429 with Retry-After, 500, an echoing 400) for the
next N requests, or to answer slowly (timeouts).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

PD_ACTIONS = {"trigger", "acknowledge", "resolve"}
SEVERITIES = {"critical", "error", "warning", "info"}
PRIORITIES = {"P1", "P2", "P3", "P4", "P5"}
SLACK_BLOCKS = {"header", "section", "context", "divider"}
WEBHOOK_FIELDS = {
    "schema": str, "dedup_key": str, "version": int, "event": str, "severity": str,
    "title": str, "text": str, "app": str, "service": str, "bad_revision": str,
    "incident_id": str, "state": str, "at": str, "rules": list, "evidence": list,
    "actions": list, "next_step": str, "links": list, "dry_run": bool, "extra": dict,
}  # fmt: skip


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it, and what it answered."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records requests; plays scripted answers first, else validates and answers."""

    received: list[Received] = field(default_factory=list)
    delay: float = 0.0  # seconds before answering (for client timeouts)
    _script: deque[Response] = field(default_factory=deque)

    def answer_next(
        self, count: int, status: int, body: str = "", headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next `count` requests with `status` (and body/headers) instead."""
        for _ in range(count):
            self._script.append(Response(body, status, headers=headers))

    @property
    def accepted(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.status < 300]

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        if self.delay:
            await asyncio.sleep(self.delay)
        answer = self._script.popleft() if self._script else self.answer(request, body)
        self.received.append(
            Received(
                request.url.path, dict(request.query_params), dict(request.headers), body,
                answer.status_code,
            )
        )  # fmt: skip
        return answer

    def answer(self, request: Request, body: bytes) -> Response:
        raise NotImplementedError

    def app(self, *paths: str) -> Starlette:
        return Starlette(routes=[Route(p, self.handle, methods=["POST"]) for p in paths])


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def _is_timestamp(value: Any) -> bool:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


# --- PagerDuty Events API v2 ------------------------------------------------------------


@dataclass
class PagerDuty(Receiver):
    """`POST /v2/enqueue`: alerts by dedup key, as PagerDuty keeps them."""

    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def app(self, *paths: str) -> Starlette:
        return super().app("/v2/enqueue")

    @staticmethod
    def errors(event: dict[str, Any] | None) -> list[str]:
        if event is None:
            return ["Event object is not a JSON object."]
        errors = []
        key = event.get("routing_key")
        if not isinstance(key, str) or len(key) != 32:
            errors.append("'routing_key' must be 32 characters.")
        action = event.get("event_action")
        if action not in PD_ACTIONS:
            errors.append("'event_action' is invalid (must be trigger, acknowledge or resolve).")
        dedup = event.get("dedup_key")
        if dedup is not None and (not isinstance(dedup, str) or not 0 < len(dedup) <= 255):
            errors.append("'dedup_key' must be a string of at most 255 characters.")
        if action in {"acknowledge", "resolve"} and dedup is None:
            errors.append("'dedup_key' is required for acknowledge and resolve.")
        if action == "trigger":
            payload = event.get("payload")
            if not isinstance(payload, dict):
                return [*errors, "'payload' is missing or not an object."]
            summary = payload.get("summary")
            if not isinstance(summary, str) or not 0 < len(summary) <= 1024:
                errors.append("'payload.summary' is required, at most 1024 characters.")
            if not isinstance(payload.get("source"), str) or not payload["source"]:
                errors.append("'payload.source' is required.")
            if payload.get("severity") not in SEVERITIES:
                errors.append("'payload.severity' is invalid.")
            if "timestamp" in payload and not _is_timestamp(payload["timestamp"]):
                errors.append("'payload.timestamp' is not a valid ISO 8601 timestamp.")
            details = payload.get("custom_details")
            if details is not None and not isinstance(details, dict):
                errors.append("'payload.custom_details' must be an object.")
            for name in ("component", "group", "class"):
                if name in payload and not isinstance(payload[name], str):
                    errors.append(f"'payload.{name}' must be a string.")
            links = event.get("links", [])
            if not isinstance(links, list) or not all(
                isinstance(link, dict)
                and isinstance(link.get("href"), str)
                and isinstance(link.get("text", ""), str)
                for link in links
            ):
                errors.append("'links' must be a list of {href, text} objects.")
        return errors

    def answer(self, request: Request, body: bytes) -> Response:
        event = _json_object(body)
        if errors := self.errors(event):
            invalid = {"status": "invalid event", "message": "Event object is invalid"}
            return JSONResponse({**invalid, "errors": errors}, 400)
        assert event is not None
        dedup = event.get("dedup_key") or hashlib.sha256(body).hexdigest()[:32]
        alert = self.alerts.setdefault(dedup, {"status": "triggered", "events": 0})
        alert["events"] += 1
        alert["status"] = {"trigger": "triggered", "resolve": "resolved"}.get(
            event["event_action"], "acknowledged"
        )
        if "payload" in event:
            alert["summary"] = event["payload"]["summary"]
        ok = {"status": "success", "message": "Event processed", "dedup_key": dedup}
        return JSONResponse(ok, 202)


# --- Slack incoming webhook ---------------------------------------------------------------


def _text_object(obj: Any, kinds: set[str], limit: int) -> bool:
    return (
        isinstance(obj, dict)
        and obj.get("type") in kinds
        and isinstance(obj.get("text"), str)
        and 0 < len(obj["text"]) <= limit
    )


@dataclass
class Slack(Receiver):
    """An incoming webhook at `/services/T000/B000/<token>`: Block Kit rules, "ok"."""

    path: str = "/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX"

    def app(self, *paths: str) -> Starlette:
        return super().app(self.path)

    @staticmethod
    def error(message: dict[str, Any] | None) -> str | None:
        if message is None:
            return "invalid_payload"
        text, blocks = message.get("text"), message.get("blocks")
        if not text and not blocks:
            return "no_text"
        if text is not None and (not isinstance(text, str) or len(text) > 40000):
            return "invalid_payload"
        if blocks is None:
            return None
        if not isinstance(blocks, list) or len(blocks) > 50:
            return "invalid_blocks"
        for block in blocks:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in SLACK_BLOCKS:
                return "invalid_blocks"
            assert isinstance(block, dict)
            if kind == "header" and not _text_object(block.get("text"), {"plain_text"}, 150):
                return "invalid_blocks"
            if kind == "section" and not _text_object(
                block.get("text"), {"plain_text", "mrkdwn"}, 3000
            ):
                return "invalid_blocks"
            if kind == "context":
                elements = block.get("elements")
                if not isinstance(elements, list) or not 0 < len(elements) <= 10:
                    return "invalid_blocks"
                if not all(_text_object(e, {"plain_text", "mrkdwn"}, 3000) for e in elements):
                    return "invalid_blocks"
        return None

    def answer(self, request: Request, body: bytes) -> Response:
        if error := self.error(_json_object(body)):
            return PlainTextResponse(error, 400)
        return PlainTextResponse("ok", 200)


# --- Opsgenie Alert API v2 ----------------------------------------------------------------


@dataclass
class Opsgenie(Receiver):
    """`POST /v2/alerts` and `POST /v2/alerts/{id}/close`: alerts by alias, GenieKey auth."""

    key: str = "00000000-0000-4000-8000-000000000000"
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def app(self, *paths: str) -> Starlette:
        return super().app("/v2/alerts", "/v2/alerts/{identifier}/close")

    @staticmethod
    def _reply(status: int, **more: Any) -> JSONResponse:
        return JSONResponse({**more, "took": 0.004, "requestId": "9f3c5d9e-0000-4000"}, status)

    def _unprocessable(self, errors: dict[str, str]) -> JSONResponse:
        message = "Request body is not processable. Please check the errors."
        return self._reply(422, message=message, errors=errors)

    @staticmethod
    def errors(alert: dict[str, Any]) -> dict[str, str]:
        errors = {}
        message = alert.get("message")
        if not isinstance(message, str) or not 0 < len(message.strip()) <= 130:
            errors["message"] = "Message can not be empty and must be at most 130 characters."
        alias = alert.get("alias")
        if alias is not None and (not isinstance(alias, str) or len(alias) > 512):
            errors["alias"] = "Alias can be at most 512 characters."
        description = alert.get("description")
        if description is not None and (
            not isinstance(description, str) or len(description) > 15000
        ):
            errors["description"] = "Description can be at most 15000 characters."
        if alert.get("priority", "P3") not in PRIORITIES:
            errors["priority"] = "Priority should be one of [P1, P2, P3, P4, P5]."
        details = alert.get("details", {})
        if not isinstance(details, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in details.items()
        ):
            errors["details"] = "Details must be a map of strings to strings."
        elif sum(len(k) + len(v) for k, v in details.items()) > 8000:
            errors["details"] = "Details can be at most 8000 characters in total."
        tags = alert.get("tags", [])
        if (
            not isinstance(tags, list)
            or len(tags) > 20
            or not all(isinstance(t, str) and len(t) <= 50 for t in tags)
        ):
            errors["tags"] = "Tags must be at most 20 strings of at most 50 characters."
        source = alert.get("source", "")
        if not isinstance(source, str) or len(source) > 100:
            errors["source"] = "Source can be at most 100 characters."
        return errors

    def answer(self, request: Request, body: bytes) -> Response:
        if request.headers.get("authorization") != f"GenieKey {self.key}":
            return self._reply(401, message="Could not authenticate")
        document = _json_object(body)
        if document is None:
            return self._unprocessable({"body": "Request body is not a JSON object."})
        if "identifier" in request.path_params:
            return self._close(request, document)
        if errors := self.errors(document):
            return self._unprocessable(errors)
        alias = document.get("alias") or hashlib.sha256(body).hexdigest()
        alert = self.alerts.get(alias)
        if alert is None or alert["status"] == "closed":
            self.alerts[alias] = alert = {"status": "open", "count": 0}
        alert["count"] += 1
        alert.update(message=document["message"], priority=document.get("priority", "P3"))
        return self._reply(202, result="Request will be processed")

    def _close(self, request: Request, document: dict[str, Any]) -> Response:
        if request.query_params.get("identifierType", "id") not in {"id", "alias", "tiny"}:
            return self._unprocessable({"identifierType": "Invalid identifier type."})
        note, source = document.get("note", ""), document.get("source", "")
        if not isinstance(note, str) or len(note) > 25000:
            return self._unprocessable({"note": "Note can be at most 25000 characters."})
        if not isinstance(source, str) or len(source) > 100:
            return self._unprocessable({"source": "Source can be at most 100 characters."})
        alert = self.alerts.get(request.path_params["identifier"])
        if alert is not None:  # Opsgenie accepts (202) and fails the request later if unknown
            alert["status"] = "closed"
        return self._reply(202, result="Request will be processed")


# --- A signed generic webhook receiver ----------------------------------------------------


@dataclass
class Webhook(Receiver):
    """`POST /hooks/guard`: verifies the HMAC and timestamp, checks the v1 schema."""

    secret: str | None = "whsec-test-0123456789abcdef"
    tolerance: float = 300.0  # seconds a timestamp may be off (replays)
    seen: set[str] = field(default_factory=set)
    duplicates: int = 0

    def app(self, *paths: str) -> Starlette:
        return super().app("/hooks/guard")

    def _verified(self, request: Request, body: bytes) -> bool:
        if self.secret is None:
            return True
        stamp = request.headers.get("x-guard-timestamp", "")
        signature = request.headers.get("x-guard-signature", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > self.tolerance:
            return False
        signed = f"{stamp}.".encode() + body
        digest = hmac.new(self.secret.encode(), signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest(signature, f"sha256={digest}")

    @staticmethod
    def errors(page: dict[str, Any] | None) -> list[str]:
        if page is None:
            return ["not a JSON object"]
        errors = [
            f"{name}: missing or not {kind.__name__}"
            for name, kind in WEBHOOK_FIELDS.items()
            if not isinstance(page.get(name), kind)
        ]
        if page.get("schema") != "deploy-guard.page/v1":
            errors.append("schema: unknown")
        if page.get("event") not in {"trigger", "resolve"}:
            errors.append("event: unknown")
        if page.get("severity") not in SEVERITIES:
            errors.append("severity: unknown")
        if not _is_timestamp(page.get("at")):
            errors.append("at: not ISO 8601")
        return errors

    def answer(self, request: Request, body: bytes) -> Response:
        if not self._verified(request, body):
            return JSONResponse({"error": "bad or stale signature"}, 401)
        page = _json_object(body)
        if errors := self.errors(page):
            return JSONResponse({"error": "invalid page", "errors": errors}, 400)
        assert page is not None
        key = request.headers.get("idempotency-key", "")
        if key != f"{page['dedup_key']}:{page['version']}":
            return JSONResponse({"error": "Idempotency-Key does not match the page"}, 400)
        if key in self.seen:
            self.duplicates += 1
        self.seen.add(key)
        return JSONResponse({"received": key}, 200)

"""The `guard` commands that talk to a running guard over its HTTP API.

Why: a deploy pipeline gates on `guard gate APP` (exit 0 open, 1 frozen), and on-call humans
list incidents and lift freezes from a terminal, without a shell on the guard or access to
its database. Each command is one or two requests with a 5-second timeout; anything other
than a clear answer (the guard unreachable, an unknown app, a refused token, a server error,
a body that is not the expected JSON) exits 2 with the reason on stderr, so a pipeline
never mistakes an error for "open".

The token comes from --token or $GUARD_TOKEN and is sent only as a bearer header; it is
never printed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import click
import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
TIMEOUT_SECONDS = 5.0
EXIT_FROZEN = 1
EXIT_ERROR = 2

F = TypeVar("F", bound=Callable[..., Any])


class GuardApiError(Exception):
    """The guard did not give a usable answer."""


def connection_options(command: F) -> F:
    command = click.option(
        "--token",
        envvar="GUARD_TOKEN",
        default=None,
        help="An approver's bearer token (default $GUARD_TOKEN).",
    )(command)
    return click.option(
        "--url",
        envvar="GUARD_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="The guard's API (default $GUARD_URL).",
    )(command)


def request(
    url: str,
    token: str | None,
    method: str,
    path: str,
    *,
    body: Mapping[str, Any] | None = None,
    params: Mapping[str, str] | None = None,
) -> Any:
    """One request; the decoded JSON answer of a 2xx, else GuardApiError saying why."""
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with httpx.Client(base_url=url, timeout=TIMEOUT_SECONDS, headers=headers) as client:
            response = client.request(method, path, json=body, params=params)
    except (httpx.HTTPError, ValueError) as exc:  # ValueError: a malformed --url
        raise GuardApiError(f"cannot reach the guard at {url}: {exc}") from exc
    if not response.is_success:
        raise GuardApiError(
            f"{method} {path}: HTTP {response.status_code}: {_error_text(response)}"
        )
    try:
        return response.json()
    except ValueError as exc:
        raise GuardApiError(f"{method} {path}: the answer is not JSON") from exc


def seg(value: str) -> str:
    """`value` as one URL path segment."""
    return quote(value, safe="")


def _error_text(response: httpx.Response) -> str:
    try:
        doc = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    if isinstance(doc, dict) and "detail" in doc:
        return str(doc["detail"])
    return json.dumps(doc)[:200]


def fail(command: str, reason: object) -> NoReturn:
    click.echo(f"guard {command}: {reason}", err=True)
    raise SystemExit(EXIT_ERROR)


def expect(doc: Any, kind: type, what: str) -> Any:
    if not isinstance(doc, kind):
        raise GuardApiError(f"unexpected answer for {what}: {json.dumps(doc)[:200]}")
    return doc


@click.command("gate")
@click.argument("app")
@connection_options
def gate_command(app: str, url: str, token: str | None) -> None:
    """Exit 0 if APP may deploy, 1 if it is frozen, 2 if the guard cannot say.

    Asks a running guard (GET /v1/freezes/APP) and prints one line.
    """
    try:
        doc = expect(request(url, token, "GET", f"/v1/freezes/{seg(app)}"), dict, "the freeze")
        frozen = doc.get("frozen")
        if not isinstance(frozen, bool):
            raise GuardApiError(f"unexpected answer for the freeze: {json.dumps(doc)[:200]}")
    except GuardApiError as exc:
        fail("gate", exc)
    if not frozen:
        click.echo(f"{app}: open")
        return
    since = f" since {doc['frozen_at']}" if doc.get("frozen_at") else ""
    by = f" by incident {doc['incident_id']}" if doc.get("incident_id") else ""
    click.echo(f"{app}: FROZEN{since}{by}: {doc.get('reason') or 'no reason given'}")
    raise SystemExit(EXIT_FROZEN)


@click.command("incidents")
@click.option("--all", "show_all", is_flag=True, help="Resolved and superseded ones too.")
@click.option("--app", "app", default=None, help="Only this app's incidents.")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON instead of a table.")
@connection_options
def incidents_command(
    show_all: bool, app: str | None, as_json: bool, url: str, token: str | None
) -> None:
    """List a running guard's incidents, newest first (open ones unless --all)."""
    params = {"state": "all" if show_all else "open"}
    if app:
        params["app"] = app
    try:
        found = request(url, token, "GET", "/v1/incidents", params=params)
        found = expect(found, list, "incidents")
        rows = [expect(i, dict, "an incident") for i in found]
    except GuardApiError as exc:
        fail("incidents", exc)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no incidents" if show_all else "no open incidents")
        return
    columns = ("id", "app", "service", "bad_revision", "state", "opened_at", "rules")
    table = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[n]) for r in table)) for n, c in enumerate(columns)]
    for line in [[c.upper() for c in columns], *table]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


@click.command("unfreeze")
@click.argument("app")
@click.option("--reason", default=None, help="Why; kept in the audit trail.")
@click.option("--to-latest", is_flag=True, help="Also send traffic back to the latest revisions.")
@connection_options
def unfreeze_command(
    app: str, reason: str | None, to_latest: bool, url: str, token: str | None
) -> None:
    """Lift APP's freeze on a running guard (needs an approver's token).

    Prints what the guard did and its offer to undo its traffic pins; --to-latest takes
    that offer at once.
    """
    body = None if reason is None else {"reason": reason}
    try:
        lifted = request(url, token, "POST", f"/v1/freezes/{seg(app)}/lift", body=body)
        lifted = expect(lifted, dict, "the lift")
        was = {True: "freeze lifted", False: "was not frozen"}.get(lifted.get("lifted"), "lift")
        _show(f"{app}: {was}", {k: v for k, v in lifted.items() if k != "lifted"})
        if to_latest:
            moved = request(url, token, "POST", f"/v1/apps/{seg(app)}/to-latest")
            _show(f"{app}: traffic to the latest revisions", expect(moved, dict, "to-latest"))
    except GuardApiError as exc:
        fail("unfreeze", exc)


def _show(title: str, doc: Mapping[str, Any]) -> None:
    """A result mapping as `title` then one `key: value` line per field."""
    click.echo(title)
    for key, value in doc.items():
        text = value if isinstance(value, str) else json.dumps(value)
        click.echo(f"  {key}: {text}")

"""`guard restore ...`: database restores on a running guard, from a terminal.

Why its own module: a restore is the one act whose every step a human must be able to read
before approving it. `guard restore plan ID` prints exactly what will run; `approve` and
`reject` vote under the caller's token (each approver counts once); `propose` opens a
restore a human asks for; `list` and `show` follow one through its steps. Same contract as
the other client commands (`guard.cli_client`): one request or two, exit 2 with the reason
on any unclear answer, the token only ever sent as a bearer header.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from guard.cli_client import GuardApiError, cell, connection_options, expect, fail, request, seg


@click.group("restore")
def restore_group() -> None:
    """Database restores: list, show, plan, propose, approve, reject."""


@restore_group.command("list")
@click.option("--app", "app", default=None, help="Only this app's restores.")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON instead of a table.")
@connection_options
def list_command(app: str | None, as_json: bool, url: str, token: str | None) -> None:
    """Every restore, newest first, with its approvals."""
    try:
        found = request(url, token, "GET", "/v1/restores", params={"app": app} if app else None)
        rows = [expect(r, dict, "a restore") for r in expect(found, list, "restores")]
    except GuardApiError as exc:
        fail("restore list", exc)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no restores")
        return
    columns = ("id", "app", "kind", "state", "point_in_time", "approvals", "required_approvals")
    table = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[n]) for r in table)) for n, c in enumerate(columns)]
    for line in [[c.upper() for c in columns], *table]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())


@restore_group.command("plan")
@click.argument("restore_id")
@click.option("--json", "as_json", is_flag=True, help="The plan as JSON.")
@connection_options
def plan_command(restore_id: str, as_json: bool, url: str, token: str | None) -> None:
    """Exactly what restore RESTORE_ID will do, and the equivalent gcloud commands."""
    doc = _get(restore_id, url, token, "restore plan")
    if as_json:
        click.echo(json.dumps(doc.get("plan"), indent=2))
        return
    click.echo(_heading(doc))
    for line in doc.get("plan_text", ()):
        click.echo(f"  {line}")


@restore_group.command("show")
@click.argument("restore_id")
@click.option("--json", "as_json", is_flag=True, help="The API's JSON.")
@connection_options
def show_command(restore_id: str, as_json: bool, url: str, token: str | None) -> None:
    """Restore RESTORE_ID: state, votes with who and when, and each step's outcome."""
    doc = _get(restore_id, url, token, "restore show")
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(_heading(doc))
    for vote in doc.get("votes", ()):
        reason = f": {vote['reason']}" if vote.get("reason") else ""
        click.echo(f"  {vote['decision']} by {vote['approver']} at {vote['at']}{reason}")
    for step in doc.get("steps", ()):
        outcome = step.get("outcome") or {}
        said = outcome.get("message") or outcome.get("would") or outcome.get("checks") or ""
        click.echo(f"  step {step['key'].split(':', 1)[-1]}: {step['status']} {said}".rstrip())
    if doc.get("outcome"):
        click.echo(f"  outcome: {(doc['outcome'] or {}).get('summary', doc['outcome'])}")


@restore_group.command("propose")
@click.argument("app")
@click.option("--at", "at", required=True, help="The point in time, RFC 3339 with a zone.")
@click.option(
    "--kind",
    type=click.Choice(["clone", "backup"]),
    default="clone",
    show_default=True,
    help="clone: a new instance at --at; backup: the last backup before --at, IN PLACE.",
)
@click.option("--incident", default=None, help="The incident this restore answers.")
@connection_options
def propose_command(
    app: str, *, at: str, kind: str, incident: str | None, url: str, token: str | None
) -> None:
    """Propose restoring APP's database to --at (needs an approver's token). Nothing runs
    until enough distinct approvers approve; the plan is printed."""
    try:
        when = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        fail("restore propose", f"--at {at!r} is not an RFC 3339 time")
    if when.tzinfo is None:
        fail("restore propose", f"--at {at!r} needs a time zone, e.g. {at}Z")
    body = {"app": app, "at": when.isoformat(), "kind": kind, "incident": incident}
    try:
        doc = expect(request(url, token, "POST", "/v1/restores", body=body), dict, "restore")
    except GuardApiError as exc:
        fail("restore propose", exc)
    click.echo(_heading(doc))
    for line in doc.get("plan_text", ()):
        click.echo(f"  {line}")


@restore_group.command("approve")
@click.argument("restore_id")
@click.option("--reason", default="", help="Kept in the audit trail.")
@connection_options
def approve_command(restore_id: str, reason: str, url: str, token: str | None) -> None:
    """Approve restore RESTORE_ID under your token (read its plan first)."""
    _vote(restore_id, "approve", reason, url, token)


@restore_group.command("reject")
@click.argument("restore_id")
@click.option("--reason", default="", help="Kept in the audit trail.")
@connection_options
def reject_command(restore_id: str, reason: str, url: str, token: str | None) -> None:
    """Reject restore RESTORE_ID: it will never run."""
    _vote(restore_id, "reject", reason, url, token)


def _vote(restore_id: str, decision: str, reason: str, url: str, token: str | None) -> None:
    path = f"/v1/restores/{seg(restore_id)}/{decision}"
    try:
        doc = expect(request(url, token, "POST", path, body={"reason": reason}), dict, decision)
    except GuardApiError as exc:
        fail(f"restore {decision}", exc)
    approvals = doc.get("approvals") or []
    click.echo(
        f"restore {restore_id}: {doc.get('state')}; approvals {len(approvals)} of "
        f"{doc.get('required_approvals')} ({', '.join(approvals) or 'none'})"
    )
    if doc.get("note"):
        click.echo(f"  {doc['note']}")


def _get(restore_id: str, url: str, token: str | None, command: str) -> dict[str, Any]:
    try:
        found = request(url, token, "GET", f"/v1/restores/{seg(restore_id)}")
        doc: dict[str, Any] = expect(found, dict, "the restore")
    except GuardApiError as exc:
        fail(command, exc)
    return doc


def _heading(doc: dict[str, Any]) -> str:
    kind = "DESTRUCTIVE in-place backup restore" if doc.get("destructive") else "clone restore"
    approvals = doc.get("approvals") or []
    return (
        f"restore {doc.get('id')} of {doc.get('app')} ({kind}): {doc.get('state')}; "
        f"approvals {len(approvals)} of {doc.get('required_approvals')} "
        f"({', '.join(approvals) or 'none'}); expires {doc.get('expires_at')}"
    )

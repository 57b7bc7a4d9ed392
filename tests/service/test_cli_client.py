"""`guard gate`, `guard incidents` and `guard unfreeze` against a real guard API on loopback.

Why: a deploy pipeline trusts `guard gate`'s exit code, so an error must never read as
"open": these tests run the commands against a real uvicorn server (backed by a real store)
and pin 0 for open, 1 for frozen and 2 for every way of not knowing (unknown app, a closed
port, a 500, a refused token, a body that is not JSON), and that `guard unfreeze` lifts the
freeze under the approver's name in the audit trail.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from guard.adapters.store import SqlStore, Store
from guard.cli_client import gate_command, incidents_command, unfreeze_command
from guard.service.api import create_app
from tests.service.test_api import (
    ALICE_TOKEN,
    APPROVERS,
    Guard,
    make_guard,
    populate,
)
from tests.support.http import serving


@click.group()
def cli() -> None:
    """A throwaway group, as `guard` registers the commands."""


cli.add_command(gate_command)
cli.add_command(incidents_command)
cli.add_command(unfreeze_command)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    opened = Store.open(f"sqlite:///{tmp_path}/guard.db")
    yield opened
    opened.close()


@pytest.fixture
def guard(store: SqlStore) -> Guard:
    return make_guard(store)


@pytest.fixture
def ids(store: SqlStore) -> dict[str, str]:
    return populate(store)


@pytest.fixture
def url(guard: Guard, ids: dict[str, str]) -> Iterator[str]:
    with serving(create_app(guard, approvers=APPROVERS)) as base:
        yield base


def run(url: str, *args: str, token: str | None = None, **env: str) -> Result:
    """`guard ARGS` with GUARD_URL pointing at `url` (and GUARD_TOKEN when given)."""
    environment: dict[str, str | None] = {"GUARD_URL": url, "GUARD_TOKEN": token, **env}
    return CliRunner().invoke(cli, list(args), env=environment, catch_exceptions=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- guard gate -----------------------------------------------------------------------------


def test_gate_open_is_0(url: str) -> None:
    done = run(url, "gate", "atlas")
    assert (done.exit_code, done.stdout) == (0, "atlas: open\n")


def test_gate_frozen_is_1_and_says_why(url: str, ids: dict[str, str]) -> None:
    done = run(url, "gate", "pegasus")
    assert done.exit_code == 1
    assert done.stdout == (
        f"pegasus: FROZEN since 2026-03-01T12:00:02Z by incident {ids['pegasus']}: "
        "schema migration failed\n"
    )


def test_gate_unknown_app_is_2(url: str) -> None:
    done = run(url, "gate", "hermes")
    assert done.exit_code == 2
    assert done.stdout == ""
    assert "HTTP 404" in done.stderr
    assert "no app 'hermes'" in done.stderr


def test_gate_with_the_guard_unreachable_is_2() -> None:
    done = run(f"http://127.0.0.1:{closed_port()}", "gate", "pegasus")
    assert done.exit_code == 2
    assert "cannot reach the guard" in done.stderr


def test_gate_with_a_malformed_url_is_2() -> None:
    done = run("not a url", "gate", "pegasus")
    assert done.exit_code == 2
    assert "guard gate:" in done.stderr


def test_gate_on_a_server_error_is_2(url: str, guard: Guard) -> None:
    guard.broken = True
    done = run(url, "gate", "pegasus")
    assert done.exit_code == 2
    assert "HTTP 500" in done.stderr


def test_gate_when_the_token_is_needed_and_missing_or_wrong_is_2(
    guard: Guard, ids: dict[str, str]
) -> None:
    with serving(create_app(guard, approvers=APPROVERS, read_auth=True)) as base:
        missing = run(base, "gate", "atlas")
        assert missing.exit_code == 2
        assert "HTTP 401" in missing.stderr
        wrong = run(base, "gate", "atlas", "--token", "guessed")
        assert wrong.exit_code == 2
        assert "HTTP 403" in wrong.stderr
        assert "guessed" not in wrong.stderr + wrong.stdout
        assert run(base, "gate", "atlas", token=ALICE_TOKEN).exit_code == 0


def _odd_guard() -> FastAPI:
    """A server that answers 200 but not with a freeze: the gate must not read it as open."""
    odd = FastAPI()

    @odd.get("/v1/freezes/text", response_class=PlainTextResponse)
    def text() -> str:
        return "frozen? who knows"

    @odd.get("/v1/freezes/shape")
    def shape() -> dict[str, Any]:
        return {"app": "shape", "frozen": "no"}

    return odd


@pytest.mark.parametrize(("app", "why"), [("text", "not JSON"), ("shape", "unexpected answer")])
def test_gate_on_an_answer_that_is_not_a_freeze_is_2(app: str, why: str) -> None:
    with serving(_odd_guard()) as base:
        done = run(base, "gate", app)
    assert done.exit_code == 2
    assert why in done.stderr


def test_url_option_overrides_the_environment(url: str) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    assert run(dead, "gate", "atlas", "--url", url).exit_code == 0


# --- guard incidents ------------------------------------------------------------------------


def test_incidents_table(url: str, ids: dict[str, str]) -> None:
    done = run(url, "incidents")
    assert done.exit_code == 0
    header, row = done.stdout.splitlines()
    assert header.split() == [
        "ID", "APP", "SERVICE", "BAD_REVISION", "STATE", "OPENED_AT", "RULES",
    ]  # fmt: skip
    assert row.split() == [
        ids["pegasus"], "pegasus", "pegasus-api", "pegasus-api-00042", "frozen",
        "2026-03-01T12:00:00Z", "schema-migration",
    ]  # fmt: skip


def test_incidents_all_by_app_and_json(url: str, ids: dict[str, str]) -> None:
    every = run(url, "incidents", "--all")
    assert [line.split()[0] for line in every.stdout.splitlines()[1:]] == [
        ids["pegasus"], ids["atlas"],
    ]  # fmt: skip
    assert run(url, "incidents", "--app", "atlas").stdout == "no open incidents\n"
    done = run(url, "incidents", "--all", "--app", "atlas", "--json")
    assert done.exit_code == 0
    (atlas,) = json.loads(done.stdout)
    assert (atlas["id"], atlas["state"], atlas["rules"]) == (ids["atlas"], "resolved", [])


def test_incidents_error_is_2() -> None:
    done = run(f"http://127.0.0.1:{closed_port()}", "incidents")
    assert done.exit_code == 2
    assert "guard incidents: cannot reach the guard" in done.stderr


# --- guard unfreeze -------------------------------------------------------------------------


def test_unfreeze_lifts_and_the_audit_names_the_approver(url: str, store: SqlStore) -> None:
    done = run(url, "unfreeze", "pegasus", "--reason", "fixed in 0043", token=ALICE_TOKEN)
    assert done.exit_code == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "pegasus: freeze lifted"
    assert "  by: alice" in lines
    assert any(line.startswith("  offer: POST /v1/apps/pegasus/to-latest") for line in lines)
    freeze = store.freeze_of("pegasus")
    assert freeze is not None
    assert (freeze.frozen, freeze.lifted_by) == (False, "alice")
    trail = [(a.actor, a.action, dict(a.detail)) for a in store.audit_log("pegasus")]
    assert ("alice", "unfreeze", {"reason": "fixed in 0043", "lifted": True}) in trail
    assert run(url, "gate", "pegasus").exit_code == 0
    again = run(url, "unfreeze", "pegasus", token=ALICE_TOKEN)
    assert again.stdout.splitlines()[0] == "pegasus: was not frozen"


def test_unfreeze_to_latest_takes_the_offer(url: str) -> None:
    done = run(url, "unfreeze", "pegasus", "--to-latest", "--token", ALICE_TOKEN)
    assert done.exit_code == 0, done.stderr
    assert "pegasus: traffic to the latest revisions" in done.stdout
    assert '  would_move: {"pegasus-api": "LATEST"}' in done.stdout


@pytest.mark.parametrize(
    ("token", "status"), [(None, "HTTP 401"), ("guessed", "HTTP 403"), (ALICE_TOKEN, "HTTP 404")]
)
def test_unfreeze_refused_or_unknown_is_2_and_lifts_nothing(
    url: str, store: SqlStore, token: str | None, status: str
) -> None:
    app = "hermes" if token == ALICE_TOKEN else "pegasus"
    done = run(url, "unfreeze", app, token=token)
    assert done.exit_code == 2
    assert status in done.stderr
    freeze = store.freeze_of("pegasus")
    assert freeze is not None
    assert freeze.frozen

"""`guard demo`: the runbook's worst case, played in real time and told as a timeline.

Why: the product's promise is the runbook's immediate response in seconds and the database
restore gated behind named humans. The demo shows it on one machine with no account: the
fake Google Cloud plays `guard/defaults/demo.yaml` (the worst case, compressed to well under
a minute) at wall-clock pace; the guard's own runtime (the detector, responder, restore
desk and pager, on the same APScheduler jobs as `guard run`) acts on it through the
official clients; and the guard's real HTTP API is served on loopback while it plays.

This module narrates; it does not act. Every line comes from what the guard recorded (its
store, its detector's classified log hits and deploys), what reached the page receiver,
and what the fake cloud saw (revisions, write calls, Cloud SQL operations). The one thing
it does is what a person would: it approves the restore, as the named demo approvers, and
says so. A line is printed as soon as it is seen (one per event, prefixed with the wall
time since the demo started); when nothing new happens for a few seconds a heartbeat says
what the guard is waiting for, so nothing looks stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from importlib import resources
from typing import TextIO

import httpx
import uvicorn
import yaml

from guard.play.harness import Play
from guard.play.story import APPROVE_AFTER, Story
from guard.play.timeline import Timeline
from guard.service.api import create_app
from guard.service.run import ApiServer
from guard.sim.scenario_model import Scenario

#: The guard's cycles, fast enough for a person watching (`guard run` defaults: 10 s, 1 s,
#: 5 s, 60 s). Cloud Monitoring is read as usual: its points are a minute apart anyway.
DEMO_CONFIG: Mapping[str, float] = {
    "poll_interval_seconds": 1.0,
    "evaluate_interval_seconds": 0.5,
    "respond_interval_seconds": 1.0,
    "settle_seconds": 5.0,
    "metrics_interval_seconds": 15.0,
}
#: Give up (exit 1, naming the stage) if the restore has not ended by then (wall seconds).
DEADLINE = 85.0
#: After the restore, how long to wait for the resolving page (wall seconds).
LAST_PAGE_WAIT = 2.5
#: The metrics the ending shows (their other series and histogram buckets are left out).
KEY_METRICS = (
    "guard_deploys_seen_total",
    "guard_verdicts_total",
    "guard_reverts_total",
    "guard_detection_latency_seconds_sum",
    "guard_time_to_revert_seconds_sum",
    "guard_pages_total",
    "guard_restores_total",
    "guard_frozen_apps",
)


def demo_scenario() -> Scenario:
    """The demo's embedded scenario (`guard/defaults/demo.yaml`, shipped with the package)."""
    text = resources.files("guard.defaults").joinpath("demo.yaml").read_text(encoding="utf-8")
    return Scenario.model_validate(yaml.safe_load(text))


async def run_demo(out: TextIO, *, colour: bool = False, deadline: float = DEADLINE) -> int:
    """Play the demo scenario with the guard acting on it and tell it on `out`, as it
    happens. 0 when the gated restore succeeded; 1 when it failed or `deadline` (wall
    seconds) passed first, having said at which stage."""
    started = time.monotonic()
    scenario = demo_scenario()
    timeline = Timeline(out, started, colour=colour)
    _introduce(timeline, scenario)
    play = Play(scenario, realtime=True, approve_after=APPROVE_AFTER, config=DEMO_CONFIG)
    async with play, _api(play) as api_url:
        timeline.say(
            f"  the guard's HTTP API is live at {api_url}"
            if api_url
            else "  (the guard's HTTP API could not start; the demo goes on without it)"
        )
        timeline.say("")
        story = Story(play, timeline)
        code = await story.run(started + deadline)
        if code == 0:
            await story.last_page(LAST_PAGE_WAIT)
        await _ending(timeline, api_url, code)
    timeline.say(f"guard demo: {'done' if code == 0 else 'FAILED'} in {timeline.clock()} wall time")
    return code


# -- the timeline ------------------------------------------------------------------------------


def _introduce(timeline: Timeline, scenario: Scenario) -> None:
    app = scenario.apps[0]
    db = app.database
    say = timeline.say
    say("guard demo: the migration runbook's worst case, on a local fake Google Cloud, in real")
    say("time. No account, nothing leaves this machine. The guard below is the same runtime as")
    say("`guard run`, talking to the fake through the official Google client libraries.")
    say("")
    say(f"  app {app.name}: project {app.project}, region {app.region}")
    for service in app.services:
        serving = ", ".join(r.name for r in service.revisions)
        say(f"    {service.name} ({service.role}) serves {serving}")
    if db is not None:
        last = max((b.at for b in db.backups if b.at <= 0), default=None)
        backups = f", last backup {-last / 3600:g} h ago" if last is not None else ""
        say(
            f"    Cloud SQL {db.instance} (schema v{db.schema_version}, point-in-time recovery "
            f"{db.recovery_window / 86400:g} days{backups}); connection string in secret "
            f"{db.secret}"
        )
    for event in scenario.events:
        if event.deploy is not None:
            rev = event.deploy.revision
            files = ", ".join(m.rsplit("/", 1)[-1] for m in rev.migrations)
            say(
                f"  at {event.at:g} s a deploy of {event.deploy.service} ships {rev.name}; its "
                f"container runs its migrations ({files}) at startup."
            )
    say("")


# -- the API -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _api(play: Play) -> AsyncIterator[str | None]:
    """The guard's real HTTP API over the demo's runtime, on a free loopback port; yields
    its base URL (None if it could not start)."""
    approvers = {name: a.token_sha256 for name, a in play.config.approvers.items()}
    app = create_app(play.runtime, approvers=approvers, read_auth=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = ApiServer(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]), name="demo-api")
    try:
        for _ in range(250):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}" if server.started else None
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5.0)
        sock.close()


# -- what the guard recorded -------------------------------------------------------------------


async def _ending(timeline: Timeline, api_url: str | None, code: int) -> None:
    say = timeline.say
    say("")
    if api_url is not None:
        async with httpx.AsyncClient(base_url=api_url, timeout=5.0) as client:
            say(f"What the guard's API answers now ({api_url}, live while the demo ran):")
            for line in await _api_lines(client):
                say(f"  {line}")
            say("")
    say("Where to look next")
    if api_url is not None:
        say(f"  The guard's HTTP API was live during the demo at {api_url} (it stops with it):")
    else:
        say("  The guard's HTTP API (served by `guard run`):")
    say("    /v1/incidents   incidents, with their evidence and every action (?state=all)")
    say("    /v1/restores    restores: the plan, the votes and every step")
    say("    /metrics        Prometheus metrics, guard_* (docs/metrics.md)")
    say("  Run it for real:  guard run config/pegasus.yaml   (the runbook's own system; every")
    say("                    field in docs/configuration.md; `guard check config/pegasus.yaml`)")
    say("  The gated restore, step by step:  docs/restore.md")
    say("  The same worst case on a virtual clock, as one JSON document:")
    say("    guard simulate scenarios/runbook-worst-case.yaml --json")
    say("")
    if code != 0:
        say("The demo did not reach the end; the line marked FAILED above says where it stopped.")


async def _api_lines(client: httpx.AsyncClient) -> list[str]:
    lines: list[str] = []
    try:
        incidents = (await client.get("/v1/incidents", params={"state": "all"})).json()
        for i in incidents:
            lines.append(
                f"GET /v1/incidents?state=all  {i['id']}: {i['service']} {i['bad_revision']} "
                f"{i['state']}, reverted to {i.get('reverted_to')}"
            )
        restores = (await client.get("/v1/restores")).json()
        for r in restores:
            approvals = ", ".join(r.get("approvals") or []) or "no approvals"
            lines.append(
                f"GET /v1/restores             {r['id']}: {r['kind']} {r['state']} ({approvals})"
            )
        metrics = (await client.get("/metrics")).text
        lines.append("GET /metrics (some guard_* series):")
        lines += [f"  {line}" for line in _key_metrics(metrics)]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as err:
        lines.append(f"(the API did not answer as expected: {err})")
    return lines


def _key_metrics(exposition: str) -> Iterator[str]:
    for line in exposition.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name not in KEY_METRICS:
            continue
        if name == "guard_verdicts_total" and 'outcome="failed"' not in line:
            continue
        yield line

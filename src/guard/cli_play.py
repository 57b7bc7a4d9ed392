"""`guard simulate` and `guard demo`: the guard against the local fake Google Cloud.

Why here: these are the only commands that start the fake cloud (`guard.play`); they need
no account and no configuration. A scenario that does not load is bad input: exit 2 with
the file and the reason, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import click
import yaml
from pydantic import ValidationError

from guard.play.demo import run_demo
from guard.play.simulate import simulate
from guard.sim.scenario_model import Scenario

EXIT_BAD_INPUT = 2


def load_scenario(path: Path) -> Scenario:
    """The scenario in `path`; a clear message and exit 2 when it cannot be used."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Scenario.model_validate(doc)
    except OSError as err:
        reason = f"cannot read it: {err.strerror}"
    except yaml.YAMLError as err:
        reason = f"not YAML: {err}"
    except ValidationError as err:
        reason = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()
        )
    click.echo(f"guard: scenario {path}: {reason}", err=True)
    sys.exit(EXIT_BAD_INPUT)


@click.command("simulate")
@click.argument("scenario", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the one JSON document.")
@click.option(
    "--approve-after",
    type=click.FloatRange(min=0),
    default=None,
    help="Approve each executable clone restore this many scenario seconds after it is "
    "proposed, as the two demo approvers (default: nobody approves).",
)
@click.option(
    "--until", type=click.FloatRange(min=1), default=None, help="Stop at this scenario second."
)
def simulate_command(
    scenario: Path, as_json: bool, approve_after: float | None, until: float | None
) -> None:
    """Run SCENARIO on the fake cloud on a virtual clock, the real guard acting on it, and
    report the incidents, restores, pages and write calls (docs/simulate.md)."""
    spec = load_scenario(scenario)
    logging.basicConfig(level=logging.ERROR)  # the document tells the story, not the logs
    doc = asyncio.run(simulate(spec, approve_after=approve_after, until=until))
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    click.echo(f"{doc['scenario']} (seed {doc['seed']}): {doc['duration']:g} scenario seconds")
    for i in doc["incidents"]:
        revert = (
            f", reverted to {i['reverted_to']} at {i['reverted_at']}s" if i["reverted_to"] else ""
        )
        click.echo(
            f"  incident {i['id']}: {i['service']} {i['bad_revision']} {i['state']} "
            f"({', '.join(i['rules'])}) detected at {i['detected_at']}s{revert}"
        )
    for r in doc["restores"]:
        click.echo(f"  restore {r['id']} ({r['kind']}): {r['state']}")
    click.echo(f"  {len(doc['pages'])} page(s) sent; {len(doc['writes'])} write call(s)")


@click.command("demo")
def demo_command() -> None:
    """Play the runbook's worst case on the local fake Google Cloud in real time, the real
    guard acting on it, and show each step as it happens (no account, no flags, under 90 s):
    the deploy, the detection, the freeze, the revert, the page, the validation, the
    escalation and the gated restore."""
    logging.basicConfig(level=logging.ERROR)  # the timeline tells the story, not the logs
    colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    sys.exit(asyncio.run(run_demo(sys.stdout, colour=colour)))

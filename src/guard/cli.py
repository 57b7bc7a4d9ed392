"""The `guard` command line: one entry point for the service, the checks and the demo.

Exit codes follow one convention across commands: 0 success, 1 a negative answer (e.g. a
frozen app for `gate`), 2 bad input (config, rules, arguments) or an error the caller must
look at.
"""

from __future__ import annotations

import os

# gRPC's C core reads its log level once, when `grpc` is first imported (the imports below
# do), and otherwise logs INFO lines such as "Got goaway" to stderr when a server closes a
# connection: noise in `guard run`'s JSON logs and in the demo's timeline. An explicit
# value in the environment stays.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import asyncio
import json
import sys
from pathlib import Path

import click

from guard import __version__
from guard.adapters.store import StoreError
from guard.cli_classify import classify_command
from guard.cli_client import gate_command, incidents_command, unfreeze_command
from guard.cli_play import demo_command, simulate_command
from guard.cli_restore import restore_group
from guard.config.check import check as run_check
from guard.core.rules import rule_json_schema
from guard.service.jsonlog import configure_logging
from guard.service.run import serve

EXIT_BAD_INPUT = 2
DEFAULT_CONFIG = "/etc/deploy-guard/config.yaml"


#: CONFIG, from the argument, else $GUARD_CONFIG, else /etc/deploy-guard/config.yaml.
config_argument = click.argument(
    "config",
    required=False,
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="GUARD_CONFIG",
    default=DEFAULT_CONFIG,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="guard")
def main() -> None:
    """Deploy Guard: automated deploy guard for Google Cloud Run."""


@main.command()
@config_argument
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of text.")
def check(config: Path, as_json: bool) -> None:
    """Validate CONFIG (default $GUARD_CONFIG or /etc/deploy-guard/config.yaml) and its rules.

    Reports every problem at once as FILE:LINE:COLUMN: FIELD: WHAT and exits 2 if any;
    exits 0 when the configuration and rules are valid.
    """
    result = run_check(config)
    if as_json:
        doc = {
            "ok": result.ok,
            "problems": [
                {
                    "file": p.file,
                    "line": p.line,
                    "column": p.column,
                    "path": p.path,
                    "message": p.message,
                }
                for p in result.problems
            ],
            "apps": sorted(result.config.apps) if result.config else [],
            "rules": sorted(result.rules),
        }
        click.echo(json.dumps(doc, indent=2))
    elif result.ok and result.config is not None:
        apps = ", ".join(
            f"{name} ({len(app.services)} services)" for name, app in result.config.apps.items()
        )
        click.echo(f"{config}: OK: apps {apps}; rules {', '.join(sorted(result.rules))}")
    else:
        for problem in result.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(result.problems)} problem(s) found", err=True)
    if not result.ok:
        sys.exit(EXIT_BAD_INPUT)


@main.command()
@config_argument
def run(config: Path) -> None:
    """Run the guard as a service with CONFIG (default $GUARD_CONFIG or
    /etc/deploy-guard/config.yaml): watch, judge, respond, serve the API and metrics.

    Exits 2 on a bad configuration or a store already in use; 0 after SIGTERM.
    """
    result = run_check(config)
    if not result.ok or result.config is None:
        for problem in result.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(result.problems)} problem(s) found: not starting", err=True)
        sys.exit(EXIT_BAD_INPUT)
    configure_logging(result.config.log_level)
    try:
        code = asyncio.run(serve(result.config, result.rules))
    except StoreError as err:
        click.echo(f"guard: cannot open the store: {err}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(code)


@main.command()
def schema() -> None:
    """Print the JSON Schema of a rule file (the committed schema/guardrule.schema.json)."""
    click.echo(json.dumps(rule_json_schema(), indent=2, sort_keys=True))


main.add_command(classify_command)
main.add_command(gate_command)
main.add_command(incidents_command)
main.add_command(unfreeze_command)
main.add_command(restore_group)
main.add_command(simulate_command)
main.add_command(demo_command)

if __name__ == "__main__":  # pragma: no cover
    main()

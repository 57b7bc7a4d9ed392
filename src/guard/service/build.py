"""From a validated configuration to what the detector and responder take.

Why a module of its own: `guard run`, `guard simulate` and the tests all turn the same
`GuardConfig` into the same watched apps, responses and validators, and doing it once keeps
"what the config says" and "what the guard watches" from drifting apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import httpx

from guard.adapters.cloudsql import CloudSqlReader
from guard.adapters.validation import ValidationReport, run_checks
from guard.config.models import AppConfig, GuardConfig
from guard.core.model import Role, ServiceRef
from guard.core.rules import GuardRule
from guard.service.detector import WatchedApp
from guard.service.responder import AppResponse, RecoveryWindow, Validator


class UnknownRuleError(ValueError):
    """An app names a rule the rules directory does not define."""


def service_refs(app: AppConfig) -> tuple[ServiceRef, ...]:
    return tuple(
        ServiceRef(app.project, s.region or app.region, s.name, Role(s.role.value))
        for s in app.services
    )


def watched_apps(config: GuardConfig, rules: Mapping[str, GuardRule]) -> list[WatchedApp]:
    """Each app with its services and the rules it names (an unknown rule is an error)."""
    out = []
    for name, app in config.apps.items():
        missing = [r for r in app.rules if r not in rules]
        if missing:
            raise UnknownRuleError(f"app {name}: unknown rule(s) {', '.join(missing)}")
        out.append(
            WatchedApp(
                name,
                service_refs(app),
                tuple(rules[r] for r in app.rules),
                dry_run=config.dry_run or app.dry_run,
            )
        )
    return out


def app_responses(config: GuardConfig) -> dict[str, AppResponse]:
    out = {}
    for name, app in config.apps.items():
        db = app.database
        pipeline = (
            f"projects/{app.project}/locations/{app.region}/deliveryPipelines/{app.pipeline}"
            if app.pipeline
            else None
        )
        out[name] = AppResponse(
            name,
            {s.name: s for s in service_refs(app)},
            dry_run=config.dry_run or app.dry_run,
            pipeline=pipeline,
            db_project=(db.project or app.project) if db else None,
            db_instance=db.instance if db else None,
            db_secret=db.secret if db else None,
            restore_margin=timedelta(seconds=app.restore.margin_seconds),
        )
    return out


def validator(config: GuardConfig, client: httpx.AsyncClient) -> Validator:
    """Runs an app's configured validation; None when it configures none."""

    async def validate(app: str) -> ValidationReport | None:
        checks = config.apps[app].validation
        if checks is None:
            return None
        return await run_checks(checks, client=client)

    return validate


def recovery_window(responses: Mapping[str, AppResponse], sql: CloudSqlReader) -> RecoveryWindow:
    """The app's database recoverable window, or None (no database, or unreadable)."""

    async def window(app: str) -> tuple[datetime, datetime] | None:
        r = responses[app]
        if r.db_project is None or r.db_instance is None:
            return None
        return await sql.recovery_window(r.db_project, r.db_instance)

    return window

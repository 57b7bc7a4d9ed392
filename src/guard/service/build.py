"""From a validated configuration to what the detector and responder take.

Why a module of its own: `guard run`, `guard simulate` and the tests all turn the same
`GuardConfig` into the same watched apps, responses and validators, and doing it once keeps
"what the config says" and "what the guard watches" from drifting apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import httpx
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from guard.adapters.cloudsql_admin import CloudSqlAdmin
from guard.adapters.notify.alertmanager import AlertmanagerNotifier
from guard.adapters.notify.opsgenie import OpsgenieNotifier
from guard.adapters.notify.pagerduty import PagerDutyNotifier
from guard.adapters.notify.slack import SlackNotifier
from guard.adapters.notify.webhook import WebhookNotifier
from guard.adapters.validation import ValidationReport, run_checks
from guard.config.models import (
    AlertmanagerConfig,
    AppConfig,
    GuardConfig,
    OpsgenieConfig,
    PagerDutyConfig,
    SlackConfig,
)
from guard.core.model import Role, ServiceRef
from guard.core.redact import Redactor
from guard.core.rules import GuardRule
from guard.ports import Notifier
from guard.service.detector import WatchedApp
from guard.service.responder import AppResponse, RecoveryWindow, Validator
from guard.service.restores import RestoreApp


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


def restore_apps(config: GuardConfig) -> dict[str, RestoreApp]:
    """The apps that have a database: what a restore of each needs from the config."""
    out = {}
    for name, app in config.apps.items():
        if app.database is None:
            continue
        restore = app.restore
        out[name] = RestoreApp(
            name=name,
            project=app.database.project or app.project,
            instance=app.database.instance,
            secret=app.database.secret,
            services={s.name: s for s in service_refs(app)},
            approvers=frozenset(restore.approvers) if restore.approvers else None,
            required=restore.required_approvals,
            ttl=timedelta(seconds=restore.proposal_ttl_seconds),
            margin=timedelta(seconds=restore.margin_seconds),
            validation=validation_steps(app, config.settle_seconds),
            dry_run=config.dry_run or app.dry_run,
        )
    return out


def validation_steps(app: AppConfig, settle_seconds: float) -> tuple[str, ...]:
    """What a restore's validation checks, in words, for the plan humans approve."""
    steps = [f"no schema errors from the new revisions {settle_seconds:g}s after the roll"]
    checks = app.validation
    if checks is not None:
        base = str(checks.base_url).rstrip("/")
        steps += [f"GET {base}{path} answers 2xx" for path in checks.paths]
        if checks.smoke is not None:
            steps.append(f"smoke command {' '.join(checks.smoke.command)} exits 0")
    return tuple(steps)


def validator(config: GuardConfig, client: httpx.AsyncClient) -> Validator:
    """Runs an app's configured validation; None when it configures none."""

    async def validate(app: str) -> ValidationReport | None:
        checks = config.apps[app].validation
        if checks is None:
            return None
        return await run_checks(checks, client=client)

    return validate


def recovery_window(responses: Mapping[str, AppResponse], sql: CloudSqlAdmin) -> RecoveryWindow:
    """The app's database recoverable window, or None (no database, or unreadable)."""

    async def window(app: str) -> tuple[datetime, datetime] | None:
        r = responses[app]
        if r.db_project is None or r.db_instance is None:
            return None
        return await sql.recovery_window(r.db_project, r.db_instance)

    return window


def notifiers(config: GuardConfig, client: httpx.AsyncClient) -> dict[str, Notifier]:
    """One notifier per configured backend, sharing the guard's HTTP client."""
    out: dict[str, Notifier] = {}
    for name, n in config.notifiers.items():
        if isinstance(n, PagerDutyConfig):
            out[name] = PagerDutyNotifier(
                name, client, n.routing_key.get_secret_value(), base_url=str(n.url)
            )
        elif isinstance(n, SlackConfig):
            out[name] = SlackNotifier(name, client, n.webhook_url.get_secret_value())
        elif isinstance(n, AlertmanagerConfig):
            out[name] = AlertmanagerNotifier(
                name, client, base_url=str(n.url), active_for=n.active_for_seconds,
                resend_every=n.resend_seconds,
            )  # fmt: skip
        elif isinstance(n, OpsgenieConfig):
            out[name] = OpsgenieNotifier(
                name, client, n.api_key.get_secret_value(), base_url=str(n.url)
            )
        else:
            secret = n.secret.get_secret_value() if n.secret else None
            out[name] = WebhookNotifier(name, client, n.url.get_secret_value(), secret=secret)
    return out


def resend_every(config: GuardConfig) -> dict[str, float]:
    """Backends that forget alerts not re-sent (Alertmanager), and how often to re-send."""
    return {
        name: n.resend_seconds
        for name, n in config.notifiers.items()
        if isinstance(n, AlertmanagerConfig)
    }


def routes(config: GuardConfig) -> dict[str, dict[str, list[str] | None]]:
    return {name: app.paging.model_dump() for name, app in config.apps.items()}


def redactor(config: GuardConfig) -> Redactor:
    """Redacts by pattern and every secret the configuration holds."""
    secrets: list[str] = []
    for n in config.notifiers.values():
        for value in n.model_dump().values():
            if isinstance(value, SecretStr):
                secrets.append(value.get_secret_value())
    url = make_url(config.store.url.get_secret_value())
    if url.password:
        secrets.append(str(url.password))
    return Redactor(secrets)

"""Requests and log lines of scripted revisions: what a scenario's services emit each tick.

Split from the engine so the engine reads as a timeline (events, startup, restores) and this
module as the load model: Poisson arrivals shared between revisions by Cloud Run's effective
traffic, each revision failing per the behaviour its database schema selects, counted into
Monitoring and written to Cloud Logging the way Cloud Run writes them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from guard.sim.cloudlogging import cloud_run_request_entry, cloud_run_stdout_entry
from guard.sim.errortexts import error_text
from guard.sim.protoutil import project_number
from guard.sim.sampling import binomial, poisson, split_counts
from guard.sim.scenario_model import AppSpec, Behaviour, LogSpec, RevisionSpec, ServiceSpec
from guard.sim.world import World

_PATHS = ("/courses", "/lectures", "/health/ready", "/courses/42", "/lectures/7")


@dataclass
class LiveRevision:
    """What the engine knows of one revision: its script, its service, its database."""

    app: AppSpec
    service: ServiceSpec
    full_service: str
    spec: RevisionSpec
    created: float
    db: tuple[str, str] | None  # (project, instance) it connected to at start


def image_of(spec: RevisionSpec) -> str:
    """The container image a scripted revision runs: its code, told apart by revision name."""
    return f"europe-docker.pkg.dev/app/images/app@sha256:{spec.name}"


class TrafficGenerator:
    """Generates one service's requests and log lines for a span of scenario time."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self._rng = rng

    def _at(self, t: float) -> datetime:
        return self.world.clock.epoch + timedelta(seconds=t)

    def serve(
        self,
        live: dict[str, LiveRevision],
        service: ServiceSpec,
        rps: float,
        behaviour_of: Callable[[LiveRevision], Behaviour],
        span: tuple[float, float],
    ) -> None:
        """Requests to `service` in `span` at `rps`, shared by the revisions serving now."""
        start, end = span
        tick = end - start
        full = next(iter(live.values())).full_service if live else ""
        split = self.world.run.serving_split(full) if full else {}
        counts = split_counts(self._rng, poisson(self._rng, rps * tick), split)
        for revision, n in counts.items():
            rev = live.get(revision)
            if rev is None or n == 0:
                continue
            behaviour = behaviour_of(rev)
            errors = binomial(self._rng, n, behaviour.error_ratio)
            self._count(rev, n - errors, errors, behaviour.error_status, self._at(start + tick / 2))
            for i in range(n):
                failed, at = i < errors, start + self._rng.random() * tick
                if service.request_logs == "all" or (failed and service.request_logs == "errors"):
                    self._request_log(rev, behaviour.error_status if failed else 200, at)
                if failed:
                    for log in behaviour.logs:
                        if log.per_error:
                            self.emit(rev, log, at)
            for log in behaviour.logs:
                if log.rate is not None:
                    for _ in range(poisson(self._rng, log.rate * tick)):
                        self.emit(rev, log, start + self._rng.random() * tick)

    def _count(self, rev: LiveRevision, ok: int, errors: int, status: int, at: datetime) -> None:
        for code, count in ((200, ok), (status, errors)):
            self.world.metrics.add_requests(
                project=rev.app.project,
                location=rev.app.region,
                service=rev.service.name,
                revision=rev.spec.name,
                response_code=code,
                count=count,
                at=at,
            )

    def _request_log(self, rev: LiveRevision, status: int, t: float) -> None:
        app = rev.app
        base = f"https://{rev.service.name}-{project_number(app.project)}.{app.region}.run.app"
        url = base + self._rng.choice(_PATHS)
        latency = 0.02 + self._rng.random() * 0.2
        where = (app.project, app.region, rev.service.name, rev.spec.name)
        self.world.logs.append(cloud_run_request_entry(*where, status, url, latency, self._at(t)))

    def emit(self, rev: LiveRevision, log: LogSpec, t: float) -> None:
        """Write one log line of `rev` at scenario second `t`, as Cloud Run would store it."""
        text, payload = log.text, log.json_payload
        if log.fixture is not None:
            case = error_text(log.fixture)
            text, payload = (None, case.json_payload) if case.json_payload else (case.text, None)
        severity = log.severity if "severity" in log.model_fields_set else None
        where = (rev.app.project, rev.app.region, rev.service.name, rev.spec.name)
        if payload is not None:
            self.world.logs.append(
                cloud_run_stdout_entry(
                    *where, json=payload, stream=log.stream, at=self._at(t), severity=severity
                )
            )
            return
        assert text is not None
        parts = text.splitlines() if log.layout == "lines" else [text]
        for i, part in enumerate(p for p in parts if p.strip()):
            at = self._at(t + i * 1e-6)  # one entry per line, in order
            entry = cloud_run_stdout_entry(
                *where, text=part, stream=log.stream, at=at, severity=severity
            )
            self.world.logs.append(entry)

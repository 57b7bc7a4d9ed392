"""Scenarios for the benchmarks: the runbook's files varied by seed and by time, and fleets.

Why: one scenario file replayed with its own seed measures one lucky (or unlucky) instant.
The benchmarks replay each file many times, each with another seed (other requests, other
errors) and its deploy moved to another second of the minute, because where a deploy falls
against Cloud Monitoring's one-minute samples and against the guard's cycles decides how long
everything takes. A `Case` carries one such replay and the phases of the cycles that watch
it (the guard's 10 s poll and 60 s Monitoring read; Flagger's 60 s ticker), all drawn from
one seeded generator per case, so the whole benchmark is reproducible.

It also builds what no file holds: benign variants (a busy service with a steady 1.5 % 5xx
background, a quiet canary) and fleets of N services over P projects for the cost and
footprint runs.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from guard.config.models import GuardConfig
from guard.sim.scenario_model import Scenario
from guard.sim.timeparse import seconds

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
REGION = "europe-west1"


@dataclass(frozen=True)
class Case:
    """One replay: a scenario document, its seed and shift, and the cycles' phases."""

    family: str  # the scenario file's name or a generated variant's name
    kind: str  # "log", "5xx" (bad deploys) or "benign"
    index: int
    doc: dict[str, Any] = field(repr=False)
    variant: str = ""  # a what-if of the same family (e.g. "poll 1 s"); "" for the real one
    seed: int = 0
    shift: int = 0  # seconds every event moves by (the deploy's second within the minute)
    poll_phase: int = 0  # the guard polls Cloud Run at scenario seconds = phase (mod 10)
    metrics_phase: int = 0  # ... and reads Monitoring at seconds = phase (mod 60)
    flagger_phase: int = 0  # Flagger's ticker fires at seconds = phase (mod 60)
    horizon: float = 900.0  # seconds after the deploy a decision may still come
    config: dict[str, Any] = field(default_factory=dict)  # GuardConfig overrides

    @property
    def scenario(self) -> Scenario:
        doc = copy.deepcopy(self.doc)
        doc["seed"] = self.seed
        for event in doc.get("events", []):
            event["at"] = seconds(event["at"]) + self.shift
        doc["duration"] = self.deploy_at + self.horizon + 30
        return Scenario.model_validate(doc)

    @property
    def deploy(self) -> dict[str, Any]:
        """The first deploy event's `deploy` block (every benchmark scenario has one)."""
        for event in self.doc["events"]:
            if "deploy" in event:
                return dict(event["deploy"])
        raise ValueError(f"{self.family}: no deploy event")

    @property
    def deploy_at(self) -> float:
        for event in self.doc["events"]:
            if "deploy" in event:
                return float(seconds(event["at"])) + self.shift
        raise ValueError(f"{self.family}: no deploy event")

    @property
    def onset(self) -> float:
        """When the new revision starts serving: the deploy plus its startup (Cloud Run
        moves traffic once the revision is Ready)."""
        return self.deploy_at + float(seconds(self.deploy["revision"].get("startup", 10.0)))

    @property
    def service(self) -> str:
        return str(self.deploy["service"])

    @property
    def new_revision(self) -> str:
        return str(self.deploy["revision"]["name"])

    @property
    def project(self) -> str:
        for app in self.doc["apps"]:
            if any(s["name"] == self.service for s in app["services"]):
                return str(app["project"])
        raise ValueError(self.service)

    @property
    def region(self) -> str:
        for app in self.doc["apps"]:
            if any(s["name"] == self.service for s in app["services"]):
                return str(app["region"])
        raise ValueError(self.service)

    def first_visible(self, period: float = 60.0, ingestion: float = 120.0) -> float:
        """When Monitoring first shows a point holding the new revision's traffic: the end
        of the sample period the onset falls in, plus the ingestion delay."""
        return (self.onset // period + 1) * period + ingestion

    def first_full_visible(self, period: float = 60.0, ingestion: float = 120.0) -> float:
        """When Monitoring first shows a point holding a whole period of the new revision's
        traffic (the first period that starts at or after the onset)."""
        return -(-self.onset // period) * period + period + ingestion


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    return doc


def cases(
    family: str, kind: str, n: int, *, doc: dict[str, Any] | None = None, horizon: float = 900.0,
    config: dict[str, Any] | None = None, variant: str = "", deploy_from: int | None = None,
    random_metrics_phase: bool = False,
) -> list[Case]:  # fmt: skip
    """`n` replays of `family` (a file in scenarios/, or `doc`), seeded by name and index:
    a what-if `variant` replays the same seeds and shifts with other `config` (or with the
    guard's Monitoring read at a random phase, as before `metrics_phase_seconds` aligned it:
    `random_metrics_phase`). By default the guard reads Monitoring as `guard run` does,
    `metrics_phase_seconds` past each minute.
    `deploy_from` moves the timeline so the deploy falls in [deploy_from, deploy_from + 60)
    instead of the minute after the file's time (for runs whose signal does not need the
    minutes before the deploy: it saves replay time)."""
    base = doc if doc is not None else load(family)
    at = next(float(seconds(e["at"])) for e in base["events"] if "deploy" in e)
    earlier = 0 if deploy_from is None else int(at) - deploy_from
    out = []
    for i in range(n):
        rng = random.Random(f"{family}/{i}")
        out.append(
            Case(
                family=family, kind=kind, index=i, doc=base, seed=1000 + i,
                shift=rng.randrange(60) - earlier, poll_phase=rng.randrange(10),
                metrics_phase=_phase(random_metrics_phase, rng.randrange(60)),
                flagger_phase=rng.randrange(60),
                horizon=horizon, config=dict(config or {}), variant=variant,
            )
        )  # fmt: skip
    return out


#: Where `guard run` reads Monitoring in each minute (GuardConfig.metrics_phase_seconds).
GUARD_METRICS_PHASE = round(GuardConfig.model_fields["metrics_phase_seconds"].default)


def _phase(random_phase: bool, drawn: int) -> int:
    """The drawn phase for the what-if, else the product's (drawn anyway, so the generator's
    sequence, and every other phase of the case, stays the same)."""
    return drawn if random_phase else GUARD_METRICS_PHASE


def benign_busy_background() -> dict[str, Any]:
    """A busy service whose ordinary 5xx rate is 1.5 %, before and after a healthy deploy:
    above a fixed 1 % threshold all the time, and no worse after the deploy."""
    return _one_service(
        "benign-busy-1.5pct", rps=20.0, old_ratio=0.015, new_ratio=0.015, traffic="latest"
    )


def benign_quiet_canary() -> dict[str, Any]:
    """A quiet service (one request every two seconds) whose healthy 10 % canary shares
    the old revision's 2 % 5xx rate."""
    return _one_service("benign-quiet-canary", rps=0.5, old_ratio=0.02, new_ratio=0.02, traffic=10)


def _one_service(
    name: str, *, rps: float, old_ratio: float, new_ratio: float, traffic: str | int
) -> dict[str, Any]:
    return {
        "name": name,
        "duration": "20m",
        "apps": [
            {
                "name": "pegasus",
                "project": "delta-student-486911-n5",
                "region": REGION,
                "services": [
                    {
                        "name": "pegasus-api",
                        "rps": rps,
                        "revisions": [
                            {
                                "name": "pegasus-api-00090-old",
                                "created": "-1d",
                                "behaviour": [{"error_ratio": old_ratio}],
                            }
                        ],
                    }
                ],
            }
        ],
        "events": [
            {
                "at": "3m",
                "deploy": {
                    "service": "pegasus-api",
                    "traffic": traffic,
                    "revision": {
                        "name": "pegasus-api-00091-new",
                        "startup": "10s",
                        "behaviour": [{"error_ratio": new_ratio}],
                    },
                },
            }
        ],
    }


def fleet(
    services: int, projects: int, *, rps: float, deploy_at: float | None, duration: float,
    seed: int = 1,
) -> Scenario:  # fmt: skip
    """`services` API services spread evenly over `projects` projects (one app each), every
    one with 0.5 % background 5xx (written to the request log, so the tail has work) and,
    when `deploy_at` is set, a healthy deploy each, staggered over the following 30 s."""
    apps: list[dict[str, Any]] = []
    per = services // projects
    k = 0
    for p in range(projects):
        svcs: list[dict[str, Any]] = []
        for i in range(per):
            name = f"s{p:02d}-{i:04d}"
            svcs.append(
                {
                    "name": name,
                    "rps": rps,
                    "request_logs": "errors",
                    "revisions": [
                        {
                            "name": f"{name}-00001-old",
                            "created": "-1d",
                            "behaviour": [{"error_ratio": 0.005}],
                        }
                    ],
                }
            )
        apps.append(
            {"name": f"app-{p:02d}", "project": f"bench-{p:02d}", "region": REGION,
             "services": svcs}
        )  # fmt: skip
    events: list[dict[str, Any]] = []
    if deploy_at is not None:
        for app in apps:
            for svc in app["services"]:
                events.append(
                    {
                        "at": deploy_at + (k % 30),
                        "deploy": {
                            "service": svc["name"],
                            "revision": {
                                "name": f"{svc['name']}-00002-new",
                                "startup": "5s",
                                "behaviour": [{"error_ratio": 0.005}],
                            },
                        },
                    }
                )
                k += 1
    return Scenario.model_validate(
        {"name": f"fleet-{services}x{projects}", "seed": seed, "duration": duration,
         "apps": apps, "events": events}
    )  # fmt: skip

"""The peers' rollback policies as baseline deciders, on the same fake Cloud Monitoring.

Why: "faster than the guard's peers" means nothing unless the peers run on the same
deploys, the same Monitoring lag and the same seeds. Each decider here reads the fake
Monitoring over the official `monitoring_v3` client, on its own schedule, and decides as its
source and documentation say (docs/benchmarks.md cites both); it never writes. Its
"reverted at" is its decision plus the same UpdateService operation time the guard pays.

- Cloud Run Release Manager (GoogleCloudPlatform/cloud-run-release-manager): Cloud
  Scheduler calls it every minute ("* * * * *"); for the candidate revision it asks
  ListTimeSeries for `request_count` over the last `-healthcheck-offset` (30 min) with ONE
  alignment period of that length, ALIGN_DELTA, REDUCE_SUM grouped by
  `response_code_class` (its `ErrorRate`), and again grouped by service (its
  `RequestCount`); no series means rate 0. `Diagnose` checks the error rate first (unmet:
  Unhealthy) then the request count (unmet: Inconclusive, which wins); one Unhealthy
  diagnosis rolls back. `-max-error-rate 1`, `-min-requests 0` (its README's setup).
- Flagger (fluxcd/flagger): a ticker every `analysis.interval` (60 s). Each tick first
  rolls back if `failedChecks >= threshold` (1), else runs the metric check and on failure
  counts one failed check: so a failed check reverts at the NEXT tick. The check is the
  canary's 5xx share over the metric's `interval` window (1 m) — `request-success-rate`
  with `thresholdRange.min 99` — asked as the ListTimeSeries equivalent of its Cloud
  Monitoring MQL template (Google no longer serves MQL). A query with no value is
  `ErrNoValuesFound`, which fails the check. Generous to Flagger: its checks start at the
  first tick the new revision has traffic (Flagger itself spends a tick initialising).
- "Flagger, tuned" is NOT Flagger's behaviour: a 5-minute window and empty results
  skipped, to show what is left of the comparison once Flagger's lag problem is removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from google.cloud import monitoring_v3
from google.protobuf import duration_pb2, timestamp_pb2

from guard.adapters.google_clients import GoogleClients
from guard.sim.scenario import ScenarioEngine
from guard.sim.server import FakeCloud
from scenario_kit import Case

REQUEST_COUNT = "run.googleapis.com/request_count"
Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer


@dataclass
class Decider:
    """A policy watching one candidate revision; `decided_at` is its rollback second."""

    name: str
    client: monitoring_v3.MetricServiceClient
    case: Case
    every: int = 60
    phase: int = 0
    decided_at: float | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)

    def due(self, t: int) -> bool:
        return self.decided_at is None and (t - self.phase) % self.every == 0

    def tick(self, t: int, now: datetime, serving: dict[str, int]) -> None:
        raise NotImplementedError

    def query(self, now: datetime, window: float, group_by: str) -> list[Any]:
        """ListTimeSeries for the candidate over [now - window, now], one ALIGN_DELTA
        period of `window`, REDUCE_SUM by `group_by`: the series (points newest first)."""
        c = self.case
        flt = (
            f'resource.labels.project_id="{c.project}" AND resource.labels.location="{c.region}"'
            f' AND resource.labels.service_name="{c.service}"'
            f' AND resource.labels.revision_name="{c.new_revision}"'
            f' AND metric.type="{REQUEST_COUNT}"'
        )
        start = timestamp_pb2.Timestamp()
        start.FromDatetime(now - timedelta(seconds=window))
        end = timestamp_pb2.Timestamp()
        end.FromDatetime(now)
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{c.project}",
            filter=flt,
            interval=monitoring_v3.TimeInterval(start_time=start, end_time=end),
            aggregation=monitoring_v3.Aggregation(
                alignment_period=duration_pb2.Duration(seconds=int(window)),
                per_series_aligner=Aligner.ALIGN_DELTA,
                cross_series_reducer=Reducer.REDUCE_SUM,
                group_by_fields=[group_by],
            ),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        return list(self.client.list_time_series(request=request))

    def error_counts(self, now: datetime, window: float) -> tuple[int, int] | None:
        """(5xx, total) in the newest point of each response class; None: no point at all."""
        errors = total = 0
        found = False
        for series in self.query(now, window, "metric.labels.response_code_class"):
            if not series.points:
                continue
            found = True
            value = int(series.points[0].value.int64_value)
            total += value
            if series.metric.labels.get("response_code_class") == "5xx":
                errors += value
        return (errors, total) if found else None


@dataclass
class ReleaseManager(Decider):
    window: float = 1800.0  # -healthcheck-offset 30m
    max_error_rate: float = 1.0  # -max-error-rate, percent
    min_requests: int = 0  # -min-requests

    def tick(self, t: int, now: datetime, serving: dict[str, int]) -> None:
        if not serving.get(self.case.new_revision):
            return  # a candidate with no traffic gets its first step, not a diagnosis
        counts = self.error_counts(now, self.window)
        errors, total = counts or (0, 0)
        rate = 100.0 * errors / total if total else 0.0  # "no requests": rate 0
        requests = sum(
            int(s.points[0].value.int64_value)
            for s in self.query(now, self.window, "resource.labels.service_name")
            if s.points
        )
        if requests < self.min_requests:
            result = "inconclusive"
        elif rate > self.max_error_rate:
            result = "unhealthy"
        else:
            result = "healthy"
        self.checks.append({"t": t, "rate": round(rate, 3), "requests": requests, "result": result})
        if result == "unhealthy":
            self.decided_at = float(t)


@dataclass
class Flagger(Decider):
    window: float = 60.0  # the metric's interval
    max_error_rate: float = 1.0  # request-success-rate thresholdRange.min 99
    threshold: int = 1  # analysis.threshold
    empty_fails: bool = True  # ErrNoValuesFound fails the check
    failed: int = 0

    def tick(self, t: int, now: datetime, serving: dict[str, int]) -> None:
        if self.failed >= self.threshold:
            self.decided_at = float(t)  # rollback
            return
        if not serving.get(self.case.new_revision):
            return  # no traffic routed to the canary: the check is skipped
        counts = self.error_counts(now, self.window)
        if counts is None or counts[1] == 0:
            ok, value = not self.empty_fails, None
        else:
            value = 100.0 * counts[0] / counts[1]
            ok = value <= self.max_error_rate
        self.failed += not ok
        self.checks.append({"t": t, "rate": value, "ok": ok, "failed": self.failed})


def run_peers(case: Case) -> dict[str, Any]:
    """Replay `case` with no guard; each decider reads Monitoring on its schedule."""
    scenario = case.scenario
    engine = ScenarioEngine(scenario)
    op = scenario.delays.run_operation
    full = f"projects/{case.project}/locations/{case.region}/services/{case.service}"
    end = int(case.deploy_at + case.horizon)
    with FakeCloud(engine.world) as cloud:
        clients = GoogleClients.for_emulator(cloud.grpc_target, cloud.rest_url)
        client = clients.metrics()
        deciders: list[Decider] = [
            ReleaseManager("release-manager", client, case, phase=0),
            Flagger("flagger", client, case, phase=case.flagger_phase),
            Flagger(
                "flagger-tuned", client, case, phase=case.flagger_phase, window=300.0,
                empty_fails=False,
            ),
        ]  # fmt: skip
        try:
            for t in range(1, end + 1):
                engine.run_until(t)
                due = [d for d in deciders if d.due(t)]
                if not due:
                    continue
                serving = engine.world.run.serving_split(full)
                for d in due:
                    d.tick(t, engine.clock.now(), serving)
                if all(d.decided_at is not None for d in deciders):
                    break
        finally:
            clients.close()
    return {
        d.name: {
            "decided_at": d.decided_at,
            "reverted_at": None if d.decided_at is None else d.decided_at + op,
            "checks": d.checks[:40],
        }
        for d in deciders
    }

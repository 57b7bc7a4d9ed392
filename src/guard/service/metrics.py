"""The guard's Prometheus metrics: one recorder with a method for each thing the guard does.

Why: the detector, responder, scheduler, log source and Google adapters should say what
happened ("a revert succeeded", "a cycle started 3 s late"), not how Prometheus names,
labels and buckets it. This is the only module that knows metric names, which is also how
the cardinality rule is kept in one place: a label's values are bounded by the configuration
or by an enum (app, rule, outcome, backend, Google service/method, gRPC code name, job id),
never revision names, incident ids, URLs or messages. Everything is named `guard_*` and
lives in the recorder's own registry (a fresh one unless given), never the process-global
default, so tests and several guards in one process do not share counters.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# 0.5 s (a log entry tailed at once) .. 30 min (Monitoring's lag plus a slow canary).
LATENCY_BUCKETS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800)

# The `app` label of jobs that are not per app (`cycle`); "" is refused as ambiguous.
ALL_APPS = "*"


class Recorder:
    """Records the guard's domain events as Prometheus metrics in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._lock = threading.Lock()
        self._incident_keys: set[tuple[str, str]] = set()
        self._frozen_keys: set[str] = set()

        self._deploys = Counter(
            "guard_deploys_seen_total", "Deploys (new revisions) seen.", ["app", "role"], registry=r
        )
        self._verdicts = Counter(
            "guard_verdicts_total",
            "Rule verdicts by outcome.",
            ["app", "rule", "outcome"],
            registry=r,
        )
        self._reverts = Counter(
            "guard_reverts_total", "Revert attempts by outcome.", ["app", "outcome"], registry=r
        )
        self._incidents = Gauge(
            "guard_incidents", "Incidents now in each state.", ["app", "state"], registry=r
        )
        self._prevented = Counter(
            "guard_incidents_prevented_total",
            "Bad revisions reverted before their traffic share grew.",
            ["app"],
            registry=r,
        )
        self._detection = Histogram(
            "guard_detection_latency_seconds",
            "From deploy to the first failed verdict.",
            ["app", "rule"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._to_revert = Histogram(
            "guard_time_to_revert_seconds",
            "From deploy to traffic back on the good revision.",
            ["app"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._pages = Counter(
            "guard_pages_total",
            "Pages sent by backend and outcome.",
            ["backend", "outcome"],
            registry=r,
        )
        self._google = Counter(
            "guard_google_api_calls_total",
            "Google API RPC attempts by gRPC code name.",
            ["service", "method", "code"],
            registry=r,
        )
        self._log_entries = Counter(
            "guard_log_entries_total",
            "Log entries by outcome.",
            ["project", "outcome"],
            registry=r,
        )
        self._log_stream = Gauge(
            "guard_log_stream_connected",
            "1 while the project's log tail is connected.",
            ["project"],
            registry=r,
        )
        self._cycle_lag = Gauge(
            "guard_cycle_lag_seconds",
            "How late the job's last cycle started vs scheduled.",
            ["job", "app"],
            registry=r,
        )
        self._cycle_success = Gauge(
            "guard_cycle_last_success_timestamp_seconds",
            "Unix time of the job's last successful cycle.",
            ["job", "app"],
            registry=r,
        )
        self._cycles = Counter(
            "guard_cycles_total",
            "Cycles run by result (ok|error).",
            ["job", "app", "result"],
            registry=r,
        )
        self._frozen = Gauge("guard_frozen", "1 while the app is frozen.", ["app"], registry=r)
        self._frozen_apps = Gauge("guard_frozen_apps", "Apps now frozen.", registry=r)
        self._pending_restores = Gauge(
            "guard_pending_restores", "Restore proposals awaiting approval.", registry=r
        )
        self._restores = Counter(
            "guard_restores_total",
            "Database restores by how they ended (succeeded|failed|rejected|expired|superseded).",
            ["app", "kind", "outcome"],
            registry=r,
        )
        self._leader = Gauge("guard_leader", "1 while this replica is the leader.", registry=r)
        self._build = Gauge(
            "guard_build_info", "The running version (value 1).", ["version"], registry=r
        )

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format, for /metrics."""
        return generate_latest(self.registry)

    def deploy_seen(self, app: str, role: str) -> None:
        self._deploys.labels(app, role).inc()

    def verdict(self, app: str, rule: str, outcome: str) -> None:
        """outcome: passed, failed, inconclusive, no_data, provider_error."""
        self._verdicts.labels(app, rule, outcome).inc()

    def revert(self, app: str, outcome: str) -> None:
        """outcome: succeeded, failed, skipped_dry_run, refused."""
        self._reverts.labels(app, outcome).inc()

    def set_incidents(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Replace the incident counts: `counts[(app, state)]`. A label set absent from
        `counts` is removed rather than set to 0, so an app dropped from the configuration or
        a state no longer used leaves no stale series. New values are set before stale sets
        are removed (not clear() then set), so a concurrent scrape never sees the gauge
        empty."""
        with self._lock:
            for (app, state), n in counts.items():
                self._incidents.labels(app, state).set(n)
            for key in self._incident_keys - counts.keys():
                self._incidents.remove(*key)
            self._incident_keys = set(counts)

    def incident_prevented(self, app: str) -> None:
        self._prevented.labels(app).inc()

    def detection_latency(self, app: str, rule: str, seconds: float) -> None:
        """Negative durations (clock skew against Cloud Run's timestamps) count as 0."""
        self._detection.labels(app, rule).observe(max(0.0, seconds))

    def time_to_revert(self, app: str, seconds: float) -> None:
        self._to_revert.labels(app).observe(max(0.0, seconds))

    def page(self, backend: str, outcome: str) -> None:
        self._pages.labels(backend, outcome).inc()

    def google_call(self, service: str, method: str, code: str) -> None:
        """code: the gRPC code name, e.g. OK, UNAVAILABLE, PERMISSION_DENIED."""
        self._google.labels(service, method, code).inc()

    def log_entries(self, project: str, outcome: str, n: int = 1) -> None:
        """outcome: tailed, suppressed, duplicate, lost."""
        self._log_entries.labels(project, outcome).inc(n)

    def log_stream(self, project: str, connected: bool) -> None:
        self._log_stream.labels(project).set(1 if connected else 0)

    def cycle(self, job: str, app: str, lag_seconds: float, ok: bool, at: float) -> None:
        """One run of a scheduled job. `app` is "*" (ALL_APPS) for jobs not per app; ""
        raises ValueError, since an empty label value reads as an absent label in PromQL."""
        if not app:
            raise ValueError(f'cycle of job {job!r}: app must be an app name or "*", not ""')
        self._cycle_lag.labels(job, app).set(lag_seconds)
        if ok:
            self._cycle_success.labels(job, app).set(at)
        self._cycles.labels(job, app, "ok" if ok else "error").inc()

    def set_frozen_apps(self, apps: Collection[str], all_apps: Collection[str]) -> None:
        """guard_frozen{app} is 1 or 0 for every configured app (and 1 for a frozen app no
        longer configured, so sum(guard_frozen) == guard_frozen_apps); apps that left both
        sets are removed, as in set_incidents."""
        frozen = set(apps)
        keys = frozen | set(all_apps)
        with self._lock:
            for app in keys:
                self._frozen.labels(app).set(1 if app in frozen else 0)
            for app in self._frozen_keys - keys:
                self._frozen.remove(app)
            self._frozen_keys = keys
            self._frozen_apps.set(len(frozen))

    def set_pending_restores(self, n: int) -> None:
        self._pending_restores.set(n)

    def restore_ended(self, app: str, kind: str, outcome: str) -> None:
        self._restores.labels(app, kind, outcome).inc()

    def set_leader(self, is_leader: bool) -> None:
        self._leader.set(1 if is_leader else 0)

    def build_info(self, version: str) -> None:
        """guard_build_info{version} = 1; a second call replaces the version."""
        with self._lock:
            self._build.clear()
            self._build.labels(version).set(1)

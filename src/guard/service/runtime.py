"""One running guard: its cycles, what it reports, and what the API may ask of it.

`guard run` schedules the cycles (`poll`, `read_metrics`, `evaluate`); the log drain and the
response loop (woken at once by a FAILED verdict) run as tasks while the guard acts.
`guard simulate` and the tests may call the cycles on a virtual clock instead. Nothing here
knows about APScheduler, uvicorn or signals (`guard.service.run` does), so every behaviour
is reachable without a real-time loop.

Only the leader acts (`start_acting` / `stop_acting`): a standby keeps its API up and its
cycles idle. On taking over, the guard reads Cloud Run once, re-adopts the deploys of open
incidents from the store, reconciles the intents a crash left open, and only then moves
incidents on, so a restart or a failover never repeats an action.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from guard import __version__
from guard.adapters.clouddeploy import CloudDeploy
from guard.adapters.cloudrun import CloudRunReader
from guard.adapters.cloudrun_roll import CloudRunRoller
from guard.adapters.cloudrun_write import CloudRunWriter
from guard.adapters.cloudsql_admin import CloudSqlAdmin
from guard.adapters.google_clients import GoogleClients
from guard.adapters.logsource import LogSource
from guard.adapters.logsource_pacing import Timer
from guard.adapters.monitoring import MonitoringReader
from guard.adapters.secrets import Secrets
from guard.adapters.store import SqlStore
from guard.config.models import GuardConfig
from guard.core.model import ActionKind, ActionStatus, Incident, Outcome, Verdict
from guard.core.rules import GuardRule
from guard.ports import ActionRecord
from guard.service import build
from guard.service.control import Control
from guard.service.detector import Detector, services_of
from guard.service.metrics import Recorder
from guard.service.pager import Pager
from guard.service.responder import Responder
from guard.service.restores import RestoreDesk

log = logging.getLogger(__name__)

#: A log source started on takeover reads back this far, to catch what happened meanwhile.
BACKFILL = timedelta(minutes=10)
#: How long a restore's roll may take to start the new revision (seconds).
ROLL_TIMEOUT = 600.0
#: How often due pages are delivered (seconds).
PAGE_EVERY = 1.0
#: A cycle older than this many intervals makes the guard not ready.
STALE_AFTER = 3


def utcnow() -> datetime:
    return datetime.now(UTC)


class Runtime:
    """The detector, responder and log source of one guard, and its reporting."""

    def __init__(
        self,
        config: GuardConfig,
        rules: Mapping[str, GuardRule],
        *,
        store: SqlStore,
        clients: GoogleClients,
        recorder: Recorder,
        http: httpx.AsyncClient,
        replica: str = "guard",
        now: Callable[[], datetime] = utcnow,
        timer: Timer | None = None,
        writer_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config, self.rules, self._store, self.clients = config, rules, store, clients
        self.recorder, self.replica, self.now, self.timer = recorder, replica, now, timer
        self.watched = build.watched_apps(config, rules)
        self.responses = build.app_responses(config)
        # Only the REST clients report their own calls; every gRPC call is counted once, by
        # the interceptor on its channel (adapters/grpc_observe.py).
        sql = CloudSqlAdmin(clients, on_call=self._calls("sqladmin"))
        self.detector = Detector(
            self.watched,
            reader=CloudRunReader(clients, now=now),
            monitoring=MonitoringReader(clients),
            on_verdict=self._on_verdict,
        )
        self.redact = build.redactor(config)
        self.pager = Pager(
            store,
            build.notifiers(config, http),
            routes=build.routes(config),
            rules=rules,
            recorder=recorder,
            now=now,
            redact=self.redact,
            api_url=str(config.api.public_url).rstrip("/") if config.api.public_url else None,
            resend_every=build.resend_every(config),
        )
        self.writer = CloudRunWriter(clients, sleep=writer_sleep)
        self.pipelines = CloudDeploy(clients, sleep=writer_sleep)
        self.responder = Responder(
            self.responses,
            rules,
            store=store,
            detector=self.detector,
            writer=self.writer,
            pipelines=self.pipelines,
            validate=build.validator(config, http),
            recovery_window=build.recovery_window(self.responses, sql),
            now=now,
            dry_run=config.dry_run,
            settle=timedelta(seconds=config.settle_seconds),
            on_action=self._on_action,
            pager=self.pager,
        )
        self.restores = RestoreDesk(
            build.restore_apps(config),
            store=store,
            admin=sql,
            secrets=Secrets(clients),  # gRPC: counted by the channel's interceptor
            roller=CloudRunRoller(clients, sleep=writer_sleep, op_timeout=ROLL_TIMEOUT),
            detector=self.detector,
            validate=self.responder.validate,
            recovery_window=self.responder.recovery_window,
            now=now,
            dry_run=config.dry_run,
            settle=timedelta(seconds=config.settle_seconds),
            pager=self.pager,
            wake=self._wake,
            on_end=lambda r, state: recorder.restore_ended(r.app, r.kind.value, state.value),
        )
        self.responder.restores = self.restores
        self.control = Control(self)
        self.source: LogSource | None = None
        self.acting = False
        self.leader_info: Callable[[], Mapping[str, Any]] = lambda: {"leader": self.acting}
        self._drain: asyncio.Task[None] | None = None
        self._responding: asyncio.Task[None] | None = None
        self._paging: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._respond_lock = asyncio.Lock()
        self._last_ok: dict[tuple[str, str], float] = {}
        self._outcomes: dict[tuple[str, str, str], Outcome] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        #: How late each job last started against its schedule (set by the scheduler).
        self.lag: dict[str, float] = {}

    # -- GuardState ---------------------------------------------------------------------------

    @property
    def store(self) -> SqlStore:
        return self._store

    @property
    def registry(self) -> CollectorRegistry:
        return self.recorder.registry

    @property
    def apps(self) -> Sequence[str]:
        return list(self.config.apps)

    def readiness(self) -> Mapping[str, str | None]:
        checks: dict[str, str | None] = {"config": None}
        try:
            checks["store"] = None if self._store.ping() else "the store does not answer"
        except Exception as err:  # readiness reports, never raises
            checks["store"] = f"the store does not answer: {err}"
        if not self.acting:
            checks["cycles"] = None  # a standby runs no cycles; it is ready to take over
            return checks
        now = time.time()
        jobs = {
            "poll": self.config.poll_interval_seconds,
            "evaluate": self.config.evaluate_interval_seconds,
        }
        for job, every in jobs.items():
            for app in self.config.apps:
                last = self._last_ok.get((job, app))
                if last is None:
                    checks[f"{job}:{app}"] = "no successful cycle yet"
                elif now - last > STALE_AFTER * every:
                    checks[f"{job}:{app}"] = f"last successful cycle {now - last:.0f}s ago"
                else:
                    checks[f"{job}:{app}"] = None
        for feed in self.source.status() if self.source else []:
            live = feed.connected or feed.mode == "poll"
            why = f"log stream {feed.mode}, not connected: {feed.last_error or 'starting'}"
            checks[f"logs:{feed.project}"] = None if live else why
        return checks

    def status(self) -> Mapping[str, Any]:
        return {
            "replica": self.replica,
            "version": __version__,
            "acting": self.acting,
            "dry_run": self.config.dry_run,
            "apps": self.apps,
            **self.leader_info(),
        }

    async def lift_freeze(self, app: str, by: str, reason: str) -> Mapping[str, Any]:
        return await self.control.lift_freeze(app, by, reason)

    async def to_latest(self, app: str, by: str) -> Mapping[str, Any]:
        return await self.control.to_latest(app, by)

    # -- leadership ---------------------------------------------------------------------------

    async def start_acting(self, *, loops: bool = True) -> None:
        """Become the acting guard: stream logs, re-read Cloud Run, finish a crash's work.

        `loops=False` leaves responding and paging to the caller (`respond`,
        `deliver_pages`), as `guard simulate` does on its virtual clock.
        """
        if self.acting:
            return
        self.source = LogSource(
            self.clients,
            services_of(self.detector.apps),
            timer=self.timer,
            since=self.now() - BACKFILL,
            on_lost=self.recorder.log_entries,
        )
        await self.source.start()
        self._drain = asyncio.create_task(self._drain_logs(), name="log-drain")
        await self.poll()
        resumed = await self.responder.resume()
        for line in await self.responder.reconcile():
            log.warning("reconciled after restart: %s", line)
        self.acting, self.responder.stopping, self.restores.stopping = True, False, False
        log.info("acting: watching %d app(s); %d open incident(s) resumed",
                 len(self.watched), resumed)  # fmt: skip
        if loops:
            self._responding = asyncio.create_task(self._respond_loop(), name="responder")
            self._paging = asyncio.create_task(self._page_loop(), name="pager")

    async def stop_acting(self, grace: float = 0.0) -> bool:
        """Stop acting (leadership lost, or shutting down): no new work starts; a response
        in flight may finish its current step within `grace` seconds, else it is cancelled
        and its open intent is reconciled by the next leader or start. True if nothing was
        cut off."""
        self.acting = False
        self.responder.stopping = self.restores.stopping = True
        self._kick.set()  # the response loop sees `acting` is gone and ends
        finished = True
        if self._responding is not None:
            done, _ = await asyncio.wait({self._responding}, timeout=grace)
            if not done:
                finished = False
                self._responding.cancel()
                await asyncio.gather(self._responding, return_exceptions=True)
            self._responding = None
        if self._paging is not None:  # an undelivered page stays queued in the store
            self._paging.cancel()
            await asyncio.gather(self._paging, return_exceptions=True)
            self._paging = None
        if self._drain is not None:
            self._drain.cancel()
            await asyncio.gather(self._drain, return_exceptions=True)
            self._drain = None
        if self.source is not None:
            await self.source.stop()
            self.source = None
        return finished

    # -- cycles -------------------------------------------------------------------------------

    async def poll(self) -> None:
        """Read Cloud Run: find deploys, refresh traffic and readiness."""
        started = time.time()
        deploys = await self.detector.poll()
        for deploy in deploys:
            self.recorder.deploy_seen(self._app_of(deploy.service.name), deploy.service.role)
            log.info(
                "deploy of %s: revision %s (%s), last known good %s",
                deploy.service.name, deploy.revision, deploy.kind.value,
                ", ".join(deploy.last_known_good) or "none",
                extra={"app": self._app_of(deploy.service.name), "service": deploy.service.name,
                       "revision": deploy.revision},
            )  # fmt: skip
        failed = {e.service.name for e in self.detector.read_errors}
        for app in self.watched:
            ok = not any(s.name in failed for s in app.services)
            self._cycle("poll", app.name, started, ok)
        for error in self.detector.read_errors:
            log.warning("Cloud Run read failed for %s: %s %s", error.service.name, error.code,
                        error.message, extra={"service": error.service.name})  # fmt: skip

    async def read_metrics(self) -> None:
        """Read Cloud Monitoring's request counts and judge every watched API deploy."""
        if not self.acting:
            return
        started = time.time()
        await self.detector.check_error_rates(self.now())
        failed = set(self.detector.monitoring_errors)
        for app in self.watched:
            ok = not any(s.project in failed for s in app.services)
            self._cycle("metrics", app.name, started, ok)

    async def evaluate(self) -> None:
        """Judge what arrived; a FAILED verdict is responded to at once."""
        if not self.acting:
            return
        started = time.time()
        fired = self.detector.evaluate(self.now())
        self._count_verdicts()
        self._observe_streams()
        for app in self.watched:
            self._cycle("evaluate", app.name, started, True)
        if fired:
            self._kick.set()  # respond now, without holding up the next evaluation

    async def respond(self) -> None:
        """Open incidents for new verdicts and move every open incident on."""
        if not self.acting:
            return
        async with self._respond_lock:
            if self.acting:  # leadership may have gone while this call waited
                await self.responder.tick()
            if self.acting:
                await self.restores.tick()
        await self.refresh_gauges()

    def _wake(self) -> None:
        """Respond now (an approved restore should not wait for the next interval)."""
        self._kick.set()

    async def _respond_loop(self) -> None:
        """Respond at once when a verdict fires, else every `respond_interval_seconds`."""
        every = self.config.respond_interval_seconds
        while self.acting:
            try:
                await self.respond()
            except Exception:
                log.exception("responding failed; retrying in %.0fs", every)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await self._kick.wait()
            self._kick.clear()

    async def deliver_pages(self) -> int:
        """Send the pages that are due (a cycle; `guard run` loops it every second)."""
        if not self.acting:
            return 0
        return await self.pager.deliver()

    async def _page_loop(self) -> None:
        while self.acting:
            try:
                await self.deliver_pages()
            except Exception:
                log.exception("delivering pages failed; retrying")
            await asyncio.sleep(PAGE_EVERY)

    async def refresh_gauges(self) -> None:
        counts = await asyncio.to_thread(self._store.incident_counts)
        self.recorder.set_incidents(counts)
        frozen = await asyncio.to_thread(self._store.frozen_apps)
        self.recorder.set_frozen_apps([f.app for f in frozen if f.frozen], self.apps)
        self.recorder.set_pending_restores(await self.restores.pending())

    async def _drain_logs(self) -> None:
        assert self.source is not None
        async for record in self.source.records():
            self.detector.on_log(record)
            self.recorder.log_entries(record.project, "tailed")

    # -- reporting ----------------------------------------------------------------------------

    def _on_verdict(self, app: str, verdict: Verdict) -> None:
        first = min((e.at for e in verdict.evidence), default=verdict.deploy.started_at)
        latency = max((verdict.at - first).total_seconds(), 0.0)
        self.recorder.detection_latency(app, verdict.rule, latency)
        log.warning(
            "verdict: %s FAILED %s: %s", verdict.deploy.revision, verdict.rule,
            "; ".join(r.text for r in verdict.reasons),
            extra={"app": app, "service": verdict.deploy.service.name,
                   "revision": verdict.deploy.revision, "rule": verdict.rule},
        )  # fmt: skip
        self.responder.on_verdict(app, verdict)

    async def _on_action(self, incident: Incident, action: ActionRecord) -> None:
        outcome = action.outcome or {}
        log.info(
            "incident %s: %s %s", incident.id, action.kind.value, action.status.value,
            extra={"app": incident.app, "service": incident.service,
                   "revision": incident.bad_revision, "incident": incident.id,
                   "step": action.kind.value},
        )  # fmt: skip
        if action.kind is not ActionKind.REVERT:
            return
        status = {
            ActionStatus.SUCCEEDED: "succeeded",
            ActionStatus.FAILED: "failed",
            ActionStatus.SKIPPED: "skipped_dry_run",
        }.get(action.status, action.status.value)
        self.recorder.revert(incident.app, status)
        if action.status is ActionStatus.SUCCEEDED and action.finished_at is not None:
            evidence = await asyncio.to_thread(self._store.evidence, incident.id)
            first = min((e.at for e in evidence), default=incident.opened_at)
            seconds = max((action.finished_at - first).total_seconds(), 0.0)
            self.recorder.time_to_revert(incident.app, seconds)
            before = outcome.get("before") or {}
            if isinstance(before, Mapping) and before.get(incident.bad_revision, 100) < 100:
                self.recorder.incident_prevented(incident.app)

    def _count_verdicts(self) -> None:
        for service, watch in self.detector.watches.items():
            for rule, verdict in watch.verdicts.items():
                key = (service.name, watch.deploy.revision, rule)
                if self._outcomes.get(key) is not verdict.outcome:
                    self._outcomes[key] = verdict.outcome
                    self.recorder.verdict(watch.app.name, rule, verdict.outcome.value)
        if len(self._outcomes) > 10_000:  # old deploys' outcomes: forget them
            live = {(s.name, w.deploy.revision) for s, w in self.detector.watches.items()}
            self._outcomes = {k: v for k, v in self._outcomes.items() if k[:2] in live}

    def _observe_streams(self) -> None:
        for feed in self.source.status() if self.source else []:
            self.recorder.log_stream(feed.project, feed.connected)
            for reason, n in feed.suppressed.items():
                seen = self._suppressed.get((feed.project, reason), 0)
                if n > seen:
                    self.recorder.log_entries(feed.project, "suppressed", n - seen)
                    self._suppressed[(feed.project, reason)] = n

    def _cycle(self, job: str, app: str, started: float, ok: bool) -> None:
        self.recorder.cycle(job, app, self.lag.get(job, 0.0), ok, time.time())
        if ok:
            self._last_ok[(job, app)] = started

    def _calls(self, service: str) -> Callable[[str, str], None]:
        return lambda method, code: self.recorder.google_call(service, method, code)

    def _app_of(self, service: str) -> str:
        for app in self.watched:
            if any(s.name == service for s in app.services):
                return app.name
        return "*"

"""The scenario engine: plays a scenario file against the fake cloud, tick by tick.

Each tick it fires the events that are due (deploys, human traffic changes, load changes,
faults), moves revisions through startup (migrations change the database schema, startup
logs, Ready or failed), and produces the tick's requests: counted into Monitoring's
request_count, written as request logs, and as the error lines of the revision that served
them. Requests follow the service's *effective* traffic in the fake Cloud Run, so a revert
made through the API by the guard changes where the next tick's errors come from, and a
revision's behaviour follows the schema of the database it connected to at start, so an old
revision on a migrated schema keeps failing after a revert, until a restore.

On a `VirtualClock` the engine advances time itself (`run_until`); on a `RealClock`,
`guard.sim.realtime.RealtimeDriver` steps it as wall time passes. The load itself (requests,
log lines) is `guard.sim.traffic`.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from guard.sim.clock import SimClock, VirtualClock
from guard.sim.cloudlogging import cloud_run_system_entry, revision_not_ready_audit_entry
from guard.sim.faults import Fault
from guard.sim.scenario_model import (
    AppSpec,
    Behaviour,
    Event,
    FaultSpec,
    LogSpec,
    RevisionSpec,
    Scenario,
    ServiceSpec,
)
from guard.sim.traffic import LiveRevision, TrafficGenerator, image_of
from guard.sim.world import Timings, World


class ScenarioEngine:
    """Builds a `World` from a scenario and plays it."""

    def __init__(self, scenario: Scenario, *, clock: SimClock | None = None) -> None:
        self.scenario = scenario
        d = scenario.delays
        self.world = World(
            clock=clock or VirtualClock(scenario.epoch),
            timings=Timings(
                run_update=d.run_operation,
                deploy_update=d.deploy_operation,
                sql_clone=d.sql_operation,
                sql_restore=d.sql_operation,
            ),
            metrics_options={
                "ingestion_delay": d.ingestion,
                "sample_period": d.sample_period,
                "allow_short_alignment": scenario.allow_short_alignment,
            },
        )
        self.clock = self.world.clock
        self.t = 0.0  # scenario seconds generated so far
        self._rng = random.Random(scenario.seed)
        self._events = sorted(scenario.events, key=lambda e: e.at)
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._revisions: dict[tuple[str, str], LiveRevision] = {}
        self._schema: dict[tuple[str, str], list[tuple[datetime, int]]] = {}
        #: In-place backup restores already applied to `_schema` (instance, run, as of).
        self._restores: set[tuple[tuple[str, str], int, datetime | None]] = set()
        self._rps: dict[str, float] = {}
        self._lock = threading.RLock()
        self._traffic = TrafficGenerator(self.world, self._rng)
        self._setup()

    # -- setup ------------------------------------------------------------------------------

    def _setup(self) -> None:
        w, epoch = self.world, self.clock.epoch
        for fault in self.scenario.faults:
            self._arm(fault, 0.0)
        for app in self.scenario.apps:
            if app.database is not None:
                db = app.database
                w.sql.create_instance(
                    app.project,
                    db.instance,
                    region=app.region,
                    database_version=db.database_version,
                    earliest_recovery=epoch - timedelta(seconds=db.recovery_window),
                    backups=[epoch + timedelta(seconds=b.at) for b in db.backups],
                )
                self._schema[(app.project, db.instance)] = [
                    (datetime.min.replace(tzinfo=epoch.tzinfo), db.schema_version)
                ]
                w.secrets.create_secret(app.project, db.secret)
                w.secrets.add_version(
                    app.project, db.secret, self._connection_string(app, db.instance)
                )
            if app.pipeline is not None:
                w.deploy.create_pipeline(app.project, app.region, app.pipeline)
            for service in app.services:
                self._create_service(app, service)

    def _connection_string(self, app: AppSpec, instance: str) -> bytes:
        assert app.database is not None
        ip = self.world.sql.instance(app.project, instance).ip_address
        return app.database.connection_string.replace("{host}", ip).encode()

    def _create_service(self, app: AppSpec, service: ServiceSpec) -> None:
        run = self.world.run
        revisions = sorted(service.revisions, key=lambda r: r.created)
        first, rest = revisions[0], revisions[1:]
        full = run.create_service(
            app.project,
            app.region,
            service.name,
            image=image_of(first),
            revision_id=first.name,
            migrations=first.migrations,
        )
        self._register(app, service, full, first)
        for rev in rest:
            run.deploy_revision(
                full, rev.name, ready=rev.ready, migrations=rev.migrations, image=image_of(rev)
            )
            self._register(app, service, full, rev)
        if service.traffic != "latest":
            run.set_traffic(full, service.traffic, actor="scenario", record=False, immediate=True)

    def _register(
        self, app: AppSpec, service: ServiceSpec, full: str, spec: RevisionSpec
    ) -> LiveRevision:
        live = LiveRevision(app, service, full, spec, self.t, self._current_db(app))
        self._revisions[(full, spec.name)] = live
        return live

    def _current_db(self, app: AppSpec) -> tuple[str, str] | None:
        """The instance the app's secret points at now (what a starting revision reads)."""
        if app.database is None:
            return None
        url = self.world.secrets.value(app.project, app.database.secret).decode()
        host = urlsplit(url).hostname or ""
        for project, instance in self._schema:
            if self.world.sql.instance(project, instance).ip_address == host:
                return (project, instance)
        return None

    # -- time -------------------------------------------------------------------------------

    def run_until(self, t: float) -> None:
        """Advance a virtual clock to scenario second `t`, generating everything on the way."""
        if not isinstance(self.clock, VirtualClock):
            raise TypeError("run_until needs a VirtualClock; use RealtimeDriver in real time")
        while self.t + self.scenario.tick <= t + 1e-9:
            self.clock.advance_to(self.t + self.scenario.tick)
            self.step()

    def run(self) -> None:
        """Play the whole scenario on its virtual clock."""
        self.run_until(self.scenario.duration)

    def step(self) -> None:
        """Generate one tick [t, t + tick) (the clock must already be at or past its end)."""
        with self._lock:
            start, end = self.t, self.t + self.scenario.tick
            self.world.settle()
            self._track_clones()
            self._discover_api_revisions()
            while self._events and self._events[0].at < end:
                self._fire(self._events.pop(0))
            while self._timers and self._timers[0][0] < end:
                _, _, action = heapq.heappop(self._timers)
                action()
            for app in self.scenario.apps:
                for service in app.services:
                    full = self._full_service(service.name)
                    live = {n: r for (f, n), r in self._revisions.items() if f == full}
                    rps = self._rps.get(service.name, service.rps_at(start))
                    self._traffic.serve(live, service, rps, self._behaviour, (start, end))
            self.t = end
            self.world.logs.notify()

    def _at(self, t: float) -> datetime:
        return self.clock.epoch + timedelta(seconds=t)

    def _later(self, at: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (at, next(self._seq), action))

    # -- events -----------------------------------------------------------------------------

    def _fire(self, event: Event) -> None:
        if event.deploy is not None:
            self._deploy(event)
        elif event.traffic is not None:
            full = self._full_service(event.traffic.service)
            split = None if event.traffic.split == "latest" else event.traffic.split
            self.world.run.set_traffic(full, split, actor="human")
        elif event.rate is not None:
            self._rps[event.rate.service] = event.rate.rps
        elif event.fault is not None:
            self._arm(event.fault, event.at)

    def _arm(self, spec: FaultSpec, at: float) -> None:
        self.world.faults.arm(Fault(**spec.model_dump(), start=at))

    def _lookup(self, name: str) -> tuple[AppSpec, ServiceSpec]:
        for app in self.scenario.apps:
            for service in app.services:
                if service.name == name:
                    return app, service
        raise KeyError(name)  # the scenario model already checked every name

    def _full_service(self, name: str) -> str:
        app, _ = self._lookup(name)
        return f"projects/{app.project}/locations/{app.region}/services/{name}"

    def _deploy(self, event: Event) -> None:
        assert event.deploy is not None
        deploy, t0 = event.deploy, event.at
        app, service = self._lookup(deploy.service)
        full, spec, run = self._full_service(service.name), deploy.revision, self.world.run
        if deploy.traffic != "latest":  # --no-traffic / canary: pin what serves now first
            split = run.serving_split(full)
            run.set_traffic(full, split, actor="deployer", record=False, immediate=True)
        run.deploy_revision(
            full, spec.name, ready=None, migrations=spec.migrations, image=image_of(spec)
        )
        live = self._register(app, service, full, spec)
        for log in spec.startup_logs:
            self._later(t0 + log.offset, self._emitter(live, log, t0 + log.offset))
        if spec.schema_after is not None:
            self._later(t0 + min(1.0, spec.startup), lambda: self._migrate(live, t0))
        self._later(
            t0 + spec.startup, lambda: self._started(live, deploy.traffic, t0 + spec.startup)
        )

    def _emitter(self, live: LiveRevision, log: LogSpec, t: float) -> Callable[[], None]:
        return lambda: self._traffic.emit(live, log, t)

    def _behaviour(self, live: LiveRevision) -> Behaviour:
        """How `live` serves now: by the schema of the database it connected to."""
        schema = self.schema_at(live.db, self._at(self.t)) if live.db else 0
        return live.spec.behaviour_for(schema)

    def _migrate(self, live: LiveRevision, t: float) -> None:
        if live.db is not None and live.spec.schema_after is not None:
            self._schema[live.db].append((self._at(t), live.spec.schema_after))

    def _started(self, live: LiveRevision, traffic: str | int, t: float) -> None:
        run, name = self.world.run, live.spec.name
        if live.spec.ready:
            run.set_revision_ready(live.full_service, name, True)
            if isinstance(traffic, int):
                current = run.serving_split(live.full_service)
                split = {rev: pct * (100 - traffic) // 100 for rev, pct in current.items()}
                split[name] = 100 - sum(split.values())
                run.set_traffic(
                    live.full_service, split, actor="deployer", record=False, immediate=True
                )
            return
        failure = live.spec.failure
        run.set_revision_ready(
            live.full_service,
            name,
            False,
            failure_reason=failure.reason,
            failure_message=failure.message,
        )
        where = (live.app.project, live.app.region, live.service.name, name)
        self.world.logs.append(
            cloud_run_system_entry(
                *where, f"Container called exit({failure.exit_code}).", self._at(t)
            )
        )
        self.world.logs.append(
            revision_not_ready_audit_entry(*where, failure.message, self._at(t + 0.5))
        )

    # -- revisions and databases the API created --------------------------------------------

    def _discover_api_revisions(self) -> None:
        """Register revisions someone created through the API (a roll): same image, same code."""
        for full in self.world.run.services():
            for name in self.world.run.revisions(full):
                if (full, name) in self._revisions:
                    continue
                image = self.world.run.revision(full, name).containers[0].image
                known = [r for (f, _), r in self._revisions.items() if f == full]
                source = next((r for r in known if image_of(r.spec) == image), known[-1])
                spec = source.spec.model_copy(update={"name": name, "startup_logs": []})
                live = self._register(source.app, source.service, full, spec)
                self._migrate(live, self.t)

    def _track_clones(self) -> None:
        """A clone to a point in time starts with the schema its source had at that point;
        an instance restored in place from a backup gets the schema it had at the backup."""
        for record in self.world.sql.instances():
            key = (record.project, record.name)
            run = record.restored_backup
            if run is not None and (key, run, record.data_as_of) not in self._restores:
                self._restores.add((key, run, record.data_as_of))
                as_of = record.data_as_of or self._at(self.t)
                self._schema[key].append((self._at(self.t), self.schema_at(key, as_of)))
            if key in self._schema or record.cloned_from is None:
                continue
            source = (record.project, record.cloned_from)
            when = record.data_as_of or self._at(self.t)
            floor = datetime.min.replace(tzinfo=when.tzinfo)
            self._schema[key] = [(floor, self.schema_at(source, when))]

    def schema_at(self, db: tuple[str, str], when: datetime) -> int:
        """The schema version of database `db` at instant `when`."""
        version = 0
        for since, v in self._schema.get(db, []):
            if since <= when:
                version = v
        return version

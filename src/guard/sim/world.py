"""One fake Google Cloud: every fake API's state on one clock, recorder and fault injector.

A scenario, a test or the demo builds a `World`, changes it through the states' Python
methods (deploy a revision, add requests and log lines, open a recovery window), and serves
it with `guard.sim.server.FakeCloud`; the guard sees only the wire. Keeping the pieces in one
object means one clock for every API (an operation's completion, a metric's ingestion delay
and a log entry's timestamp agree), one record of writes, and one place to arm faults.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc

from guard.sim.clock import SimClock, VirtualClock
from guard.sim.clouddeploy import DeployState
from guard.sim.cloudlogging import LogsState
from guard.sim.cloudrun import RunState
from guard.sim.cloudsql import SqlState
from guard.sim.cloudsql_rest import SqlRestApp
from guard.sim.faults import FaultInjector
from guard.sim.monitoring import MetricsState
from guard.sim.operations import OperationsRegistry
from guard.sim.record import CallRecorder
from guard.sim.secretmanager import SecretsState


@dataclass(frozen=True, slots=True)
class Timings:
    """How long the fake's operations take, in scenario seconds (Google's typical values)."""

    run_update: float = 5.0  # UpdateService until traffic_statuses follow
    deploy_update: float = 2.0  # UpdateDeliveryPipeline
    sql_pending: float = 2.0  # a Cloud SQL operation before RUNNING
    sql_clone: float = 420.0  # a PITR clone, RUNNING until DONE
    sql_restore: float = 600.0  # restoreBackup
    sql_recovery_lag: float = 5.0  # latestRecoveryTime behind now


@dataclass
class World:
    """The whole fake cloud's state. `metrics_options` / `logs_options` are passed to
    `MetricsState` / `LogsState` as keyword arguments (e.g. `ingestion_delay`)."""

    clock: SimClock = field(default_factory=VirtualClock)
    timings: Timings = field(default_factory=Timings)
    metrics_options: dict[str, Any] = field(default_factory=dict)
    logs_options: dict[str, Any] = field(default_factory=dict)
    recorder: CallRecorder = field(default_factory=CallRecorder)
    faults: FaultInjector = field(default_factory=FaultInjector)

    def __post_init__(self) -> None:
        t = self.timings
        self.operations = OperationsRegistry(self.clock)
        self.run = RunState(
            self.clock, self.operations, update_delay=t.run_update, recorder=self.recorder
        )
        self.deploy = DeployState(self.clock, self.operations, update_delay=t.deploy_update)
        self.secrets = SecretsState(self.clock)
        self.sql = SqlState(
            self.clock,
            pending_seconds=t.sql_pending,
            clone_seconds=t.sql_clone,
            restore_seconds=t.sql_restore,
            recovery_lag=t.sql_recovery_lag,
        )
        self.metrics = MetricsState(self.clock, **self.metrics_options)
        self.logs = LogsState(self.clock, **self.logs_options)

    def grpc_handlers(self) -> list[grpc.GenericRpcHandler]:
        """Every gRPC API of the fake cloud, ready for `grpc.Server.add_generic_rpc_handlers`."""
        rec, faults = self.recorder, self.faults
        return [
            self.operations.handler(rec, faults),
            self.run.handler(rec, faults),
            self.deploy.handler(rec, faults),
            self.secrets.handler(rec, faults),
            self.metrics.handler(rec, faults),
            self.logs.handler(rec, faults),
        ]

    def sql_app(self) -> SqlRestApp:
        """The Cloud SQL Admin REST application."""
        return SqlRestApp(self.sql, self.recorder, self.faults)

    def settle(self) -> None:
        """Complete every operation due by now (reads do this anyway; a scenario step may
        call it after advancing the clock, so state it inspects directly is current)."""
        self.operations.settle()
        self.sql.settle()

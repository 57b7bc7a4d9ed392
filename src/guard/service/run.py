"""`guard run`: one asyncio process with the scheduler, the log drain, the API and a leader.

Why here and not in the runtime: this is the only module that knows about wall-clock
scheduling (APScheduler 3), the HTTP server (uvicorn), leader election and POSIX signals.

Jobs have explicit ids, at most one instance each, coalesce missed runs, and a misfire
grace of one interval; each records how late it started (`guard_cycle_lag_seconds`).

SIGTERM (and SIGINT): stop scheduling, let the response in flight finish its current step
within `shutdown_grace_seconds` (a step cut off later is an open intent, reconciled by the
next leader or the next start), stop the log streams, release leadership, stop the API,
exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from guard import __version__
from guard.adapters.google_clients import GoogleClients
from guard.adapters.leader import Leadership
from guard.adapters.store import Store
from guard.config.models import GuardConfig
from guard.core.rules import GuardRule
from guard.service.api import create_app
from guard.service.metrics import ALL_APPS, Recorder
from guard.service.runtime import Runtime

log = logging.getLogger(__name__)


def replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def google_clients(config: GuardConfig, recorder: Recorder) -> GoogleClients:
    google = config.google
    if google.emulator_grpc:
        return GoogleClients.for_emulator(
            google.emulator_grpc,
            str(google.emulator_rest or "http://127.0.0.1:9").rstrip("/"),
            observer=recorder.google_call,
        )
    return GoogleClients(observer=recorder.google_call)


async def serve(config: GuardConfig, rules: dict[str, GuardRule]) -> int:
    """Run the guard until SIGTERM or SIGINT; the process's exit code."""
    recorder = Recorder()
    recorder.build_info(__version__)
    url = config.store.url.get_secret_value()
    store = await asyncio.to_thread(Store.open, url)
    clients = google_clients(config, recorder)
    http = httpx.AsyncClient()
    replica = replica_id()
    runtime = Runtime(
        config, rules, store=store, clients=clients, recorder=recorder, http=http,
        replica=replica,
    )  # fmt: skip

    async def on_leadership(leader: bool) -> None:
        recorder.set_leader(leader)
        if leader:
            await runtime.start_acting()
        else:
            await runtime.stop_acting(config.shutdown_grace_seconds)

    postgres = store.engine.dialect.name == "postgresql"
    leadership = Leadership(
        url if postgres else None,
        replica=replica,
        namespace=config.leader.namespace,
        retry=config.leader.retry_seconds,
        check=config.leader.check_seconds,
        dead_after=config.leader.failover_seconds,
        on_change=on_leadership,
    )
    runtime.leader_info = leadership.describe
    recorder.set_leader(False)
    jobs = scheduler(config, runtime)
    api = ApiServer(
        uvicorn.Config(
            create_app(
                runtime,
                approvers={n: a.token_sha256 for n, a in config.approvers.items()},
                read_auth=config.api.read_auth,
            ),
            host=config.api.host,
            port=config.api.port,
            log_config=None,
            access_log=False,
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = asyncio.create_task(api.serve(), name="api")
    try:
        while not api.started:
            if server.done():
                log.error("the API could not start on %s:%d", config.api.host, config.api.port)
                return 2
            await asyncio.sleep(0.02)
        log.info("API listening on http://%s:%d (replica %s)", config.api.host, config.api.port,
                 replica)  # fmt: skip
        await leadership.start()
        jobs.start()
        await stop.wait()
        log.info("stopping: finishing the action in flight (grace %.0fs)",
                 config.shutdown_grace_seconds)  # fmt: skip
    finally:
        jobs.shutdown(wait=False)
        if not await runtime.stop_acting(config.shutdown_grace_seconds):
            log.warning("an action was still running at the end of the grace period; its "
                        "intent stays open and is reconciled at the next start")  # fmt: skip
        await leadership.stop()
        api.should_exit = True
        await asyncio.gather(server, return_exceptions=True)
        await http.aclose()
        await clients.aclose()
        clients.close()
        await asyncio.to_thread(store.close)
    log.info("stopped")
    return 0


class ApiServer(uvicorn.Server):
    """uvicorn's server, minus its own signal handling: `serve` owns SIGTERM, and stops
    the API last, after the action in flight (uvicorn would stop first and re-raise)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def scheduler(config: GuardConfig, runtime: Runtime) -> AsyncIOScheduler:
    """The wall-clock cycles (poll, metrics, evaluate) of `runtime`, not yet started."""
    jobs_scheduler = AsyncIOScheduler(timezone=UTC)
    jobs: list[tuple[str, float, Callable[[], Awaitable[None]]]] = [
        ("poll", config.poll_interval_seconds, _when_acting(runtime, runtime.poll)),
        ("metrics", config.metrics_interval_seconds, runtime.read_metrics),
        ("evaluate", config.evaluate_interval_seconds, runtime.evaluate),
    ]
    phases = {"metrics": config.metrics_phase_seconds}
    now = datetime.now(UTC)
    for job_id, every, fn in jobs:
        phase = phases.get(job_id)
        jobs_scheduler.add_job(
            _logged(job_id, fn, runtime.recorder),
            "interval",
            seconds=every,
            start_date=None if phase is None else aligned_start(now, every, phase),
            id=job_id,
            name=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, round(every)),
        )

    def lag(event: Any) -> None:
        if isinstance(event, JobSubmissionEvent) and event.scheduled_run_times:
            late = (datetime.now(UTC) - event.scheduled_run_times[-1]).total_seconds()
            runtime.lag[event.job_id] = max(late, 0.0)

    jobs_scheduler.add_listener(lag, EVENT_JOB_SUBMITTED)
    return jobs_scheduler


def aligned_start(now: datetime, every: float, phase: float) -> datetime:
    """The first instant after `now` that is `phase` seconds (modulo `every`) past a
    multiple of `every` since the Unix epoch: every replica's Monitoring reads land at the
    same point of the minute, just after a new point becomes visible."""
    period = max(every, 1e-3)
    t = now.timestamp()
    start = (t // period) * period + (phase % period)
    if start <= t:
        start += period
    return datetime.fromtimestamp(start, UTC)


def _when_acting(runtime: Runtime, fn: Callable[[], Awaitable[None]]) -> Callable[[], Any]:
    async def job() -> None:
        if runtime.acting:
            await fn()

    return job


def _logged(
    job_id: str, fn: Callable[[], Awaitable[None]], recorder: Recorder
) -> Callable[[], Awaitable[None]]:
    """A job that never dies of an exception: it is logged and counted, and the next run
    tries again (a Google outage must not stop the guard)."""

    async def job() -> None:
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s failed", job_id)
            recorder.cycle(job_id, ALL_APPS, 0.0, False, datetime.now(UTC).timestamp())

    return job

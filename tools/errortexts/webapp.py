"""Request-time cases: the team's FastAPI app served by a real uvicorn, requested over HTTP.

The database is revision N+1 (002-006 applied), so the old queries fail on the schema
(`schema_mismatch`); the same app also hits the everyday errors a guard must leave alone
(duplicates, foreign keys, bad input, timeouts, deadlocks, serialization failures, a
terminated connection, an exhausted pool, a code bug, 404 and 422 responses). Another
session, driven by `scratch.other_session`, supplies the concurrency where one is needed.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import uvicorn

from . import catalog
from .capture import Capture, RecordSpy, app_process
from .context import AppRoot, Context
from .endpoints import REQUESTS, Request
from .model import Case, Label, exception_name, expect_sqlstate
from .render import Entry, json_entry, text_entry
from .runners import benign
from .scratch import Step, other_session

FORMATS = ("text", "json", "gcp")


@dataclass
class Served:
    client: httpx.Client
    out: Capture
    err: Capture
    spy: RecordSpy
    module: Any
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextlib.contextmanager
def serve(ctx: Context, root: AppRoot, database: str) -> Iterator[Served]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    ctx.norm.add(f"http://127.0.0.1:{port}", "http://0.0.0.0:8080")
    env = {
        "DATABASE_URL": root.dsn(ctx, database, application_name="pegasus-api"),
        "LOG_FORMAT": ",".join(FORMATS),
        "DB_POOL_TIMEOUT": "0.2",
    }
    with RecordSpy() as spy, app_process(root.path, root.path, env, ["uvicorn"]) as (out, err):
        module = importlib.import_module("backend.api")
        for noisy in ("httpx", "httpcore"):  # our client, not the app: keep it out of the logs
            logging.getLogger(noisy).setLevel(logging.WARNING)
        config = uvicorn.Config(module.app, host="127.0.0.1", port=port, log_config=None)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.01)
        if not server.started:
            raise RuntimeError(f"uvicorn did not start: {''.join(err.writes)[-3000:]}")
        try:
            # uvicorn closes the connection after a 500; never reuse one.
            limits = httpx.Limits(max_keepalive_connections=0)
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=url, timeout=20, limits=limits) as client:
                yield Served(client, out, err, spy, module, server, thread)
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def _settle(served: Served, before: tuple[int, int, int], want_error: bool) -> None:
    """Wait for the request's log records (access line, and the traceback if any) to land."""
    records_before, err_before, out_before = before
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = served.spy.records[records_before:]
        access = any(r.name == "uvicorn.access" for r in new)
        error = any(r.exc_info for r in new)
        if access and (error or not want_error):
            # one write per record to stderr (text), two to stdout (json, gcp)
            err_done = len(served.err.writes) - err_before >= len(new)
            if err_done and len(served.out.writes) - out_before >= 2 * len(new):
                break
        time.sleep(0.005)
    else:
        raise TimeoutError("the request's log records never arrived")


def _call(ctx: Context, served: Served, request: Request, database: str) -> int:
    kwargs: dict[str, Any] = {"json": request.body} if request.body is not None else {}
    with contextlib.ExitStack() as stack:
        if request.setup == "deadlock":
            stack.enter_context(other_session(ctx.scratch, database, request.first, _then(request)))
        elif request.setup == "serialize":
            stack.enter_context(other_session(ctx.scratch, database, request.first, _commit))
        elif request.setup == "pool":
            stack.enter_context(served.module.engine.connect())
        elif request.setup == "terminate":
            ctx.scratch.admin.execute(
                # with a timeout, it waits until the backend is gone: no race with the request
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name = 'pegasus-api'",
                (database,),
            )
        return served.client.request(request.method, request.path, **kwargs).status_code


def _then(request: Request) -> Step:
    def step(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        conn.execute(request.then)

    return step


def _commit(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.commit()


def requests(ctx: Context, root: AppRoot, database: str, driver_index: int) -> None:
    shown = tuple(root.shown(name) for name in catalog.REV2)
    with serve(ctx, root, database) as served:
        for entry in _slice(ctx, served, 0, 0):
            if entry.style == FORMATS[driver_index % 3]:
                benign(
                    ctx, entry, driver=root.driver, style=f"request-{entry.style}", phase="startup"
                )
        for index, request in enumerate(REQUESTS):
            if request.drivers and root.driver not in request.drivers:
                continue
            err_before, out_before = len(served.err.writes), len(served.out.writes)
            records_before = len(served.spy.records)
            status = _call(ctx, served, request, database)
            if status != request.status:
                raise RuntimeError(f"{root.driver} {request.key}: HTTP {status}")
            want_error = status >= 500
            _settle(served, (records_before, err_before, out_before), want_error)
            found = _slice(ctx, served, err_before, out_before)
            if not want_error:
                for entry in found:
                    if entry.style == FORMATS[(index + driver_index) % 3]:
                        benign(
                            ctx,
                            entry,
                            driver=root.driver,
                            style=f"request-{entry.style}",
                            phase="request",
                        )
                continue
            error = next(r.exc_info[1] for r in served.spy.records[records_before:] if r.exc_info)
            _add(
                ctx,
                root,
                request,
                found=found,
                error=error,
                shown=shown,
                rotation=index + driver_index,
            )
        err_before, out_before = len(served.err.writes), len(served.out.writes)
        served.stop()
        for entry in _slice(ctx, served, err_before, out_before):
            if driver_index == 0 and entry.style == FORMATS[0]:
                benign(
                    ctx, entry, driver=root.driver, style=f"request-{entry.style}", phase="runtime"
                )


def _slice(ctx: Context, served: Served, err_before: int, out_before: int) -> list[Entry]:
    found = [text_entry(raw, ctx.norm) for raw in served.err.writes[err_before:]]
    found += [json_entry(raw, ctx.norm) for raw in served.out.writes[out_before:]]
    return found


def _add(
    ctx: Context,
    root: AppRoot,
    request: Request,
    *,
    found: list[Entry],
    error: BaseException | None,
    shown: tuple[str, ...],
    rotation: int,
) -> None:
    expected = request.expected(root.driver)
    sqlstate = expect_sqlstate(f"{root.driver} {request.key}", error, expected)
    # Every style for the headline case; one, rotating over drivers, for the others.
    styles = FORMATS if request.key == "old-select-renamed-column" else (FORMATS[rotation % 3],)
    for entry in found:
        if not entry.failure or entry.style not in styles:
            continue
        ctx.cases.add(
            Case(
                id=f"{root.driver}-request-{entry.style}-{request.key}",
                driver=root.driver,
                style=f"request-{entry.style}",
                phase="request",
                severity=entry.severity,
                stream=entry.stream,
                text=entry.text,
                json_payload=entry.payload,
                applied_migrations=shown,
                exception=exception_name(error),
                cause_migration=catalog.path(request.cause) if request.cause else None,
                label=Label(
                    kind=request.kind,
                    migration_file_by_blame=shown[-1] if request.kind else None,
                    sqlstate=sqlstate,
                    relation=request.relation,
                ),
            )
        )

"""Cases from the team's startup migration runner, one driver edition at a time.

For each broken migration: a fresh copy of revision N, the revision's migrations shipped
into `/app/backend/migrations`, and the real runner run as the container would run it:
once logging the failure (text, JSON and google-cloud-logging structured output at once)
and once letting it crash (the bare traceback, which names no file). Also the successful
revision N+1 (benign INFO lines) and startup failures that are not migration failures
(the database unreachable, refused, missing).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from . import catalog
from .capture import ScriptRun, run_script
from .context import AppRoot, Context, applied
from .model import (
    Case,
    Label,
    Phase,
    exception_name,
    expect_sqlstate,
    sqlstate_of,
)
from .normalize import CLOUDSQL_DIR
from .render import Entry, entries, failure, slug
from .scratch import other_session

STYLES = ("text", "json", "gcp", "crash")
ALL_STYLES_FOR = ("index-renamed-column", "lock-timeout")
BENIGN_FORMAT = {"psycopg3": "text", "psycopg2": "json", "asyncpg": "gcp", "sqlalchemy": "text"}


def _run(ctx: Context, root: AppRoot, database: str, env: dict[str, str], block: bool) -> ScriptRun:
    full = {"DATABASE_URL": root.dsn(ctx, database), "LOG_FORMAT": "text"} | env
    if not block:
        return run_script(root.migrate, root.path, root.path, full)
    with other_session(ctx.scratch, database, "SELECT 1 FROM enrollments LIMIT 1"):
        return run_script(root.migrate, root.path, root.path, full)


def _pending(ctx: Context, database: str, shipped: Sequence[str]) -> list[str]:
    done = applied(ctx, database)
    return [name for name in shipped if name not in done]


def migration_failures(ctx: Context, root: AppRoot, driver_index: int) -> None:
    for index, broken in enumerate(catalog.BROKEN):
        if broken.key in ALL_STYLES_FOR:
            styles: tuple[str, ...] = STYLES
        else:
            styles = (STYLES[(index + driver_index) % len(STYLES)],)
        database = ctx.database(f"{root.driver}_{index}")
        shipped = (*broken.before, broken.file)
        root.ship(shipped)
        logged = tuple(style for style in styles if style != "crash")
        if logged:
            pending = _pending(ctx, database, shipped)
            run = _run(ctx, root, database, {"LOG_FORMAT": "text,json,gcp"}, broken.blocker)
            found = entries(run, ctx.norm)
            for style in logged:
                entry = failure(found, style)
                _add_failure(
                    ctx,
                    root,
                    broken,
                    style=f"runner-{style}",
                    entry=entry,
                    run=run,
                    pending=pending,
                    named=True,
                )
        if "crash" in styles:
            pending = _pending(ctx, database, shipped)
            env = {"MIGRATE_ON_ERROR": "raise"}
            run = _run(ctx, root, database, env, broken.blocker)
            entry = failure(entries(run, ctx.norm), "crash")
            _add_failure(
                ctx,
                root,
                broken,
                style="runner-crash",
                entry=entry,
                run=run,
                pending=pending,
                named=False,
            )


def _add_failure(
    ctx: Context,
    root: AppRoot,
    broken: catalog.Broken,
    *,
    style: str,
    entry: Entry,
    run: ScriptRun,
    pending: list[str],
    named: bool,
) -> None:
    what = f"{root.driver} {broken.file}"
    sqlstate = expect_sqlstate(what, run.error, broken.sqlstate)
    shown = [root.shown(name) for name in pending]
    ctx.cases.add(
        Case(
            id=f"{root.driver}-{style}-{broken.file.removesuffix('.sql')}-{broken.key}",
            driver=root.driver,
            style=style,
            phase="migration",
            severity=entry.severity,
            stream=entry.stream,
            text=entry.text,
            json_payload=entry.payload,
            applied_migrations=tuple(shown),
            exception=exception_name(run.error),
            cause_migration=catalog.path(broken.file),
            label=Label(
                kind="migration_failure",
                migration_file=root.shown(broken.file) if named else None,
                migration_file_by_blame=None if named else shown[-1],
                sqlstate=sqlstate,
                relation=broken.relation,
            ),
        )
    )


def good_revision(ctx: Context, root: AppRoot) -> str:
    """Revision N+1 whose migrations all apply: the database the old API then runs on."""
    database = ctx.database(f"{root.driver}_rev2")
    root.ship(catalog.REV2)
    fmt = BENIGN_FORMAT[root.driver]
    for attempt in ("first", "restart"):
        pending = _pending(ctx, database, catalog.REV2)
        run = _run(ctx, root, database, {"LOG_FORMAT": fmt}, block=False)
        if run.error is not None or run.exit_code not in (0, None):
            raise RuntimeError(f"{root.driver}: the good revision failed on {attempt}: {run.error}")
        for entry in entries(run, ctx.norm):
            shown = tuple(root.shown(name) for name in pending)
            benign(
                ctx,
                entry,
                driver=root.driver,
                style=f"runner-{entry.style}",
                phase="migration",
                shown=shown,
            )
    return database


def benign(
    ctx: Context,
    entry: Entry,
    *,
    driver: str,
    style: str,
    phase: Phase,
    shown: tuple[str, ...] = (),
) -> None:
    """A line that must not match: kept once per distinct text."""
    ctx.cases.add(
        Case(
            id=f"{driver}-{style}-info-{slug(entry.message)}",
            driver=driver,
            style=style,
            phase=phase,
            severity=entry.severity,
            stream=entry.stream,
            text=entry.text,
            json_payload=entry.payload,
            applied_migrations=shown,
            label=Label(kind=None),
        ),
        dedupe=True,
    )


def startup_failures(ctx: Context, root: AppRoot, api_database: str) -> None:
    """The runner cannot even connect: not a migration failure, whatever the driver says."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for form in (f'"127.0.0.1", port {port}', f"('127.0.0.1', {port})", f"127.0.0.1:{port}"):
        ctx.norm.add(form, form.replace(str(port), "5432"))
    sockets = ctx.tmp / "cloudsql"
    sockets.mkdir(exist_ok=True)
    ctx.norm.add(str(sockets), CLOUDSQL_DIR)
    missing = f"guard_et_{ctx.scratch.tag}_gone"
    ctx.norm.add(missing, "pegasus")
    scheme = "postgresql+psycopg" if root.driver == "sqlalchemy" else "postgresql"
    urls = {
        "connection-refused": f"{scheme}://postgres@127.0.0.1:{port}/{api_database}",
        "socket-missing": f"{scheme}://postgres@/{api_database}?host={sockets}",
        "role-connection-limit": root.dsn(ctx, api_database).replace(
            "//postgres@", f"//{ctx.scratch.role}@"
        ),
        "database-missing": root.dsn(ctx, missing),
    }
    for key, url in urls.items():
        run = run_script(root.migrate, root.path, root.path, {"DATABASE_URL": url})
        if run.crash is None:
            raise RuntimeError(f"{root.driver} {key}: the runner did not crash")
        entry = failure(entries(run, ctx.norm), "crash")
        ctx.cases.add(
            Case(
                id=f"{root.driver}-startup-crash-{key}",
                driver=root.driver,
                style="startup-crash",
                phase="startup",
                severity=entry.severity,
                stream=entry.stream,
                text=entry.text,
                exception=exception_name(run.error),
                label=Label(kind=None, sqlstate=sqlstate_of(run.error)),
            )
        )

"""Cases from Django: `manage.py migrate` with RunSQL migrations, and Django's request log.

The Django edition of the backend wraps each `backend/migrations/*.sql` file in a migration
with `migrations.RunSQL`, and runs `manage.py migrate` at container start. Django applies
each migration in its own transaction, so one database serves every scenario (a failure
rolls back and leaves revision N). Django configures settings once per process: everything
here runs against that one database, which ends at revision N+1 for the request cases.
"""

from __future__ import annotations

import importlib
import shutil

import psycopg

from . import catalog
from .capture import RecordSpy, ScriptRun, app_process, run_script
from .context import TEMPLATES, Context
from .model import Case, Label, exception_name, expect_sqlstate, sqlstate_of
from .render import Entry, failure, text_entry
from .runners import benign
from .scratch import other_session

SCENARIOS = (
    "not-null-no-default",
    "syntax-error",
    "cast-datatype-mismatch",
    "duplicate-index",
    "concurrently-in-transaction",
    "undefined-type",
    "check-violated",
    "lock-timeout",
)

MIGRATION = """from pathlib import Path

from django.db import migrations

SQL = Path(__file__).resolve().parents[2] / "backend" / "migrations" / "{file}"


class Migration(migrations.Migration):
    dependencies = [{dependencies}]
    operations = [migrations.RunSQL(SQL.read_text(), reverse_sql=migrations.RunSQL.noop)]
"""

# (path, method, data, expected SQLSTATE, kind, relation, cause)
REQUESTS: tuple[
    tuple[str, str, dict[str, str] | None, str | None, bool, str | None, str | None], ...
] = (
    ("/courses/", "get", None, "42703", True, "title", "002_rename_course_title.sql"),
    (
        "/users/1/enrollments/",
        "get",
        None,
        "42P01",
        True,
        "enrollments",
        "004_rename_enrollments.sql",
    ),
    ("/courses/slugs/", "get", None, "42883", True, "course_slug", "005_course_slug_by_id.sql"),
    ("/users/", "post", {"email": "li@example.com"}, "23505", False, "users_email_key", None),
    ("/reports/popular/", "get", None, "57014", False, None, None),
    ("/courses/999/", "get", None, None, False, None, None),
)


class DjangoApp:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.root = ctx.tmp / "django-app"
        shutil.copytree(TEMPLATES / "django", self.root)
        (self.root / "backend" / "migrations").mkdir(parents=True)
        ctx.norm.add(str(self.root), "/app")
        self.database = f"guard_et_{ctx.scratch.tag}_django"
        ctx.scratch.create(self.database)
        ctx.norm.add(self.database, "pegasus")
        self.env = {"DB_NAME": self.database, "DJANGO_SETTINGS_MODULE": "pegasus.settings"}
        self.migrations = self.root / "courses" / "migrations"
        self.shipped: list[str] = []

    def ship(self, names: tuple[str, ...]) -> None:
        """Django migrations 0001.. for 001_init.sql plus `names`, replacing earlier ones."""
        for old in self.migrations.glob("0*.py"):
            old.unlink()
        previous = ""
        for name in ("001_init.sql", *names):
            (self.root / "backend" / "migrations" / name).write_text(catalog.migration_sql(name))
            module = "0" + name.removesuffix(".sql")
            deps = f'("courses", "{previous}")' if previous else ""
            text = MIGRATION.format(file=name, dependencies=deps)
            (self.migrations / f"{module}.py").write_text(text)
            previous = module
        importlib.invalidate_caches()
        self.shipped = list(names)

    def migrate(self, *args: str) -> ScriptRun:
        return run_script(
            self.root / "manage.py", self.root, self.root, self.env, ("migrate", *args)
        )

    def stdout_entries(self, run: ScriptRun) -> list[Entry]:
        """`manage.py migrate` prints progress on stdout; Cloud Run splits it into lines."""
        lines = "".join(run.stdout).splitlines()
        return [
            Entry("text", "stdout", "DEFAULT", self.ctx.norm(line), None, False, line.strip())
            for line in lines
            if line.strip()
        ]


def cases(ctx: Context) -> None:
    app = DjangoApp(ctx)
    app.ship(())
    run = app.migrate()
    if run.exit_code not in (0, None):
        raise RuntimeError(f"django 0001 failed: {run.crash}")
    with psycopg.connect(ctx.scratch.url(app.database), autocommit=True) as conn:
        conn.execute(catalog.SEED_SQL)
    by_key = {broken.key: broken for broken in catalog.BROKEN}
    for key in SCENARIOS:
        broken = by_key[key]
        app.ship((broken.file,))
        if broken.blocker:
            with other_session(ctx.scratch, app.database, "SELECT 1 FROM enrollments LIMIT 1"):
                run = app.migrate()
        else:
            run = app.migrate()
        sqlstate = expect_sqlstate(f"django {broken.file}", run.error, broken.sqlstate)
        shown = (catalog.path(broken.file),)
        for line in app.stdout_entries(run):
            benign(
                ctx, line, driver="django", style="django-migrate", phase="migration", shown=shown
            )
        entry = failure([text_entry(run.crash or "", ctx.norm, "crash")], "crash")
        ctx.cases.add(
            Case(
                id=f"django-migrate-crash-{broken.file.removesuffix('.sql')}-{key}",
                driver="django",
                style="django-migrate",
                phase="migration",
                severity=entry.severity,
                stream=entry.stream,
                text=entry.text,
                applied_migrations=shown,
                exception=exception_name(run.error),
                cause_migration=catalog.path(broken.file),
                label=Label(
                    kind="migration_failure",
                    migration_file_by_blame=shown[-1],
                    sqlstate=sqlstate,
                    relation=broken.relation,
                ),
            )
        )
    app.ship(catalog.REV2)
    run = app.migrate()
    if run.exit_code not in (0, None):
        raise RuntimeError(f"django revision N+1 failed: {run.crash}")
    applied = tuple(catalog.path(name) for name in catalog.REV2)
    for line in app.stdout_entries(run):
        benign(ctx, line, driver="django", style="django-migrate", phase="migration", shown=applied)
    _requests(ctx, app, applied)


def _requests(ctx: Context, app: DjangoApp, applied: tuple[str, ...]) -> None:
    with RecordSpy() as spy, app_process(app.root, app.root, app.env, ["gunicorn"]) as (_, err):
        import django  # noqa: PLC0415
        from django.test import Client  # noqa: PLC0415

        django.setup()  # binds the LOGGING handlers to this process's stderr
        client = Client(raise_request_exception=False)
        for path, method, data, expected, mismatch, relation, cause in REQUESTS:
            before, records = len(err.writes), len(spy.records)
            response = client.post(path, data) if method == "post" else client.get(path)
            error = next((r.exc_info[1] for r in spy.records[records:] if r.exc_info), None)
            if expected is not None:
                expect_sqlstate(f"django {path}", error, expected)
            for raw in err.writes[before:]:
                entry = text_entry(raw, ctx.norm)
                key = path.strip("/").replace("/", "-")
                ctx.cases.add(
                    Case(
                        id=f"django-request-text-{key}-{response.status_code}",
                        driver="django",
                        style="django-request",
                        phase="request",
                        severity=entry.severity,
                        stream=entry.stream,
                        text=entry.text,
                        applied_migrations=applied,
                        exception=exception_name(error),
                        cause_migration=catalog.path(cause) if cause else None,
                        label=Label(
                            kind="schema_mismatch" if mismatch else None,
                            migration_file_by_blame=applied[-1] if mismatch else None,
                            sqlstate=sqlstate_of(error),
                            relation=relation,
                        ),
                    )
                )

"""Cases from Alembic: `alembic upgrade head` as a container entrypoint, for real.

A real Alembic environment (alembic.ini, env.py, one revision script per SQL file) is
unpacked into a scratch `/app`, and the installed `alembic` console script runs it, so the
INFO lines come from Alembic's own logging config and the traceback from the interpreter.
Alembic runs all pending revisions in one transaction, so a failure rolls back the good
revisions before it too; the label still blames the SQL file that failed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from . import catalog
from .capture import ScriptRun, run_script
from .context import TEMPLATES, Context
from .model import Case, Label, exception_name, expect_sqlstate
from .render import entries, failure
from .runners import benign
from .scratch import other_session

SCENARIOS = (
    "index-renamed-column",
    "not-null-no-default",
    "cast-invalid-input",
    "lock-timeout",
    "statement-timeout",
    "unique-index-duplicates",
    "undefined-function",
    "missing-table",
)

REVISION = '''"""{message}

Revision ID: {revision}
Revises: {down}
"""

from pathlib import Path

from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None

SQL = Path(__file__).resolve().parents[2] / "backend" / "migrations" / "{file}"


def upgrade() -> None:
    op.execute(SQL.read_text())


def downgrade() -> None:
    raise NotImplementedError("restore from backup; see the runbook")
'''


def _unpack(ctx: Context) -> Path:
    root = ctx.tmp / "alembic-app"
    (root / "alembic" / "versions").mkdir(parents=True)
    (root / "backend" / "migrations").mkdir(parents=True)
    shutil.copy(TEMPLATES / "alembic.ini", root / "alembic.ini")
    shutil.copy(TEMPLATES / "alembic" / "env.py", root / "alembic" / "env.py")
    ctx.norm.add(str(root), "/app")
    return root


def _ship(root: Path, names: tuple[str, ...]) -> None:
    versions = root / "alembic" / "versions"
    for old in versions.glob("*.py"):
        old.unlink()
    down = "001"
    for name in ("001_init.sql", *names):
        revision = name.split("_", 1)[0]
        (root / "backend" / "migrations" / name).write_text(catalog.migration_sql(name))
        message = name.removesuffix(".sql").split("_", 1)[1].replace("_", " ")
        text = REVISION.format(
            message=message,
            revision=revision,
            down=down if revision != "001" else "",
            file=name,
        ).replace('down_revision = ""', "down_revision = None")
        (versions / f"{name.removesuffix('.sql')}.py").write_text(text)
        down = revision


def _alembic(ctx: Context, root: Path, database: str, block: bool) -> ScriptRun:
    script = Path(sys.prefix) / "bin" / "alembic"
    env = {"DATABASE_URL": ctx.scratch.uri(database, "postgresql+psycopg")}
    args = ("upgrade", "head")
    if not block:
        return run_script(script, root, root, env, args)
    with other_session(ctx.scratch, database, "SELECT 1 FROM enrollments LIMIT 1"):
        return run_script(script, root, root, env, args)


def cases(ctx: Context) -> None:
    root = _unpack(ctx)
    database = ctx.database("alembic_rev2")
    _ship(root, catalog.REV2)
    run = _alembic(ctx, root, database, block=False)
    for entry in entries(run, ctx.norm):
        shown = tuple(catalog.path(name) for name in catalog.REV2)
        benign(ctx, entry, driver="alembic", style="alembic", phase="migration", shown=shown)
    by_key = {broken.key: broken for broken in catalog.BROKEN}
    for key in SCENARIOS:
        broken = by_key[key]
        database = ctx.database(f"alembic_{key}")
        shipped = (*broken.before, broken.file)
        _ship(root, shipped)
        run = _alembic(ctx, root, database, broken.blocker)
        error = run.error
        sqlstate = expect_sqlstate(f"alembic {broken.file}", error, broken.sqlstate)
        found = entries(run, ctx.norm)
        shown = tuple(catalog.path(name) for name in shipped)
        for entry in found:
            if not entry.failure:
                benign(
                    ctx, entry, driver="alembic", style="alembic", phase="migration", shown=shown
                )
        entry = failure(found, "crash")
        ctx.cases.add(
            Case(
                id=f"alembic-upgrade-crash-{broken.file.removesuffix('.sql')}-{key}",
                driver="alembic",
                style="alembic",
                phase="migration",
                severity=entry.severity,
                stream=entry.stream,
                text=entry.text,
                applied_migrations=shown,
                exception=exception_name(error),
                cause_migration=catalog.path(broken.file),
                label=Label(
                    kind="migration_failure",
                    migration_file_by_blame=shown[-1],
                    sqlstate=sqlstate,
                    relation=broken.relation,
                ),
            )
        )

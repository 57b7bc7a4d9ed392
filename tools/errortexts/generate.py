"""Generate src/guard/sim/data/error_texts.json from real drivers on a real PostgreSQL.

    .venv/bin/python -m tools.errortexts.generate [--output PATH] [--url ADMIN_URL]

The admin URL (default: $GUARD_TEST_POSTGRES_URL, else postgres@127.0.0.1:5432/postgres)
needs the right to create databases and roles. Everything the run creates is dropped at
the end, also when it fails. A second run on the same machine produces the same bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psycopg

from . import alembic_cases, django_cases, runners, webapp
from .context import DRIVERS, AppRoot, Context
from .model import Case, Collector
from .normalize import Normalizer
from .scratch import Scratch

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = REPO / "src" / "guard" / "sim" / "data" / "error_texts.json"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PACKAGES = {
    "psycopg": "psycopg",
    "psycopg2": "psycopg2-binary",
    "asyncpg": "asyncpg",
    "sqlalchemy": "SQLAlchemy",
    "alembic": "alembic",
    "django": "Django",
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "google-cloud-logging": "google-cloud-logging",
}


def _quiet_google_instrumentation() -> None:
    """google-cloud-logging prints a one-off diagnostic record on first use; it is noise."""
    import google.cloud.logging_v2  # noqa: PLC0415

    google.cloud.logging_v2._instrumentation_emitted = True


def collect(url: str) -> tuple[list[Case], str]:
    scratch = Scratch(url)
    norm = Normalizer()
    cases = Collector()
    try:
        with tempfile.TemporaryDirectory(prefix="guard-errortexts-") as tmp:
            ctx = Context(scratch, norm, cases, Path(tmp).resolve())
            norm.add(str(ctx.tmp), "/app")
            scratch.create_base()
            norm.add(scratch.role, "pegasus_app")
            scratch.create_role()
            _quiet_google_instrumentation()
            for index, driver in enumerate(DRIVERS):
                root = AppRoot.create(ctx, driver)
                api_db = runners.good_revision(ctx, root)
                runners.migration_failures(ctx, root, index)
                runners.startup_failures(ctx, root, api_db)
                webapp.requests(ctx, root, api_db, index)
            alembic_cases.cases(ctx)
            django_cases.cases(ctx)
            version_text = scratch.server_version()
    finally:
        scratch.cleanup()
    return cases.cases, version_text


def document(cases: list[Case], server_version: str) -> dict[str, Any]:
    return {
        "generated_by": "tools/errortexts/generate.py",
        "postgres_version": server_version,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "libpq": {
            "psycopg": psycopg.pq.version(),
            "psycopg2": int(__import__("psycopg2").__libpq_version__),
        },
        "drivers": {name: version(dist) for name, dist in PACKAGES.items()},
        "cases": [case.to_json() for case in cases],
    }


def summary(cases: list[Case]) -> str:
    kinds = Counter(str(case.label.kind) for case in cases)
    by_driver = Counter(case.driver for case in cases)
    by_style = Counter(case.style for case in cases)
    return (
        f"{len(cases)} cases; kinds {dict(kinds)}; drivers {dict(by_driver)};"
        f" styles {dict(by_style)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--url", default=os.environ.get("GUARD_TEST_POSTGRES_URL", DEFAULT_URL))
    args = parser.parse_args(argv)
    started = time.monotonic()
    cases, server_version = collect(args.url)
    text = json.dumps(document(cases, server_version), indent=2, ensure_ascii=False) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"{args.output}: {summary(cases)} in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

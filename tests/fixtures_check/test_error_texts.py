"""The error-text fixture is well-formed, its labels agree with its texts, and it is real.

The classifier's precision and recall are measured against src/guard/sim/data/error_texts.json,
so a wrong label would silently move those numbers. The first group checks every label
against its own text and driver data; the `postgres` test regenerates the whole file from
the real drivers and the real server and demands the same bytes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "src" / "guard" / "sim" / "data" / "error_texts.json"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
KINDS = {"migration_failure", "schema_mismatch", None}
PHASES = {"migration", "request", "startup", "runtime"}
SEVERITIES = {"DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"}
LIFTED = {"severity", "httpRequest", "time", "timestamp"}
MACHINE = ("/work/", "/tmp/", "/root/", "guard_et_", ".venv", "pyenv")


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return loaded


def cases() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = document()["cases"]
    return found


@cache
def class_names(sqlstate: str) -> frozenset[str]:
    """Every driver's exception class for a SQLSTATE, by the drivers' own tables."""
    import asyncpg.exceptions
    import psycopg.errors
    import psycopg2.errors

    names: set[str] = set()
    for module in (psycopg.errors, psycopg2.errors):
        try:
            cls = module.lookup(sqlstate)
        except KeyError:
            continue
        names.add(f"{module.__name__}.{cls.__name__}")
    for name in dir(asyncpg.exceptions):
        cls = getattr(asyncpg.exceptions, name)
        if isinstance(cls, type) and getattr(cls, "sqlstate", None) == sqlstate:
            names.add(f"asyncpg.exceptions.{cls.__name__}")
    return frozenset(names)


def readable(case: dict[str, Any]) -> str:
    """The text with JSON unpacked, so a traceback inside a JSON field has its lines back."""
    if case["json_payload"] is None:
        text: str = case["text"]
        return text
    printed = json.loads(case["text"])
    return "\n".join(str(printed.get(key, "")) for key in ("message", "exception"))


def test_document_header() -> None:
    doc = document()
    assert doc["generated_by"] == "tools/errortexts/generate.py"
    assert doc["postgres_version"]
    assert {"psycopg", "psycopg2", "asyncpg", "sqlalchemy", "alembic", "django"} <= set(
        doc["drivers"]
    )


def test_ids_unique_and_fields_valid() -> None:
    ids = [case["id"] for case in cases()]
    assert len(ids) == len(set(ids))
    for case in cases():
        label = case["label"]
        assert label["kind"] in KINDS, case["id"]
        assert case["phase"] in PHASES, case["id"]
        assert case["severity"] in SEVERITIES, case["id"]
        assert case["stream"] in {"stdout", "stderr"}, case["id"]
        assert case["text"], case["id"]
        assert case["text"] == case["text"].rstrip("\n"), case["id"]
        assert label["sqlstate"] is None or re.fullmatch(r"[0-9A-Z]{5}", label["sqlstate"])


def test_texts_carry_nothing_of_the_generating_machine() -> None:
    for case in cases():
        for leak in MACHINE:
            assert leak not in case["text"], (case["id"], leak)


def test_mix() -> None:
    kinds = Counter(case["label"]["kind"] for case in cases())
    assert 150 <= len(cases()) <= 320
    assert kinds[None] / len(cases()) >= 0.40
    assert kinds["migration_failure"] >= 60
    assert kinds["schema_mismatch"] >= 30
    drivers = {case["driver"] for case in cases()}
    assert {"psycopg3", "psycopg2", "asyncpg", "sqlalchemy", "alembic", "django"} <= drivers


@pytest.mark.parametrize("case", cases(), ids=lambda case: case["id"])
def test_label_agrees_with_text(case: dict[str, Any]) -> None:
    label, text = case["label"], case["text"]
    if label["sqlstate"] is not None:
        names = class_names(label["sqlstate"])
        assert label["sqlstate"] in text or any(name in text for name in names), names
        assert case["exception"] in names
    if label["kind"] is not None:
        assert label["sqlstate"] is not None
        assert (label["migration_file"] is None) != (label["migration_file_by_blame"] is None)
    else:
        assert label["migration_file"] is None
        assert label["migration_file_by_blame"] is None
    if label["migration_file"] is not None:
        assert label["migration_file"] in text
        assert label["migration_file"].endswith(".sql")
    if label["migration_file_by_blame"] is not None:
        assert label["migration_file_by_blame"] == case["applied_migrations"][-1]
    if label["relation"] is not None:
        # ... in the error's own message line: the one that names the exception class
        names = class_names(label["sqlstate"])
        lines = [line for line in readable(case).splitlines() if any(n in line for n in names)]
        pattern = rf"(?<!\w){re.escape(label['relation'])}\b"
        assert any(re.search(pattern, line) for line in lines), lines


@pytest.mark.parametrize(
    "case", [c for c in cases() if c["json_payload"] is not None], ids=lambda case: case["id"]
)
def test_json_payload_is_the_printed_line_as_cloud_logging_stores_it(case: dict[str, Any]) -> None:
    printed = json.loads(case["text"])
    assert printed["severity"] == case["severity"]
    kept = {
        key: value
        for key, value in printed.items()
        if key not in LIFTED and not key.startswith("logging.googleapis.com/")
    }
    assert kept == case["json_payload"]
    assert case["stream"] == "stdout"


@pytest.mark.postgres
@pytest.mark.slow
def test_regenerating_from_the_real_database_reproduces_the_fixture(tmp_path: Path) -> None:
    url = os.environ.get("GUARD_TEST_POSTGRES_URL", DEFAULT_URL)
    output = tmp_path / "error_texts.json"
    done = subprocess.run(
        [sys.executable, "-m", "tools.errortexts.generate", "--output", str(output), "--url", url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert output.read_text(encoding="utf-8") == FIXTURE.read_text(encoding="utf-8")

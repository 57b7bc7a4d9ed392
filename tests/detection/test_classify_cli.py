"""`guard classify` as operators run it: the installed console script, fed LogEntry JSON the
way gcloud prints it, through stdin or a file, with bad lines in the middle."""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.detection.test_classify import CASES

GUARD = str(Path(sys.executable).with_name("guard"))
KEYS = ["match", "kind", "migration_file", "sqlstate", "relation", "file_source"]


def _run(*args: str, stdin: str | bytes = b"") -> subprocess.CompletedProcess[bytes]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return subprocess.run(
        [GUARD, "classify", *args], input=data, capture_output=True, timeout=120, check=False
    )


def _outputs(done: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in done.stdout.decode().splitlines()]


def log_entry(case: dict[str, Any], revision: str, text: str | None = None) -> dict[str, Any]:
    """A Cloud Run LogEntry as `gcloud logging read --format=json` prints it (camelCase)."""
    entry: dict[str, Any] = {
        "insertId": f"{revision}-{abs(hash(text or case['id'])) % 10**8}",
        "logName": "projects/delta-student-486911-n5/logs/run.googleapis.com%2Fstderr",
        "receiveTimestamp": "2025-06-03T09:14:07.612345678Z",
        "resource": {
            "labels": {
                "configuration_name": "pegasus-api",
                "location": "europe-west1",
                "project_id": "delta-student-486911-n5",
                "revision_name": revision,
                "service_name": "pegasus-api",
            },
            "type": "cloud_run_revision",
        },
        "severity": case["severity"] if text is None else "INFO",
        "timestamp": "2025-06-03T09:14:07.512345678Z",
    }
    if text is None and case["json_payload"]:
        entry["jsonPayload"] = case["json_payload"]
    else:
        entry["textPayload"] = case["text"] if text is None else text
    return entry


def test_every_fixture_case_through_the_command_line() -> None:
    lines: list[dict[str, Any]] = []
    expected: list[dict[str, Any] | None] = []
    for n, case in enumerate(CASES):
        revision = f"pegasus-api-{n:05d}-abc"
        label = case["label"]
        for migration in case["applied_migrations"] if label["migration_file_by_blame"] else []:
            lines.append(log_entry(case, revision, f"Applying migration {migration}"))
            expected.append(None)
        lines.append(log_entry(case, revision))
        expected.append(label)
    done = _run(stdin="".join(json.dumps(line) + "\n" for line in lines))
    assert done.returncode == 0, done.stderr
    outputs = _outputs(done)
    assert len(outputs) == len(lines)
    wrong = []
    for out, label in zip(outputs, expected, strict=True):
        assert list(out) == KEYS
        if label is None:
            continue
        file = label["migration_file"] or label["migration_file_by_blame"]
        want = [label["kind"] is not None, label["kind"], file if label["kind"] else None]
        want += [label["sqlstate"], label["relation"]]
        if [out[k] for k in KEYS[:5]] != want:
            wrong.append(f"{out} != {want}")
    assert not wrong, "\n".join(wrong)


def test_text_lines_from_a_file_with_blame_across_lines(tmp_path: Path) -> None:
    path = tmp_path / "logs.jsonl"
    path.write_text(
        '{"text": "INFO backend.migrate: Applying migration backend/migrations/003_x.sql"}\n'
        '{"text": "psycopg.errors.UndefinedColumn: column \\"title\\" does not exist"}\n'
        '{"text": "169.254.1.1:0 - \\"GET /courses HTTP/1.1\\" 200"}\n'
    )
    done = _run(str(path))
    assert done.returncode == 0, done.stderr
    assert _outputs(done) == [
        dict.fromkeys(KEYS) | {"match": False},
        {
            "match": True,
            "kind": "migration_failure",
            "migration_file": "backend/migrations/003_x.sql",
            "sqlstate": "42703",
            "relation": "title",
            "file_source": "blame",
        },
        dict.fromkeys(KEYS) | {"match": False},
    ]


def test_snake_case_entries_and_json_payloads() -> None:
    entries = [
        {
            "text_payload": 'ERROR:  relation "enrollments" does not exist',
            "resource": {"labels": {"service_name": "api", "revision_name": "api-2"}},
        },
        {
            "jsonPayload": {
                "message": "Migration 002_x.sql failed: canceling statement due to lock timeout",
                "exception": "psycopg2.errors.LockNotAvailable: canceling statement due to lock",
            },
            "severity": "ERROR",
        },
        {"protoPayload": {"status": {"message": "permission denied"}}},
        {
            "httpRequest": {"status": 500},
            "logName": "projects/p/logs/run.googleapis.com%2Frequests",
        },
    ]
    done = _run(stdin="".join(json.dumps(e) + "\n" for e in entries))
    assert done.returncode == 0, done.stderr
    got = [(o["kind"], o["migration_file"], o["sqlstate"]) for o in _outputs(done)]
    assert got == [
        ("schema_mismatch", None, "42P01"),
        ("migration_failure", "002_x.sql", "55P03"),
        (None, None, None),
        (None, None, None),
    ]


def test_bad_lines_get_an_answer_and_exit_2_at_the_end() -> None:
    good = '{"text": "psycopg.errors.UndefinedTable: relation \\"x\\" does not exist"}\n'
    stdin = good.encode() + b"not json\n[1, 2]\n\n\xff\xfe{\n" + good.encode()
    done = _run(stdin=stdin)
    assert done.returncode == 2
    outputs = _outputs(done)
    assert len(outputs) == 6
    assert [o["match"] for o in outputs] == [True, False, False, False, False, True]
    assert ["error" in o for o in outputs] == [False, True, True, True, True, False]
    assert outputs[2]["error"] == "not a JSON object but list"
    assert "4 bad line(s): 2, 3, 4, 5" in done.stderr.decode()


def test_a_json_array_gets_a_hint() -> None:
    done = _run(stdin='[\n  {"textPayload": "x"}\n]\n')
    assert done.returncode == 2
    assert "jq -c '.[]'" in done.stderr.decode()


def test_output_streams_line_by_line() -> None:
    with subprocess.Popen(
        [GUARD, "classify"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        for _ in range(2):
            proc.stdin.write(b'{"text": "ERROR:  deadlock detected"}\n')
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "no output before the input ended: the command buffers"
            assert json.loads(proc.stdout.readline())["sqlstate"] == "40P01"
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    done = _run(str(tmp_path / "absent.jsonl"))
    assert done.returncode == 2
    assert b"absent.jsonl" in done.stderr

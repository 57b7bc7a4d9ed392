"""`guard classify [FILE]`: the log classifier on saved or piped log entries (a **contract**).

An operator checking why the guard reverted (or did not), a CI job replaying an incident's
logs, a script feeding `gcloud logging read --format=json | jq -c '.[]'`: all want the
guard's own verdict on each entry without running the service. So this reads one JSON
object per line (a Cloud Logging LogEntry in its JSON form, camelCase as gcloud prints it or
snake_case; or simply `{"text": "..."}`) and prints one JSON object per input line, in
order, flushed as it goes so it works at the end of a live pipe:

    {"match": bool, "kind": "migration_failure"|"schema_mismatch"|null,
     "migration_file": str|null, "sqlstate": str|null, "relation": str|null,
     "file_source": "text"|"blame"|null}

`file_source` is an addition to the contract's keys: "blame" says the filename was not in
the entry but is the newest migration the same revision announced earlier in the input.
A line that is not a JSON object still gets its output line (match false plus "error"),
the run goes on, and the exit code is 2 at the end, with the bad line numbers on stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import unquote

import click

from guard.core.classify import Classification, MigrationLedger, classify
from guard.core.signals import LogRecord

EXIT_BAD_INPUT = 2
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SHOWN_BAD_LINES = 50


@click.command("classify")
@click.argument("file", required=False, type=click.File("rb"), default="-")
def classify_command(file: IO[bytes]) -> None:
    """Classify log entries from FILE (default stdin), one JSON object per line.

    Prints one JSON verdict per input line: match, kind (migration_failure,
    schema_mismatch or null), migration_file (as written in the log, or blamed on the
    newest migration the revision announced), sqlstate, relation, file_source. Exits 2 if
    any line was not a JSON object (its verdict carries an "error"), 0 otherwise.
    """
    ledger = MigrationLedger()
    bad: list[int] = []
    first_line = b""
    last_at = _EPOCH
    out = sys.stdout
    for number, raw in enumerate(iter(file.readline, b""), start=1):
        if number == 1:
            first_line = raw.strip()
        try:
            record = entry_record(_parse(raw), last_at)
        except ValueError as problem:
            bad.append(number)
            out.write(json.dumps(_verdict(Classification()) | {"error": str(problem)}) + "\n")
        else:
            last_at = record.at
            ledger.observe(record)
            out.write(json.dumps(_verdict(classify(record, ledger))) + "\n")
        out.flush()
    if bad:
        shown = ", ".join(map(str, bad[:_SHOWN_BAD_LINES]))
        more = f" and {len(bad) - _SHOWN_BAD_LINES} more" if len(bad) > _SHOWN_BAD_LINES else ""
        click.echo(f"guard classify: {len(bad)} bad line(s): {shown}{more}", err=True)
        if first_line == b"[":
            click.echo(
                "hint: the input looks like a JSON array (gcloud --format=json); "
                "pipe it through `jq -c '.[]'` for one entry per line",
                err=True,
            )
        sys.exit(EXIT_BAD_INPUT)


def _verdict(result: Classification) -> dict[str, Any]:
    return {
        "match": result.match,
        "kind": result.kind.value if result.kind else None,
        "migration_file": result.migration_file,
        "sqlstate": result.sqlstate,
        "relation": result.relation,
        "file_source": result.file_source,
    }


def _parse(raw: bytes) -> Mapping[str, Any]:
    if not raw.strip():
        raise ValueError("empty line: expected a JSON object")
    try:
        doc = json.loads(raw)
    except ValueError as problem:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"not JSON: {problem}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"not a JSON object but {type(doc).__name__}")
    return doc


def _field(doc: Mapping[str, Any], camel: str) -> Any:
    """A LogEntry field by its camelCase name (gcloud) or snake_case name (the API docs)."""
    if camel in doc:
        return doc[camel]
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)
    return doc.get(snake)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def entry_record(doc: Mapping[str, Any], default_at: datetime) -> LogRecord:
    """A LogRecord from one LogEntry's JSON form (or `{"text": ...}`), as the core needs it.

    The text follows LogRecord's rule: textPayload; jsonPayload's message (the classifier
    reads the payload's other string fields itself); an audit entry's status message.
    """
    json_payload = _mapping(_field(doc, "jsonPayload"))
    proto_status = _mapping(_mapping(_field(doc, "protoPayload")).get("status"))
    text = next(
        (
            value
            for value in (
                doc.get("text"),
                _field(doc, "textPayload"),
                json_payload.get("message"),
                json_payload.get("msg"),
                proto_status.get("message"),
            )
            if isinstance(value, str)
        ),
        "",
    )
    labels = _mapping(_mapping(doc.get("resource")).get("labels"))
    http = _mapping(_field(doc, "httpRequest"))
    status = http.get("status")
    log_name = str(_field(doc, "logName") or "")
    return LogRecord(
        at=_timestamp(doc.get("timestamp"), default_at),
        project=str(labels.get("project_id") or ""),
        service=str(labels.get("service_name") or labels.get("job_name") or ""),
        revision=str(labels.get("revision_name") or labels.get("execution_name") or ""),
        log_name=unquote(log_name.partition("/logs/")[2] or log_name),
        severity=str(doc.get("severity") or "DEFAULT"),
        text=text,
        insert_id=str(_field(doc, "insertId") or ""),
        http_status=int(status)
        if isinstance(status, int | str) and str(status).isdigit()
        else None,
        json_payload=json_payload,
    )


def _timestamp(value: Any, default: datetime) -> datetime:
    """The entry's time (RFC 3339, nanoseconds allowed); the previous entry's if absent, so
    `{"text": ...}` lines keep their order and the ledger's short windows still apply."""
    if not isinstance(value, str):
        return default
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return default
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

"""The guard's logs are JSON lines in Cloud Logging's structured format: every line parses,
levels map to severities, tracebacks stay in the message, extras become fields, nothing an
extra holds can break a line, and configuring twice installs one handler."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from guard.service.jsonlog import (
    LABELS,
    QUIET_LOGGERS,
    SOURCE_LOCATION,
    SPAN_ID,
    TRACE,
    CloudLoggingFormatter,
    configure_logging,
    context,
)

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


class Captured:
    """A logger of its own whose records are formatted into a buffer."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.logger = logging.getLogger(f"test.jsonlog.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(1)
        self.handler = logging.StreamHandler(self.buffer)
        self.handler.setFormatter(CloudLoggingFormatter())
        self.logger.addHandler(self.handler)

    def lines(self) -> list[str]:
        return self.buffer.getvalue().splitlines()

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]

    def last(self) -> dict[str, Any]:
        return self.entries()[-1]


@pytest.fixture
def log() -> Iterator[Captured]:
    captured = Captured()
    yield captured
    captured.logger.removeHandler(captured.handler)


@pytest.fixture
def root_state() -> Iterator[None]:
    """Put the root logger and the quieted libraries back as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name, _ in QUIET_LOGGERS}
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def test_levels_map_to_cloud_logging_severities(log: Captured) -> None:
    log.logger.log(5, "trace level")
    log.logger.debug("debug")
    log.logger.info("info")
    log.logger.log(25, "between info and warning")
    log.logger.warning("warning")
    log.logger.error("error")
    log.logger.critical("critical")
    assert [e["severity"] for e in log.entries()] == [
        "DEBUG",
        "DEBUG",
        "INFO",
        "INFO",
        "WARNING",
        "ERROR",
        "CRITICAL",
    ]
    assert len(log.lines()) == 7  # one JSON object per line


def test_an_entry_has_message_time_and_source_location(log: Captured) -> None:
    before = datetime.now(UTC)
    log.logger.info("polled %d services in %s", 3, "europe-west1")
    entry = log.last()
    assert entry["message"] == "polled 3 services in europe-west1"
    assert RFC3339.match(entry["time"]), entry["time"]
    when = datetime.fromisoformat(entry["time"])
    assert before - timedelta(seconds=1) <= when <= datetime.now(UTC)
    assert entry[SOURCE_LOCATION] == {
        "file": __file__,
        "line": entry[SOURCE_LOCATION]["line"],
        "function": "test_an_entry_has_message_time_and_source_location",
    }
    assert isinstance(entry[SOURCE_LOCATION]["line"], int)
    assert entry["logger"] == log.logger.name
    assert not {TRACE, SPAN_ID, LABELS} & set(entry)


def test_the_traceback_is_part_of_the_message(log: Captured) -> None:
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.logger.exception("revert failed for %s", "shop-api")
    entry = log.last()
    assert entry["severity"] == "ERROR"
    first, *rest = entry["message"].split("\n")
    assert first == "revert failed for shop-api"
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ZeroDivisionError: division by zero"
    log.logger.warning("stack", stack_info=True)
    assert "Stack (most recent call last):" in log.last()["message"]


def test_context_extras_become_fields(log: Captured) -> None:
    log.logger.warning(
        "freezing",
        extra={
            "step": "freeze",
            "app": "shop",
            "service": "shop-api",
            "revision": "shop-api-00042-abc",
            "incident": "inc-7",
            "rule": "migration-failed",
            "trace": "projects/p/traces/0123abcd",
            "span_id": "000000000000004a",
            "labels": {"env": "prod", "attempt": 2, "none": None},
            "attempt": 2,
            "severity": "DEBUG",  # cannot override the record's own severity
        },
    )
    entry = log.last()
    assert list(entry)[:9] == [
        "severity",
        "message",
        "time",
        "app",
        "service",
        "revision",
        "incident",
        "rule",
        "step",
    ]
    assert entry["severity"] == "WARNING"
    assert entry["app"] == "shop"
    assert entry["incident"] == "inc-7"
    assert entry["step"] == "freeze"
    assert entry[TRACE] == "projects/p/traces/0123abcd"
    assert entry[SPAN_ID] == "000000000000004a"
    assert entry[LABELS] == {"env": "prod", "attempt": "2"}
    assert entry["attempt"] == 2
    assert not {"trace", "span_id", "labels"} & set(entry)


def test_the_context_helper_builds_extra(log: Captured) -> None:
    assert context(app="shop", rule=None) == {"extra": {"app": "shop"}}
    log.logger.info("judged", **context(app="shop", service="shop-api", rule=None))
    entry = log.last()
    assert (entry["app"], entry["service"]) == ("shop", "shop-api")
    assert "rule" not in entry


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    __repr__ = __str__


def test_values_json_cannot_hold_never_break_a_line(log: Captured) -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    when = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    log.logger.info("odd", extra={"when": when, "obj": object(), "ids": {1, 2}})
    entry = log.last()
    assert entry["when"] == str(when)
    assert entry["obj"].startswith("<object object at")
    assert entry["ids"] == "{1, 2}"
    log.logger.info("nan", extra={"ratio": float("nan"), "cycle": cycle, "ok": 1})
    entry = log.last()
    assert (entry["ratio"], entry["cycle"], entry["ok"]) == ("nan", "[[...]]", 1)
    log.logger.info("unprintable", extra={"bad": Unprintable(), "labels": {"x": Unprintable()}})
    entry = log.last()
    assert entry["message"] == "unprintable"
    assert entry["bad"] == "<unprintable Unprintable>"
    assert entry[LABELS] == {"x": "<unprintable Unprintable>"}
    assert all(json.loads(line) for line in log.lines())  # every line is JSON


def record(msg: object, *args: object) -> logging.LogRecord:
    return logging.LogRecord("guard.test", logging.INFO, __file__, 1, msg, args, None)


def test_a_record_logging_itself_cannot_format_still_makes_a_json_line() -> None:
    # formatted directly: pytest's own capture handler would fail on these records
    formatter = CloudLoggingFormatter()
    entry = json.loads(formatter.format(record("%d services", "not a number")))
    assert entry["message"].startswith("%d services (unformattable arguments ('not a number',)")
    entry = json.loads(formatter.format(record(Unprintable())))
    assert entry["severity"] == "INFO"
    assert entry["message"].startswith("<unprintable Unprintable> (unformattable arguments ()")
    assert entry[SOURCE_LOCATION]["file"] == __file__


def test_configure_installs_one_json_handler_however_often_called(root_state: None) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("debug", stream=first)
    configure_logging("INFO", stream=second)
    root = logging.getLogger()
    ours = [h for h in root.handlers if isinstance(h.formatter, CloudLoggingFormatter)]
    assert len(ours) == 1
    assert root.level == logging.INFO
    logging.getLogger("guard.test").info("once", extra={"app": "shop"})
    logging.getLogger("guard.test").debug("below the level")
    assert first.getvalue() == ""
    [line] = second.getvalue().splitlines()
    assert json.loads(line)["message"] == "once"
    assert json.loads(line)["app"] == "shop"


def test_noisy_libraries_are_quieted_and_uvicorn_errors_are_json(root_state: None) -> None:
    out = io.StringIO()
    configure_logging(stream=out)
    logging.getLogger("uvicorn.access").info('127.0.0.1 - "GET /healthz HTTP/1.1" 200')
    logging.getLogger("apscheduler.executors.default").info('Running job "poll"')
    logging.getLogger("uvicorn.error").info("Application startup complete.")
    logging.getLogger("uvicorn.access").warning("slow request")
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["logger"], e["message"]) for e in entries] == [
        ("uvicorn.error", "Application startup complete."),
        ("uvicorn.access", "slow request"),
    ]
    assert entries[0]["severity"] == "INFO"


def test_configure_defaults_to_stdout(root_state: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging()
    logging.getLogger("guard.test").warning("to stdout")
    out = capsys.readouterr().out
    assert json.loads(out.splitlines()[-1])["message"] == "to stdout"


def test_a_formatter_failure_still_makes_a_json_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: CloudLoggingFormatter, record: logging.LogRecord) -> dict[str, Any]:
        raise RuntimeError("formatter bug")

    monkeypatch.setattr(CloudLoggingFormatter, "payload", broken)
    entry = json.loads(CloudLoggingFormatter().format(record("lost %s", "detail")))
    assert entry["severity"] == "INFO"
    assert "formatter bug" in entry["message"]
    assert entry["logger"] == "guard.test"

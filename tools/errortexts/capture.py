"""Run the team's entry points in-process and capture exactly what they print, write by write.

A container's stdout and stderr are what Cloud Run turns into log entries. Each logging
handler writes one record per `write()` call, so recording the calls gives the entry
boundaries without guessing; an uncaught exception is formatted the way the interpreter's
excepthook prints it, with the frames of this generator (runpy, the caller) cut off, so the
traceback starts at the script's `<module>` frame exactly as it would in the container.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import runpy
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any


class Capture(io.StringIO):
    """A stream that remembers each write: one write is one log entry."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.writes: list[str] = []
        self._lock = threading.Lock()

    def write(self, s: str) -> int:
        with self._lock:
            if s:
                self.writes.append(s)
            return super().write(s)


class RecordSpy:
    """Remembers, through the log-record factory, every exception the app logged.

    The factory sees `exc_info` without adding a frame to any traceback, so the ground
    truth (the driver's own SQLSTATE) comes from the exception object, not from the text.
    """

    def __init__(self) -> None:
        self.exceptions: list[BaseException] = []
        self.records: list[logging.LogRecord] = []
        self._previous = logging.getLogRecordFactory()

    def __enter__(self) -> RecordSpy:
        previous = self._previous

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            self.records.append(record)
            if record.exc_info and record.exc_info[1] is not None:
                self.exceptions.append(record.exc_info[1])
            return record

        logging.setLogRecordFactory(factory)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.setLogRecordFactory(self._previous)


@dataclass
class ScriptRun:
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    crash: str | None = None  # the uncaught traceback, as the interpreter prints it
    error: BaseException | None = None  # the crash, or the last exception the app logged
    exit_code: object = None


def format_uncaught(exc: BaseException, script: Path) -> str:
    """The excepthook's output, starting at the script's own `<module>` frame."""
    tb: TracebackType | None = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != str(script):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


@contextlib.contextmanager
def app_process(
    root: Path, cwd: Path, env: dict[str, str], argv: list[str]
) -> Iterator[tuple[Capture, Capture]]:
    """Make this process look like the container for a while: cwd, env, argv, sys.path."""
    saved_env = dict(os.environ)
    saved_cwd = Path.cwd()
    saved_argv = sys.argv[:]
    saved_path = sys.path[:]
    saved_loggers = _logger_state()
    forget_app_modules()
    out, err = Capture("stdout"), Capture("stderr")
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = argv
    sys.path.insert(0, str(root))
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            # The app abandons connections the way apps do; whatever -W the generator runs
            # under, their ResourceWarnings must not become log entries of the fixture.
            warnings.simplefilter("ignore", ResourceWarning)
            yield out, err
    finally:
        reset_logging(saved_loggers)
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        sys.path[:] = saved_path
        forget_app_modules()


def run_script(
    script: Path, root: Path, cwd: Path, env: dict[str, str], args: tuple[str, ...] = ()
) -> ScriptRun:
    """`python script args` with `env`, in `cwd`, as `__main__`; never raises its errors."""
    run = ScriptRun()
    argv = [str(script), *args]
    with RecordSpy() as spy, app_process(root, cwd, env, argv) as (out, err):
        try:
            runpy.run_path(str(script), run_name="__main__")
        except SystemExit as stop:
            run.exit_code = stop.code
        except Exception as exc:
            run.crash = format_uncaught(exc, script)
            run.error = exc
            run.exit_code = 1
    run.stdout, run.stderr = out.writes, err.writes
    if run.error is None and spy.exceptions:
        run.error = spy.exceptions[-1]
    return run


def forget_app_modules() -> None:
    """Each scratch `/app` has its own `backend` package; never reuse another's."""
    for name in [m for m in sys.modules if m == "backend" or m.startswith("backend.")]:
        del sys.modules[name]


_LoggerState = dict[str, tuple[int, bool, bool]]


def _loggers() -> dict[str, logging.Logger]:
    found = {"": logging.getLogger()}
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            found[name] = logger
    return found


def _logger_state() -> _LoggerState:
    return {name: (lg.level, lg.propagate, lg.disabled) for name, lg in _loggers().items()}


def reset_logging(saved: _LoggerState) -> None:
    """Undo what an app's logging setup (or alembic's fileConfig) did to this process.

    Levels matter: SQLAlchemy sets its loggers to WARN at import, and an app that leaves
    them alone must not start printing its SQL because an earlier app was reset.
    """
    for name, logger in _loggers().items():
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        level, propagate, disabled = saved.get(name, (logger.level, True, False))
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled

"""The fake Cloud SQL Admin v1beta4 over REST, on the standard library's HTTP server.

The official `google.cloud.sqladmin_v1beta4` client is used with `transport="rest"` (Google's
public endpoint for this API only answers REST), so this serves the exact URL paths and JSON
(camelCase, enums as numbers when the client asks `$alt=json;enum-encoding=int`) of the
client's REST transport, and errors in Google's JSON error shape, which the client turns into
its own exceptions (`Conflict` for 409, `NotFound`, `BadRequest`...). Nagle is off: with it,
every call pays 40 ms of delayed-ACK latency.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from google.cloud import sqladmin_v1beta4 as sql
from google.protobuf import json_format

from guard.sim.cloudsql import SqlState
from guard.sim.cloudsql_model import SqlError
from guard.sim.faults import FakeCloudError, FaultInjector
from guard.sim.protoutil import WriteLog, to_pb
from guard.sim.record import CallRecorder

_P = "/sql/v1beta4/projects/(?P<project>[^/]+)"
_I = _P + "/instances/(?P<instance>[^/]+)"
#: (HTTP method, path pattern, method name as recorded, is a write)
_ROUTES: list[tuple[str, re.Pattern[str], str, bool]] = [
    ("GET", re.compile(_I + "$"), "instances.get", False),
    ("GET", re.compile(_P + "/instances$"), "instances.list", False),
    ("POST", re.compile(_I + "/clone$"), "instances.clone", True),
    ("GET", re.compile(_I + "/getLatestRecoveryTime$"), "instances.getLatestRecoveryTime", False),
    ("POST", re.compile(_I + "/restoreBackup$"), "instances.restoreBackup", True),
    ("GET", re.compile(_I + "/backupRuns$"), "backupRuns.list", False),
    ("GET", re.compile(_P + "/operations/(?P<operation>[^/]+)$"), "operations.get", False),
    ("GET", re.compile(_P + "/operations$"), "operations.list", False),
]
#: Legacy reasons Google's front end gives the canonical codes it raises itself.
_REASONS = {
    "RESOURCE_EXHAUSTED": "rateLimitExceeded",
    "UNAVAILABLE": "backendError",
    "INTERNAL": "internalError",
    "PERMISSION_DENIED": "forbidden",
    "UNAUTHENTICATED": "authError",
    "NOT_FOUND": "notFound",
    "DEADLINE_EXCEEDED": "deadlineExceeded",
}


class SqlRestApp:
    """Routes one REST call to `SqlState`, with call counting, faults and write recording."""

    def __init__(self, state: SqlState, recorder: CallRecorder, faults: FaultInjector) -> None:
        self.state = state
        self.recorder = recorder
        self.faults = faults
        self.writes = WriteLog("sqladmin", state.clock, recorder)

    def __call__(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items() if k != "$alt"}
        int_enums = "enum-encoding=int" in "".join(parse_qs(url.query).get("$alt", []))
        for verb, pattern, name, is_write in _ROUTES:
            match = pattern.match(url.path)
            if verb == method and match is not None:
                return self._call(
                    name,
                    is_write,
                    path=match.groupdict(),
                    query=query,
                    body=body,
                    int_enums=int_enums,
                )
        return 404, SqlError(404, "notFound", f"No such method: {method} {url.path}").body()

    def _call(
        self,
        name: str,
        is_write: bool,
        *,
        path: dict[str, str],
        query: dict[str, str],
        body: bytes,
        int_enums: bool,
    ) -> tuple[int, dict[str, Any]]:
        self.recorder.count("sqladmin", name)
        injection = self.faults.decide("sqladmin", name, self.state.clock.elapsed())
        if injection.latency:
            time.sleep(injection.latency)
        if injection.error is not None:
            return _fault(injection.error)
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            return 400, _bad_json("the body is not JSON").body()
        request = {**path, **({"body": payload} if is_write else {})}
        try:
            result = self._dispatch(name, path, query, payload)
        except SqlError as err:
            if is_write:
                self.writes.record(name, request, error=err.canonical)
            return err.http, err.body()
        if is_write:
            self.writes.record(name, request)
        return 200, json_format.MessageToDict(to_pb(result), use_integers_for_enums=int_enums)

    def _dispatch(
        self, name: str, path: dict[str, str], query: dict[str, str], payload: dict[str, Any]
    ) -> Any:
        state, project = self.state, path["project"]
        limit, token = int(query.get("maxResults", 0) or 0), query.get("pageToken", "")
        if query.get("filter"):
            raise SqlError(501, "notImplemented", "The fake Cloud SQL does not filter.")
        handlers: dict[str, Callable[[], Any]] = {
            "instances.get": lambda: state.get_instance(project, path["instance"]),
            "instances.list": lambda: state.list_instances(project, limit, token),
            "instances.clone": lambda: state.clone(
                project, path["instance"], _parse(payload, sql.InstancesCloneRequest)
            ),
            "instances.getLatestRecoveryTime": lambda: state.latest_recovery_time(
                project, path["instance"]
            ),
            "instances.restoreBackup": lambda: state.restore_backup(
                project, path["instance"], _parse(payload, sql.InstancesRestoreBackupRequest)
            ),
            "backupRuns.list": lambda: state.list_backup_runs(
                project, path["instance"], limit, token
            ),
            "operations.get": lambda: state.get_operation(project, path["operation"]),
            "operations.list": lambda: state.list_operations(
                project, query.get("instance", ""), limit, token
            ),
        }
        return handlers[name]()


def _parse(payload: dict[str, Any], cls: Any) -> Any:
    message = cls()
    try:
        json_format.ParseDict(payload, cls.pb(message))
    except json_format.ParseError as err:
        raise _bad_json(str(err)) from None
    return message


def _bad_json(detail: str) -> SqlError:
    return SqlError(
        400, "invalid", f"Invalid JSON payload received. {detail}", status="INVALID_ARGUMENT"
    )


def _fault(error: FakeCloudError) -> tuple[int, dict[str, Any]]:
    reason = _REASONS.get(error.code, error.code.lower())
    return error.http_status, SqlError(
        error.http_status, reason, error.message, status=error.code
    ).body()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client's session reuses connections
    disable_nagle_algorithm = True
    server: SqlRestServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, payload = self.server.app(self.command, self.path, body)
        data = json.dumps(payload).encode()
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        return  # the recorder counts calls; stderr stays quiet


class SqlRestServer(ThreadingHTTPServer):
    """The HTTP server of the fake Cloud SQL Admin; `serve_in_thread()` starts it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: SqlRestApp, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.app = app
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve_in_thread(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

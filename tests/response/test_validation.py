"""Post-revert validation against a real HTTP server on 127.0.0.1 and real smoke scripts:
2xx passes, retries absorb a slow start, timeouts and kills are reported, nothing raises."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from guard.adapters.validation import OUTPUT_TAIL, CheckResult, run_checks, run_smoke_command
from guard.config.models import SmokeConfig, ValidationConfig
from guard.core.model import SignalKind


class _Handler(BaseHTTPRequestHandler):
    flaky_calls = 0
    lock = threading.Lock()

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(0.6)
        if self.path == "/flaky":
            with self.lock:
                type(self).flaky_calls += 1
                calls = type(self).flaky_calls
            status = 503 if calls <= 2 else 200
        else:
            status = {"/ok": 200, "/health/ready": 204, "/fail": 500}.get(self.path, 404)
        body = b"" if status == 204 else f"status {status}".encode()
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (the slow path): nothing to answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: object, client_address: object) -> None:
        pass


@pytest.fixture
def base_url() -> Iterator[str]:
    _Handler.flaky_calls = 0
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as built:
        yield built


def config(base_url: str, *paths: str, retries: int = 2) -> ValidationConfig:
    return ValidationConfig.model_validate(
        {"base_url": base_url, "paths": list(paths), "timeout_seconds": 0.3, "retries": retries}
    )


def by_name(checks: tuple[CheckResult, ...]) -> dict[str, CheckResult]:
    return {c.name: c for c in checks}


async def test_http_checks_pass_on_2xx_and_fail_as_results(
    base_url: str, client: httpx.AsyncClient
) -> None:
    cfg = config(base_url, "/ok", "/health/ready", "/fail", "/slow", retries=1)
    report = await run_checks(cfg, client=client, backoff=0.01)
    checks = by_name(report.checks)
    assert not report.ok
    assert (checks["GET /ok"].ok, checks["GET /ok"].status, checks["GET /ok"].attempts) == (
        True,
        200,
        1,
    )
    assert checks["GET /health/ready"].ok
    assert checks["GET /health/ready"].status == 204
    fail = checks["GET /fail"]
    assert (fail.ok, fail.status, fail.attempts) == (False, 500, 2)
    assert "status 500" in fail.detail
    slow = checks["GET /slow"]
    assert (slow.ok, slow.status, slow.attempts) == (False, None, 2)
    assert "0.3s" in slow.detail
    assert slow.latency < 0.6
    assert {c.name for c in report.failed} == {"GET /fail", "GET /slow"}
    evidence = report.to_evidence(service="pegasus-api", revision="pegasus-api-00010-old")
    assert evidence.kind == SignalKind.VALIDATION
    assert "GET /fail" in evidence.summary
    assert evidence.revision == "pegasus-api-00010-old"
    assert evidence.data["ok"] is False
    assert len(evidence.data["checks"]) == 4


async def test_a_path_that_fails_twice_then_succeeds_passes_on_the_third_try(
    base_url: str, client: httpx.AsyncClient
) -> None:
    report = await run_checks(config(base_url, "/flaky"), client=client, backoff=0.01)
    [check] = report.checks
    assert report.ok
    assert check.ok
    assert (check.status, check.attempts) == (200, 3)
    assert report.to_evidence().summary == "validation passed: 1 check(s)"


async def test_an_unreachable_service_is_a_failed_check(client: httpx.AsyncClient) -> None:
    report = await run_checks(config("http://127.0.0.1:9", "/ok", retries=0), client=client)
    [check] = report.checks
    assert not check.ok
    assert check.status is None
    assert "ConnectError" in check.detail


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "smoke.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


async def test_smoke_success_gets_the_base_url_in_its_environment(
    tmp_path: Path, base_url: str, client: httpx.AsyncClient
) -> None:
    cfg = config(base_url, "/ok").model_copy(
        update={
            "smoke": SmokeConfig(
                command=[script(tmp_path, 'echo "target=$TARGET"\n'), "--queue"],
                env={"TARGET": "{base_url}/jobs"},
            )
        }
    )
    report = await run_checks(cfg, client=client)
    assert report.ok, report
    smoke = report.checks[-1]
    assert smoke.name.startswith("smoke: ")
    assert smoke.name.endswith("--queue")
    assert (smoke.status, smoke.detail.strip()) == (0, f"target={base_url}/jobs")
    skipped = await run_checks(cfg, client=client, run_smoke=False)
    assert len(skipped.checks) == 1


async def test_smoke_failure_keeps_the_tail_of_its_output(tmp_path: Path) -> None:
    body = 'i=0; while [ $i -lt 300 ]; do echo "progress line $i"; i=$((i+1)); done\n'
    body += 'echo "queue not drained" >&2; exit 3\n'
    smoke = SmokeConfig(command=[script(tmp_path, body)])
    result = await run_smoke_command(smoke, base_url="http://x")
    assert (result.ok, result.status) == (False, 3)
    assert result.detail.endswith("queue not drained\n")
    assert "progress line 299" in result.detail
    assert "progress line 0\n" not in result.detail
    assert len(result.detail.encode()) <= OUTPUT_TAIL


async def test_a_hanging_smoke_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    body = f"echo started\nsleep 30 &\necho $! > {pidfile}\nwait\n"
    smoke = SmokeConfig(command=[script(tmp_path, body)], timeout_seconds=0.5)
    started = time.monotonic()
    result = await run_smoke_command(smoke, base_url="http://x")
    assert time.monotonic() - started < 5
    assert (result.ok, result.status) == (False, None)
    assert result.detail.startswith("timed out after 0.5s: killed")
    assert "started" in result.detail
    for _ in range(100):
        if not running(pidfile):
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the smoke command's child survived the timeout")


def running(pidfile: Path) -> bool:
    """Whether the process is alive: gone or a zombie waiting for a reaper both mean not."""
    stat = Path(f"/proc/{pidfile.read_text().strip()}/stat")
    return stat.exists() and not stat.read_text().split(") ")[1].startswith("Z")


async def test_a_missing_smoke_command_is_a_failed_check(tmp_path: Path) -> None:
    smoke = SmokeConfig(command=[str(tmp_path / "no-such-smoke")])
    result = await run_smoke_command(smoke, base_url="http://x")
    assert not result.ok
    assert result.status is None
    assert result.detail.startswith("cannot run")

"""Post-revert validation: is the app actually serving again? (The runbook's last step.)

A revert is only done when the service answers: Cloud Run reporting 100% on the old revision
says where traffic goes, not that the old code works on today's schema. So after a revert
the guard GETs the configured read paths (readiness, core reads) and runs the smoke command
(e.g. the worker-queue smoke test). A freshly reverted revision may need a moment (cold
instances), so each path is retried a few times with a short back-off; only a 2xx passes.
The smoke command runs without a shell (argv from the config), in its own process group so
a timeout kills it and everything it started; the last ~2 KB of its output is kept for the
page. Nothing here raises for a failing check: every outcome is a `CheckResult`, and the
report converts to `Evidence` (kind VALIDATION) for the incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import httpx

from guard.config.models import SmokeConfig, ValidationConfig
from guard.core.model import Evidence, SignalKind

#: How much of the smoke command's output (stdout and stderr, interleaved) is kept.
OUTPUT_TAIL = 2048


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check: an HTTP path (`status` = HTTP status) or the smoke command (exit code)."""

    name: str
    ok: bool
    status: int | None  # HTTP status or exit code; None when there was none (error, timeout)
    latency: float  # seconds, of the last attempt (the whole run for the smoke command)
    attempts: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Every check's result; `ok` only when every check passed (and there was one)."""

    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def summary(self) -> str:
        if self.ok:
            return f"validation passed: {len(self.checks)} check(s)"
        names = ", ".join(c.name for c in self.failed) or "no checks ran"
        return f"validation failed: {names}"

    def to_evidence(
        self, *, at: datetime | None = None, service: str = "", revision: str = ""
    ) -> Evidence:
        return Evidence(
            kind=SignalKind.VALIDATION,
            at=at or datetime.now(UTC),
            summary=self.summary(),
            service=service,
            revision=revision,
            data={"ok": self.ok, "checks": [asdict(c) for c in self.checks]},
        )


async def run_checks(
    config: ValidationConfig,
    *,
    client: httpx.AsyncClient,
    run_smoke: bool = True,
    backoff: float = 0.5,
) -> ValidationReport:
    """Run every configured check (HTTP paths concurrently, then the smoke command)."""
    base = str(config.base_url).rstrip("/")
    checks = list(
        await asyncio.gather(*(_http_check(client, base, p, config, backoff) for p in config.paths))
    )
    if run_smoke and config.smoke is not None:
        checks.append(await run_smoke_command(config.smoke, base_url=base))
    return ValidationReport(tuple(checks))


async def _http_check(
    client: httpx.AsyncClient, base: str, path: str, config: ValidationConfig, backoff: float
) -> CheckResult:
    url = base + path
    attempts = config.retries + 1
    status: int | None = None
    detail, latency = "", 0.0
    for attempt in range(1, attempts + 1):
        started = time.monotonic()
        try:
            response = await client.get(url, timeout=config.timeout_seconds)
        except httpx.TimeoutException:
            status, detail = None, f"no answer within {config.timeout_seconds:g}s"
        except httpx.HTTPError as err:
            status, detail = None, f"{type(err).__name__}: {err}"
        else:
            status = response.status_code
            if response.is_success:
                latency = time.monotonic() - started
                return CheckResult(f"GET {path}", True, status, latency, attempt)
            detail = f"HTTP {status}: {response.text[:200]}"
        latency = time.monotonic() - started
        if attempt < attempts:
            await asyncio.sleep(backoff * attempt)
    return CheckResult(f"GET {path}", False, status, latency, attempts, detail)


async def run_smoke_command(smoke: SmokeConfig, *, base_url: str) -> CheckResult:
    """Run the smoke command (no shell); exit 0 passes. A timeout kills its process group."""
    name = "smoke: " + " ".join(smoke.command)
    env = dict(os.environ)
    env.update({k: v.replace("{base_url}", base_url) for k, v in smoke.env.items()})
    started = time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *smoke.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, killed whole on timeout
        )
    except OSError as err:
        return CheckResult(name, False, None, time.monotonic() - started, 1, f"cannot run: {err}")
    tail = bytearray()

    async def drain() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(4096):
            tail.extend(chunk)
            del tail[:-OUTPUT_TAIL]

    timed_out = False
    try:
        async with asyncio.timeout(smoke.timeout_seconds):
            await asyncio.gather(drain(), proc.wait())
    except TimeoutError:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
    latency = time.monotonic() - started
    output = tail.decode("utf-8", errors="replace")
    if timed_out:
        detail = f"timed out after {smoke.timeout_seconds:g}s: killed\n{output}".rstrip()
        return CheckResult(name, False, None, latency, 1, detail)
    code = proc.returncode
    return CheckResult(name, code == 0, code, latency, 1, output)

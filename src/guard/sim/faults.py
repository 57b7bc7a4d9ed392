"""Fault injection for the fake cloud: error codes, latency, dropped streams, quota exhaustion.

A scenario or a test arms faults per API and method; every fake RPC (gRPC or REST) asks the
injector before it runs. The errors are Google's canonical codes, so the real client
libraries raise their own exceptions (`google.api_core.exceptions.ServiceUnavailable`, ...).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

#: Google's canonical error codes (google.rpc.Code) by name, with their HTTP status for REST.
CANONICAL_CODES: dict[str, tuple[int, int]] = {
    "CANCELLED": (1, 499),
    "UNKNOWN": (2, 500),
    "INVALID_ARGUMENT": (3, 400),
    "DEADLINE_EXCEEDED": (4, 504),
    "NOT_FOUND": (5, 404),
    "ALREADY_EXISTS": (6, 409),
    "PERMISSION_DENIED": (7, 403),
    "RESOURCE_EXHAUSTED": (8, 429),
    "FAILED_PRECONDITION": (9, 400),
    "ABORTED": (10, 409),
    "OUT_OF_RANGE": (11, 400),
    "UNIMPLEMENTED": (12, 501),
    "INTERNAL": (13, 500),
    "UNAVAILABLE": (14, 503),
    "DATA_LOSS": (15, 500),
    "UNAUTHENTICATED": (16, 401),
}


class FakeCloudError(Exception):
    """An error a fake RPC returns to its caller, with Google's canonical code name."""

    def __init__(self, code: str, message: str) -> None:
        if code not in CANONICAL_CODES:
            raise ValueError(f"unknown canonical code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return CANONICAL_CODES[self.code][1]


@dataclass
class Fault:
    """One armed fault.

    `api` and `method` select the calls ("*" matches any); `skip` lets that many matching
    calls through first; `times` is how many calls fail (None: every one); `code` is the
    canonical error to return (None: no error, e.g. only latency); `latency` real seconds
    are slept before the call; `drop_after` ends a server stream with UNAVAILABLE after
    that many responses; `start`/`end` bound the fault in scenario seconds.
    """

    api: str
    method: str = "*"
    code: str | None = "UNAVAILABLE"
    message: str = "injected fault"
    times: int | None = None
    skip: int = 0
    latency: float = 0.0
    drop_after: int | None = None
    start: float = 0.0
    end: float | None = None
    fired: int = 0
    seen: int = 0

    def __post_init__(self) -> None:
        if self.code is not None and self.code not in CANONICAL_CODES:
            raise ValueError(f"unknown canonical code {self.code!r}")

    def matches(self, api: str, method: str, elapsed: float) -> bool:
        return (
            self.api in ("*", api)
            and self.method in ("*", method)
            and elapsed >= self.start
            and (self.end is None or elapsed < self.end)
        )


@dataclass(frozen=True, slots=True)
class Injection:
    """What the injector decided for one call."""

    latency: float = 0.0
    error: FakeCloudError | None = None
    drop_after: int | None = None


@dataclass
class FaultInjector:
    """The armed faults; thread-safe."""

    _faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def decide(self, api: str, method: str, elapsed: float) -> Injection:
        """Consume the faults that apply to one call of `api`/`method` at `elapsed`."""
        latency = 0.0
        error: FakeCloudError | None = None
        drop_after: int | None = None
        with self._lock:
            for f in self._faults:
                if not f.matches(api, method, elapsed):
                    continue
                f.seen += 1
                if f.seen <= f.skip or (f.times is not None and f.fired >= f.times):
                    continue
                f.fired += 1
                latency += f.latency
                if f.drop_after is not None:
                    drop_after = (
                        f.drop_after if drop_after is None else min(drop_after, f.drop_after)
                    )
                elif f.code is not None and error is None:
                    error = FakeCloudError(f.code, f.message)
        return Injection(latency=latency, error=error, drop_after=drop_after)

"""The record of every write call the fake cloud received.

Tests and `guard simulate` assert on it: "exactly one UpdateService", "zero writes in
dry-run", "clone before secret version". Reads are not recorded here (they are counted,
for the API-cost benchmarks, in `calls`).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class WriteCall:
    """One write call: which API and method, the request as a JSON-able dict, and when.

    `error` is the canonical code (e.g. "ABORTED") when the fake rejected the call after it
    reached the API's implementation; None when it was accepted. Calls failed by an injected
    fault never reach the implementation: they show only in `CallRecorder.counts()`.
    """

    api: str  # e.g. "run", "logging", "monitoring", "sqladmin", "secretmanager", "deploy"
    method: str  # the RPC's name as Google spells it, e.g. "UpdateService"
    request: dict[str, Any]
    at: datetime
    elapsed: float  # scenario seconds
    error: str | None = None


@dataclass
class CallRecorder:
    """Thread-safe log of write calls, plus a counter of every call (reads too) by API/method."""

    _writes: list[WriteCall] = field(default_factory=list)
    _counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, api: str, method: str) -> None:
        """Count one call (read or write) of `api`/`method`."""
        with self._lock:
            self._counts[(api, method)] += 1

    def write(self, call: WriteCall) -> None:
        """Record one write call (also counts it)."""
        with self._lock:
            self._writes.append(call)
            self._counts[(call.api, call.method)] += 1

    def writes(
        self, api: str | None = None, method: str | None = None, *, accepted_only: bool = False
    ) -> list[WriteCall]:
        """The write calls so far, oldest first, optionally only one API and/or method.

        `accepted_only` leaves out the calls the fake rejected (those with an `error`).
        """
        with self._lock:
            return [
                c
                for c in self._writes
                if (api is None or c.api == api)
                and (method is None or c.method == method)
                and not (accepted_only and c.error is not None)
            ]

    def counts(self) -> dict[tuple[str, str], int]:
        """Calls so far by (api, method), reads and writes."""
        with self._lock:
            return dict(self._counts)

"""Cloud SQL Admin, read side: the recoverable window a point-in-time restore must fall in.

A restore proposal is only useful if its point in time can be restored, so before proposing
one the guard asks getLatestRecoveryTime for the instance's window. Cloud SQL Admin is
reached over REST (v1beta4; see docs/fake-cloud.md), whose client is synchronous: calls run
in a worker thread so the service's event loop never blocks. A failed read returns None and
the proposal says the window is unknown; it never raises into the responder.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from google.api_core import exceptions
from google.cloud import sqladmin_v1beta4 as sqladmin

from guard.adapters.google_clients import GoogleClients

CallCounter = Callable[[str, str], None]


class CloudSqlReader:
    """Reads what the guard needs from Cloud SQL Admin before proposing a restore."""

    def __init__(
        self, clients: GoogleClients, *, on_call: CallCounter | None = None, timeout: float = 10.0
    ) -> None:
        self._clients = clients
        self._on_call = on_call or (lambda method, code: None)
        self.timeout = timeout

    async def recovery_window(
        self, project: str, instance: str
    ) -> tuple[datetime, datetime] | None:
        """(earliestRecoveryTime, latestRecoveryTime) of `instance`, or None if unreadable."""
        return await asyncio.to_thread(self._recovery_window, project, instance)

    def _recovery_window(self, project: str, instance: str) -> tuple[datetime, datetime] | None:
        request = sqladmin.SqlInstancesGetLatestRecoveryTimeRequest(
            project=project, instance=instance
        )
        try:
            response = self._clients.sql_instances().get_latest_recovery_time(
                request=request, timeout=self.timeout
            )
        except exceptions.GoogleAPICallError as err:
            code = err.grpc_status_code.name if err.grpc_status_code else "UNKNOWN"
            self._on_call("instances.getLatestRecoveryTime", code)
            return None
        self._on_call("instances.getLatestRecoveryTime", "OK")
        earliest: datetime = response.earliest_recovery_time
        latest: datetime = response.latest_recovery_time
        return earliest, latest

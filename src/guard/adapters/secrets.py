"""Secret Manager: read and repoint the database connection string the app's services use.

A restore to a point-in-time clone ends with the app talking to the clone: a new version of
the connection-string secret (AddSecretVersion), then new Cloud Run instances to read it. The
payload is a credential, so it is checksummed both ways: the new version is sent with its
CRC32C (Google rejects a payload corrupted on the way) and a read is checked against the
CRC32C Google returns. The checksum is computed here (the `google-crc32c` wheel is not a
dependency; a 64 KiB payload at most makes a table-driven loop fast enough). Reads retry
transient errors; AddSecretVersion is never retried: a retried add that had landed would
leave a second version, and only the caller can tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from google.api_core import exceptions
from google.cloud import secretmanager_v1 as sm

from guard.adapters.cloudrun import CallCounter, code_of
from guard.adapters.cloudrun_write import Caller
from guard.adapters.google_clients import GoogleClients


@dataclass(frozen=True, slots=True)
class SecretValue:
    version: str  # the resolved full version name, projects/P/secrets/S/versions/N
    data: bytes


class SecretCallError(Exception):
    """A Secret Manager call failed (or returned a payload that fails its checksum:
    DATA_LOSS): canonical code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class Secrets:
    """The latest value of a secret, and a new version of it."""

    def __init__(
        self,
        clients: GoogleClients,
        *,
        on_call: CallCounter | None = None,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.2,
    ) -> None:
        self._clients = clients
        self.timeout = timeout
        self._caller = Caller(on_call, attempts=attempts, backoff=backoff)

    async def latest(self, project: str, secret: str) -> SecretValue:
        """AccessSecretVersion of `versions/latest`, its CRC32C verified when Google sent one."""
        name = f"projects/{project}/secrets/{secret}/versions/latest"
        call = partial(
            self._clients.secrets_async().access_secret_version,
            name=name,
            retry=None,
            timeout=self.timeout,
        )
        try:
            response = await self._caller.retried("AccessSecretVersion", call)
        except exceptions.GoogleAPICallError as err:
            raise SecretCallError(code_of(err), err.message or str(err)) from err
        data = bytes(response.payload.data)
        if "data_crc32c" in response.payload and response.payload.data_crc32c != crc32c(data):
            raise SecretCallError(
                "DATA_LOSS", f"the payload of {response.name} does not match its CRC32C"
            )
        return SecretValue(version=response.name, data=data)

    async def add(self, project: str, secret: str, data: bytes) -> str:
        """AddSecretVersion with the payload's CRC32C; the new version's full name."""
        request = sm.AddSecretVersionRequest(
            parent=f"projects/{project}/secrets/{secret}",
            payload=sm.SecretPayload(data=data, data_crc32c=crc32c(data)),
        )
        call = partial(
            self._clients.secrets_async().add_secret_version,
            request=request,
            retry=None,
            timeout=self.timeout,
        )
        try:
            version = await self._caller.once("AddSecretVersion", call)
        except exceptions.GoogleAPICallError as err:
            raise SecretCallError(code_of(err), err.message or str(err)) from err
        return str(version.name)


def _crc_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum Secret Manager uses for payloads."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF

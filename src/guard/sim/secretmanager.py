"""The fake Secret Manager: the database connection string the guard repoints after a restore.

Restore Option A ends with AddSecretVersion (the clone's connection string) and a new Cloud
Run revision to pick it up; the scenario engine reads `access(...)` to know which database a
revision talks to. Faithful where a wrong fake would hide a bug: payloads over 64 KiB and
CRC32C mismatches are INVALID_ARGUMENT, `versions/latest` is the most recently created
version (a disabled latest fails rather than falling back), and names in responses carry the
project number, not the id.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
from google.cloud import secretmanager_v1 as sm

from guard.sim.clock import SimClock
from guard.sim.faults import FakeCloudError, FaultInjector
from guard.sim.protoutil import paginate, project_number, stable_hex, timestamp
from guard.sim.record import CallRecorder
from guard.sim.secretmanager_rpc import secrets_handler

MAX_PAYLOAD = 64 * 1024
_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_SECRET = re.compile(r"^projects/([^/]+)/secrets/([^/]+)$")
_VERSION = re.compile(r"^projects/([^/]+)/secrets/([^/]+)/versions/([^/]+)$")
_ENABLED, _DISABLED = sm.SecretVersion.State.ENABLED, sm.SecretVersion.State.DISABLED


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum Secret Manager uses for payloads."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE = _crc_table()


@dataclass
class _Version:
    number: int
    data: bytes
    created: datetime
    state: int = _ENABLED
    client_checksum: bool = False


@dataclass
class _Secret:
    project: str  # the project id
    secret_id: str
    created: datetime
    spec: sm.Secret
    versions: list[_Version]

    @property
    def name(self) -> str:
        return f"projects/{project_number(self.project)}/secrets/{self.secret_id}"


class SecretsState:
    """Secrets and their versions, keyed by project id (requests may name the number)."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._secrets: dict[tuple[str, str], _Secret] = {}
        self._projects: dict[str, str] = {}  # project number (as text) -> project id

    # -- scenario side ----------------------------------------------------------------------

    def create_secret(self, project: str, secret_id: str) -> str:
        """A secret with automatic replication and no versions; its name (project number)."""
        secret = sm.Secret(replication=sm.Replication(automatic=sm.Replication.Automatic()))
        return str(self.create(f"projects/{project}", secret_id, secret).name)

    def add_version(self, project: str, secret_id: str, data: bytes) -> int:
        """Add an enabled version holding `data`; its version number."""
        version = self.add(f"projects/{project}/secrets/{secret_id}", sm.SecretPayload(data=data))
        return int(version.name.rsplit("/", 1)[1])

    def set_version_enabled(
        self, project: str, secret_id: str, version: int, enabled: bool
    ) -> None:
        self.set_state(
            f"projects/{project}/secrets/{secret_id}/versions/{version}",
            _ENABLED if enabled else _DISABLED,
        )

    def value(self, project: str, secret_id: str, version: str = "latest") -> bytes:
        """What AccessSecretVersion returns for `version` (raises FakeCloudError as it does)."""
        data: bytes = self.access(f"projects/{project}/secrets/{secret_id}/versions/{version}")[
            1
        ].data
        return data

    # -- API side ---------------------------------------------------------------------------

    def handler(self, recorder: CallRecorder, faults: FaultInjector) -> grpc.GenericRpcHandler:
        """The gRPC handler of SecretManagerService (api name "secretmanager")."""
        return secrets_handler(self, recorder, faults)

    def create(self, parent: str, secret_id: str, secret: sm.Secret) -> sm.Secret:
        match = re.match(r"^projects/([^/]+)$", parent)
        if match is None:
            raise FakeCloudError("INVALID_ARGUMENT", f"Invalid parent: {parent!r}")
        if not _SECRET_ID.match(secret_id):
            raise FakeCloudError(
                "INVALID_ARGUMENT",
                "Secret ID must contain only letters, digits, underscores and hyphens, and be "
                "at most 255 characters.",
            )
        if "replication" not in secret:
            raise FakeCloudError("INVALID_ARGUMENT", "Secret.replication is required.")
        with self._lock:
            project = self._project(match.group(1))
            if (project, secret_id) in self._secrets:
                raise FakeCloudError(
                    "ALREADY_EXISTS",
                    f"Secret [projects/{project_number(project)}/secrets/{secret_id}] "
                    "already exists.",
                )
            record = _Secret(project, secret_id, self.clock.now(), sm.Secret(secret), [])
            self._secrets[(project, secret_id)] = record
            return self._render(record)

    def get(self, name: str) -> sm.Secret:
        with self._lock:
            return self._render(self._secret(name))

    def add(self, parent: str, payload: sm.SecretPayload) -> sm.SecretVersion:
        data = bytes(payload.data)
        if len(data) > MAX_PAYLOAD:
            raise FakeCloudError(
                "INVALID_ARGUMENT",
                f"Secret payload is {len(data)} bytes; the maximum is {MAX_PAYLOAD} bytes.",
            )
        checksum = "data_crc32c" in payload
        if checksum and payload.data_crc32c != crc32c(data):
            raise FakeCloudError(
                "INVALID_ARGUMENT",
                "The provided data_crc32c does not match the CRC32C checksum of the payload data.",
            )
        with self._lock:
            secret = self._secret(parent)
            version = _Version(len(secret.versions) + 1, data, self.clock.now(), _ENABLED, checksum)
            secret.versions.append(version)
            return self._render_version(secret, version)

    def access(self, name: str) -> tuple[str, sm.SecretPayload]:
        with self._lock:
            secret, version = self._version(name)
            full = f"{secret.name}/versions/{version.number}"
            if version.state != _ENABLED:
                state = sm.SecretVersion.State(version.state).name
                raise FakeCloudError(
                    "FAILED_PRECONDITION", f"Secret Version [{full}] is in {state} state."
                )
            return full, sm.SecretPayload(data=version.data, data_crc32c=crc32c(version.data))

    def get_version(self, name: str) -> sm.SecretVersion:
        with self._lock:
            return self._render_version(*self._version(name))

    def list_versions(
        self, parent: str, page_size: int, page_token: str
    ) -> tuple[list[Any], str, int]:
        with self._lock:
            secret = self._secret(parent)
            found = [self._render_version(secret, v) for v in reversed(secret.versions)]
        page, token = paginate(found, page_size, page_token, default=25000, maximum=25000)
        return page, token, len(found)

    def set_state(self, name: str, state: int) -> sm.SecretVersion:
        with self._lock:
            secret, version = self._version(name)
            version.state = state
            return self._render_version(secret, version)

    # -- internals --------------------------------------------------------------------------

    def _project(self, given: str) -> str:
        """The project id for an id or a number; numbers must be of a project seen before."""
        if given.isdigit():
            return self._projects.get(given, given)
        self._projects[str(project_number(given))] = given
        return given

    def _secret(self, name: str) -> _Secret:
        match = _SECRET.match(name)
        if match is None:
            raise FakeCloudError("INVALID_ARGUMENT", f"Invalid secret name: {name!r}")
        project, secret_id = match.groups()
        found = self._secrets.get((self._project(project), secret_id))
        if found is None:
            number = project if project.isdigit() else project_number(project)
            raise FakeCloudError(
                "NOT_FOUND", f"Secret [projects/{number}/secrets/{secret_id}] not found."
            )
        return found

    def _version(self, name: str) -> tuple[_Secret, _Version]:
        match = _VERSION.match(name)
        if match is None:
            raise FakeCloudError("INVALID_ARGUMENT", f"Invalid secret version name: {name!r}")
        project, secret_id, wanted = match.groups()
        secret = self._secret(f"projects/{project}/secrets/{secret_id}")
        if wanted == "latest":
            if not secret.versions:
                raise FakeCloudError(
                    "NOT_FOUND", f"Secret [{secret.name}] not found or has no versions."
                )
            return secret, secret.versions[-1]
        if not wanted.isdigit() or not 1 <= int(wanted) <= len(secret.versions):
            raise FakeCloudError(
                "NOT_FOUND", f"Secret Version [{secret.name}/versions/{wanted}] not found."
            )
        return secret, secret.versions[int(wanted) - 1]

    def _render(self, secret: _Secret) -> sm.Secret:
        out = sm.Secret(secret.spec)
        out.name = secret.name
        out.create_time = timestamp(secret.created)
        out.etag = f'"{stable_hex(secret.name, len(secret.versions), length=14)}"'
        return out

    def _render_version(self, secret: _Secret, version: _Version) -> sm.SecretVersion:
        return sm.SecretVersion(
            name=f"{secret.name}/versions/{version.number}",
            create_time=timestamp(version.created),
            state=version.state,
            replication_status=sm.ReplicationStatus(
                automatic=sm.ReplicationStatus.AutomaticStatus()
            ),
            etag=f'"{stable_hex(secret.name, version.number, version.state, length=14)}"',
            client_specified_payload_checksum=version.client_checksum,
        )

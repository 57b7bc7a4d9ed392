"""Build the official Google Cloud clients, for real Google or for a local emulator.

Every adapter gets its clients here, so production and the fake cloud differ only in how a
client is constructed, never in how it is used. For an emulator the gRPC clients get an
injected plaintext channel (setting only `api_endpoint` builds a TLS channel that retries for
~10 s against a plaintext port; passing both a transport and credentials raises ValueError),
with unlimited message sizes as the libraries' own channels have. Async clients need a
`grpc.aio` channel created inside the running event loop, so they are built per loop. Cloud SQL
Admin speaks REST only (v1beta4 over `transport="rest"`), anonymous against an emulator.

An optional `observer(service, method, code)` is told of every gRPC call when it ends (see
`grpc_observe`). Against an emulator the injected channels are intercepted; against Google the
clients still build their own channels (endpoint, credentials, TLS as the library decides), but
through a channel factory handed to the transport that adds the interceptors. Without an
observer, clients are built exactly as before. The REST Cloud SQL clients are not observed:
their calls are counted by their adapter.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import deploy_v1, monitoring_v3, run_v2, secretmanager_v1
from google.cloud import sqladmin_v1beta4 as sqladmin
from google.cloud.logging_v2.services.logging_service_v2 import (
    LoggingServiceV2AsyncClient,
    LoggingServiceV2Client,
)
from grpc import aio

from guard.adapters.grpc_observe import CallObserver, aio_interceptors, intercept_channel

#: As the client libraries' own channels: no 4 MiB ceiling on large pages of log entries.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
]

C = TypeVar("C")


@dataclass(frozen=True, slots=True)
class Emulator:
    """Where a Google Cloud emulator listens: gRPC `host:port` and a REST base URL."""

    grpc_target: str
    rest_url: str


class GoogleClients:
    """A factory and owner of Google Cloud clients; `close()` / `aclose()` release them.

    Clients are built on first use and reused. Sync methods may be called from any thread;
    the `*_async` ones only from inside a running event loop (their channel belongs to it).
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        *,
        credentials: Credentials | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        if emulator is not None and credentials is not None:
            raise ValueError("an emulator takes no credentials")
        self.emulator = emulator
        self._credentials = credentials
        self._observer = observer
        self._sync: dict[str, Any] = {}
        self._async: dict[tuple[str, asyncio.AbstractEventLoop], Any] = {}
        self._channel: grpc.Channel | None = None
        self._aio_channels: dict[asyncio.AbstractEventLoop, aio.Channel] = {}
        self._lock = threading.Lock()  # two threads asking at once still share one client

    @classmethod
    def for_emulator(
        cls, grpc_target: str, rest_url: str, *, observer: CallObserver | None = None
    ) -> GoogleClients:
        return cls(Emulator(grpc_target, rest_url), observer=observer)

    # -- sync clients -------------------------------------------------------------------------

    def run_services(self) -> run_v2.ServicesClient:
        return self._grpc_client(run_v2.ServicesClient)

    def run_revisions(self) -> run_v2.RevisionsClient:
        return self._grpc_client(run_v2.RevisionsClient)

    def metrics(self) -> monitoring_v3.MetricServiceClient:
        return self._grpc_client(monitoring_v3.MetricServiceClient)

    def logging(self) -> LoggingServiceV2Client:
        return self._grpc_client(LoggingServiceV2Client)

    def secrets(self) -> secretmanager_v1.SecretManagerServiceClient:
        return self._grpc_client(secretmanager_v1.SecretManagerServiceClient)

    def deploy(self) -> deploy_v1.CloudDeployClient:
        return self._grpc_client(deploy_v1.CloudDeployClient)

    def sql_instances(self) -> sqladmin.SqlInstancesServiceClient:
        return self._rest_client(sqladmin.SqlInstancesServiceClient)

    def sql_operations(self) -> sqladmin.SqlOperationsServiceClient:
        return self._rest_client(sqladmin.SqlOperationsServiceClient)

    def sql_backup_runs(self) -> sqladmin.SqlBackupRunsServiceClient:
        return self._rest_client(sqladmin.SqlBackupRunsServiceClient)

    # -- async clients (call inside the running loop) -------------------------------------------

    def run_services_async(self) -> run_v2.ServicesAsyncClient:
        return self._async_client(run_v2.ServicesAsyncClient)

    def run_revisions_async(self) -> run_v2.RevisionsAsyncClient:
        return self._async_client(run_v2.RevisionsAsyncClient)

    def metrics_async(self) -> monitoring_v3.MetricServiceAsyncClient:
        return self._async_client(monitoring_v3.MetricServiceAsyncClient)

    def logging_async(self) -> LoggingServiceV2AsyncClient:
        return self._async_client(LoggingServiceV2AsyncClient)

    def secrets_async(self) -> secretmanager_v1.SecretManagerServiceAsyncClient:
        return self._async_client(secretmanager_v1.SecretManagerServiceAsyncClient)

    def deploy_async(self) -> deploy_v1.CloudDeployAsyncClient:
        return self._async_client(deploy_v1.CloudDeployAsyncClient)

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync clients' channels and sessions (async ones: `aclose`)."""
        with self._lock:
            clients, self._sync = list(self._sync.values()), {}
            channel, self._channel = self._channel, None
        for client in clients:  # closing the shared emulator channel twice is harmless
            client.transport.close()
        if channel is not None:
            channel.close()

    async def aclose(self) -> None:
        """Close the async clients built in the running loop (and their channel)."""
        loop = asyncio.get_running_loop()
        mine = [key for key in self._async if key[1] is loop]
        clients = [self._async.pop(key) for key in mine]
        if self.emulator is None:
            for client in clients:
                await client.transport.close()
        channel = self._aio_channels.pop(loop, None)
        if channel is not None:
            await channel.close()

    # -- construction ---------------------------------------------------------------------------

    def _grpc_client(self, cls: Callable[..., C]) -> C:
        key = _name(cls)
        with self._lock:
            return self._build_grpc(cls, key)

    def _build_grpc(self, cls: Callable[..., C], key: str) -> C:
        if key not in self._sync:
            if self.emulator is None and self._observer is None:
                self._sync[key] = cls(credentials=self._credentials)
            elif self.emulator is None:
                transport = self._observed_transport(cls, "grpc")
                self._sync[key] = cls(credentials=self._credentials, transport=transport)
            else:
                if self._channel is None:
                    self._channel = grpc.insecure_channel(
                        self.emulator.grpc_target, options=CHANNEL_OPTIONS
                    )
                    if self._observer is not None:
                        self._channel = intercept_channel(self._channel, self._observer)
                transport = cls.get_transport_class("grpc")(channel=self._channel)  # type: ignore[attr-defined]
                self._sync[key] = cls(transport=transport)
        client: C = self._sync[key]
        return client

    def _async_client(self, cls: Callable[..., C]) -> C:
        loop = asyncio.get_running_loop()  # RuntimeError outside a loop, by design
        key = (_name(cls), loop)
        if key not in self._async:
            if self.emulator is None and self._observer is None:
                self._async[key] = cls(credentials=self._credentials)
            elif self.emulator is None:
                transport = self._observed_transport(cls, "grpc_asyncio")
                self._async[key] = cls(credentials=self._credentials, transport=transport)
            else:
                channel = self._aio_channels.get(loop)
                if channel is None:
                    observed = None if self._observer is None else aio_interceptors(self._observer)
                    channel = aio.insecure_channel(
                        self.emulator.grpc_target, options=CHANNEL_OPTIONS, interceptors=observed
                    )
                    self._aio_channels[loop] = channel
                transport = cls.get_transport_class("grpc_asyncio")(channel=channel)  # type: ignore[attr-defined]
                self._async[key] = cls(transport=transport)
        client: C = self._async[key]
        return client

    def _observed_transport(self, cls: Callable[..., Any], kind: str) -> Callable[..., Any]:
        """A transport factory for Google itself whose channel reports to the observer.

        The client calls it with everything it resolved (endpoint, credentials, scopes, mTLS);
        the transport calls the channel factory with the arguments of its own
        `create_channel`, which builds the channel as it always does, then intercepted.
        """
        observer = self._observer
        assert observer is not None
        transport_cls: Any = cls.get_transport_class(kind)  # type: ignore[attr-defined]
        if kind == "grpc":

            def channel(*args: Any, **kwargs: Any) -> grpc.Channel:
                return intercept_channel(transport_cls.create_channel(*args, **kwargs), observer)

        else:  # grpc.aio: passed through google.api_core to aio.secure_channel

            def channel(*args: Any, **kwargs: Any) -> aio.Channel:
                kwargs["interceptors"] = aio_interceptors(observer)
                made: aio.Channel = transport_cls.create_channel(*args, **kwargs)
                return made

        return functools.partial(transport_cls, channel=channel)

    def _rest_client(self, cls: Callable[..., C]) -> C:
        key = _name(cls)
        with self._lock:
            return self._build_rest(cls, key)

    def _build_rest(self, cls: Callable[..., C], key: str) -> C:
        if key not in self._sync:
            if self.emulator is None:
                self._sync[key] = cls(transport="rest", credentials=self._credentials)
            else:
                self._sync[key] = cls(
                    transport="rest",
                    client_options={"api_endpoint": self.emulator.rest_url},
                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                )
        client: C = self._sync[key]
        return client


def _name(cls: Callable[..., Any]) -> str:
    return f"{cls.__module__}.{getattr(cls, '__qualname__', repr(cls))}"

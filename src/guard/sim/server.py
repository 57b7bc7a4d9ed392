"""Serve a `World` on local ports: one gRPC server for every gRPC API, one REST server for
Cloud SQL Admin.

Everything a test, `guard simulate` or `guard demo` needs to point the real client libraries
at the fake: `FakeCloud(world)` as a context manager, then `grpc_target` and `rest_url` for
`guard.adapters.google_clients.GoogleClients.for_emulator`. Starting must stay well under a
second (tests start one per test); `bench/fake_start.py` measures it.
"""

from __future__ import annotations

from concurrent import futures
from types import TracebackType

import grpc

from guard.sim.cloudsql_rest import SqlRestServer
from guard.sim.world import World

#: Worker threads of the gRPC server: every open TailLogEntries stream holds one.
DEFAULT_WORKERS = 96


class FakeCloud:
    """The fake Google Cloud serving one `World` on 127.0.0.1 (ports chosen by the OS unless
    given)."""

    def __init__(
        self,
        world: World,
        *,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
        rest_port: int = 0,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        self.world = world
        self._host = host
        self._grpc_port = grpc_port
        self._rest_port = rest_port
        self._workers = workers
        self._grpc: grpc.Server | None = None
        self._rest: SqlRestServer | None = None
        self._bound = 0

    def start(self) -> FakeCloud:
        if self._grpc is not None:
            raise RuntimeError("the fake cloud is already running")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="fake-gcp"),
            options=[
                ("grpc.max_send_message_length", -1),
                ("grpc.max_receive_message_length", -1),
                ("grpc.so_reuseport", 0),
            ],
        )
        server.add_generic_rpc_handlers(self.world.grpc_handlers())
        self._bound = server.add_insecure_port(f"{self._host}:{self._grpc_port}")
        if not self._bound:
            raise OSError(f"cannot bind the fake gRPC server to {self._host}:{self._grpc_port}")
        rest = SqlRestServer(self.world.sql_app(), self._host, self._rest_port)
        server.start()
        rest.serve_in_thread()
        self._grpc, self._rest = server, rest
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop both servers; open streams are cancelled after `grace` seconds (None: now)."""
        if self._grpc is not None:
            self._grpc.stop(grace).wait()
            self._grpc = None
        if self._rest is not None:
            self._rest.stop()
            self._rest = None

    @property
    def grpc_target(self) -> str:
        """Where gRPC clients connect, e.g. "127.0.0.1:40123"."""
        if self._grpc is None:
            raise RuntimeError("the fake cloud is not running")
        return f"{self._host}:{self._bound}"

    @property
    def rest_url(self) -> str:
        """Where REST clients connect, e.g. "http://127.0.0.1:40124"."""
        if self._rest is None:
            raise RuntimeError("the fake cloud is not running")
        return self._rest.url

    def __enter__(self) -> FakeCloud:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

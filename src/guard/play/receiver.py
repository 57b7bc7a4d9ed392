"""A loopback HTTP receiver for the guard's pages during a simulation or the demo.

Why a real server: the pages a simulation reports as "sent" are what the guard's webhook
notifier actually delivered over HTTP, not what it meant to send. Each POST body (the
webhook's JSON) is kept with the moment it arrived; anything else is answered 404.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True, slots=True)
class Received:
    """One page as it arrived."""

    at: float  # the receiver's clock when it arrived (scenario seconds in a simulation)
    body: dict[str, Any]


class PageReceiver:
    """Collects webhook pages POSTed to `url` (a thread-per-request server on 127.0.0.1)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self._lock = threading.Lock()
        self._pages: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver._pages.append(Received(receiver.now(), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/pages"

    def start(self) -> PageReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def pages(self) -> list[Received]:
        with self._lock:
            return list(self._pages)

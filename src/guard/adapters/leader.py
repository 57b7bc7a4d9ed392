"""Leader election among guard replicas that share a PostgreSQL store.

Why: several replicas remove the single point of failure, but only one may act (freeze,
revert, page). The leader holds a session-level advisory lock (`pg_try_advisory_lock`) on a
dedicated psycopg connection, apart from the store's pool, so leadership lives exactly as long
as that session; standbys retry every `retry` s. With SQLite (or no URL) the replica is alone
(the store's lock file refuses a second guard on the file), so it leads at once.

Failure model, against `dead_after` (how long a dead leader may hold up a takeover):

* Leader process dies: its socket closes, the server frees the lock at once; a standby
  takes over within `retry`.
* Leader's session ends under a live leader (pg_terminate_backend, server restart): the
  leader sleeps on its socket between checks, sees the close within milliseconds, steps down.
* Leader alive but cut off: the session's TCP keepalive and `tcp_user_timeout` GUCs (and
  libpq's keepalives) make the server drop it within `dead_after - retry`. The leader checks
  every `check` s, with a `check` s timeout, that pg_locks shows the lock for its own backend,
  and steps down within 2 x `check`: before the server frees the lock. A hung query is
  abandoned (a second cancel makes psycopg close the connection), never waited on.

`is_leader` flips first; `on_change` calls follow, in order, in a task of their own, so a
slow callback never delays a check; the lock is released only after `on_change(False)`
returned. Two leaders overlap only if a leader's event loop stalls past the server's timeout,
and then the intent log's unique keys keep any action from happening twice (see
docs/high-availability.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

KEY_NAME = "deploy-guard-leader"
_HOLDS = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND pid = pg_backend_pid() AND classid::bigint = %s AND objid::bigint = %s"
    " AND objsubid = 1)"
)
_SETTINGS = (
    "SELECT set_config('tcp_keepalives_idle', %s, false),"
    " set_config('tcp_keepalives_interval', %s, false),"
    " set_config('tcp_keepalives_count', %s, false), set_config('tcp_user_timeout', %s, false)"
)
_UNLOCK = "SELECT pg_advisory_unlock(%s)"
OnChange = Callable[[bool], Awaitable[None] | None]
Conn = psycopg.AsyncConnection[tuple[Any, ...]]


def lock_key(namespace: str = "") -> int:
    """The advisory lock's signed 64-bit key: a hash of KEY_NAME and the namespace."""
    digest = hashlib.sha256(f"{KEY_NAME}\0{namespace}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def keepalives(dead_after: float, retry: float) -> tuple[int, int, int]:
    """(idle, interval, count) in whole seconds so a silent session is dropped within
    `dead_after - retry` (at least 2 s, the smallest whole-second setting)."""
    drop = max(dead_after - retry, 2.0)
    idle = max(1, int(drop / 2))
    count = max(1, min(3, int(drop - idle)))
    return idle, max(1, int((drop - idle) / count)), count


def conninfo(url: str, **extra: str | int) -> str:
    """A libpq conninfo from the store's SQLAlchemy URL (any +driver suffix is dropped)."""
    u = make_url(url)
    if u.get_backend_name() != "postgresql":
        raise ValueError(f"leader election needs a postgresql URL, not {u.drivername!r}")
    params: dict[str, Any] = {"host": u.host, "port": u.port, "user": u.username}
    params |= {"password": u.password, "dbname": u.database}
    params |= {k: v for k, v in u.query.items() if isinstance(v, str)} | extra
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


async def _settle(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait for it, briefly: psycopg answers a first cancel by cancelling
    the query on the server (which hangs if the network is gone); a second one closes."""
    for _ in range(3):
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
        if task.done():
            if not task.cancelled():
                task.exception()  # retrieved: the caller reports the timeout instead
            return
    log.warning("a leader-election query ignored cancellation")


class Leadership:
    """Whether this replica leads; see the module docstring for the failure model."""

    def __init__(
        self,
        url: str | None,
        *,
        replica: str,
        namespace: str = "",
        retry: float = 5.0,
        check: float = 2.0,
        dead_after: float = 15.0,
        on_change: OnChange | None = None,
    ) -> None:
        if min(retry, check, dead_after) <= 0:
            raise ValueError("retry, check and dead_after must be positive")
        self.holder = replica
        self.namespace = namespace
        self._retry, self._check, self._on_change = retry, check, on_change
        self._key = lock_key(namespace)
        self._solo = url is None or make_url(url).get_backend_name() == "sqlite"
        idle, interval, count = keepalives(dead_after, retry)
        drop = idle + interval * count
        self._gucs = (str(idle), str(interval), str(count), str(drop * 1000))
        self._conninfo = "" if self._solo or url is None else conninfo(
            url,
            application_name=f"deploy-guard-leader:{replica}"[:63],
            connect_timeout=max(2, round(check)),
            keepalives=1, keepalives_idle=idle, keepalives_interval=interval,
            keepalives_count=count, tcp_user_timeout=drop * 1000,
        )  # fmt: skip
        if not self._solo and (2 * check >= drop or drop + retry > dead_after):
            log.warning("leader %s: check=%gs retry=%gs cannot keep dead_after=%gs (server "
                        "drops a silent session after %ds)", replica, check, retry, dead_after,
                        drop)  # fmt: skip
        self._leader = False
        self._since: datetime | None = None
        self._last_error: str | None = None
        self._event = asyncio.Event()
        self._changes: asyncio.Queue[bool] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._notifier: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._leader

    async def start(self) -> None:
        """Start campaigning in the background; solo, lead at once."""
        if self._notifier is not None:
            return
        self._since = datetime.now(UTC)
        self._notifier = asyncio.create_task(self._notify(), name=f"leader-notify:{self.holder}")
        if self._solo:
            self._set(True, "alone on its store")
        else:
            self._task = asyncio.create_task(self._run(), name=f"leader:{self.holder}")

    async def stop(self) -> None:
        """Step down (on_change(False) first), release the lock, close; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                log.error("leader %s: election task failed", self.holder, exc_info=task.exception())
        await self._step_down("stopped")
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.cancel()
            await asyncio.wait({notifier})

    async def wait_leader(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """True once this replica leads (at once if it does), False after `timeout` s."""
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        return True

    def describe(self) -> dict[str, object]:
        since = self._since.isoformat() if self._since else None
        return {"leader": self._leader, "replica": self.holder, "namespace": self.namespace,
                "mode": "solo" if self._solo else "postgresql", "since": since,
                "last_error": self._last_error}  # fmt: skip

    # -- internals ----------------------------------------------------------------------------

    def _set(self, leader: bool, why: str) -> None:
        if leader == self._leader:
            return
        self._leader, self._since = leader, datetime.now(UTC)
        if leader:
            self._event.set()
            log.info("leader %s: now the leader (%s)", self.holder, why)
        else:
            self._event.clear()
            log.warning("leader %s: stepped down (%s)", self.holder, why)
        self._changes.put_nowait(leader)

    async def _step_down(self, why: str) -> None:
        """Stop leading and wait until on_change(False) has returned."""
        self._set(False, why)
        if self._notifier is not None and not self._notifier.done():
            await self._changes.join()

    async def _notify(self) -> None:
        while True:
            leader = await self._changes.get()
            try:
                result = None if self._on_change is None else self._on_change(leader)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("leader %s: on_change(%s) failed", self.holder, leader)
            finally:
                self._changes.task_done()

    async def _run(self) -> None:
        while True:
            try:
                conn = await self._connect()
            except Exception as exc:
                self._failed(exc)
            else:
                why = "stopped"
                try:
                    await self._campaign(conn)
                except Exception as exc:
                    why = self._failed(exc)
                finally:
                    held = self._leader
                    try:
                        await self._step_down(why)
                        if held:  # a lost session has released it anyway: errors are moot
                            with contextlib.suppress(Exception):
                                await self._query(conn, _UNLOCK, (self._key,))
                    finally:
                        await conn.close()
            await asyncio.sleep(self._retry)

    async def _connect(self) -> Conn:
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        try:
            await self._query(conn, _SETTINGS, self._gucs)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _campaign(self, conn: Conn) -> None:
        high, low = (self._key >> 32) & 0xFFFFFFFF, self._key & 0xFFFFFFFF
        while True:
            if self._leader:
                if not await self._query(conn, _HOLDS, (high, low)):
                    raise RuntimeError("the lock is no longer held by this session")
            elif await self._query(conn, "SELECT pg_try_advisory_lock(%s)", (self._key,)):
                self._last_error = None
                self._set(True, "acquired the lock")
            # Sleep on the socket: a session the server ends raises here at once.
            async for _ in conn.notifies(timeout=self._check if self._leader else self._retry):
                pass

    async def _query(self, conn: Conn, sql: str, params: tuple[object, ...]) -> bool:
        """Whether the answer's first value is true; TimeoutError after `check` seconds."""

        async def first() -> bool:
            row = await (await conn.execute(sql, params)).fetchone()
            return bool(row and row[0])

        task = asyncio.ensure_future(first())
        try:
            done, _ = await asyncio.wait({task}, timeout=self._check)
        except BaseException:  # cancelled: stop() is tearing the connection down
            await _settle(task)
            raise
        if not done:
            why = f"no answer from PostgreSQL within {self._check:g}s"
            self._last_error = f"TimeoutError: {why}"
            self._set(False, why)  # step down first: abandoning the query may take a while
            await _settle(task)
            raise TimeoutError(why)
        return task.result()

    def _failed(self, exc: Exception) -> str:
        self._last_error = f"{type(exc).__name__}: {exc}".strip()
        log.log(logging.WARNING if self._leader else logging.INFO,
                "leader %s: %s", self.holder, self._last_error)  # fmt: skip
        return self._last_error

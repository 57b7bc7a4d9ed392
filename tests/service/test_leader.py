"""Leader election on the real PostgreSQL: one leader, fast takeover, never two at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from guard.adapters import store_migrations
from guard.adapters.leader import Leadership, conninfo, keepalives, lock_key

pytestmark = pytest.mark.postgres

RETRY = 0.3
CHECK = 0.5
SLACK = 1.0
# Disruptions land mid-period (sleeps of 2.5 x RETRY), so takeovers are not flattered by
# a standby whose retry happens to be due just after.
Make = Callable[..., Leadership]


class Changes:
    """Records on_change calls; `sync=False` makes it an async callable."""

    def __init__(self, sync: bool = True) -> None:
        self.calls: list[tuple[float, bool]] = []
        self.sync = sync

    def __call__(self, leader: bool) -> Any:
        self.calls.append((time.monotonic(), leader))
        return None if self.sync else asyncio.sleep(0)

    @property
    def values(self) -> list[bool]:
        return [v for _, v in self.calls]


@pytest.fixture
async def elect(postgres_url: str) -> AsyncIterator[Make]:
    made: list[Leadership] = []

    def make(replica: str, namespace: str, url: str | None = postgres_url, **kw: Any) -> Leadership:
        kw = {"retry": RETRY, "check": CHECK} | kw
        made.append(Leadership(url, replica=replica, namespace=namespace, **kw))
        return made[-1]

    yield make
    for leadership in made:
        await leadership.stop()


@contextlib.asynccontextmanager
async def never_two(*leaders: Leadership) -> AsyncIterator[list[int]]:
    """Samples is_leader every 2 ms; the list holds how many samples saw two leaders."""
    seen = [0]

    async def sample() -> None:
        while True:
            if sum(x.is_leader for x in leaders) > 1:
                seen[0] += 1
            await asyncio.sleep(0.002)

    task = asyncio.create_task(sample())
    try:
        yield seen
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen[0] == 0, f"two leaders at once in {seen[0]} sample(s)"


async def until(cond: Callable[[], bool], within: float) -> float:
    """Seconds until cond() held; fails after `within` seconds."""
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < within, "timed out"
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def sql(url: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True) as conn:
        return await (await conn.execute(query, params)).fetchall()


def ns() -> str:
    return uuid.uuid4().hex


def test_key_and_conninfo() -> None:
    assert lock_key() != lock_key("other") != store_migrations._PG_LOCK_KEY
    assert -(2**63) <= lock_key("x") < 2**63
    info = conninfo("postgresql+psycopg://u:pw@db.example:5433/guard?sslmode=require")
    assert "host=db.example" in info
    assert "port=5433" in info
    assert "dbname=guard" in info
    assert "sslmode=require" in info
    assert "password=pw" in info
    with pytest.raises(ValueError, match="postgresql"):
        conninfo("sqlite:///guard.db")
    for budget, retry in [(15, 5), (15, 0.3), (3, 0.5), (60, 5)]:
        idle, interval, count = keepalives(budget, retry)
        assert idle + interval * count + retry <= max(budget, 2 + retry)


async def test_solo_leads_at_once(elect: Make) -> None:
    for url in (None, "sqlite:///unused.db"):
        changes = Changes(sync=False)
        solo = elect("solo", ns(), url=url, on_change=changes)
        await solo.start()
        assert solo.describe()["leader"] is True  # (not is_leader: mypy would narrow it)
        assert await solo.wait_leader(0)
        await solo.stop()
        assert not solo.is_leader
        assert changes.values == [True, False]
        assert json.loads(json.dumps(solo.describe()))["mode"] == "solo"
        await solo.stop()  # idempotent
        assert changes.values == [True, False]


async def test_exactly_one_leader_and_visible_holder(elect: Make, postgres_url: str) -> None:
    space = ns()
    a, b = elect(f"a-{space}", space), elect(f"b-{space}", space)
    async with never_two(a, b):
        await a.start()
        await b.start()
        await until(lambda: a.is_leader or b.is_leader, 5)
        await asyncio.sleep(4 * RETRY)
    leader = a if a.is_leader else b
    assert a.is_leader != b.is_leader
    info = json.loads(json.dumps(leader.describe()))
    assert info["leader"] is True
    assert info["replica"] == leader.holder
    assert info["since"]
    rows = await sql(
        postgres_url,
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity s USING (pid)"
        " WHERE l.locktype = 'advisory' AND l.granted AND s.application_name = %s",
        f"deploy-guard-leader:{leader.holder}",
    )
    assert rows == [(1,)]


async def test_lock_session_gets_server_keepalives(elect: Make) -> None:
    lead = elect("k", ns(), dead_after=15.0, retry=5.0)
    conn = await lead._connect()
    try:
        got = [
            (await (await conn.execute(f"SHOW {name}")).fetchone() or ("",))[0]
            for name in ("tcp_keepalives_idle", "tcp_keepalives_count", "tcp_user_timeout")
        ]
    finally:
        await conn.close()
    idle, interval, count = keepalives(15.0, 5.0)
    assert got == [str(idle), str(count), str((idle + interval * count) * 1000)]


async def test_stop_hands_over(elect: Make) -> None:
    space = ns()
    a_changes = Changes()
    a, b = elect("a", space, on_change=a_changes), elect("b", space)
    await a.start()
    assert await a.wait_leader(5)
    await b.start()
    await asyncio.sleep(2.5 * RETRY)
    assert not b.is_leader
    async with never_two(a, b):
        stopped = time.monotonic()
        await a.stop()
        assert a_changes.values == [True, False]
        took = time.monotonic() - stopped
        took += await until(lambda: b.is_leader, RETRY + SLACK)
    print(f"stop -> takeover: {took:.3f}s")


async def test_terminated_backend_steps_down_then_one_leads(elect: Make, postgres_url: str) -> None:
    space = ns()
    changes = {"a": Changes(), "b": Changes(sync=False)}
    a, b = (elect(f"{name}-{space}", space, on_change=changes[name]) for name in "ab")
    async with never_two(a, b):
        await a.start()
        assert await a.wait_leader(5)
        await b.start()
        await asyncio.sleep(2.5 * RETRY)
        killed = time.monotonic()
        rows = await sql(
            postgres_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            f"deploy-guard-leader:a-{space}",
        )
        assert rows == [(True,)]
        await until(lambda: changes["a"].values == [True, False], CHECK + SLACK)
        stepped_down = changes["a"].calls[-1][0] - killed
        await until(lambda: a.is_leader or b.is_leader, 2 * RETRY + SLACK)
        took = time.monotonic() - killed
        await asyncio.sleep(3 * RETRY)
    assert a.is_leader != b.is_leader
    print(f"terminated -> old leader down: {stepped_down:.3f}s, a leader again: {took:.3f}s")


CHILD = """
import asyncio, sys
from guard.adapters.leader import Leadership

async def main():
    lead = Leadership(sys.argv[1], replica="child", namespace=sys.argv[2], retry=0.2, check=0.2)
    await lead.start()
    await lead.wait_leader()
    print("leader", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_killed_leader_process_is_replaced(elect: Make, postgres_url: str) -> None:
    space = ns()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, postgres_url, space, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 15)
        assert line == b"leader\n"
        standby = elect("standby", space)
        await standby.start()
        await asyncio.sleep(2.5 * RETRY)
        assert not standby.is_leader
        os.kill(proc.pid, signal.SIGKILL)
        took = await until(lambda: standby.is_leader, RETRY + SLACK)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.stdout.read()
        await proc.wait()
    print(f"SIGKILL -> takeover: {took:.3f}s")


async def test_namespaces_do_not_contend(elect: Make) -> None:
    a, b = elect("a", ns()), elect("b", ns())
    await a.start()
    await b.start()
    assert await a.wait_leader(5)
    assert await b.wait_leader(5)


class Relay:
    """A TCP relay to PostgreSQL that can go silent (a partition) and then cut the server
    side (what the server's keepalives do to a silent session)."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 5432
        self.open = asyncio.Event()
        self.open.set()
        self.upstream: list[asyncio.StreamWriter] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self.upstream.append(up_writer)
        self.writers += [writer, up_writer]
        with contextlib.suppress(asyncio.CancelledError):  # asyncio logs a cancelled handler
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            await self.open.wait()
            writer.write(data)
        await self.open.wait()  # while partitioned, not even a close gets through
        writer.close()

    def cut_server_side(self) -> None:
        for writer in self.upstream:
            writer.transport.abort()

    async def close(self) -> None:
        self.server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for writer in self.writers:
            writer.transport.abort()
        await self.server.wait_closed()


def relay_url(url: str, port: int) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}").geturl()


async def test_partitioned_leader_steps_down_before_takeover(
    elect: Make, postgres_url: str
) -> None:
    relay = Relay(postgres_url)
    port = await relay.start()
    try:
        space = ns()
        a = elect("a", space, url=relay_url(postgres_url, port))
        b = elect("b", space)
        async with never_two(a, b):
            await a.start()
            assert await a.wait_leader(5)
            await b.start()
            await asyncio.sleep(2.5 * RETRY)
            relay.open.clear()  # partition: a's checks go unanswered
            stepped_down = await until(lambda: not a.is_leader, 2 * CHECK + SLACK)
            assert not b.is_leader  # the server still holds a's session and lock
            relay.cut_server_side()
            took = await until(lambda: b.is_leader, RETRY + SLACK)
        assert "no answer" in str(a.describe()["last_error"])
        started = time.monotonic()
        await a.stop()  # reconnecting through the dead relay: must not hang
        assert time.monotonic() - started < 2
        print(f"partition -> leader down: {stepped_down:.3f}s; server drop -> takeover {took:.3f}s")
    finally:
        await relay.close()

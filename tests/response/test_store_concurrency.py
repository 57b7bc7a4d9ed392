"""The store acts once under races, crashes and a second guard process.

Why: "exactly once" is only true if it survives what production does: replicas racing on
the same deploy, a SIGKILL between intent and outcome, two replicas upgrading the schema at
the same moment, and an operator starting a second guard on a single-replica SQLite file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa

from guard.adapters import store_schema
from guard.adapters.store import SqlStore, Store, StoreLockedError
from guard.adapters.store_migrations import CODE_VERSION
from guard.core.model import ActionKind, ActionStatus

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RACERS = 20
R = TypeVar("R")


def race(stores: list[SqlStore], call: Callable[[SqlStore], R]) -> list[R]:
    """Run `call` in RACERS threads released together, alternating between `stores`."""
    barrier = threading.Barrier(RACERS)
    results: list[R] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            barrier.wait(10)
            got = call(stores[i % len(stores)])
            with lock:
                results.append(got)
        except BaseException as exc:  # re-raised in the test's thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(RACERS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    if errors:
        raise errors[0]
    return results


def test_racing_replicas_open_one_incident(store: SqlStore, twin: SqlStore) -> None:
    results = race([store, twin], lambda s: s.open_incident("pegasus", "api", "r1", at=T0))
    assert sum(created for _, created in results) == 1
    assert len({inc.id for inc, _ in results}) == 1
    assert len(store.incidents()) == 1


def test_racing_replicas_intend_once(store: SqlStore, twin: SqlStore) -> None:
    inc, _ = store.open_incident("pegasus", "api", "r1", at=T0)
    results = race(
        [store, twin], lambda s: s.intend(inc.id, ActionKind.REVERT, "revert:r1", {}, at=T0)
    )
    assert sum(created for _, created in results) == 1
    assert len({rec.id for rec, _ in results}) == 1
    assert len(store.actions(inc.id)) == 1


def test_racing_finish_succeeds_once(store: SqlStore, twin: SqlStore) -> None:
    inc, _ = store.open_incident("pegasus", "api", "r1", at=T0)
    rec, _ = store.intend(inc.id, ActionKind.PAGE, "page:r1", {}, at=T0)
    results = race([store, twin], lambda s: s.finish(rec.id, ActionStatus.SUCCEEDED, {}, at=T0))
    assert results.count(True) == 1


def test_racing_freeze_changes_once(store: SqlStore, twin: SqlStore) -> None:
    inc, _ = store.open_incident("pegasus", "api", "r1", at=T0)
    results = race([store, twin], lambda s: s.freeze("pegasus", inc.id, "bad", at=T0))
    assert results.count(True) == 1
    assert len(store.audit_log("pegasus")) == 1


_CRASH = """
import os, signal, sys
from datetime import UTC, datetime
from guard.adapters.store import Store
from guard.core.model import ActionKind
s = Store.open(sys.argv[1])
s.intend(sys.argv[2], ActionKind.REVERT, "revert:r1", {"target": "r0"}, at=datetime.now(UTC))
os.kill(os.getpid(), signal.SIGKILL)  # crash between intent and action
"""


def test_intent_survives_a_sigkill(store: SqlStore, store_url: str) -> None:
    inc, _ = store.open_incident("pegasus", "api", "r1", at=T0)
    store.close()  # the crashed guard was the only one (SQLite allows no other)
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH, store_url, inc.id],
        check=False,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stderr.decode()
    with Store.open(store_url) as restarted:  # a new Store, as after a restart
        [intent] = restarted.open_intents()
        assert (intent.key, intent.intent, intent.status) == (
            "revert:r1", {"target": "r0"}, ActionStatus.INTENDED
        )  # fmt: skip
        again, created = restarted.intend(inc.id, ActionKind.REVERT, "revert:r1", {}, at=T0)
        assert (again.id, created) == (intent.id, False)


_OPEN = """
import sys
from guard.adapters.store import Store, StoreLockedError
try:
    Store.open(sys.argv[1]).close()
except StoreLockedError as exc:
    print(exc)
    sys.exit(3)
"""


def test_second_process_on_sqlite_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "guard.db"
    url = f"sqlite:///{db}"
    with Store.open(url):
        proc = subprocess.run(
            [sys.executable, "-c", _OPEN, url],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 3, proc.stderr
        assert f"{db}.lock" in proc.stdout
        assert f"PID {os.getpid()}" in proc.stdout
        with pytest.raises(StoreLockedError, match="one replica"):
            Store.open(url)  # a second Store in this process is refused as well
    after = subprocess.run([sys.executable, "-c", _OPEN, url], check=False, timeout=60)
    assert after.returncode == 0


@pytest.mark.postgres
def test_replicas_starting_together_upgrade_once(pg_url: str) -> None:
    barrier = threading.Barrier(4)
    opened: list[SqlStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            barrier.wait(10)
            opened.append(Store.open(pg_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    try:
        assert not errors, errors
        assert len(opened) == 4
        with opened[0].engine.connect() as conn:
            rows = conn.execute(sa.select(store_schema.schema_version)).all()
        assert [r.version for r in rows] == [CODE_VERSION]
    finally:
        for s in opened:
            s.close()

"""The page outbox: the latest version of each incident's page, per backend, until sent.

Why an outbox: a page must never be lost (the guard may die, the backend may answer 429 or
500 for minutes) and never be sent twice as a new page. So the responder only *puts* a page
(one short transaction), and the pager delivers what is due, recording each outcome. A row
is the page's state for one backend: a newer version replaces an unsent older one (updates
coalesce; a human needs the latest story, not every intermediate one), and putting the same
content again changes nothing (`content_key`), which keeps a crash-and-retry from paging
twice. Split from `guard.adapters.store` to keep modules short; `SqlStore` mixes it in.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row

from guard.adapters import store_schema as t
from guard.adapters.store_actions import IntentLog, new_id
from guard.ports import PageRow

PENDING, SENT, FAILED = "pending", "sent", "failed"


class PageOutbox(IntentLog):
    """Page rows: `page_put` by the responder; `pages_due`, `page_*` by the pager."""

    def page_put(
        self,
        incident_id: str,
        backend: str,
        dedup_key: str,
        content_key: str,
        payload: Mapping[str, Any],
        *,
        at: datetime,
    ) -> int | None:
        """Queue this content as the backend's next version; its version, or None when the
        backend already has (or is about to get) exactly this content."""
        c = t.pages.c
        doc = t.jsonable(payload)
        with self._engine.begin() as conn:
            q = sa.select(t.pages).where(c.backend == backend, c.dedup_key == dedup_key)
            if self._engine.dialect.name == "postgresql":
                q = q.with_for_update()
            row = conn.execute(q).one_or_none()
            if row is None:
                inserted = conn.execute(
                    self._insert(t.pages)
                    .values(
                        id=new_id(), incident_id=incident_id, backend=backend,
                        dedup_key=dedup_key, status=PENDING, payload={**doc, "version": 1},
                        attempts=0, next_attempt_at=at, version=1, sent_version=0,
                        content_key=content_key,
                    )
                    .on_conflict_do_nothing(index_elements=["backend", "dedup_key"])
                    .returning(c.id)
                )  # fmt: skip
                return 1 if inserted.first() is not None else None
            if row.content_key == content_key:
                return None
            version = int(row.version) + 1
            conn.execute(
                sa.update(t.pages)
                .where(c.id == row.id)
                .values(
                    payload={**doc, "version": version}, version=version, status=PENDING,
                    content_key=content_key, attempts=0, next_attempt_at=at, last_error=None,
                )
            )  # fmt: skip
            return version

    def pages_due(self, now: datetime, *, limit: int = 100) -> list[PageRow]:
        """Pending pages whose next attempt is due, oldest first."""
        c = t.pages.c
        q = (
            sa.select(t.pages)
            .where(c.status == PENDING, c.next_attempt_at <= now)
            .order_by(c.next_attempt_at, c.id)
            .limit(limit)
        )
        with self._engine.begin() as conn:
            return [_row(r) for r in conn.execute(q)]

    def pages(self, incident_id: str | None = None) -> list[PageRow]:
        q = sa.select(t.pages).order_by(t.pages.c.incident_id, t.pages.c.backend)
        if incident_id is not None:
            q = q.where(t.pages.c.incident_id == incident_id)
        with self._engine.begin() as conn:
            return [_row(r) for r in conn.execute(q)]

    def page_sent(self, page_id: str, version: int, *, at: datetime) -> None:
        """`version` was delivered; the row is done unless a newer version is queued."""
        c = t.pages.c
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(t.pages)
                .where(c.id == page_id, c.sent_version < version)
                .values(
                    sent_version=version, sent_at=at, last_error=None,
                    status=sa.case((c.version == version, SENT), else_=c.status),
                    attempts=sa.case((c.version == version, c.attempts + 1), else_=0),
                )
            )  # fmt: skip

    def page_retry(self, page_id: str, version: int, error: str, *, next_at: datetime) -> int:
        """Delivery of `version` failed for now; try again at `next_at`. The attempts."""
        c = t.pages.c
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(t.pages)
                .where(c.id == page_id, c.version == version)
                .values(attempts=c.attempts + 1, last_error=error[:1000], next_attempt_at=next_at)
            )
            found = conn.execute(sa.select(c.attempts).where(c.id == page_id)).scalar_one()
        return int(found)

    def page_failed(self, page_id: str, version: int, error: str) -> None:
        """The backend refused `version` for good (a 4xx): recorded, never retried."""
        c = t.pages.c
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(t.pages)
                .where(c.id == page_id, c.version == version)
                .values(status=FAILED, attempts=c.attempts + 1, last_error=error[:1000])
            )

    def page_resend(self, page_id: str, *, at: datetime) -> None:
        """Queue the sent version again as it is (Alertmanager needs active alerts
        re-sent); the version does not change, so nothing reads as an update."""
        c = t.pages.c
        with self._engine.begin() as conn:
            conn.execute(
                sa.update(t.pages)
                .where(c.id == page_id, c.status == SENT)
                .values(status=PENDING, next_attempt_at=at, sent_version=c.version - 1)
            )


def _row(r: Row[Any]) -> PageRow:
    return PageRow(
        id=r.id,
        incident_id=r.incident_id,
        backend=r.backend,
        dedup_key=r.dedup_key,
        status=r.status,
        payload=r.payload,
        version=int(r.version),
        sent_version=int(r.sent_version),
        attempts=int(r.attempts),
        next_attempt_at=r.next_attempt_at,
        sent_at=r.sent_at,
        last_error=r.last_error,
    )

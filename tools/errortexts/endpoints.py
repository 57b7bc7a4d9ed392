"""The requests the generator sends to the team's API, and what each must fail with.

Positives are queries of old (or too new) code against revision N+1's schema; negatives
are the errors of a healthy database under ordinary load and ordinary bugs. `sqlstate`
is the expectation the generator checks the driver's exception against; where drivers
differ for the same request (asyncpg validates some parameters on the client, psycopg
raises its own errors for a lost connection) the difference is spelled out per driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .model import Kind

MISMATCH: Kind = "schema_mismatch"


@dataclass(frozen=True)
class Request:
    key: str
    method: str
    path: str
    kind: Kind | None
    sqlstate: str | None
    relation: str | None = None
    cause: str | None = None  # the migration that broke this query, if one did
    body: dict[str, Any] | None = None
    status: int = 500
    setup: str | None = None  # deadlock | serialize | terminate | pool
    first: str = ""  # the other session's first statement
    then: str = ""  # ... and its next one, once the app is blocked
    drivers: tuple[str, ...] = ()  # empty: every driver
    per_driver: dict[str, str | None] = field(default_factory=dict)

    def expected(self, driver: str) -> str | None:
        return self.per_driver.get(driver, self.sqlstate)


_ROW = "UPDATE course_enrollments SET progress = progress{} WHERE user_id = 1 AND course_id = {}"

REQUESTS: tuple[Request, ...] = (
    Request(
        "old-select-renamed-column",
        "GET",
        "/courses",
        MISMATCH,
        "42703",
        "title",
        "002_rename_course_title.sql",
    ),
    Request(
        "old-select-dropped-column",
        "GET",
        "/courses/1/lectures",
        MISMATCH,
        "42703",
        "video_url",
        "003_move_lecture_videos.sql",
    ),
    Request(
        "old-table",
        "GET",
        "/users/1/enrollments",
        MISMATCH,
        "42P01",
        "enrollments",
        "004_rename_enrollments.sql",
    ),
    Request(
        "old-function-signature",
        "GET",
        "/courses/slugs",
        MISMATCH,
        "42883",
        "course_slug",
        "005_course_slug_by_id.sql",
    ),
    Request(
        "old-update-enum-column",
        "PUT",
        "/courses/2/level",
        MISMATCH,
        "42804",
        "level",
        "006_course_level_enum.sql",
        body={"level": "Advanced"},
    ),
    Request(
        "old-compare-enum-operator",
        "GET",
        "/courses/by-level/Advanced",
        MISMATCH,
        "42883",
        None,
        "006_course_level_enum.sql",
    ),
    Request(
        "new-column-missing",
        "GET",
        "/lectures/1/video",
        MISMATCH,
        "42703",
        "duration_seconds",
        "003_move_lecture_videos.sql",
    ),
    Request("new-table-missing", "GET", "/courses/1/reviews", MISMATCH, "42P01", "course_reviews"),
    Request(
        "unique-violation",
        "POST",
        "/users",
        None,
        "23505",
        "users_email_key",
        body={"email": "li@example.com", "display_name": "Li again"},
    ),
    Request(
        "foreign-key-violation",
        "POST",
        "/enrollments",
        None,
        "23503",
        "course_enrollments",
        body={"user_id": 1, "course_id": 999},
    ),
    Request(
        "invalid-datetime-input",
        "GET",
        "/courses/recent?since=last%20week",
        None,
        "22007",
        per_driver={"asyncpg": "22000"},
    ),  # asyncpg checks the argument itself
    Request("statement-timeout", "GET", "/reports/popular", None, "57014"),
    Request(
        "deadlock",
        "POST",
        "/users/1/progress",
        None,
        "40P01",
        body={"course_ids": [2, 1], "progress": 50},
        setup="deadlock",
        first=_ROW.format("", 1),
        then=_ROW.format("", 2),
    ),
    Request(
        "serialization-failure",
        "POST",
        "/users/1/courses/1/complete",
        None,
        "40001",
        setup="serialize",
        first=_ROW.format(" + 1", 1),
    ),
    Request(
        "connection-terminated",
        "GET",
        "/courses/count",
        None,
        "57P01",
        setup="terminate",
        # asyncpg's pool notices the termination notice only if it has read it before the
        # next query (we saw InternalClientError "another operation is in progress"): not
        # reproducible byte for byte, so asyncpg sits this one out.
        drivers=("psycopg3", "psycopg2", "sqlalchemy"),
        per_driver={"psycopg2": None},
    ),
    Request(
        "pool-timeout", "GET", "/courses/count", None, None, setup="pool", drivers=("sqlalchemy",)
    ),
    Request("params-mismatch", "GET", "/search?q=sql", None, None),
    Request("not-found", "GET", "/courses/999", None, None, status=404),
    Request("validation-error", "GET", "/lectures/intro/video", None, None, status=422),
)

"""Pegasus API (FastAPI + psycopg2), as deployed: old queries, new queries and a few bugs.

psycopg2 interpolates parameters on the client, so the server's `LINE 1:` excerpts show
literal values where the psycopg 3 edition of this app shows `$1`.
"""

import os
from typing import Any

import psycopg2
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from backend.logsetup import configure_logging  # type: ignore[import-not-found]

configure_logging()
app = FastAPI()
_conn: Any = None


def db() -> Any:
    global _conn  # noqa: PLW0603 - one shared connection, as the team wrote it
    if _conn is None or _conn.closed:
        _conn = psycopg2.connect(os.environ["DATABASE_URL"])
    return _conn


def fetch(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with db() as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def run(sql: str, params: tuple[Any, ...] = ()) -> None:
    with db() as conn, conn.cursor() as cur:
        cur.execute(sql, params)


class NewUser(BaseModel):
    email: str
    display_name: str


class Enrollment(BaseModel):
    user_id: int
    course_id: int


class Level(BaseModel):
    level: str


class Progress(BaseModel):
    course_ids: list[int]
    progress: int


@app.get("/courses")
def list_courses() -> list[tuple[Any, ...]]:
    return fetch("SELECT id, title, description FROM courses ORDER BY id")


@app.get("/courses/slugs")
def course_slugs() -> list[tuple[Any, ...]]:
    return fetch("SELECT id, course_slug(description) AS slug FROM courses")


@app.get("/courses/recent")
def recent_courses(since: str) -> list[tuple[Any, ...]]:
    return fetch("SELECT id FROM courses WHERE created_at >= %s::timestamptz", (since,))


@app.get("/courses/count")
def count_courses() -> int:
    return int(fetch("SELECT count(*) FROM courses")[0][0])


@app.get("/courses/by-level/{level}")
def courses_by_level(level: str) -> list[tuple[Any, ...]]:
    return fetch("SELECT id FROM courses WHERE level = lower(%s)", (level,))


@app.get("/courses/{course_id}")
def get_course(course_id: int) -> tuple[Any, ...]:
    rows = fetch("SELECT id, name FROM courses WHERE id = %s", (course_id,))
    if not rows:
        raise HTTPException(status_code=404, detail="course not found")
    return rows[0]


@app.put("/courses/{course_id}/level")
def set_level(course_id: int, body: Level) -> None:
    run("UPDATE courses SET level = lower(%s) WHERE id = %s", (body.level, course_id))


@app.get("/courses/{course_id}/lectures")
def list_lectures(course_id: int) -> list[tuple[Any, ...]]:
    return fetch(
        "SELECT l.id, l.title, l.video_url FROM lectures l"
        " WHERE l.course_id = %s ORDER BY l.position",
        (course_id,),
    )


@app.get("/courses/{course_id}/reviews")
def list_reviews(course_id: int) -> list[tuple[Any, ...]]:
    return fetch("SELECT rating, body FROM course_reviews WHERE course_id = %s", (course_id,))


@app.get("/lectures/{lecture_id}/video")
def lecture_video(lecture_id: int) -> list[tuple[Any, ...]]:
    sql = "SELECT url, duration_seconds FROM lecture_videos WHERE lecture_id = %s"
    return fetch(sql, (lecture_id,))


@app.get("/users/{user_id}/enrollments")
def list_enrollments(user_id: int) -> list[tuple[Any, ...]]:
    return fetch("SELECT course_id, progress FROM enrollments WHERE user_id = %s", (user_id,))


@app.post("/users")
def create_user(body: NewUser) -> int:
    sql = "INSERT INTO users (email, display_name) VALUES (%s, %s) RETURNING id"
    return int(fetch(sql, (body.email, body.display_name))[0][0])


@app.post("/enrollments")
def enroll(body: Enrollment) -> None:
    sql = "INSERT INTO course_enrollments (user_id, course_id) VALUES (%s, %s)"
    run(sql, (body.user_id, body.course_id))


@app.post("/users/{user_id}/progress")
def save_progress(user_id: int, body: Progress) -> None:
    with db() as conn, conn.cursor() as cur:
        for course_id in body.course_ids:
            cur.execute(
                "UPDATE course_enrollments SET progress = %s WHERE user_id = %s AND course_id = %s",
                (body.progress, user_id, course_id),
            )


@app.post("/users/{user_id}/courses/{course_id}/complete")
def complete_course(user_id: int, course_id: int) -> None:
    with db() as conn, conn.cursor() as cur:
        cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cur.execute(
            "SELECT progress FROM course_enrollments WHERE user_id = %s AND course_id = %s",
            (user_id, course_id),
        )
        cur.execute(
            "UPDATE course_enrollments SET progress = 100 WHERE user_id = %s AND course_id = %s",
            (user_id, course_id),
        )


@app.get("/reports/popular")
def popular_courses() -> list[tuple[Any, ...]]:
    with db() as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL statement_timeout = '150ms'")
        cur.execute(
            "SELECT c.id, count(*) FROM courses c"
            " CROSS JOIN generate_series(1, 50000000) AS g GROUP BY c.id"
        )
        return list(cur.fetchall())


@app.get("/search")
def search(q: str) -> list[tuple[Any, ...]]:
    return fetch("SELECT id FROM courses WHERE name ILIKE %s LIMIT %s", (f"%{q}%",))

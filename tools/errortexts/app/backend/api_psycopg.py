"""Pegasus API (FastAPI + psycopg 3), as deployed: old queries, new queries and a few bugs.

The generator serves it with uvicorn against a database the new revision has migrated, so
the old queries (`title`, `video_url`, `enrollments`, ...) fail the way they do in
production when the schema changes under running code.
"""

import os
from typing import Any

import psycopg
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from backend.logsetup import configure_logging  # type: ignore[import-not-found]

configure_logging()
app = FastAPI()
_conn: psycopg.Connection[tuple[Any, ...]] | None = None


def db() -> psycopg.Connection[tuple[Any, ...]]:
    global _conn  # noqa: PLW0603 - one shared connection, as the team wrote it
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    return _conn


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
    return db().execute("SELECT id, title, description FROM courses ORDER BY id").fetchall()


@app.get("/courses/slugs")
def course_slugs() -> list[tuple[Any, ...]]:
    return db().execute("SELECT id, course_slug(description) AS slug FROM courses").fetchall()


@app.get("/courses/recent")
def recent_courses(since: str) -> list[tuple[Any, ...]]:
    sql = "SELECT id FROM courses WHERE created_at >= %s::timestamptz"
    return db().execute(sql, (since,)).fetchall()


@app.get("/courses/count")
def count_courses() -> int:
    row = db().execute("SELECT count(*) FROM courses").fetchone()
    return int(row[0]) if row else 0


@app.get("/courses/by-level/{level}")
def courses_by_level(level: str) -> list[tuple[Any, ...]]:
    return db().execute("SELECT id FROM courses WHERE level = lower(%s)", (level,)).fetchall()


@app.get("/courses/{course_id}")
def get_course(course_id: int) -> tuple[Any, ...]:
    row = db().execute("SELECT id, name FROM courses WHERE id = %s", (course_id,)).fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail="course not found")
    return row


@app.put("/courses/{course_id}/level")
def set_level(course_id: int, body: Level) -> None:
    db().execute("UPDATE courses SET level = lower(%s) WHERE id = %s", (body.level, course_id))


@app.get("/courses/{course_id}/lectures")
def list_lectures(course_id: int) -> list[tuple[Any, ...]]:
    sql = (
        "SELECT l.id, l.title, l.video_url FROM lectures l"
        " WHERE l.course_id = %s ORDER BY l.position"
    )
    return db().execute(sql, (course_id,)).fetchall()


@app.get("/courses/{course_id}/reviews")
def list_reviews(course_id: int) -> list[tuple[Any, ...]]:
    sql = "SELECT rating, body FROM course_reviews WHERE course_id = %s"
    return db().execute(sql, (course_id,)).fetchall()


@app.get("/lectures/{lecture_id}/video")
def lecture_video(lecture_id: int) -> list[tuple[Any, ...]]:
    sql = "SELECT url, duration_seconds FROM lecture_videos WHERE lecture_id = %s"
    return db().execute(sql, (lecture_id,)).fetchall()


@app.get("/users/{user_id}/enrollments")
def list_enrollments(user_id: int) -> list[tuple[Any, ...]]:
    sql = "SELECT course_id, progress FROM enrollments WHERE user_id = %s"
    return db().execute(sql, (user_id,)).fetchall()


@app.post("/users")
def create_user(body: NewUser) -> int:
    sql = "INSERT INTO users (email, display_name) VALUES (%s, %s) RETURNING id"
    row = db().execute(sql, (body.email, body.display_name)).fetchone()
    return int(row[0]) if row else 0


@app.post("/enrollments")
def enroll(body: Enrollment) -> None:
    sql = "INSERT INTO course_enrollments (user_id, course_id) VALUES (%s, %s)"
    db().execute(sql, (body.user_id, body.course_id))


@app.post("/users/{user_id}/progress")
def save_progress(user_id: int, body: Progress) -> None:
    conn = db()
    with conn.transaction():
        for course_id in body.course_ids:
            conn.execute(
                "UPDATE course_enrollments SET progress = %s WHERE user_id = %s AND course_id = %s",
                (body.progress, user_id, course_id),
            )


@app.post("/users/{user_id}/courses/{course_id}/complete")
def complete_course(user_id: int, course_id: int) -> None:
    conn = db()
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute(
            "SELECT progress FROM course_enrollments WHERE user_id = %s AND course_id = %s",
            (user_id, course_id),
        )
        conn.execute(
            "UPDATE course_enrollments SET progress = 100 WHERE user_id = %s AND course_id = %s",
            (user_id, course_id),
        )


@app.get("/reports/popular")
def popular_courses() -> list[tuple[Any, ...]]:
    conn = db()
    with conn.transaction():
        conn.execute("SET LOCAL statement_timeout = '150ms'")
        sql = (
            "SELECT c.id, count(*) FROM courses c"
            " CROSS JOIN generate_series(1, 50000000) AS g GROUP BY c.id"
        )
        return conn.execute(sql).fetchall()


@app.get("/search")
def search(q: str) -> list[tuple[Any, ...]]:
    sql = "SELECT id FROM courses WHERE name ILIKE %s LIMIT %s"
    return db().execute(sql, (f"%{q}%",)).fetchall()

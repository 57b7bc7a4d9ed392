"""Pegasus API (FastAPI + SQLAlchemy Core over psycopg 3), as deployed, bugs included.

The engine's pool is deliberately small (one connection, `DB_POOL_TIMEOUT`), as on a
Cloud Run instance sized for one concurrent request.
"""

import os
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import create_engine, text

from backend.logsetup import configure_logging  # type: ignore[import-not-found]

configure_logging()
app = FastAPI()
engine = create_engine(
    os.environ["DATABASE_URL"],
    pool_size=1,
    max_overflow=0,
    pool_timeout=float(os.environ.get("DB_POOL_TIMEOUT", "30")),
)


def fetch(sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql), params)]


def run(sql: str, **params: Any) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


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
    return fetch(
        "SELECT id FROM courses WHERE created_at >= CAST(:since AS timestamptz)", since=since
    )


@app.get("/courses/count")
def count_courses() -> int:
    return int(fetch("SELECT count(*) FROM courses")[0][0])


@app.get("/courses/by-level/{level}")
def courses_by_level(level: str) -> list[tuple[Any, ...]]:
    return fetch("SELECT id FROM courses WHERE level = lower(:level)", level=level)


@app.get("/courses/{course_id}")
def get_course(course_id: int) -> tuple[Any, ...]:
    rows = fetch("SELECT id, name FROM courses WHERE id = :id", id=course_id)
    if not rows:
        raise HTTPException(status_code=404, detail="course not found")
    return rows[0]


@app.put("/courses/{course_id}/level")
def set_level(course_id: int, body: Level) -> None:
    run("UPDATE courses SET level = lower(:level) WHERE id = :id", level=body.level, id=course_id)


@app.get("/courses/{course_id}/lectures")
def list_lectures(course_id: int) -> list[tuple[Any, ...]]:
    return fetch(
        "SELECT l.id, l.title, l.video_url FROM lectures l"
        " WHERE l.course_id = :course_id ORDER BY l.position",
        course_id=course_id,
    )


@app.get("/courses/{course_id}/reviews")
def list_reviews(course_id: int) -> list[tuple[Any, ...]]:
    return fetch("SELECT rating, body FROM course_reviews WHERE course_id = :c", c=course_id)


@app.get("/lectures/{lecture_id}/video")
def lecture_video(lecture_id: int) -> list[tuple[Any, ...]]:
    sql = "SELECT url, duration_seconds FROM lecture_videos WHERE lecture_id = :id"
    return fetch(sql, id=lecture_id)


@app.get("/users/{user_id}/enrollments")
def list_enrollments(user_id: int) -> list[tuple[Any, ...]]:
    return fetch("SELECT course_id, progress FROM enrollments WHERE user_id = :u", u=user_id)


@app.post("/users")
def create_user(body: NewUser) -> int:
    with engine.begin() as conn:
        sql = "INSERT INTO users (email, display_name) VALUES (:e, :n) RETURNING id"
        return int(conn.execute(text(sql), {"e": body.email, "n": body.display_name}).scalar_one())


@app.post("/enrollments")
def enroll(body: Enrollment) -> None:
    sql = "INSERT INTO course_enrollments (user_id, course_id) VALUES (:u, :c)"
    run(sql, u=body.user_id, c=body.course_id)


@app.post("/users/{user_id}/progress")
def save_progress(user_id: int, body: Progress) -> None:
    sql = "UPDATE course_enrollments SET progress = :p WHERE user_id = :u AND course_id = :c"
    with engine.begin() as conn:
        for course_id in body.course_ids:
            conn.execute(text(sql), {"p": body.progress, "u": user_id, "c": course_id})


@app.post("/users/{user_id}/courses/{course_id}/complete")
def complete_course(user_id: int, course_id: int) -> None:
    params = {"u": user_id, "c": course_id}
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        conn.execute(
            text("SELECT progress FROM course_enrollments WHERE user_id = :u AND course_id = :c"),
            params,
        )
        conn.execute(
            text(
                "UPDATE course_enrollments SET progress = 100 WHERE user_id = :u AND course_id = :c"
            ),
            params,
        )
        conn.commit()


@app.get("/reports/popular")
def popular_courses() -> list[tuple[Any, ...]]:
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL statement_timeout = '150ms'"))
        sql = (
            "SELECT c.id, count(*) FROM courses c"
            " CROSS JOIN generate_series(1, 50000000) AS g GROUP BY c.id"
        )
        return [tuple(row) for row in conn.execute(text(sql))]


@app.get("/search")
def search(q: str) -> list[tuple[Any, ...]]:
    return fetch("SELECT id FROM courses WHERE name ILIKE :q LIMIT :limit", q=f"%{q}%")

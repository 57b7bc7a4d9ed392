"""Pegasus API (FastAPI + asyncpg), as deployed: old queries, new queries and a few bugs.

asyncpg prepares every parameterised statement, so schema errors surface at prepare time
and its exception messages carry no `LINE 1:` excerpt.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from backend.logsetup import configure_logging  # type: ignore[import-not-found]

configure_logging()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=1)
    yield
    await app.state.pool.close()


app = FastAPI(lifespan=lifespan)


def pool() -> Any:
    return app.state.pool


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


def rows(records: list[Any]) -> list[dict[str, Any]]:
    return [dict(record) for record in records]


@app.get("/courses")
async def list_courses() -> list[dict[str, Any]]:
    return rows(await pool().fetch("SELECT id, title, description FROM courses ORDER BY id"))


@app.get("/courses/slugs")
async def course_slugs() -> list[dict[str, Any]]:
    return rows(await pool().fetch("SELECT id, course_slug(description) AS slug FROM courses"))


@app.get("/courses/recent")
async def recent_courses(since: str) -> list[dict[str, Any]]:
    sql = "SELECT id FROM courses WHERE created_at >= $1::timestamptz"
    return rows(await pool().fetch(sql, since))


@app.get("/courses/count")
async def count_courses() -> int:
    return int(await pool().fetchval("SELECT count(*) FROM courses"))


@app.get("/courses/by-level/{level}")
async def courses_by_level(level: str) -> list[dict[str, Any]]:
    return rows(await pool().fetch("SELECT id FROM courses WHERE level = lower($1)", level))


@app.get("/courses/{course_id}")
async def get_course(course_id: int) -> dict[str, Any]:
    row = await pool().fetchrow("SELECT id, name FROM courses WHERE id = $1", course_id)
    if row is None:
        raise HTTPException(status_code=404, detail="course not found")
    return dict(row)


@app.put("/courses/{course_id}/level")
async def set_level(course_id: int, body: Level) -> None:
    await pool().execute(
        "UPDATE courses SET level = lower($1) WHERE id = $2", body.level, course_id
    )


@app.get("/courses/{course_id}/lectures")
async def list_lectures(course_id: int) -> list[dict[str, Any]]:
    sql = (
        "SELECT l.id, l.title, l.video_url FROM lectures l"
        " WHERE l.course_id = $1 ORDER BY l.position"
    )
    return rows(await pool().fetch(sql, course_id))


@app.get("/courses/{course_id}/reviews")
async def list_reviews(course_id: int) -> list[dict[str, Any]]:
    sql = "SELECT rating, body FROM course_reviews WHERE course_id = $1"
    return rows(await pool().fetch(sql, course_id))


@app.get("/lectures/{lecture_id}/video")
async def lecture_video(lecture_id: int) -> list[dict[str, Any]]:
    sql = "SELECT url, duration_seconds FROM lecture_videos WHERE lecture_id = $1"
    return rows(await pool().fetch(sql, lecture_id))


@app.get("/users/{user_id}/enrollments")
async def list_enrollments(user_id: int) -> list[dict[str, Any]]:
    sql = "SELECT course_id, progress FROM enrollments WHERE user_id = $1"
    return rows(await pool().fetch(sql, user_id))


@app.post("/users")
async def create_user(body: NewUser) -> int:
    sql = "INSERT INTO users (email, display_name) VALUES ($1, $2) RETURNING id"
    return int(await pool().fetchval(sql, body.email, body.display_name))


@app.post("/enrollments")
async def enroll(body: Enrollment) -> None:
    sql = "INSERT INTO course_enrollments (user_id, course_id) VALUES ($1, $2)"
    await pool().execute(sql, body.user_id, body.course_id)


@app.post("/users/{user_id}/progress")
async def save_progress(user_id: int, body: Progress) -> None:
    async with pool().acquire() as conn, conn.transaction():
        for course_id in body.course_ids:
            await conn.execute(
                "UPDATE course_enrollments SET progress = $1 WHERE user_id = $2 AND course_id = $3",
                body.progress,
                user_id,
                course_id,
            )


@app.post("/users/{user_id}/courses/{course_id}/complete")
async def complete_course(user_id: int, course_id: int) -> None:
    async with pool().acquire() as conn, conn.transaction(isolation="repeatable_read"):
        await conn.fetchval(
            "SELECT progress FROM course_enrollments WHERE user_id = $1 AND course_id = $2",
            user_id,
            course_id,
        )
        await conn.execute(
            "UPDATE course_enrollments SET progress = 100 WHERE user_id = $1 AND course_id = $2",
            user_id,
            course_id,
        )


@app.get("/reports/popular")
async def popular_courses() -> list[dict[str, Any]]:
    async with pool().acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = '150ms'")
        sql = (
            "SELECT c.id, count(*) FROM courses c"
            " CROSS JOIN generate_series(1, 50000000) AS g GROUP BY c.id"
        )
        return rows(await conn.fetch(sql))


@app.get("/search")
async def search(q: str) -> list[dict[str, Any]]:
    sql = "SELECT id FROM courses WHERE name ILIKE $1 LIMIT $2"
    return rows(await pool().fetch(sql, f"%{q}%"))

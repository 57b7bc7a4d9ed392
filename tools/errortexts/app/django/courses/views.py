"""Views of the Pegasus Django edition, written against revision N's schema (the old code)."""

from typing import Any

from django.db import connection, transaction
from django.http import Http404, HttpRequest, JsonResponse


def _rows(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def list_courses(request: HttpRequest) -> JsonResponse:
    rows = _rows("SELECT id, title, description FROM courses ORDER BY id")
    return JsonResponse({"courses": rows})


def course_slugs(request: HttpRequest) -> JsonResponse:
    rows = _rows("SELECT id, course_slug(description) AS slug FROM courses")
    return JsonResponse({"slugs": rows})


def get_course(request: HttpRequest, course_id: int) -> JsonResponse:
    rows = _rows("SELECT id, name FROM courses WHERE id = %s", (course_id,))
    if not rows:
        raise Http404("course not found")
    return JsonResponse({"course": rows[0]})


def create_user(request: HttpRequest) -> JsonResponse:
    email = request.POST["email"]
    rows = _rows(
        "INSERT INTO users (email, display_name) VALUES (%s, %s) RETURNING id",
        (email, request.POST.get("display_name", email)),
    )
    return JsonResponse({"id": rows[0][0]}, status=201)


def list_enrollments(request: HttpRequest, user_id: int) -> JsonResponse:
    rows = _rows("SELECT course_id, progress FROM enrollments WHERE user_id = %s", (user_id,))
    return JsonResponse({"enrollments": rows})


def popular_courses(request: HttpRequest) -> JsonResponse:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = '150ms'")
        cursor.execute(
            "SELECT c.id, count(*) FROM courses c"
            " CROSS JOIN generate_series(1, 50000000) AS g GROUP BY c.id"
        )
        rows = list(cursor.fetchall())
    return JsonResponse({"popular": rows})

"""URL routes of the Pegasus Django edition."""

from courses import views  # type: ignore[import-not-found]
from django.urls import path

urlpatterns = [
    path("courses/", views.list_courses),
    path("courses/slugs/", views.course_slugs),
    path("courses/<int:course_id>/", views.get_course),
    path("users/", views.create_user),
    path("users/<int:user_id>/enrollments/", views.list_enrollments),
    path("reports/popular/", views.popular_courses),
]

"""``POST /reports/`` enqueues a report; ``GET /reports/<id>/`` shows how it is going."""

from __future__ import annotations

from django.urls import path

from examples.django_app.reports import views

urlpatterns = [
    path("reports/", views.create_report, name="create-report"),
    path("reports/<str:result_id>/", views.show_report, name="show-report"),
]

"""URLs of the example project. The LTI routes are the middleware's own."""

from __future__ import annotations

from django.urls import path  # type: ignore[import-untyped]

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("submit", views.submit, name="submit"),
    path("submit-async", views.submit_async, name="submit-async"),
]

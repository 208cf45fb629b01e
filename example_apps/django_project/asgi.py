"""ASGI entry point: Django behind the LTI middleware."""

from __future__ import annotations

import os

from lti_middleware.django import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_apps.django_project.settings")

application = get_asgi_application()

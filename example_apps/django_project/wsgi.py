"""WSGI entry point: Django behind the LTI middleware, bridged by a2wsgi."""

from __future__ import annotations

import os

from lti_middleware.django import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_apps.django_project.settings")

application = get_wsgi_application()

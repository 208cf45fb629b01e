"""Django integration: ``request.lti`` in views, under ASGI and WSGI.

In ``asgi.py`` (or ``wsgi.py``)::

    from lti_middleware.django import get_asgi_application

    application = get_asgi_application()

and in ``settings.py``::

    MIDDLEWARE = [..., "lti_middleware.django.LTIRequestMiddleware"]
    LTI_CONFIG = BASE_DIR / "lti.toml"

Needs the ``django`` extra (Django and a2wsgi).
"""

from .application import (
    call_async,
    call_sync,
    get_asgi_application,
    get_wsgi_application,
)
from .middleware import LTIRequestMiddleware, launch_of, launch_required

__all__ = [
    "LTIRequestMiddleware",
    "call_async",
    "call_sync",
    "get_asgi_application",
    "get_wsgi_application",
    "launch_of",
    "launch_required",
]

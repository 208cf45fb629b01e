"""Flask support: the launch on ``flask.g.lti``, grade calls from sync views.

::

    from flask import Flask, g
    from lti_middleware import load_config
    from lti_middleware.flask import init_app, run_sync

    app = Flask(__name__)
    init_app(app, config=load_config())

    @app.post("/submit")
    def submit():
        if g.lti is None:
            return "Open this tool from your course.", 401
        run_sync(g.lti.ags.post_score(score_given=8, score_maximum=10))
        return "Graded"

:func:`init_app` wraps ``app.wsgi_app`` in
:class:`~lti_middleware.wsgi.LTIWSGIMiddleware`, so ``flask run``, gunicorn
and Flask's test client all go through the LTI routes and checks.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from flask import Flask, current_app, g, request

from . import wsgi
from .message import LTILaunch
from .wsgi import LTIWSGIMiddleware

__all__ = ["EXTENSION_NAME", "current_launch", "init_app", "run_sync"]

#: The key of the middleware in ``app.extensions``.
EXTENSION_NAME = "lti_middleware"

T = TypeVar("T")


def init_app(app: Flask, **middleware_kwargs: Any) -> LTIWSGIMiddleware:
    """Put the LTI middleware in front of ``app`` and fill ``g.lti``.

    ``middleware_kwargs`` go to :class:`LTIWSGIMiddleware` (``config``,
    ``plugins``, ``http``, ...). Returns the middleware, also kept at
    ``app.extensions["lti_middleware"]``; call its ``close()`` when the app
    is done serving. Before each request ``g.lti`` is set to the request's
    launch, or ``None`` when the request carries no launch id (a request
    with an unknown id never reaches the app: it is refused with
    ``launch_not_found``).
    """
    middleware = LTIWSGIMiddleware(app.wsgi_app, **middleware_kwargs)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    app.extensions[EXTENSION_NAME] = middleware
    app.before_request(_load_launch)

    return middleware


def current_launch() -> LTILaunch | None:
    """The launch of the request being handled, or ``None``."""
    return wsgi.launch_of(request.environ)


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run an LTI service call from a sync view and return its result.

    ``run_sync(g.lti.ags.post_score(score_given=7, score_maximum=10))``
    runs on the middleware's event loop, where its HTTP client lives, and
    raises what the call raises. Flask's own ``async def`` views run each
    request on a new loop, so they must not call the services directly.
    """
    middleware = current_app.extensions.get(EXTENSION_NAME)
    if not isinstance(middleware, LTIWSGIMiddleware):
        coroutine.close()
        raise RuntimeError("init_app() was not called on this Flask app")

    return middleware.run(coroutine)


def _load_launch() -> None:
    g.lti = current_launch()

"""FastAPI support: the launch as a dependency, routes for one role.

FastAPI is Starlette, so :class:`~lti_middleware.LTIMiddleware` wraps a
FastAPI app as it is; these dependencies read the launch it attaches::

    from typing import Annotated
    from fastapi import Depends, FastAPI
    from lti_middleware import LTILaunch, load_config
    from lti_middleware.fastapi import lti_launch, require_role, wrap_app

    api = FastAPI()

    @api.get("/")
    async def home(launch: Annotated[LTILaunch, Depends(lti_launch)]) -> str:
        return f"Hello {launch.user.name}"

    @api.get("/results")
    async def results(
        launch: Annotated[LTILaunch, Depends(require_role("Instructor"))],
    ) -> str: ...

    app = wrap_app(api, config=load_config())

A route without a launch is refused with ``launch_not_found`` (401), one for
the wrong role with ``role_required`` (403), as escaped HTML or as JSON when
the client asks for JSON. :func:`wrap_app` registers the handler that renders
them; without it FastAPI answers the same status with the refusal as its JSON
``detail``.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from .exceptions import LaunchError
from .message import LTILaunch
from .middleware import LTIMiddleware
from .pages import error_body, render_error, wants_json

__all__ = [
    "LTIRefusal",
    "OptionalLTILaunch",
    "lti_launch",
    "optional_lti_launch",
    "refusal_handler",
    "require_role",
    "wrap_app",
]

_NO_LAUNCH = "this page needs a launch, and the request carries no launch id"
_ROLE_HINT = (
    "Launch the tool from the course with an account that has this role, or "
    "ask the course's administrator."
)
_ROLE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Not allowed</title></head>
<body><h1>This page is not for your role</h1>
<p>{detail}</p>
<p><strong>What to do:</strong> {hint}</p>
</body></html>
"""
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class LTIRefusal(HTTPException):
    """A dependency refused the request; ``body`` is the refusal as JSON.

    ``error`` is the :class:`LaunchError` behind a missing launch, ``None``
    for a role refusal.
    """

    def __init__(
        self, status_code: int, body: dict[str, Any], error: LaunchError | None
    ) -> None:
        super().__init__(status_code, detail=body, headers=_HEADERS)
        self.body = body
        self.error = error


def optional_lti_launch(request: Request) -> LTILaunch | None:
    """The request's launch, or ``None`` when it carries no launch id."""
    launch = getattr(request.state, "lti", None)
    return launch if isinstance(launch, LTILaunch) else None


def lti_launch(request: Request) -> LTILaunch:
    """The request's launch; raises :class:`LTIRefusal` (401) without one."""
    launch = optional_lti_launch(request)
    if launch is None:
        error = LaunchError("launch_not_found", _NO_LAUNCH)
        raise LTIRefusal(error.status, error_body(error), error)

    return launch


#: A parameter type for routes that also serve requests without a launch.
OptionalLTILaunch = Annotated[LTILaunch | None, Depends(optional_lti_launch)]


def require_role(role: str) -> Callable[[LTILaunch], LTILaunch]:
    """A dependency yielding the launch when it has ``role``, else a 403.

    ``role`` is a short name (``"Instructor"``) or a full role URI, matched
    as :meth:`~lti_middleware.message.Roles.has` matches it. Without a launch
    the refusal is the 401 of :func:`lti_launch`.
    """

    def dependency(launch: Annotated[LTILaunch, Depends(lti_launch)]) -> LTILaunch:
        if launch.roles.has(role):
            return launch
        body = {
            "error": "role_required",
            "status": 403,
            "summary": "This page is not for your role.",
            "detail": f"this page needs the {role} role, which the launch lacks",
            "hint": _ROLE_HINT,
        }
        raise LTIRefusal(403, body, None)

    dependency.__name__ = f"require_role_{role}"
    return dependency


async def refusal_handler(request: Request, exc: Exception) -> Response:
    """Render an :class:`LTIRefusal` like the middleware's refusals."""
    if not isinstance(exc, LTIRefusal):
        raise exc
    accept = request.headers.get("accept", "")
    if exc.error is not None:
        return render_error(exc.error, accept)
    if wants_json(accept):
        return JSONResponse(exc.body, exc.status_code, headers=_HEADERS)

    page = _ROLE_PAGE.format(
        detail=escape(str(exc.body["detail"])), hint=escape(str(exc.body["hint"]))
    )
    return HTMLResponse(page, exc.status_code, headers=_HEADERS)


def wrap_app(app: FastAPI, **middleware_kwargs: Any) -> LTIMiddleware:
    """Register :func:`refusal_handler` on ``app`` and wrap it in the middleware.

    ``middleware_kwargs`` go to :class:`LTIMiddleware` (``config``,
    ``plugins``, ``http``, ...). Serve the returned app.
    """
    app.add_exception_handler(LTIRefusal, refusal_handler)
    return LTIMiddleware(app, **middleware_kwargs)

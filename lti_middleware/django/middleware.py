"""The Django middleware that gives views ``request.lti``.

Add ``"lti_middleware.django.LTIRequestMiddleware"`` to ``MIDDLEWARE``. It
reads the launch that :class:`~lti_middleware.LTIMiddleware` found for the
request (see :mod:`lti_middleware.django.application`) and sets
``request.lti``: an :class:`~lti_middleware.LTILaunch`, or None when the
request carries no launch id. A request with an unknown or expired launch id
never reaches Django: the LTI middleware refuses it first.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpResponse  # type: ignore[import-untyped]
from django.views.decorators.csrf import csrf_exempt  # type: ignore[import-untyped]

from ..message import LTILaunch
from .application import request_state

GetResponse = Callable[[Any], Any]
View = TypeVar("View", bound=Callable[..., Any])

NO_LAUNCH_PAGE = (
    "<!doctype html><title>Open this tool from your course</title>"
    "<p>Open this tool from your course: this page needs the launch.</p>"
)


def launch_of(request: Any) -> LTILaunch | None:
    """The launch the LTI middleware attached to ``request``'s scope, if any."""
    launch = request_state(request).get("lti")
    return launch if isinstance(launch, LTILaunch) else None


class LTIRequestMiddleware:
    """Sets ``request.lti`` on every request; works in sync and async stacks."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        request.lti = launch_of(request)
        if self.is_async:
            return self._respond(request)
        return self.get_response(request)

    async def _respond(self, request: Any) -> Any:
        response: Awaitable[Any] = self.get_response(request)
        return await response


def launch_required(view: View) -> View:
    """Refuse requests without a launch (401); such views skip Django's CSRF check.

    A request that reaches the view carries a launch id that the LTI
    middleware found in its store: a 256-bit secret that a cross-site forger
    does not know, which is what a CSRF token proves. Django's CSRF cookie, by
    contrast, does not arrive at all inside a cross-site iframe when the
    browser blocks third-party cookies. Works on sync and async views; put
    :class:`LTIRequestMiddleware` in ``MIDDLEWARE``.
    """
    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            if getattr(request, "lti", None) is None:
                return _no_launch()
            return await view(request, *args, **kwargs)

        return cast(View, csrf_exempt(async_wrapper))

    @functools.wraps(view)
    def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(request, "lti", None) is None:
            return _no_launch()
        return view(request, *args, **kwargs)

    return cast(View, csrf_exempt(wrapper))


def _no_launch() -> HttpResponse:
    return HttpResponse(NO_LAUNCH_PAGE, status=401)

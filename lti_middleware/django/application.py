"""Django projects wrapped by :class:`~lti_middleware.LTIMiddleware`.

Under ASGI the middleware wraps Django's ASGI handler. Under WSGI the same
ASGI middleware runs between two a2wsgi bridges, as
:class:`~lti_middleware.wsgi.LTIWSGIMiddleware` (WSGI server -> ASGI ->
LTIMiddleware -> WSGI -> Django), so there is one copy of the protocol logic.
Either way the launch sits in the ASGI scope (``scope["state"]["lti"]``),
which Django exposes as ``request.scope`` under ASGI and which a2wsgi puts in
the WSGI environ as ``asgi.scope``; :class:`LTIRequestMiddleware` copies it to
``request.lti``.

Service calls must run on the event loop of the LTI middleware, because its
HTTP client (platform key sets, tokens, grades) belongs to that loop. Under
ASGI :class:`DjangoApp` records that loop in the scope's state; under WSGI it
is the bridge's loop. :func:`call_sync` and :func:`call_async` run a service
call there from any view.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import httpx
from django.conf import settings  # type: ignore[import-untyped]
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.utils.module_loading import import_string  # type: ignore[import-untyped]
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import ToolConfig, load_config
from ..middleware import LTIMiddleware
from ..wsgi import BRIDGE_ENVIRON_KEY, LTIWSGIMiddleware

T = TypeVar("T")

#: Key in ``scope["state"]`` of the event loop serving the LTI middleware.
LOOP_STATE_KEY = "lti.loop"
#: Seconds :func:`call_sync` waits for a service call before giving up.
SERVICE_CALL_TIMEOUT = 60.0


class DjangoApp:
    """The ASGI app between the LTI middleware and Django.

    It records the running event loop in the scope's state, and answers the
    lifespan protocol itself, which Django's handlers do not speak, so that
    the LTI middleware closes its HTTP client and stores at shutdown.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _answer_lifespan(receive, send)
            return

        scope.setdefault("state", {})[LOOP_STATE_KEY] = asyncio.get_running_loop()
        await self.app(scope, receive, send)


async def _answer_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def middleware_options(
    *,
    config: ToolConfig | None = None,
    plugins: Iterable[object] | None = None,
    http: httpx.AsyncClient | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Keyword arguments for the LTI middleware, from Django's settings.

    Arguments given here win over the settings: ``LTI_CONFIG`` (a
    :class:`~lti_middleware.ToolConfig` or the path of a TOML file; unset, the
    file named by ``LTI_MIDDLEWARE_CONFIG``), ``LTI_PLUGINS`` (plugin objects
    or dotted paths to them) and ``LTI_LOAD_ENTRY_POINTS`` (bool). Raises
    ``ImproperlyConfigured`` for settings of the wrong type.
    """
    return {
        "config": config if config is not None else config_from_settings(),
        "plugins": plugins if plugins is not None else plugins_from_settings(),
        "load_entry_points": bool(getattr(settings, "LTI_LOAD_ENTRY_POINTS", False)),
        "http": http,
        "clock": clock,
    }


def config_from_settings() -> ToolConfig:
    """The tool configuration named by the ``LTI_CONFIG`` setting."""
    value = getattr(settings, "LTI_CONFIG", None)
    if value is None or isinstance(value, (str, os.PathLike)):
        return load_config(value)
    if isinstance(value, ToolConfig):
        return value

    raise ImproperlyConfigured(
        f"LTI_CONFIG must be a ToolConfig or a path, not {type(value).__name__}"
    )


def plugins_from_settings() -> list[object]:
    """The plugins listed in ``LTI_PLUGINS``, dotted paths imported."""
    value = getattr(settings, "LTI_PLUGINS", ())
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ImproperlyConfigured("LTI_PLUGINS must be a list or a tuple")

    return [import_string(p) if isinstance(p, str) else p for p in value]


def get_asgi_application(**options: Any) -> LTIMiddleware:
    """Django's ASGI application behind the LTI middleware.

    Use it in ``asgi.py`` instead of Django's own; ``options`` are those of
    :func:`middleware_options`. The middleware closes its HTTP client and
    stores at lifespan shutdown.
    """
    from django.core import asgi  # type: ignore[import-untyped]

    django_app = asgi.get_asgi_application()
    return LTIMiddleware(DjangoApp(django_app), **middleware_options(**options))


def get_wsgi_application(**options: Any) -> LTIWSGIMiddleware:
    """Django's WSGI application behind the LTI middleware.

    Use it in ``wsgi.py`` instead of Django's own; ``options`` are those of
    :func:`middleware_options`. It is a
    :class:`~lti_middleware.wsgi.LTIWSGIMiddleware`: the LTI middleware and
    every platform call run on one event loop in a background thread, Django
    in a pool of threads. WSGI has no shutdown event: call its ``close()``
    when the server stops, to close the HTTP client and stores.
    """
    from django.core import wsgi

    django_app = wsgi.get_wsgi_application()
    return LTIWSGIMiddleware(django_app, **middleware_options(**options))


def lti_loop(request: Any) -> asyncio.AbstractEventLoop:
    """The event loop serving the LTI middleware for ``request``.

    Raises ``RuntimeError`` when the request did not pass through the
    middleware (the project is not served by :func:`get_asgi_application`
    or :func:`get_wsgi_application`).
    """
    loop = request_state(request).get(LOOP_STATE_KEY)
    bridge = getattr(request, "environ", {}).get(BRIDGE_ENVIRON_KEY)
    if isinstance(bridge, LTIWSGIMiddleware):
        loop = bridge.loop
    if not isinstance(loop, asyncio.AbstractEventLoop):
        raise RuntimeError(
            "this request did not pass through the LTI middleware; serve the "
            "project with lti_middleware.django.get_asgi_application() or "
            "get_wsgi_application()"
        )
    return loop


def request_state(request: Any) -> dict[str, Any]:
    """The ASGI scope's state of a Django request, under ASGI or a2wsgi."""
    scope = getattr(request, "scope", None)
    if scope is None:
        scope = getattr(request, "environ", {}).get("asgi.scope")
    state = scope.get("state") if isinstance(scope, dict) else None

    return state if isinstance(state, dict) else {}


def call_sync(
    request: Any, call: Awaitable[T], *, timeout: float = SERVICE_CALL_TIMEOUT
) -> T:
    """Run a service call, e.g. ``launch.ags.post_score(...)``, from a sync view.

    The call runs on the LTI middleware's event loop while this thread waits,
    at most ``timeout`` seconds (then ``TimeoutError``). Exceptions of the
    call are raised here. Calling it on that loop's own thread would block
    the loop, so it raises ``RuntimeError`` there: await in async views, or
    use :func:`call_async`.
    """
    loop = lti_loop(request)
    if _running_loop() is loop:
        _close(call)
        raise RuntimeError("call_sync on the LTI event loop; use call_async")

    future = asyncio.run_coroutine_threadsafe(_awaited(call), loop)
    return future.result(timeout)


async def call_async(request: Any, call: Awaitable[T]) -> T:
    """Await a service call from an async view, on the LTI middleware's loop.

    Under ASGI the view runs on that loop and this is a plain ``await``. Under
    WSGI Django runs async views on an event loop of their own, so the call
    is handed to the middleware's loop and awaited from there.
    """
    loop = lti_loop(request)
    if _running_loop() is loop:
        return await call

    future = asyncio.run_coroutine_threadsafe(_awaited(call), loop)
    return await asyncio.wrap_future(future)


async def _awaited(call: Awaitable[T]) -> T:
    return await call


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _close(call: Awaitable[Any]) -> None:
    # A coroutine that is never awaited warns when collected.
    close = getattr(call, "close", None)
    if close is not None:
        close()

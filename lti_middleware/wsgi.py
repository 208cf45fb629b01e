"""The middleware for WSGI apps (Flask, Bottle, Pyramid, any WSGI callable).

There is one implementation of the LTI routes and checks, the ASGI
:class:`~lti_middleware.LTIMiddleware`. This module puts it in front of a WSGI
app by bridging twice with ``a2wsgi``::

    WSGI server -> ASGIMiddleware -> LTIMiddleware -> WSGIMiddleware -> your app

The outer bridge runs the middleware on an event loop in its own thread; the
inner one runs the app in a thread pool. A request's launch (or ``None``) is
put in the WSGI environ under :data:`LAUNCH_ENVIRON_KEY`. Handlers are plain
synchronous functions, so grade and roster calls, which are coroutines, run
with :meth:`LTIWSGIMiddleware.run` (or :func:`run_sync`): on the bridge's loop,
where the middleware's HTTP client and stores live.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import httpx
from a2wsgi import ASGIMiddleware, WSGIMiddleware

from .config import ToolConfig
from .message import LTILaunch
from .middleware import LTIMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "BRIDGE_ENVIRON_KEY",
    "LAUNCH_ENVIRON_KEY",
    "LTIWSGIMiddleware",
    "launch_of",
    "run_sync",
]

#: The environ key holding the request's :class:`LTILaunch`, or ``None``.
LAUNCH_ENVIRON_KEY = "lti_middleware.launch"
#: The environ key holding the :class:`LTIWSGIMiddleware` serving the request.
BRIDGE_ENVIRON_KEY = "lti_middleware.wsgi"
#: Threads that run the WSGI app, as a2wsgi's default.
DEFAULT_WORKERS = 10
#: Seconds :meth:`LTIWSGIMiddleware.close` waits for the loop thread to end.
CLOSE_TIMEOUT = 10.0

T = TypeVar("T")


class LTIWSGIMiddleware:
    """Makes a WSGI app an LTI 1.3 tool, with :class:`LTIMiddleware` inside.

    Keyword arguments are those of :class:`LTIMiddleware`; ``workers`` is the
    number of threads that run the app. The middleware's event loop runs in a
    daemon thread from construction until :meth:`close`, which also closes the
    HTTP client and the stores (WSGI has no shutdown event to do it).
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        config: ToolConfig | None = None,
        plugins: Iterable[object] = (),
        load_entry_points: bool = False,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        self.app = app
        # a2wsgi spells the WSGI and ASGI types its own way; they are the same.
        self._wsgi = WSGIMiddleware(cast(Any, self._call_app), workers=workers)
        self.lti = LTIMiddleware(
            cast(Any, self._wsgi),
            config=config,
            plugins=plugins,
            load_entry_points=load_entry_points,
            http=http,
            clock=clock,
        )
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="lti-wsgi-loop", daemon=True
        )
        self._thread.start()
        self._bridge = ASGIMiddleware(cast(Any, self.lti), loop=self.loop)

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        return self._bridge(cast(Any, environ), cast(Any, start_response))

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the middleware's loop and return its result.

        For handlers: ``middleware.run(launch.ags.post_score(...))``. It
        blocks the calling thread until the coroutine ends and raises what
        the coroutine raises. ``asyncio.run`` would not do: the HTTP client
        and stores belong to this loop. Calling it from the loop's own
        thread would deadlock, so that raises ``RuntimeError``.
        """
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("run() was called on the middleware's own loop")

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        """Close the HTTP client and stores, then stop the loop; idempotent.

        Requests still being served are cancelled: call it once the WSGI
        server has stopped.
        """
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            self.run(self._shutdown())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(CLOSE_TIMEOUT)
        self.loop.close()
        self._wsgi.executor.shutdown(wait=False, cancel_futures=True)

    async def _shutdown(self) -> None:
        await self.lti.aclose()
        # Requests still in flight end here rather than with a closed loop.
        current = asyncio.current_task()
        pending = [task for task in asyncio.all_tasks() if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _call_app(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        # a2wsgi's inner bridge hands the app the ASGI scope it was called
        # with; LTIMiddleware left the launch in its state.
        scope = environ.get("asgi.scope")
        if not isinstance(scope, dict):
            raise RuntimeError("a2wsgi did not pass the ASGI scope in the environ")
        environ[LAUNCH_ENVIRON_KEY] = scope.get("state", {}).get("lti")
        environ[BRIDGE_ENVIRON_KEY] = self

        return self.app(environ, start_response)


def launch_of(environ: WSGIEnvironment) -> LTILaunch | None:
    """The launch of the request with this environ, or ``None``."""
    launch = environ.get(LAUNCH_ENVIRON_KEY)
    return launch if isinstance(launch, LTILaunch) else None


def run_sync(environ: WSGIEnvironment, coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` on the loop of the middleware serving this request.

    Raises ``RuntimeError`` when the request did not come through
    :class:`LTIWSGIMiddleware`.
    """
    bridge = environ.get(BRIDGE_ENVIRON_KEY)
    if not isinstance(bridge, LTIWSGIMiddleware):
        coroutine.close()
        raise RuntimeError("this request did not come through LTIWSGIMiddleware")

    return bridge.run(coroutine)

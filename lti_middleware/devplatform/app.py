"""The development platform as a Starlette app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from . import ags, auth, deep_linking, lineitems, tokens
from .deep_linking import course_settings
from .nrps import NRPSService
from .pages import render_gradebook, render_home
from .settings import (
    AGS_PATH,
    AUTH_PATH,
    DEEP_LINKING_RETURN_PATH,
    GRADEBOOK_PATH,
    KEY_SET_PATH,
    LAUNCH_PATH,
    STATS_PATH,
    TOKEN_PATH,
    PlatformSettings,
)
from .state import PlatformState
from .storage import COURSE_PATH, render_course
from .toolkeys import ToolKeySet

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, PlatformSettings, PlatformState], Awaitable[Response]]


def create_platform(
    settings: PlatformSettings, *, http_client: httpx.AsyncClient | None = None
) -> Starlette:
    """Build the platform app for ``settings``.

    ``http_client`` fetches the tool's key set; by default each fetch uses a
    short-lived client of its own. The app's state is in memory and starts
    empty; ``app.state.platform`` holds it for inspection.
    """
    state = PlatformState()
    key_set = ToolKeySet(settings.tool_jwks_url, state, client=http_client)

    def bind(handler: Handler) -> Endpoint:
        # Handlers see the course as it is now, deep-linked links included.
        async def endpoint(request: Request) -> Response:
            return await handler(request, course_settings(settings, state), state)

        return endpoint

    async def home(request: Request) -> Response:
        course = course_settings(settings, state)
        return HTMLResponse(render_home(course, state.placed_content))

    async def course(request: Request) -> Response:
        page, headers = render_course(course_settings(settings, state))
        return HTMLResponse(page, headers=headers)

    async def gradebook(request: Request) -> Response:
        return HTMLResponse(render_gradebook(course_settings(settings, state), state))

    async def deep_linking_return(request: Request) -> Response:
        course = course_settings(settings, state)
        return await deep_linking.receive_response(request, course, state, key_set)

    async def key_set_document(request: Request) -> Response:
        return JSONResponse({"keys": [settings.signing_key.public_jwk()]})

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats())

    async def token(request: Request) -> Response:
        return await tokens.issue_token(request, settings, state, key_set)

    line_items = AGS_PATH + "/{context_id}/lineitems"
    line_item = line_items + "/{line_item_id}/lineitem"
    routes = [
        Route("/", home, methods=["GET"]),
        Route(COURSE_PATH, course, methods=["GET"]),
        Route(LAUNCH_PATH, bind(auth.start_login), methods=["GET"]),
        Route(AUTH_PATH, bind(auth.authorize), methods=["GET", "POST"]),
        Route(KEY_SET_PATH, key_set_document, methods=["GET"]),
        Route(TOKEN_PATH, token, methods=["POST"]),
        Route(line_items, bind(lineitems.get_line_items), methods=["GET"]),
        Route(line_items, bind(lineitems.create_line_item), methods=["POST"]),
        Route(line_item, bind(lineitems.get_line_item), methods=["GET"]),
        Route(line_item, bind(lineitems.put_line_item), methods=["PUT"]),
        Route(line_item, bind(lineitems.delete_line_item), methods=["DELETE"]),
        Route(line_item + "/scores", bind(ags.post_score), methods=["POST"]),
        Route(line_item + "/results", bind(ags.get_results), methods=["GET"]),
        Route(GRADEBOOK_PATH, gradebook, methods=["GET"]),
        Route(STATS_PATH, stats, methods=["GET"]),
        Route(DEEP_LINKING_RETURN_PATH, deep_linking_return, methods=["POST"]),
    ]
    nrps = NRPSService(settings, state)
    routes.extend(nrps.routes())
    app = Starlette(routes=routes)
    app.state.nrps = nrps
    app.state.platform = state
    app.state.settings = settings

    return app

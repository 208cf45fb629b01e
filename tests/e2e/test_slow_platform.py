"""A platform that does not answer: the launch fails in bounded, configured time.

The tool's own HTTP client (built from ``tool.http_timeout``) fetches the key
set from a real server on 127.0.0.1 whose key set route never answers in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lti_middleware import LTIMiddleware

from ..conftest import (
    TOOL,
    Clock,
    FakePlatform,
    StoresPlugin,
    inner_app,
    registration,
    tool_config,
)
from .independent_platform import LocalServer

pytestmark = pytest.mark.e2e

#: How long the stalled route holds each request; well past the tool's timeout.
STALL = 3.0


async def stalled_key_set(request: Request) -> JSONResponse:
    await asyncio.sleep(STALL)
    return JSONResponse({"keys": []})


@pytest.fixture
def stalled() -> Iterator[str]:
    server = LocalServer()
    server.start(Starlette(routes=[Route("/jwks", stalled_key_set)]))
    try:
        yield server.base_url + "/jwks"
    finally:
        server.stop()


async def test_a_key_set_that_never_answers_fails_within_http_timeout(
    stalled: str,
) -> None:
    platform = FakePlatform(Clock())
    config = tool_config(
        registrations=(registration(key_set_url=stalled),), http_timeout=0.5
    )
    # No http= given: the middleware builds its client from the configuration.
    middleware = LTIMiddleware(
        inner_app(), config=config, plugins=(StoresPlugin(platform.clock),)
    )
    # The browser's own timeout bounds the tool's answer: a hang fails the test.
    browser = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware), base_url=TOOL, timeout=2.5
    )
    login = await browser.get(
        "/lti/login",
        params={
            "iss": "https://lms.example.edu",
            "login_hint": "h",
            "target_link_uri": TOOL + "/app",
        },
    )
    state = httpx.URL(login.headers["location"]).params["state"]
    nonce = httpx.URL(login.headers["location"]).params["nonce"]
    cookie = login.headers["set-cookie"].split(";")[0]
    token = platform.sign(platform.claims(nonce))

    response = await browser.post(
        "/lti/launch",
        data={"id_token": token, "state": state},
        headers={"cookie": cookie, "accept": "application/json"},
    )
    await browser.aclose()
    await middleware.aclose()

    assert response.status_code == 502
    assert response.json()["error"] == "key_set_unavailable"

"""A misbehaving platform, over real HTTP: a clear refusal, bounded time, no harm.

A real uvicorn server on 127.0.0.1 plays the platform's key set endpoint in
one fault at a time: it never answers, its port is closed, it answers HTML,
a 5xx, or a body past the size cap. Each launch must be refused with 502
``key_set_unavailable`` within the configured ``http_timeout`` (the browser's
own timeout fails the test otherwise), the log must name the platform and
the endpoint, and the same middleware must then serve a launch of a healthy
platform: the worker stays healthy.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import anyio.to_thread
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lti_middleware import LTIMiddleware
from lti_middleware.platform_keys import MAX_KEY_SET_BYTES

from ..conftest import (
    CLIENT_ID,
    ISS,
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

#: The tool's timeout for platform calls in these tests.
HTTP_TIMEOUT = 0.5
#: The test's browser gives up here: a tool that hangs fails the test.
BROWSER_TIMEOUT = 2.5

FAULTY_ISS = "https://faulty.example.edu"

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class PlatformServer:
    base_url: str
    healthy_keys: dict[str, list[dict[str, str]]]
    released: threading.Event


def never_answers(released: threading.Event) -> Endpoint:
    async def route(request: Request) -> Response:
        # Held until the test ends; the tool must give up long before.
        await anyio.to_thread.run_sync(released.wait)
        return JSONResponse({"keys": []})

    return route


def fixed(response: Response) -> Endpoint:
    async def route(request: Request) -> Response:
        return response

    return route


@pytest.fixture(scope="module")
def server() -> Iterator[PlatformServer]:
    platform = FakePlatform(Clock())
    keys = {"keys": [platform.key.public_jwk()]}
    released = threading.Event()
    huge = {"keys": [platform.key.public_jwk()], "pad": "x" * MAX_KEY_SET_BYTES}
    routes = [
        Route("/healthy/jwks", fixed(JSONResponse(keys))),
        Route("/stalls/jwks", never_answers(released)),
        Route("/html/jwks", fixed(Response("<html>Maintenance</html>", 200))),
        Route("/error/jwks", fixed(Response("Bad Gateway", 502))),
        Route("/huge/jwks", fixed(JSONResponse(huge))),
    ]
    local = LocalServer()
    local.start(Starlette(routes=routes))
    try:
        yield PlatformServer(local.base_url, keys, released)
    finally:
        released.set()
        local.stop()


def closed_port_url() -> str:
    # A port that was free a moment ago and has no listener now.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks"


async def launch(
    browser: httpx.AsyncClient, platform: FakePlatform, issuer: str, client_id: str
) -> httpx.Response:
    login = await browser.get(
        "/lti/login",
        params={
            "iss": issuer,
            "client_id": client_id,
            "login_hint": "h",
            "target_link_uri": TOOL + "/app",
        },
    )
    location = httpx.URL(login.headers["location"])
    cookie = login.headers["set-cookie"].split(";")[0]
    claims = platform.claims(location.params["nonce"], iss=issuer, aud=client_id)
    return await browser.post(
        "/lti/launch",
        data={"id_token": platform.sign(claims), "state": location.params["state"]},
        headers={"cookie": cookie, "accept": "application/json"},
    )


#: What the refusal says went wrong, for each fault.
CAUSES = {
    "stalls": f"no answer within {HTTP_TIMEOUT:g}s ([tool] http_timeout)",
    "closed": "ConnectError: ",
    "html": "the answer is not JSON (it starts b'<html>Maintenance</html>')",
    "error": "HTTP 502 from the platform",
    "huge": f"key set larger than {MAX_KEY_SET_BYTES} bytes",
}


@pytest.mark.parametrize("fault", sorted(CAUSES))
async def test_a_faulty_key_set_is_refused_in_bounded_time_and_the_worker_goes_on(
    server: PlatformServer, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    faulty_url = (
        closed_port_url() if fault == "closed" else f"{server.base_url}/{fault}/jwks"
    )
    config = tool_config(
        registrations=(
            registration(issuer=FAULTY_ISS, key_set_url=faulty_url),
            registration(key_set_url=f"{server.base_url}/healthy/jwks"),
        ),
        http_timeout=HTTP_TIMEOUT,
    )
    platform = FakePlatform(Clock())
    # No http= given: the middleware builds its client from the configuration.
    middleware = LTIMiddleware(
        inner_app(), config=config, plugins=(StoresPlugin(platform.clock),)
    )
    browser = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware),
        base_url=TOOL,
        timeout=BROWSER_TIMEOUT,
    )
    caplog.set_level(logging.INFO, logger="lti_middleware")

    try:
        refused = await launch(browser, platform, FAULTY_ISS, CLIENT_ID)
        healthy = await launch(browser, platform, ISS, CLIENT_ID)
    finally:
        await browser.aclose()
        await middleware.aclose()

    assert refused.status_code == 502
    assert refused.json()["error"] == "key_set_unavailable"
    refusal = next(r for r in caplog.records if "refused" in r.getMessage())
    assert f"issuer={FAULTY_ISS}" in refusal.getMessage()
    assert f"the key set at {faulty_url} ({CAUSES[fault]}" in refusal.getMessage()
    assert healthy.status_code == 303, healthy.text

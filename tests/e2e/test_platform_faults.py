"""A misbehaving platform, over real HTTP: a clear refusal, bounded time, no harm.

A real uvicorn server on 127.0.0.1 plays the platform's key set and token
endpoints in one fault at a time: it never answers, its port is closed, it
answers HTML, a 5xx, or a body past the size cap.

- Key set: the launch is refused with 502 ``key_set_unavailable`` within the
  configured ``http_timeout`` (the browser's own timeout fails the test
  otherwise), the log names the platform, the endpoint and the cause, and the
  same middleware then serves a launch of a healthy platform.
- Token endpoint: the middleware's token client raises an error naming the
  registration, the endpoint and the cause, within ``http_timeout`` (the
  test's own deadline fails it otherwise), then gets a token from a healthy
  endpoint. Retrying the service call around it is tests/test_service_retry.py.
"""

from __future__ import annotations

import gzip
import logging
import socket
import threading
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import anyio
import anyio.to_thread
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from lti_middleware import LTIMiddleware
from lti_middleware.exceptions import ServiceError, TokenRequestError
from lti_middleware.platform_keys import MAX_KEY_SET_BYTES
from lti_middleware.tokens import MAX_TOKEN_ANSWER_BYTES

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
#: Seconds between the bytes of a trickling answer: each read is in time.
TRICKLE_GAP = 0.3

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


def trickles(released: threading.Event) -> Endpoint:
    # Each byte comes well within http_timeout, the whole answer far past
    # it: httpx's per-read timeouts alone would wait for all of it.
    async def route(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            for byte in b'{"keys": [], "access_token": "x"}':
                yield bytes([byte])
                await anyio.to_thread.run_sync(released.wait, TRICKLE_GAP)

        return StreamingResponse(body(), media_type="application/json")

    return route


def fixed(response: Response) -> Endpoint:
    async def route(request: Request) -> Response:
        return response

    return route


def gzip_bomb() -> bytes:
    """256 MiB of zeros, gzipped three times over: about 300 bytes."""
    inflated = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    layer = b"".join(inflated.compress(zeros) for _ in range(256)) + inflated.flush()
    return gzip.compress(gzip.compress(layer, 9), 9)


@pytest.fixture(scope="module")
def server() -> Iterator[PlatformServer]:
    platform = FakePlatform(Clock())
    keys = {"keys": [platform.key.public_jwk()]}
    released = threading.Event()
    huge = {"keys": [platform.key.public_jwk()], "pad": "x" * MAX_KEY_SET_BYTES}
    token = {"access_token": "a-token", "token_type": "Bearer", "expires_in": 3600}
    huge_token = {**token, "pad": "x" * MAX_TOKEN_ANSWER_BYTES}
    routes = [
        Route("/healthy/token", fixed(JSONResponse(token)), methods=["POST"]),
        Route("/stalls/token", never_answers(released), methods=["POST"]),
        Route("/html/token", fixed(Response("<html>Sign in</html>")), methods=["POST"]),
        Route("/error/token", fixed(Response("Bad Gateway", 502)), methods=["POST"]),
        Route("/huge/token", fixed(JSONResponse(huge_token)), methods=["POST"]),
        Route("/trickles/token", trickles(released), methods=["POST"]),
        Route("/trickles/jwks", trickles(released)),
        Route(
            "/bomb/jwks",
            fixed(
                Response(
                    gzip_bomb(),
                    headers={"content-encoding": "gzip, gzip, gzip"},
                    media_type="application/json",
                )
            ),
        ),
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


def closed_port_url(path: str) -> str:
    # A port that was free a moment ago and has no listener now.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


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
    "trickles": f"no answer within {HTTP_TIMEOUT:g}s ([tool] http_timeout)",
    "closed": "ConnectError: ",
    "html": "the answer is not JSON (it starts b'<html>Maintenance</html>')",
    "error": "HTTP 502 from the platform",
    "huge": "GET {where} answered with more than " + f"{MAX_KEY_SET_BYTES} bytes",
    "bomb": "GET {where} answered with more than " + f"{MAX_KEY_SET_BYTES} bytes",
}


@pytest.mark.parametrize("fault", sorted(CAUSES))
async def test_a_faulty_key_set_is_refused_in_bounded_time_and_the_worker_goes_on(
    server: PlatformServer, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    faulty_url = (
        closed_port_url("/jwks")
        if fault == "closed"
        else f"{server.base_url}/{fault}/jwks"
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

    tracemalloc.start()
    try:
        refused = await launch(browser, platform, FAULTY_ISS, CLIENT_ID)
        # A bomb inflated by httpx would pass through memory whole first.
        peak = tracemalloc.get_traced_memory()[1]
        healthy = await launch(browser, platform, ISS, CLIENT_ID)
    finally:
        tracemalloc.stop()
        await browser.aclose()
        await middleware.aclose()

    assert peak < 32 * 1024 * 1024, f"{peak / 1e6:.0f} MB held for one refusal"
    assert refused.status_code == 502
    assert refused.json()["error"] == "key_set_unavailable"
    refusal = next(r for r in caplog.records if "refused" in r.getMessage())
    assert f"issuer={FAULTY_ISS}" in refusal.getMessage()
    cause = CAUSES[fault].format(where=faulty_url.removeprefix("http://"))
    assert f"the key set at {faulty_url} ({cause}" in refusal.getMessage()
    assert healthy.status_code == 303, healthy.text


#: The error each token endpoint fault raises, and what its message says.
TOKEN_FAULTS = {
    "stalls": (ServiceError, "could not be sent: POST {url}: ReadTimeout"),
    "trickles": (ServiceError, "could not be sent: POST {url}: ReadTimeout"),
    "closed": (ServiceError, "could not be sent: POST {url}: ConnectError"),
    "html": (
        TokenRequestError,
        "(the answer is not JSON) failed: POST {url} answered 200",
    ),
    "error": (TokenRequestError, "POST {url} answered 502"),
    "huge": (ServiceError, f"answered with more than {MAX_TOKEN_ANSWER_BYTES} bytes"),
}
SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"


@pytest.mark.parametrize("fault", sorted(TOKEN_FAULTS))
async def test_a_faulty_token_endpoint_fails_in_bounded_time_and_names_itself(
    server: PlatformServer, fault: str
) -> None:
    faulty_url = (
        closed_port_url("/token")
        if fault == "closed"
        else f"{server.base_url}/{fault}/token"
    )
    faulty = registration(issuer=FAULTY_ISS, token_url=faulty_url, name="faulty-lms")
    healthy = registration(token_url=f"{server.base_url}/healthy/token")
    config = tool_config(registrations=(faulty, healthy), http_timeout=HTTP_TIMEOUT)
    middleware = LTIMiddleware(
        inner_app(), config=config, plugins=(StoresPlugin(Clock()),)
    )
    expected_type, words = TOKEN_FAULTS[fault]

    try:
        with anyio.fail_after(BROWSER_TIMEOUT):
            with pytest.raises(ServiceError) as caught:
                await middleware.tokens.get_token(faulty, (SCORE_SCOPE,))
            token = await middleware.tokens.get_token(healthy, (SCORE_SCOPE,))
    finally:
        await middleware.aclose()

    assert type(caught.value) is expected_type
    message = str(caught.value)
    assert "'faulty-lms'" in message
    assert words.format(url=faulty_url) in message
    assert token == "a-token"

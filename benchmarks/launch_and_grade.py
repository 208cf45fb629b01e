"""What launches and grades cost: platform calls per 100, and time, side by side.

Runs the tool (the middleware around a tiny app) and the development platform
in one process, joined by httpx's ASGI transport, so the figures count every
request without network noise. Prints:

1. platform key set fetches per 100 launches, token requests per 100 score
   posts, and how often the platform fetched the tool's key set;
2. per-launch and per-score time for the whole flow, in process;
3. two side-by-side comparisons, as ratios: finding the platform key with our
   cache vs fetching the key set for every launch, and signing a client
   assertion with the key loaded once vs parsing the PEM every time.

Run: ``python benchmarks/launch_and_grade.py [--launches 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from html import unescape
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from lti_middleware import (
    LTIMiddleware,
    Registration,
    ToolConfig,
    generate_key,
    hookimpl,
)
from lti_middleware.assertion import build_client_assertion
from lti_middleware.devplatform.app import create_platform
from lti_middleware.devplatform.settings import LAUNCH_PATH, PlatformSettings
from lti_middleware.keys import StaticKeyProvider, load_key
from lti_middleware.platform_keys import PlatformKeySets

TOOL = "http://localhost:8000"
PLATFORM = "http://localhost:8001"
_FIELD = re.compile(r'name="(id_token|state)" value="([^"]*)"')


class Router(httpx.AsyncBaseTransport):
    """Sends each request to the in-process app that owns its origin."""

    def __init__(self) -> None:
        self.apps: dict[str, httpx.ASGITransport] = {}

    def add(self, origin: str, app: Any) -> None:
        self.apps[origin] = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
        return await self.apps[origin].handle_async_request(request)


class Keys:
    def __init__(self) -> None:
        self.provider = StaticKeyProvider([generate_key()])

    @hookimpl
    def lti_key_provider(self, config: ToolConfig) -> StaticKeyProvider:
        return self.provider


async def grade(request: Request) -> PlainTextResponse:
    await request.state.lti.ags.post_score(score_given=7, score_maximum=10)
    return PlainTextResponse("graded")


def build() -> tuple[LTIMiddleware, Any, httpx.AsyncClient]:
    router = Router()
    settings = PlatformSettings.for_tool(TOOL, base_url=PLATFORM)
    platform = create_platform(
        settings, http_client=httpx.AsyncClient(transport=router)
    )
    config = ToolConfig(
        login_url=TOOL + "/lti/login",
        launch_url=TOOL + "/lti/launch",
        jwks_url=TOOL + "/lti/jwks",
        registrations=(
            Registration(
                issuer=settings.issuer,
                client_id=settings.client_id,
                deployment_ids=(settings.deployment_id,),
                auth_login_url=settings.auth_login_url,
                token_url=settings.token_url,
                key_set_url=settings.key_set_url,
            ),
        ),
    )
    app = Starlette(routes=[Route("/", grade, methods=["GET", "POST"])])
    tool = LTIMiddleware(
        app, config=config, plugins=[Keys()], http=httpx.AsyncClient(transport=router)
    )
    router.add(TOOL, tool)
    router.add(PLATFORM, platform)
    return tool, platform, httpx.AsyncClient(transport=router)


async def launch(browser: httpx.AsyncClient) -> str:
    """One browser launch; returns the landing URL with the launch id."""
    response = await browser.get(
        PLATFORM + LAUNCH_PATH, params={"user_id": "learner-1"}
    )
    login = await browser.get(response.headers["location"])
    # httpx keeps Secure cookies off plain http; carry the state cookie by hand.
    cookie = login.headers["set-cookie"].split(";")[0]
    form_page = await browser.get(login.headers["location"])
    fields = {name: unescape(value) for name, value in _FIELD.findall(form_page.text)}
    landed = await browser.post(
        TOOL + "/lti/launch", data=fields, headers={"cookie": cookie}
    )
    browser.cookies.clear()
    if landed.status_code != 303:
        raise SystemExit(f"launch failed: {landed.status_code} {landed.text[:300]}")
    return landed.headers["location"]


async def flow(launches: int) -> dict[str, float]:
    tool, platform, browser = build()
    launch_times, score_times, landings = [], [], []
    for _ in range(launches):
        started = time.perf_counter()
        landings.append(await launch(browser))
        launch_times.append(time.perf_counter() - started)
    for landing in landings:
        started = time.perf_counter()
        response = await browser.get(landing)
        if response.text != "graded":
            raise SystemExit(f"score failed: {response.status_code} {response.text}")
        score_times.append(time.perf_counter() - started)

    stats = (await browser.get(PLATFORM + "/stats")).json()
    await tool.aclose()
    return {
        "key_set_fetches": tool.key_sets.fetch_count,
        "token_requests": stats["token_requests"],
        "tool_jwks_fetches": stats["tool_jwks_fetches"],
        "scores_received": stats["scores_received"],
        "launch_ms": statistics.median(launch_times) * 1000,
        "score_ms": statistics.median(score_times) * 1000,
    }


async def key_lookup_ratio(rounds: int) -> tuple[float, float]:
    key = generate_key()
    document = {"keys": [key.public_jwk()]}
    fetches = 0

    def serve(request: httpx.Request) -> httpx.Response:
        nonlocal fetches
        fetches += 1
        return httpx.Response(200, json=document)

    http = httpx.AsyncClient(transport=httpx.MockTransport(serve))
    url = "https://lms.example.edu/jwks"
    cached = PlatformKeySets(http)
    started = time.perf_counter()
    for _ in range(rounds):
        await cached.key_for(url, key.kid, "RS256")
    ours = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(rounds):
        await PlatformKeySets(http).key_for(url, key.kid, "RS256")
    naive = (time.perf_counter() - started) / rounds
    return ours, naive


def signing_ratio(rounds: int) -> tuple[float, float]:
    key = generate_key()
    pem = key.private_pem()
    registration = Registration(
        issuer="https://lms.example.edu",
        client_id="c",
        deployment_ids=("d",),
        auth_login_url="https://lms.example.edu/auth",
        token_url="https://lms.example.edu/token",
        key_set_url="https://lms.example.edu/jwks",
    )
    started = time.perf_counter()
    for _ in range(rounds):
        build_client_assertion(registration=registration, key=key, now=time.time())
    loaded_once = (time.perf_counter() - started) / rounds
    started = time.perf_counter()
    for _ in range(rounds):
        build_client_assertion(
            registration=registration, key=load_key(pem), now=time.time()
        )
    parsed_each_time = (time.perf_counter() - started) / rounds
    return loaded_once, parsed_each_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=100)
    args = parser.parse_args()

    figures = asyncio.run(flow(args.launches))
    n = args.launches
    print(f"{n} launches and {n} score posts, tool and platform in one process")
    print(f"  platform key set fetches by the tool : {figures['key_set_fetches']:.0f}")
    print(f"  token requests by the tool           : {figures['token_requests']:.0f}")
    print(
        f"  tool key set fetches by the platform : {figures['tool_jwks_fetches']:.0f}"
    )
    print(f"  scores recorded by the platform      : {figures['scores_received']:.0f}")
    print(f"  median launch (5 requests)           : {figures['launch_ms']:.2f} ms")
    print(f"  median score post (+ token if needed): {figures['score_ms']:.2f} ms")

    ours, naive = asyncio.run(key_lookup_ratio(200))
    print("platform key lookup per launch, side by side")
    print(f"  cached key set     : {ours * 1e6:9.1f} us")
    print(f"  fetch every launch : {naive * 1e6:9.1f} us  ({naive / ours:.0f}x slower,")
    print("                       before any network latency)")

    once, each = signing_ratio(30)
    print("client assertion signing, side by side")
    print(f"  key loaded once    : {once * 1e3:9.2f} ms")
    print(f"  PEM parsed per call: {each * 1e3:9.2f} ms  ({each / once:.1f}x slower)")


if __name__ == "__main__":
    main()

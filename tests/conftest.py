"""Shared fixtures: a signing platform stand-in, a wrapped app, a fake clock.

Unit tests reach the platform's key set through httpx.MockTransport; nothing
leaves the process. End-to-end tests (tests/e2e) run real servers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lti_middleware import LTIMiddleware, Registration, ToolConfig, generate_key
from lti_middleware import claims as c
from lti_middleware.hooks import hookimpl
from lti_middleware.keys import StaticKeyProvider, ToolKey
from lti_middleware.stores.memory import (
    MemoryAccessTokenStore,
    MemoryLaunchStore,
    MemoryNonceStore,
)

ISS = "https://lms.example.edu"
CLIENT_ID = "10000000000042"
DEPLOYMENT_ID = "7:3c1f0e2d9a"
AUTH_URL = "https://lms.example.edu/api/lti/authorize_redirect"
TOKEN_URL = "https://lms.example.edu/login/oauth2/token"
JWKS_URL = "https://lms.example.edu/api/lti/security/jwks"
TOOL = "https://tool.example.org"
TOOL_LOGIN = TOOL + "/lti/login"
TOOL_LAUNCH = TOOL + "/lti/launch"
TOOL_JWKS = TOOL + "/lti/jwks"
TOOL_APP = TOOL + "/app"
LINEITEM = "https://lms.example.edu/api/lti/courses/5/line_items/9"

_KEYS: dict[str, ToolKey] = {}


def cached_key(name: str) -> ToolKey:
    """An RSA key generated once per test session under ``name``."""
    if name not in _KEYS:
        _KEYS[name] = generate_key()
    return _KEYS[name]


class Clock:
    """A clock tests move by hand."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


def registration(**overrides: Any) -> Registration:
    values: dict[str, Any] = {
        "issuer": ISS,
        "client_id": CLIENT_ID,
        "deployment_ids": (DEPLOYMENT_ID,),
        "auth_login_url": AUTH_URL,
        "token_url": TOKEN_URL,
        "key_set_url": JWKS_URL,
    }
    values.update(overrides)
    return Registration(**values)


def tool_config(**overrides: Any) -> ToolConfig:
    values: dict[str, Any] = {
        "login_url": TOOL_LOGIN,
        "launch_url": TOOL_LAUNCH,
        "jwks_url": TOOL_JWKS,
        "registrations": (registration(),),
    }
    values.update(overrides)
    return ToolConfig(**values)


@dataclass
class FakePlatform:
    """Signs id_tokens and serves key sets, as a platform would."""

    clock: Clock
    key: ToolKey = field(default_factory=lambda: cached_key("platform"))
    published: list[ToolKey] = field(default_factory=list)
    key_set_requests: list[str] = field(default_factory=list)
    key_set_headers: dict[str, str] = field(default_factory=dict)
    key_set_down: bool = False
    extra: dict[str, httpx.Response] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.published:
            self.published = [self.key]

    def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url in self.extra:
            return self.extra[url]
        if url.split("?")[0] in (
            JWKS_URL,
            "https://tenant-a.example.edu/jwks",
            "https://tenant-b.example.edu/jwks",
        ):
            self.key_set_requests.append(url)
            if self.key_set_down:
                raise httpx.ConnectError("platform down", request=request)
            keys = [k.public_jwk() for k in self.published]
            return httpx.Response(
                200, json={"keys": keys}, headers=self.key_set_headers
            )
        return httpx.Response(404, text="not found")

    def claims(self, nonce: str, /, **overrides: Any) -> dict[str, Any]:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": ISS,
            "aud": CLIENT_ID,
            "sub": "user-1",
            "exp": now + 300,
            "iat": now,
            "nonce": nonce,
            "name": "Ada Learner",
            "email": "ada@example.edu",
            c.MESSAGE_TYPE: c.RESOURCE_LINK_REQUEST,
            c.VERSION: "1.3.0",
            c.DEPLOYMENT_ID: DEPLOYMENT_ID,
            c.TARGET_LINK_URI: TOOL_APP,
            c.RESOURCE_LINK: {"id": "rl-1", "title": "Quiz 1"},
            c.ROLES: [c.MEMBERSHIP_ROLE + "Learner"],
            c.CONTEXT: {"id": "ctx-5", "label": "BIO101", "title": "Biology"},
            c.TOOL_PLATFORM: {"guid": "lms-guid", "name": "Example LMS"},
            c.CUSTOM: {"color": "green"},
            c.LAUNCH_PRESENTATION: {"document_target": "iframe", "locale": "en"},
            c.AGS_ENDPOINT: {
                "scope": [c.SCOPE_SCORE, c.SCOPE_LINEITEM],
                "lineitem": LINEITEM,
                "lineitems": "https://lms.example.edu/api/lti/courses/5/line_items",
            },
        }
        for name, value in overrides.items():
            if value is DROP:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def sign(
        self,
        claims: dict[str, Any],
        *,
        key: ToolKey | None = None,
        headers: dict[str, Any] | None = None,
        alg: str = "RS256",
    ) -> str:
        key = key or self.key
        header = {"kid": key.kid}
        header.update(headers or {})
        if header.get("kid") is None:
            header.pop("kid")
        return jwt.encode(claims, key.private_key, algorithm=alg, headers=header)


DROP = object()


@dataclass
class Login:
    state: str
    nonce: str
    cookie_name: str
    cookie_value: str
    location: str
    params: dict[str, str]

    @property
    def cookies(self) -> dict[str, str]:
        return {self.cookie_name: self.cookie_value}


def _parse_set_cookie(header: str) -> tuple[str, str]:
    name, _, rest = header.partition("=")
    return name, rest.split(";")[0]


class ToolClient:
    """Drives the wrapped app like a browser that a platform redirects."""

    def __init__(self, middleware: LTIMiddleware, platform: FakePlatform) -> None:
        self.middleware = middleware
        self.platform = platform
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=middleware), base_url=TOOL
        )

    async def login(self, method: str = "GET", **params: str) -> Login:
        values = {
            "iss": ISS,
            "login_hint": "u-123",
            "target_link_uri": TOOL_APP,
            "client_id": CLIENT_ID,
            "lti_deployment_id": DEPLOYMENT_ID,
            "lti_message_hint": "m-456",
        }
        values.update(params)
        if method == "GET":
            response = await self.http.get("/lti/login", params=values)
        else:
            response = await self.http.post("/lti/login", data=values)
        self.http.cookies.clear()
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        name, value = _parse_set_cookie(response.headers["set-cookie"])
        return Login(query["state"], query["nonce"], name, value, location, query)

    async def post_launch(
        self, form: dict[str, str], cookies: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        headers = kw.pop("headers", {})
        if cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        headers.setdefault("accept", "application/json")
        response = await self.http.post("/lti/launch", data=form, headers=headers, **kw)
        self.http.cookies.clear()
        return response

    async def launch(self, login: Login | None = None, **claims: Any) -> httpx.Response:
        login = login or await self.login()
        token = self.platform.sign(self.platform.claims(login.nonce, **claims))
        return await self.post_launch(
            {"id_token": token, "state": login.state}, login.cookies
        )

    async def launch_token(self, token: str, login: Login) -> httpx.Response:
        form = {"id_token": token, "state": login.state}
        return await self.post_launch(form, login.cookies)

    async def follow(self, response: httpx.Response, **kw: Any) -> httpx.Response:
        assert response.status_code == 303, response.text
        return await self.http.get(response.headers["location"], **kw)


async def app_page(request: Request) -> JSONResponse:
    launch = request.state.lti
    if launch is None:
        return JSONResponse({"launch": None})
    return JSONResponse(
        {
            "launch": launch.launch_id,
            "user": launch.user.id,
            "instructor": launch.roles.is_instructor,
            "learner": launch.roles.is_learner,
            "context": launch.context.id if launch.context else None,
            "resource_link": launch.resource_link.id if launch.resource_link else None,
            "custom": dict(launch.custom),
            "deployment_id": launch.deployment_id,
        }
    )


def inner_app() -> Starlette:
    return Starlette(routes=[Route("/app", app_page), Route("/", app_page)])


class StoresPlugin:
    """Memory stores on the test clock, registered like any plugin."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.nonces = MemoryNonceStore(clock=clock)
        self.launches = MemoryLaunchStore(clock=clock)
        self.tokens = MemoryAccessTokenStore(clock=clock)
        self.keys = StaticKeyProvider([cached_key("tool")])

    @hookimpl
    def lti_nonce_store(self, config: ToolConfig) -> MemoryNonceStore:
        return self.nonces

    @hookimpl
    def lti_launch_store(self, config: ToolConfig) -> MemoryLaunchStore:
        return self.launches

    @hookimpl
    def lti_access_token_store(self, config: ToolConfig) -> MemoryAccessTokenStore:
        return self.tokens

    @hookimpl
    def lti_key_provider(self, config: ToolConfig) -> StaticKeyProvider:
        return self.keys


def make_tool(
    platform: FakePlatform,
    *,
    config: ToolConfig | None = None,
    plugins: tuple[object, ...] = (),
    app: Any = None,
) -> ToolClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(platform.handle))
    middleware = LTIMiddleware(
        app or inner_app(),
        config=config or tool_config(),
        plugins=(StoresPlugin(platform.clock), *plugins),
        http=http,
        clock=platform.clock,
    )
    return ToolClient(middleware, platform)


@pytest.fixture
def clock() -> Clock:
    return Clock(1_700_000_000.0)


@pytest.fixture
def platform(clock: Clock) -> FakePlatform:
    return FakePlatform(clock)


@pytest.fixture
async def tool(platform: FakePlatform) -> AsyncIterator[ToolClient]:
    client = make_tool(platform)
    yield client
    await client.http.aclose()
    await client.middleware.aclose()


def new_id() -> str:
    return uuid.uuid4().hex

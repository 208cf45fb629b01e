"""Access tokens: the client credentials request, caching, single flight, errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import jwt
import pytest

from lti_middleware.config import Registration
from lti_middleware.exceptions import ServiceError, TokenRequestError
from lti_middleware.keys import StaticKeyProvider, ToolKey, generate_key
from lti_middleware.stores import MemoryAccessTokenStore
from lti_middleware.tokens import (
    DEFAULT_USER_AGENT,
    MAX_BODY_CHARS,
    TOKEN_LOCK_TTL,
    AccessTokenClient,
    token_cache_key,
)

TOKEN_URL = "https://lms.example.edu/login/oauth2/token"
SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
RESULT = "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

Answer = Callable[[int], httpx.Response]


def make_registration(**overrides: Any) -> Registration:
    values: dict[str, Any] = {
        "issuer": "https://lms.example.edu",
        "client_id": "10000000000042",
        "deployment_ids": ("1:abc",),
        "auth_login_url": "https://lms.example.edu/api/lti/authorize_redirect",
        "token_url": TOKEN_URL,
        "key_set_url": "https://lms.example.edu/api/lti/security/jwks",
        "name": "test-lms",
    }
    values.update(overrides)
    return Registration(**values)


def bearer(number: int, **extra: Any) -> httpx.Response:
    body = {"access_token": f"token-{number}", "token_type": "Bearer", **extra}
    return httpx.Response(200, json={"expires_in": 3600, **body})


class FakeTokenEndpoint:
    """A platform token endpoint that checks assertions as strict platforms do.

    Answers 500 to an ``aud`` array of two or more values (Brightspace), 400
    when ``iss`` differs from ``sub``, 401 invalid_client for an unknown kid
    or a bad signature; otherwise calls ``answer`` with the request number.
    """

    def __init__(
        self, key_set: list[dict[str, str]], *, audience: str = TOKEN_URL
    ) -> None:
        self.key_set = key_set
        self.audience = audience
        self.requests: list[httpx.Request] = []
        self.forms: list[dict[str, str]] = []
        self.claims: list[dict[str, Any]] = []
        self.answer: Answer = bearer
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        number = len(self.requests)
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()

        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.forms.append(form)
        refusal = self.check(form.get("client_assertion", ""))
        if refusal is not None:
            return refusal

        return self.answer(number)

    def check(self, assertion: str) -> httpx.Response | None:
        kid = jwt.get_unverified_header(assertion).get("kid")
        jwks = [jwk for jwk in self.key_set if jwk["kid"] == kid]
        if not jwks:
            return httpx.Response(401, json={"error": "invalid_client"})
        try:
            claims = jwt.decode(
                assertion,
                jwt.PyJWK(jwks[0]).key,
                algorithms=["RS256"],
                # The tests' clock is fixed in the past; times checked below.
                options={"verify_aud": False, "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError:
            return httpx.Response(401, json={"error": "invalid_client"})

        self.claims.append(claims)
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) >= 2:
            return httpx.Response(500, text="Internal Server Error")
        if not 0 < claims["exp"] - claims["iat"] <= 600 or not claims.get("jti"):
            return httpx.Response(400, json={"error": "invalid_grant"})
        if claims["iss"] != claims["sub"]:
            return httpx.Response(400, json={"error": "invalid_client"})
        if aud != self.audience:
            return httpx.Response(400, json={"error": "invalid_grant"})
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key() -> ToolKey:
    return generate_key()


@pytest.fixture
def endpoint(key: ToolKey) -> FakeTokenEndpoint:
    return FakeTokenEndpoint([key.public_jwk()])


@pytest.fixture
async def http(endpoint: FakeTokenEndpoint) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(endpoint)) as client:
        yield client


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tokens(key: ToolKey, http: httpx.AsyncClient, clock: Clock) -> AccessTokenClient:
    return AccessTokenClient(
        key_provider=StaticKeyProvider([key]), http=http, clock=clock
    )


async def test_token_request_is_client_credentials_with_jwt_assertion(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    token = await tokens.get_token(make_registration(), [SCORE])

    assert token == "token-1"
    request = endpoint.requests[0]
    assert request.method == "POST"
    assert str(request.url) == TOKEN_URL
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["user-agent"] == DEFAULT_USER_AGENT
    form = endpoint.forms[0]
    assert set(form) == {
        "grant_type",
        "client_assertion_type",
        "client_assertion",
        "scope",
    }
    assert form["grant_type"] == "client_credentials"
    assert form["client_assertion_type"] == ASSERTION_TYPE
    assert form["scope"] == SCORE


async def test_token_request_sends_given_user_agent(
    key: ToolKey, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    client = AccessTokenClient(
        key_provider=StaticKeyProvider([key]), http=http, user_agent="my-tool/2.0"
    )

    await client.get_token(make_registration(), [SCORE])

    assert endpoint.requests[0].headers["user-agent"] == "my-tool/2.0"


async def test_token_request_scopes_are_sorted_and_joined_by_single_spaces(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    await tokens.get_token(make_registration(), [SCORE, RESULT, LINEITEM, SCORE])

    assert endpoint.forms[0]["scope"] == f"{LINEITEM} {RESULT} {SCORE}"


async def test_token_request_takes_a_lone_string_as_one_scope(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    await tokens.get_token(make_registration(), SCORE)

    assert endpoint.forms[0]["scope"] == SCORE


@pytest.mark.parametrize("scopes", [[], [""], [f"{SCORE} {LINEITEM}"]])
async def test_token_request_refuses_bad_scopes_before_sending(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint, scopes: list[str]
) -> None:
    with pytest.raises(ValueError, match="scope"):
        await tokens.get_token(make_registration(), scopes)

    assert endpoint.requests == []


async def test_assertion_verifies_with_published_key(
    key: ToolKey, tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    await tokens.get_token(make_registration(), [SCORE])

    assertion = endpoint.forms[0]["client_assertion"]
    header = jwt.get_unverified_header(assertion)
    assert header["kid"] in {jwk["kid"] for jwk in endpoint.key_set}
    assert header["alg"] == "RS256"
    claims = endpoint.claims[0]
    assert claims["iss"] == claims["sub"] == "10000000000042"
    assert claims["aud"] == TOKEN_URL
    assert 0 < claims["exp"] - claims["iat"] <= 300


async def test_brightspace_token_audience_gets_a_token(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    # CASE-12: the POST goes to token_url, aud is the separate audience.
    endpoint.audience = "https://api.lms-vendor.example/auth/token"
    registration = make_registration(
        client_id="6f1e2a4b-0000-4000-8000-00000000abcd",
        token_url="https://auth.lms-vendor.example/core/connect/token",
        token_audience="https://api.lms-vendor.example/auth/token",
    )

    assert await tokens.get_token(registration, [SCORE]) == "token-1"
    assert str(endpoint.requests[0].url) == registration.token_url
    assert endpoint.claims[0]["aud"] == "https://api.lms-vendor.example/auth/token"


async def test_fake_endpoint_refuses_audience_array_and_iss_not_sub(
    key: ToolKey, endpoint: FakeTokenEndpoint
) -> None:
    # The CASE-12 fake is strict: the test above would fail on either mistake.
    base = {"iat": 1, "exp": 2**31, "jti": "x"}
    array = {**base, "iss": "c", "sub": "c", "aud": [TOKEN_URL, "https://x.test"]}
    iss_url = {**base, "iss": "https://tool.test", "sub": "c", "aud": TOKEN_URL}

    answers = [
        endpoint.check(
            jwt.encode(claims, key.private_key, "RS256", headers={"kid": key.kid})
        )
        for claims in (array, iss_url)
    ]

    assert [a.status_code if a else None for a in answers] == [500, 400]


async def test_cached_token_is_reused(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    registration = make_registration()

    results = [await tokens.get_token(registration, [SCORE]) for _ in range(100)]

    assert set(results) == {"token-1"}
    assert len(endpoint.requests) == 1


async def test_cache_is_keyed_by_scope_set(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    registration = make_registration()

    score = await tokens.get_token(registration, [SCORE])
    lineitem = await tokens.get_token(registration, [LINEITEM])
    both = await tokens.get_token(registration, [SCORE, LINEITEM])
    both_again = await tokens.get_token(registration, [LINEITEM, SCORE])

    assert [score, lineitem, both, both_again] == [
        "token-1",
        "token-2",
        "token-3",
        "token-3",
    ]
    assert [form["scope"] for form in endpoint.forms] == [
        SCORE,
        LINEITEM,
        f"{LINEITEM} {SCORE}",
    ]


async def test_cache_is_keyed_by_registration(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    first = make_registration()
    second = make_registration(client_id="10000000000099")

    tokens_seen = [
        await tokens.get_token(first, [SCORE]),
        await tokens.get_token(second, [SCORE]),
    ]

    assert tokens_seen == ["token-1", "token-2"]
    assert token_cache_key(first, [SCORE]) != token_cache_key(second, [SCORE])


async def test_token_expiry_causes_new_request(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint, clock: Clock
) -> None:
    registration = make_registration()
    start = clock.now

    first = await tokens.get_token(registration, [SCORE])
    clock.now = start + 3600 - 61
    still = await tokens.get_token(registration, [SCORE])
    clock.now = start + 3600 - 59
    renewed = await tokens.get_token(registration, [SCORE])

    assert (first, still, renewed) == ("token-1", "token-1", "token-2")


async def test_token_without_expires_in_lives_an_hour(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint, clock: Clock
) -> None:
    endpoint.answer = lambda n: httpx.Response(
        200, json={"access_token": f"token-{n}", "token_type": "Bearer"}
    )
    registration = make_registration()
    start = clock.now

    await tokens.get_token(registration, [SCORE])
    clock.now = start + 3500
    await tokens.get_token(registration, [SCORE])
    clock.now = start + 3550
    await tokens.get_token(registration, [SCORE])

    assert len(endpoint.requests) == 2


async def test_short_lived_token_margin_is_a_tenth(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint, clock: Clock
) -> None:
    endpoint.answer = lambda n: bearer(n, expires_in=100)
    registration = make_registration()
    start = clock.now

    await tokens.get_token(registration, [SCORE])
    clock.now = start + 89
    await tokens.get_token(registration, [SCORE])
    clock.now = start + 91
    await tokens.get_token(registration, [SCORE])

    assert len(endpoint.requests) == 2


async def test_token_with_zero_lifetime_is_not_cached(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    endpoint.answer = lambda n: bearer(n, expires_in=0)
    registration = make_registration()

    tokens_seen = [await tokens.get_token(registration, [SCORE]) for _ in range(2)]

    assert tokens_seen == ["token-1", "token-2"]


async def gated(
    endpoint: FakeTokenEndpoint, calls: list[Awaitable[str]]
) -> list[str | BaseException]:
    """Run ``calls`` while the token endpoint holds the first request open."""
    endpoint.gate = asyncio.Event()
    tasks = [asyncio.ensure_future(call) for call in calls]
    await endpoint.entered.wait()
    endpoint.gate.set()

    return await asyncio.gather(*tasks, return_exceptions=True)


async def test_concurrent_callers_share_one_token_request(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    registration = make_registration()

    results = await gated(
        endpoint, [tokens.get_token(registration, [SCORE]) for _ in range(20)]
    )

    assert results == ["token-1"] * 20
    assert len(endpoint.requests) == 1
    assert tokens._flights == {}  # the single-flight map does not grow


async def test_concurrent_callers_share_one_refusal(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    endpoint.answer = lambda n: httpx.Response(400, json={"error": "invalid_scope"})
    registration = make_registration()

    results = await gated(
        endpoint, [tokens.get_token(registration, [SCORE]) for _ in range(20)]
    )

    assert all(isinstance(result, TokenRequestError) for result in results)
    assert len(endpoint.requests) == 1
    assert tokens._flights == {}


async def test_concurrent_callers_for_other_scopes_do_not_wait_on_each_other(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    registration = make_registration()

    results = await gated(
        endpoint,
        [
            tokens.get_token(registration, [SCORE]),
            tokens.get_token(registration, [LINEITEM]),
            tokens.get_token(registration, [SCORE]),
        ],
    )

    assert len(endpoint.requests) == 2
    assert results[0] == results[2] != results[1]


async def test_cancelled_caller_does_not_cancel_shared_request(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    registration = make_registration()
    endpoint.gate = asyncio.Event()
    first = asyncio.ensure_future(tokens.get_token(registration, [SCORE]))
    second = asyncio.ensure_future(tokens.get_token(registration, [SCORE]))
    await endpoint.entered.wait()

    first.cancel()
    endpoint.gate.set()

    assert await second == "token-1"
    assert first.cancelled()
    assert len(endpoint.requests) == 1


async def test_token_answer_201_is_accepted(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    endpoint.answer = lambda n: httpx.Response(
        201, json={"access_token": "created", "token_type": "Bearer", "expires_in": 60}
    )

    assert await tokens.get_token(make_registration(), [SCORE]) == "created"


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER"])
async def test_token_type_is_compared_case_insensitively(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint, token_type: str
) -> None:
    endpoint.answer = lambda n: bearer(n, token_type=token_type)

    assert await tokens.get_token(make_registration(), [SCORE]) == "token-1"


async def test_token_type_other_than_bearer_is_refused_without_leaking_it(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    endpoint.answer = lambda n: bearer(n, token_type="mac")

    with pytest.raises(TokenRequestError, match="token_type") as caught:
        await tokens.get_token(make_registration(), [SCORE])

    assert "token-1" not in str(caught.value)
    assert "token-1" not in caught.value.body
    assert caught.value.status == 200


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"<html>oops</html>", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"token_type": "Bearer"}', "no access_token"),
        (b'{"access_token": 5, "token_type": "Bearer"}', "no access_token"),
        (b'{"access_token": "t", "expires_in": "soon"}', "expires_in"),
    ],
)
async def test_malformed_token_answer_raises(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint, content: bytes, problem: str
) -> None:
    endpoint.answer = lambda n: httpx.Response(200, content=content)

    with pytest.raises(TokenRequestError, match=problem):
        await tokens.get_token(make_registration(), [SCORE])


async def test_numeric_string_expires_in_is_accepted(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint, clock: Clock
) -> None:
    endpoint.answer = lambda n: bearer(n, expires_in="100")
    registration = make_registration()

    await tokens.get_token(registration, [SCORE])
    clock.now += 95
    await tokens.get_token(registration, [SCORE])

    assert len(endpoint.requests) == 2


async def test_refusal_keeps_platform_body_and_names_what_to_check(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    body = {"error": "invalid_client", "error_description": "unknown key"}
    endpoint.answer = lambda n: httpx.Response(401, json=body)

    with pytest.raises(TokenRequestError) as caught:
        await tokens.get_token(make_registration(), [SCORE])

    error = caught.value
    assert (error.method, error.url, error.status) == ("POST", TOKEN_URL, 401)
    assert json.loads(error.body) == body
    assert "test-lms" in str(error)
    assert "JWKS URL" in str(error)
    assert "unknown key" in str(error)


async def test_a_refusal_echoing_the_client_assertion_does_not_carry_it(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    # Some platforms echo the request in their error answer.
    def echo(number: int) -> httpx.Response:
        sent = endpoint.forms[-1]
        return httpx.Response(400, text=f"bad request: {urlencode(sent)} / {sent}")

    endpoint.answer = echo

    with pytest.raises(TokenRequestError) as caught:
        await tokens.get_token(make_registration(), [SCORE])

    assertion = endpoint.forms[-1]["client_assertion"]
    assert assertion not in caught.value.body
    assert assertion not in str(caught.value)
    assert "[redacted]" in caught.value.body


async def test_refusal_names_token_audience_on_server_error(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    endpoint.answer = lambda n: httpx.Response(500, text="Internal Server Error")

    with pytest.raises(TokenRequestError, match="token_audience") as caught:
        await tokens.get_token(make_registration(), [SCORE])

    assert caught.value.body == "Internal Server Error"


async def test_refusal_body_is_truncated(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    endpoint.answer = lambda n: httpx.Response(400, text="x" * (MAX_BODY_CHARS * 3))

    with pytest.raises(TokenRequestError) as caught:
        await tokens.get_token(make_registration(), [SCORE])

    assert MAX_BODY_CHARS <= len(caught.value.body) < MAX_BODY_CHARS + 10


async def test_refused_token_is_not_cached(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    refuse = True
    endpoint.answer = lambda n: (
        httpx.Response(503, text="busy") if refuse else bearer(n)
    )
    registration = make_registration()
    with pytest.raises(TokenRequestError):
        await tokens.get_token(registration, [SCORE])

    refuse = False

    assert await tokens.get_token(registration, [SCORE]) == "token-2"


async def test_network_error_is_wrapped(key: ToolKey) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(fail)) as http:
        client = AccessTokenClient(key_provider=StaticKeyProvider([key]), http=http)
        with pytest.raises(ServiceError, match="could not be sent") as caught:
            await client.get_token(make_registration(), [SCORE])

    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_invalidate_drops_the_refused_token(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    registration = make_registration()
    old = await tokens.get_token(registration, [SCORE])

    await tokens.invalidate(registration, [SCORE], old)

    assert await tokens.get_token(registration, [SCORE]) == "token-2"


async def test_invalidate_keeps_a_newer_token(
    tokens: AccessTokenClient, endpoint: FakeTokenEndpoint
) -> None:
    registration = make_registration()
    old = await tokens.get_token(registration, [SCORE])
    await tokens.invalidate(registration, [SCORE], old)
    new = await tokens.get_token(registration, [SCORE])

    await tokens.invalidate(registration, [SCORE], old)

    assert await tokens.get_token(registration, [SCORE]) == new
    assert len(endpoint.requests) == 2


async def test_shared_store_serves_another_client(
    key: ToolKey, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    store = MemoryAccessTokenStore()
    workers = [
        AccessTokenClient(key_provider=StaticKeyProvider([key]), http=http, store=store)
        for _ in range(2)
    ]

    seen = [await worker.get_token(make_registration(), [SCORE]) for worker in workers]

    assert seen == ["token-1", "token-1"]
    assert len(endpoint.requests) == 1


async def test_two_workers_sharing_a_store_make_one_token_request(
    key: ToolKey, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    store = MemoryAccessTokenStore()
    workers = [
        AccessTokenClient(key_provider=StaticKeyProvider([key]), http=http, store=store)
        for _ in range(2)
    ]

    results = await gated(
        endpoint,
        [worker.get_token(make_registration(), [SCORE]) for worker in workers * 5],
    )

    assert results == ["token-1"] * 10
    assert len(endpoint.requests) == 1


class RecordingStore(MemoryAccessTokenStore):
    """A memory store that notes what happens under its lock."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    @contextlib.asynccontextmanager
    async def lock(self, key: str, ttl: float) -> AsyncIterator[None]:
        self.events.append(f"lock ttl={ttl}")
        async with super().lock(key, ttl):
            yield
        self.events.append("unlock")

    async def get(self, key: str) -> str | None:
        self.events.append("get")
        return await super().get(key)

    async def put(self, key: str, value: str, ttl: float) -> None:
        self.events.append("put")
        await super().put(key, value, ttl)


async def test_token_is_requested_and_cached_under_the_store_lock(
    key: ToolKey, http: httpx.AsyncClient, endpoint: FakeTokenEndpoint
) -> None:
    store = RecordingStore()
    client = AccessTokenClient(
        key_provider=StaticKeyProvider([key]), http=http, store=store
    )

    await client.get_token(make_registration(), [SCORE])
    await client.get_token(make_registration(), [SCORE])

    # get_token, then _fetch check the cache; under the lock it is checked
    # again, then filled. The second call is served from the cache.
    assert store.events == [
        "get",
        "get",
        f"lock ttl={TOKEN_LOCK_TTL}",
        "get",
        "put",
        "unlock",
        "get",
    ]


async def test_token_request_is_logged_without_secrets(
    tokens: AccessTokenClient,
    endpoint: FakeTokenEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="lti_middleware")

    token = await tokens.get_token(make_registration(), [SCORE])

    info = [r for r in caplog.records if r.levelno == logging.INFO]
    assert any(
        "lms.example.edu/login/oauth2/token" in r.getMessage()
        and SCORE in r.getMessage()
        for r in info
    )
    assertion = endpoint.forms[0]["client_assertion"]
    for record in caplog.records:
        assert token not in record.getMessage()
        assert assertion not in record.getMessage()


async def test_narrower_grant_is_logged_as_warning(
    tokens: AccessTokenClient,
    endpoint: FakeTokenEndpoint,
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint.answer = lambda n: bearer(n, scope=SCORE)

    await tokens.get_token(make_registration(), [SCORE, LINEITEM])

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert LINEITEM in warnings[0].getMessage()


@pytest.mark.parametrize("token", ["tok\u00e9n", "a b", "x\r\nX-Evil: 1"])
def test_access_token_with_characters_a_header_cannot_carry_is_refused(
    token: str,
) -> None:
    from lti_middleware.tokens import _read_answer

    with pytest.raises(ValueError, match="characters"):
        _read_answer({"access_token": token, "token_type": "Bearer"})

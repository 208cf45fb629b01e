"""The development platform: strict login, id_tokens, tokens, scores, pages.

The platform runs in-process through httpx.ASGITransport; the tool's key set
is served by an httpx.MockTransport. Client assertions are built here with
PyJWT, independently of the package's own assertion code.
"""

from __future__ import annotations

import time
import tomllib
import uuid
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import pytest

from lti_middleware import claims as c
from lti_middleware.config import config_from_mapping
from lti_middleware.devplatform import (
    INSTRUCTOR,
    LEARNER,
    DevUser,
    PlatformSettings,
    create_platform,
    tool_registration_toml,
)
from lti_middleware.devplatform.__main__ import (
    build_settings,
    describe,
    main,
    parse_args,
)
from lti_middleware.exceptions import ConfigurationError
from lti_middleware.keys import ToolKey, generate_key

PLATFORM = "https://platform.example.edu"
TOOL = "https://tool.example.org"
TOOL_JWKS = TOOL + "/lti/jwks"
REDIRECT_URI = TOOL + "/lti/launch"
CLIENT_ID = "client-42"

PLATFORM_KEY = generate_key()
TOOL_KEY = generate_key()
ROTATED_KEY = generate_key()
STRANGER_KEY = generate_key()

DROP = object()


class Clock:
    """A clock the tests move by hand; starts at the real time."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class ToolKeys:
    """The tool's JWKS endpoint, served through a MockTransport."""

    def __init__(self) -> None:
        self.published: list[ToolKey] = [TOOL_KEY]
        self.requests = 0
        self.down = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) != TOOL_JWKS:
            return httpx.Response(404)
        self.requests += 1
        if self.down:
            raise httpx.ConnectError("tool down", request=request)
        keys = [key.public_jwk() for key in self.published]
        return httpx.Response(200, json={"keys": keys})


class Dev:
    """A platform app, a client for it, and the fakes around it."""

    def __init__(
        self, settings: PlatformSettings, clock: Clock, tool_keys: ToolKeys
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.tool_keys = tool_keys
        self.jwks_client = httpx.AsyncClient(
            transport=httpx.MockTransport(tool_keys.handle)
        )
        self.app = create_platform(settings, http_client=self.jwks_client)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=settings.base_url
        )

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.jwks_client.aclose()

    async def start_login(self, user_id: str = "learner-1") -> dict[str, str]:
        """Click a launch link; return the login initiation parameters."""
        response = await self.http.get("/launch", params={"user_id": user_id})
        assert response.status_code == 302
        location = response.headers["location"]
        assert location.startswith(self.settings.tool_login_url + "?")
        return dict(parse_qsl(urlsplit(location).query))

    def auth_params(self, login: dict[str, str], **overrides: object) -> dict[str, str]:
        """An OIDC auth request as a correct tool would send it."""
        params: dict[str, Any] = {
            "scope": "openid",
            "response_type": "id_token",
            "response_mode": "form_post",
            "prompt": "none",
            "client_id": self.settings.client_id,
            "redirect_uri": REDIRECT_URI,
            "login_hint": login["login_hint"],
            "lti_message_hint": login["lti_message_hint"],
            "state": "state-" + uuid.uuid4().hex,
            "nonce": "nonce-" + uuid.uuid4().hex,
        }
        params.update(overrides)
        return {k: str(v) for k, v in params.items() if v is not DROP}

    async def authorize(self, params: dict[str, str], method: str = "GET") -> Form:
        if method == "GET":
            response = await self.http.get("/oidc/auth", params=params)
        else:
            response = await self.http.post("/oidc/auth", data=params)
        assert response.status_code == 200, response.text
        return parse_form(response.text)

    async def id_token(self, user_id: str = "learner-1") -> str:
        login = await self.start_login(user_id)
        form = await self.authorize(self.auth_params(login))
        return form.fields["id_token"]

    def assertion(
        self,
        *,
        key: ToolKey = TOOL_KEY,
        headers: dict[str, Any] | None = None,
        **overrides: object,
    ) -> str:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.settings.client_id,
            "sub": self.settings.client_id,
            "aud": self.settings.token_url,
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not DROP}
        header: dict[str, Any] = {"kid": key.kid}
        header.update(headers or {})
        header = {k: v for k, v in header.items() if v is not DROP}
        return jwt.encode(claims, key.private_key, algorithm="RS256", headers=header)

    async def request_token(
        self, assertion: str | None = None, scope: str = c.SCOPE_SCORE, **form: str
    ) -> httpx.Response:
        data = {
            "grant_type": "client_credentials",
            "client_assertion_type": c.CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion or self.assertion(),
            "scope": scope,
        }
        data.update(form)
        return await self.http.post("/oauth2/token", data=data)

    async def access_token(self, scope: str = c.SCOPE_SCORE) -> str:
        response = await self.request_token(scope=scope)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def post_score(
        self,
        token: str,
        score: dict[str, Any] | None = None,
        *,
        url: str | None = None,
        content_type: str = c.MEDIA_TYPE_SCORE,
    ) -> httpx.Response:
        document = score if score is not None else score_document()
        return await self.http.post(
            url or self.settings.scores_url("1"),
            json=document,
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
        )

    async def stats(self) -> dict[str, Any]:
        response = await self.http.get("/stats")
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result


class Form:
    """A form found in an HTML page: its action and its hidden fields."""

    def __init__(self) -> None:
        self.action: str | None = None
        self.fields: dict[str, str] = {}


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.form = Form()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.form.action = values.get("action")
        elif tag == "input" and values.get("type") == "hidden":
            self.form.fields[values["name"]] = values.get("value", "")


def parse_form(page: str) -> Form:
    parser = _FormParser()
    parser.feed(page)
    return parser.form


def score_document(**overrides: object) -> dict[str, Any]:
    score: dict[str, Any] = {
        "userId": "learner-1",
        "scoreGiven": 7,
        "scoreMaximum": 10,
        "activityProgress": "Completed",
        "gradingProgress": "FullyGraded",
        "timestamp": "2024-04-07T13:26:14.786+00:00",
    }
    score.update(overrides)
    return {k: v for k, v in score.items() if v is not DROP}


def make_settings(clock: Clock, **overrides: Any) -> PlatformSettings:
    values: dict[str, Any] = {
        "base_url": PLATFORM,
        "client_id": CLIENT_ID,
        "key": PLATFORM_KEY,
        "clock": clock,
    }
    values.update(overrides)
    return PlatformSettings.for_tool(TOOL, **values)


@pytest.fixture
def dev_clock() -> Clock:
    return Clock()


@pytest.fixture
async def dev(dev_clock: Clock) -> AsyncIterator[Dev]:
    platform = Dev(make_settings(dev_clock), dev_clock, ToolKeys())
    yield platform
    await platform.aclose()


@pytest.fixture
async def brightspace_like(dev_clock: Clock) -> AsyncIterator[Dev]:
    settings = make_settings(dev_clock, token_audience="https://api.example.com/auth")
    platform = Dev(settings, dev_clock, ToolKeys())
    yield platform
    await platform.aclose()


# Settings and registration


def test_settings_expose_the_registration_urls(dev_clock: Clock) -> None:
    settings = make_settings(dev_clock)

    assert settings.issuer == PLATFORM
    assert settings.auth_login_url == PLATFORM + "/oidc/auth"
    assert settings.token_url == PLATFORM + "/oauth2/token"
    assert settings.key_set_url == PLATFORM + "/.well-known/jwks.json"
    assert settings.tool_redirect_uris == (REDIRECT_URI,)
    assert settings.tool_jwks_url == TOOL_JWKS
    assert settings.line_item_url("1") == (
        PLATFORM + "/ags/contexts/course-1/lineitems/1/lineitem?type_id=1"
    )
    assert settings.scores_url("1") == (
        PLATFORM + "/ags/contexts/course-1/lineitems/1/lineitem/scores?type_id=1"
    )


def test_registration_toml_loads_as_a_tool_registration() -> None:
    settings = PlatformSettings.for_tool(
        "http://127.0.0.1:8000", token_audience="http://127.0.0.1:8001/aud"
    )
    block = tool_registration_toml(settings)
    tool = (
        '[tool]\nlogin_url = "http://127.0.0.1:8000/lti/login"\n'
        'launch_url = "http://127.0.0.1:8000/lti/launch"\n'
        'jwks_url = "http://127.0.0.1:8000/lti/jwks"\n'
    )

    data = tomllib.loads(tool + block)
    registration = config_from_mapping(data, base_dir=Path(".")).registrations[0]

    assert registration.issuer == settings.issuer
    assert registration.client_id == settings.client_id
    assert registration.deployment_ids == (settings.deployment_id,)
    assert registration.auth_login_url == settings.auth_login_url
    assert registration.token_url == settings.token_url
    assert registration.key_set_url == settings.key_set_url
    assert registration.token_audience == "http://127.0.0.1:8001/aud"


@pytest.mark.parametrize(
    "overrides",
    [
        {"base_url": PLATFORM + "/"},
        {"base_url": "ftp://platform.example.edu"},
        {"tool_redirect_uris": ()},
        {"login_method": "PUT"},
        {"client_id": " padded "},
        {"id_token_lifetime": 0},
        {"users": (DevUser("u", "A", "a@x", ()), DevUser("u", "B", "b@x", ()))},
    ],
)
def test_settings_refuse_bad_values(dev_clock: Clock, overrides: Any) -> None:
    with pytest.raises(ConfigurationError):
        make_settings(dev_clock, **overrides)


def test_settings_generate_a_key_when_none_is_given() -> None:
    settings = PlatformSettings()

    assert settings.key is not None
    assert settings.signing_key.kid == settings.key.kid


# Pages and login initiation


async def test_home_page_lists_users_with_escaped_launch_links(
    dev_clock: Clock,
) -> None:
    users = (DevUser("u-1", "<script>x</script>", "x@example.edu", (INSTRUCTOR,)),)
    platform = Dev(make_settings(dev_clock, users=users), dev_clock, ToolKeys())

    response = await platform.http.get("/")
    await platform.aclose()

    assert response.status_code == 200
    assert "<script>x</script>" not in response.text
    assert "Launch as &lt;script&gt;x&lt;/script&gt; (Instructor)" in response.text
    assert "user_id=u-1&amp;resource_link_id=rl-1" in response.text
    assert platform.settings.gradebook_url in response.text


async def test_launch_redirects_to_the_tool_login_with_hints(dev: Dev) -> None:
    login = await dev.start_login("instructor-1")

    assert login["iss"] == PLATFORM
    assert login["target_link_uri"] == TOOL + "/"
    assert login["client_id"] == CLIENT_ID
    assert login["lti_deployment_id"] == dev.settings.deployment_id
    assert login["login_hint"] and login["lti_message_hint"]
    assert "instructor-1" not in login["login_hint"]


async def test_launch_by_post_sends_an_auto_submitting_form(dev_clock: Clock) -> None:
    settings = make_settings(dev_clock, login_method="POST")
    platform = Dev(settings, dev_clock, ToolKeys())

    response = await platform.http.get("/launch", params={"user_id": "learner-1"})
    await platform.aclose()

    form = parse_form(response.text)
    assert response.status_code == 200
    assert form.action == settings.tool_login_url
    assert form.fields["iss"] == PLATFORM
    assert set(form.fields) >= {"login_hint", "lti_message_hint", "target_link_uri"}


async def test_launch_for_an_unknown_user_is_404(dev: Dev) -> None:
    response = await dev.http.get("/launch", params={"user_id": "nobody"})

    assert response.status_code == 404


# OIDC auth endpoint


async def test_auth_request_answers_with_a_verifiable_id_token(dev: Dev) -> None:
    login = await dev.start_login("learner-1")
    params = dev.auth_params(login)

    form = await dev.authorize(params)
    key_set = (await dev.http.get("/.well-known/jwks.json")).json()
    token = form.fields["id_token"]
    header = jwt.get_unverified_header(token)
    signing_key = jwt.PyJWKSet.from_dict(key_set)[header["kid"]]
    claims = jwt.decode(
        token, signing_key, algorithms=["RS256"], audience=CLIENT_ID, issuer=PLATFORM
    )

    assert form.action == REDIRECT_URI
    assert form.fields["state"] == params["state"]
    assert set(key_set["keys"][0]) == {"kty", "n", "e", "kid", "alg", "use"}
    assert header["alg"] == "RS256"
    assert claims["aud"] == CLIENT_ID and claims["azp"] == CLIENT_ID
    assert claims["sub"] == "learner-1"
    assert claims["nonce"] == params["nonce"]
    assert claims["exp"] - claims["iat"] == 300
    assert claims["name"] == "Ben Learner"
    assert claims[c.MESSAGE_TYPE] == c.RESOURCE_LINK_REQUEST
    assert claims[c.VERSION] == "1.3.0"
    assert claims[c.DEPLOYMENT_ID] == dev.settings.deployment_id
    assert claims[c.TARGET_LINK_URI] == TOOL + "/"
    assert claims[c.RESOURCE_LINK] == {"id": "rl-1", "title": "Quiz 1"}
    assert claims[c.ROLES] == [LEARNER]
    assert claims[c.CONTEXT]["id"] == "course-1"
    assert claims[c.TOOL_PLATFORM]["guid"] == PLATFORM
    assert claims[c.CUSTOM] == {}
    ags = claims[c.AGS_ENDPOINT]
    assert set(ags["scope"]) == {
        c.SCOPE_LINEITEM,
        c.SCOPE_LINEITEM_READONLY,
        c.SCOPE_RESULT_READONLY,
        c.SCOPE_SCORE,
    }
    assert urlsplit(ags["lineitem"]).query == "type_id=1"
    assert ags["lineitems"] == dev.settings.lineitems_url


async def test_auth_request_by_post_is_accepted(dev: Dev) -> None:
    login = await dev.start_login()

    form = await dev.authorize(dev.auth_params(login), method="POST")

    assert "id_token" in form.fields


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "code"}, "unsupported_response_type"),
        ({"scope": "openid profile"}, "invalid_scope"),
        ({"scope": DROP}, "invalid_scope"),
        ({"response_mode": "query"}, "invalid_request"),
        ({"prompt": "login"}, "invalid_request"),
        ({"prompt": DROP}, "invalid_request"),
        ({"nonce": DROP}, "invalid_request"),
        ({"nonce": ""}, "invalid_request"),
        ({"login_hint": "forged"}, "invalid_request"),
        ({"lti_message_hint": "altered"}, "invalid_request"),
        ({"lti_message_hint": DROP}, "invalid_request"),
    ],
)
async def test_auth_request_fault_is_answered_with_an_oidc_error(
    dev: Dev, overrides: dict[str, object], error: str
) -> None:
    login = await dev.start_login()
    params = dev.auth_params(login, **overrides)

    form = await dev.authorize(params)

    assert form.action == REDIRECT_URI
    assert form.fields["error"] == error
    assert form.fields["error_description"]
    assert form.fields["state"] == params["state"]
    assert "id_token" not in form.fields


async def test_auth_request_without_state_gets_an_error_without_state(
    dev: Dev,
) -> None:
    login = await dev.start_login()

    form = await dev.authorize(dev.auth_params(login, state=DROP))

    assert form.fields["error"] == "invalid_request"
    assert "state" not in form.fields


@pytest.mark.parametrize(
    "overrides",
    [
        {"redirect_uri": REDIRECT_URI + "/"},
        {"redirect_uri": "https://tool.example.org:8443/lti/launch"},
        {"redirect_uri": "https://evil.example.net/lti/launch"},
        {"redirect_uri": DROP},
        {"client_id": "someone-else"},
        {"client_id": DROP},
    ],
)
async def test_auth_request_with_unregistered_client_or_redirect_is_400(
    dev: Dev, overrides: dict[str, object]
) -> None:
    login = await dev.start_login()

    response = await dev.http.get(
        "/oidc/auth", params=dev.auth_params(login, **overrides)
    )

    assert response.status_code == 400
    assert "<form" not in response.text


async def test_auth_request_with_a_repeated_parameter_is_400(dev: Dev) -> None:
    login = await dev.start_login()
    query = httpx.QueryParams(dev.auth_params(login)).add("nonce", "second")

    response = await dev.http.get("/oidc/auth", params=query)

    assert response.status_code == 400


async def test_a_login_hint_starts_only_one_launch(dev: Dev) -> None:
    login = await dev.start_login()
    await dev.authorize(dev.auth_params(login))

    form = await dev.authorize(dev.auth_params(login))

    assert form.fields["error"] == "launch_no_longer_valid"


async def test_a_login_hint_expires(dev: Dev) -> None:
    login = await dev.start_login()
    dev.clock.now += dev.settings.hint_lifetime + 1

    form = await dev.authorize(dev.auth_params(login))

    assert form.fields["error"] == "launch_no_longer_valid"


async def test_auth_page_escapes_the_state(dev: Dev) -> None:
    login = await dev.start_login()
    state = '"><script>alert(1)</script>'

    response = await dev.http.get(
        "/oidc/auth", params=dev.auth_params(login, state=state)
    )

    assert "<script>alert(1)</script>" not in response.text
    assert parse_form(response.text).fields["state"] == state
    assert "<noscript>" in response.text


# Token endpoint


async def test_token_endpoint_issues_an_access_token(dev: Dev) -> None:
    scope = f"{c.SCOPE_SCORE} {c.SCOPE_LINEITEM_READONLY}"

    response = await dev.request_token(scope=scope)
    stats = await dev.stats()

    body = response.json()
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == dev.settings.access_token_lifetime
    assert set(body["scope"].split(" ")) == {c.SCOPE_SCORE, c.SCOPE_LINEITEM_READONLY}
    assert len(body["access_token"]) >= 32
    assert stats["token_requests"] == 1 and stats["tokens_issued"] == 1
    assert stats["tool_jwks_fetches"] == 1
    assert stats["token_request_log"] == [
        {"scopes": scope.split(" "), "success": True, "error": None}
    ]


async def test_token_endpoint_accepts_aud_as_a_one_element_list(dev: Dev) -> None:
    response = await dev.request_token(dev.assertion(aud=[dev.settings.token_url]))

    assert response.status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "https://platform.example.edu/oauth2/token/"},
        {"aud": PLATFORM},
        {"aud": [PLATFORM + "/oauth2/token", PLATFORM]},
        {"aud": DROP},
        {"iss": "https://tool.example.org"},
        {"sub": "someone-else"},
        {"iss": "other", "sub": "other"},
        {"jti": DROP},
        {"iat": DROP},
        {"exp": DROP},
        {"exp": int(time.time()) - 1},
        {"exp": int(time.time()) + 3600},
        {"iat": int(time.time()) + 600, "exp": int(time.time()) + 700},
    ],
)
async def test_token_endpoint_refuses_a_faulty_assertion(
    dev: Dev, overrides: dict[str, Any]
) -> None:
    response = await dev.request_token(dev.assertion(**overrides))
    stats = await dev.stats()

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_description"]
    assert stats["tokens_issued"] == 0
    assert stats["token_request_log"][0]["success"] is False


async def test_token_endpoint_refuses_a_replayed_jti(dev: Dev) -> None:
    assertion = dev.assertion()
    first = await dev.request_token(assertion)

    second = await dev.request_token(assertion)

    assert first.status_code == 200
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_client"
    assert "jti" in second.json()["error_description"]


async def test_token_endpoint_refuses_an_unknown_kid_after_refetching(
    dev: Dev,
) -> None:
    await dev.access_token()

    response = await dev.request_token(dev.assertion(key=STRANGER_KEY))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert dev.tool_keys.requests == 2


async def test_token_endpoint_finds_a_rotated_key_by_refetching(dev: Dev) -> None:
    await dev.access_token()
    dev.tool_keys.published = [ROTATED_KEY, TOOL_KEY]

    rotated = await dev.request_token(dev.assertion(key=ROTATED_KEY))
    again = await dev.request_token(dev.assertion(key=ROTATED_KEY))

    assert rotated.status_code == 200 and again.status_code == 200
    assert dev.tool_keys.requests == 2


async def test_token_endpoint_refuses_a_signature_by_another_key(dev: Dev) -> None:
    forged = dev.assertion(key=STRANGER_KEY, headers={"kid": TOOL_KEY.kid})

    response = await dev.request_token(forged)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_token_endpoint_refuses_an_assertion_without_kid(dev: Dev) -> None:
    response = await dev.request_token(dev.assertion(headers={"kid": DROP}))

    # No kid: the client cannot be authenticated (RFC 6749 5.2, 401).
    assert response.status_code == 401
    assert "kid" in response.json()["error_description"]


async def test_token_endpoint_refuses_a_symmetric_assertion(dev: Dev) -> None:
    claims = {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": dev.settings.token_url}
    hs256 = jwt.encode(
        claims, "a-shared-secret-of-32-bytes-long!", headers={"kid": TOOL_KEY.kid}
    )

    response = await dev.request_token(hs256)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client"


async def test_token_endpoint_says_when_the_tool_key_set_is_down(dev: Dev) -> None:
    dev.tool_keys.down = True

    response = await dev.request_token()

    assert response.status_code == 401
    assert "key set" in response.json()["error_description"]


@pytest.mark.parametrize(
    "scope",
    [
        "https://purl.imsglobal.org/spec/lti-ags/scope/grades",
        c.SCOPE_LINEITEM_READONLY + "x",
        f"{c.SCOPE_SCORE}  {c.SCOPE_LINEITEM}",
        f"{c.SCOPE_SCORE},{c.SCOPE_LINEITEM}",
        "",
    ],
)
async def test_token_endpoint_refuses_a_bad_scope(dev: Dev, scope: str) -> None:
    response = await dev.request_token(scope=scope)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "authorization_code"}, "unsupported_grant_type"),
        ({"client_assertion_type": "jwt"}, "invalid_request"),
        ({"client_assertion": ""}, "invalid_request"),
    ],
)
async def test_token_endpoint_refuses_a_malformed_request(
    dev: Dev, form: dict[str, str], error: str
) -> None:
    response = await dev.request_token(**form)

    assert response.status_code == 400
    assert response.json()["error"] == error


async def test_token_endpoint_refuses_a_json_body(dev: Dev) -> None:
    response = await dev.http.post("/oauth2/token", json={"grant_type": "x"})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_token_endpoint_with_a_declared_audience_wants_it(
    brightspace_like: Dev,
) -> None:
    platform = brightspace_like
    audience = "https://api.example.com/auth"

    with_url = await platform.request_token(platform.assertion())
    with_audience = await platform.request_token(platform.assertion(aud=audience))
    with_both = await platform.request_token(
        platform.assertion(aud=[audience, platform.settings.token_url])
    )

    assert with_url.status_code == 400
    assert with_audience.status_code == 200
    assert with_both.status_code == 400


# Assignment and Grade Services


async def test_line_items_are_served_with_their_media_types(dev: Dev) -> None:
    token = await dev.access_token(c.SCOPE_LINEITEM_READONLY)
    headers = {"Authorization": f"Bearer {token}"}
    id_token = jwt.decode(await dev.id_token(), options={"verify_signature": False})
    line_item_url = id_token[c.AGS_ENDPOINT]["lineitem"]

    container = await dev.http.get(dev.settings.lineitems_url, headers=headers)
    item = await dev.http.get(line_item_url, headers=headers)
    filtered = await dev.http.get(
        dev.settings.lineitems_url + "&resource_link_id=other", headers=headers
    )

    assert container.headers["content-type"] == c.MEDIA_TYPE_LINEITEMS
    assert [entry["id"] for entry in container.json()] == [line_item_url]
    assert item.headers["content-type"] == c.MEDIA_TYPE_LINEITEM
    assert item.json()["scoreMaximum"] == 10
    assert item.json()["resourceLinkId"] == "rl-1"
    assert filtered.json() == []


async def test_line_items_need_a_line_item_scope(dev: Dev) -> None:
    token = await dev.access_token(c.SCOPE_SCORE)

    response = await dev.http.get(
        dev.settings.lineitems_url, headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


async def test_score_is_accepted_and_shown_in_the_gradebook(dev: Dev) -> None:
    token = await dev.access_token()
    score = score_document(comment="<b>Well done</b>")

    response = await dev.post_score(token, score)
    page = await dev.http.get("/gradebook")
    stats = await dev.stats()

    assert response.status_code == 204
    assert "7 / 10" in page.text
    assert "&lt;b&gt;Well done&lt;/b&gt;" in page.text
    assert "Completed" in page.text and "FullyGraded" in page.text
    assert score["timestamp"] in page.text
    assert stats["scores_received"] == 1
    assert stats["scores_by_user"] == {"learner-1": 1}


async def test_score_needs_a_bearer_token(dev: Dev) -> None:
    response = await dev.http.post(
        dev.settings.scores_url("1"),
        json=score_document(),
        headers={"Content-Type": c.MEDIA_TYPE_SCORE},
    )

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_score_refuses_an_id_token_as_bearer(dev: Dev) -> None:
    id_token = await dev.id_token()

    response = await dev.post_score(id_token)

    assert response.status_code == 401
    assert "id_token" in response.json()["error_description"]


async def test_score_refuses_a_token_without_the_score_scope(dev: Dev) -> None:
    token = await dev.access_token(c.SCOPE_LINEITEM_READONLY)

    response = await dev.post_score(token)

    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


async def test_score_refuses_an_unknown_or_expired_token(dev: Dev) -> None:
    token = await dev.access_token()
    unknown = await dev.post_score("not-a-token-we-issued")
    dev.clock.now += dev.settings.access_token_lifetime + 1

    expired = await dev.post_score(token)

    assert unknown.status_code == 401
    assert expired.status_code == 401
    assert "expired" in expired.json()["error_description"]


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/vnd.ims.lis.v2.score+json"]
)
async def test_score_refuses_a_wrong_media_type(dev: Dev, content_type: str) -> None:
    token = await dev.access_token()

    response = await dev.post_score(token, content_type=content_type)

    assert response.status_code == 415
    assert (await dev.stats())["scores_received"] == 0


@pytest.mark.parametrize(
    "overrides",
    [
        {"userId": "nobody"},
        {"userId": DROP},
        {"scoreGiven": -1},
        {"scoreGiven": "7"},
        {"scoreGiven": True},
        {"scoreMaximum": DROP},
        {"scoreMaximum": 0},
        {"activityProgress": "Done"},
        {"activityProgress": DROP},
        {"gradingProgress": "Graded"},
        {"timestamp": "2024-04-07T13:26:14.786962"},
        {"timestamp": "2024-04-07 13:26:14Z"},
        {"timestamp": "2024-02-30T13:26:14Z"},
        {"timestamp": DROP},
        {"comment": None},
        {"grade": 7},
        {"submission": {"submittedAt": "yesterday"}},
    ],
)
async def test_score_refuses_an_invalid_document(
    dev: Dev, overrides: dict[str, object]
) -> None:
    token = await dev.access_token()

    response = await dev.post_score(token, score_document(**overrides))

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_score"
    assert (await dev.stats())["scores_refused"] == 1


async def test_score_accepts_extensions_and_a_bare_progress_update(dev: Dev) -> None:
    token = await dev.access_token()
    score = score_document(
        scoreGiven=DROP,
        scoreMaximum=DROP,
        activityProgress="Started",
        gradingProgress="NotReady",
        timestamp="2024-04-07T13:26:14Z",
        submission={"startedAt": "2024-04-07T13:00:00-05:00"},
    )
    score["https://tool.example.org/ext/attempt"] = 2

    response = await dev.post_score(token, score)

    assert response.status_code == 204


async def test_an_older_score_is_ignored(dev: Dev) -> None:
    token = await dev.access_token()
    newer = score_document(scoreGiven=9, timestamp="2024-04-07T14:00:00+01:00")
    older = score_document(scoreGiven=3, timestamp="2024-04-07T12:30:00Z")

    await dev.post_score(token, newer)
    response = await dev.post_score(token, older)
    page = await dev.http.get("/gradebook")
    stats = await dev.stats()

    assert response.status_code == 204
    assert "9 / 10" in page.text and "3 / 10" not in page.text
    assert stats["scores_received"] == 2 and stats["scores_ignored"] == 1


@pytest.mark.parametrize(
    ("url", "status"),
    [
        (PLATFORM + "/ags/contexts/course-1/lineitems/1/lineitem/scores", 400),
        (
            PLATFORM + "/ags/contexts/course-1/lineitems/1/lineitem?type_id=1/scores",
            405,
        ),
        (
            PLATFORM + "/ags/contexts/course-1/lineitems/9/lineitem/scores?type_id=1",
            404,
        ),
        (
            PLATFORM + "/ags/contexts/course-2/lineitems/1/lineitem/scores?type_id=1",
            404,
        ),
    ],
)
async def test_scores_url_must_be_the_line_item_path_with_its_query(
    dev: Dev, url: str, status: int
) -> None:
    token = await dev.access_token()

    response = await dev.post_score(token, url=url)

    assert response.status_code == status
    assert (await dev.stats())["scores_received"] == 0


# Command line


def test_command_line_prints_urls_and_a_toml_block() -> None:
    args = parse_args(["--port", "8011", "--tool-base", "http://127.0.0.1:8010"])
    settings = build_settings(args)

    text = describe(settings)

    assert settings.issuer == "http://127.0.0.1:8011"
    assert settings.tool_login_url == "http://127.0.0.1:8010/lti/login"
    assert settings.auth_login_url in text and settings.gradebook_url in text
    block = tomllib.loads(text.split("configuration:\n\n", 1)[1])
    assert block["platforms"][0]["token_url"] == settings.token_url


def test_command_line_refuses_a_bad_tool_base(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["--tool-base", "not a url"])

    assert code == 2
    assert "tool_login_url" in capsys.readouterr().err

"""Our tool launched, and graded, by an independent platform (lti1p3platform).

The harness tests check the platform on its own, with a stand-in tool that only
publishes a key set; the end-to-end tests run our middleware against it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lti_middleware import (
    LTIError,
    LTIMiddleware,
    Registration,
    ToolConfig,
    ToolKey,
    generate_key,
)

from .independent_platform import (
    CONTEXT_ID,
    LINE_ITEM_ID,
    IndependentPlatform,
    LocalServer,
    ToolEndpoints,
    parse_form,
    query_of,
)

pytestmark = pytest.mark.e2e

SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
SCORE_MEDIA_TYPE = "application/vnd.ims.lis.v1.score+json"
LINEITEM_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
LINEITEMS_MEDIA_TYPE = "application/vnd.ims.lis.v2.lineitemcontainer+json"
MEMBERSHIPS_MEDIA_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
MESSAGE_TYPE_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/message_type"
TARGET_LINK_URI_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/target_link_uri"
RESOURCE_LINK_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/resource_link"
DEEP_LINKING_SETTINGS_CLAIM = (
    "https://purl.imsglobal.org/spec/lti-dl/claim/deep_linking_settings"
)
CONTENT_ITEMS_CLAIM = "https://purl.imsglobal.org/spec/lti-dl/claim/content_items"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Either check may catch a replayed launch first (Security Framework 5.1.3).
REPLAY_REASONS = {"state_already_used", "state_unknown", "nonce_replayed"}


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    # trust_env=False: no proxy from the environment may see this traffic.
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        yield client


# --- the harness alone, against a stand-in tool that only publishes keys ----


@dataclass
class Harness:
    platform: IndependentPlatform
    tool_key: ToolKey
    tool: ToolEndpoints


@pytest.fixture
def harness() -> Iterator[Harness]:
    tool_key = generate_key()
    tool_server, platform_server = LocalServer(), LocalServer()
    base = tool_server.base_url
    tool = ToolEndpoints(
        login_url=f"{base}/lti/login",
        launch_url=f"{base}/lti/launch",
        jwks_url=f"{base}/lti/jwks",
        target_link_uri=f"{base}/grade",
        deep_linking_uri=f"{base}/pick",
    )
    platform = IndependentPlatform(base_url=platform_server.base_url, tool=tool)

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse({"keys": [tool_key.public_jwk()]})

    try:
        tool_server.start(Starlette(routes=[Route("/lti/jwks", jwks)]))
        platform_server.start(platform.app)
        yield Harness(platform, tool_key, tool)
    finally:
        platform_server.stop()
        tool_server.stop()


def client_assertion(
    key: ToolKey, *, client_id: str, audience: str, kid: str | None = None
) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }

    return jwt.encode(
        claims, key.private_key, algorithm="RS256", headers={"kid": kid or key.kid}
    )


def request_token(
    browser: httpx.Client,
    platform: IndependentPlatform,
    assertion: str,
    scope: str = SCORE_SCOPE,
) -> httpx.Response:
    return browser.post(
        platform.token_url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": scope,
        },
    )


def start_login(
    browser: httpx.Client, platform: IndependentPlatform, user_id: str
) -> dict[str, str]:
    response = browser.get(platform.start_url(user_id))
    assert response.status_code == 302

    return query_of(response.headers["location"])


def auth_request(platform: IndependentPlatform, login: dict[str, str]) -> str:
    """The auth request URL a well-behaved tool would build from ``login``."""
    params = {
        "scope": "openid",
        "response_type": "id_token",
        "response_mode": "form_post",
        "prompt": "none",
        "client_id": login["client_id"],
        "redirect_uri": platform.tool.launch_url,
        "login_hint": login["login_hint"],
        "lti_message_hint": login["lti_message_hint"],
        "state": "state-1",
        "nonce": "nonce-1",
    }

    return f"{platform.auth_login_url}?{urlencode(params)}"


def platform_key(browser: httpx.Client, platform: IndependentPlatform) -> Any:
    key_set = browser.get(platform.key_set_url).json()

    return jwt.PyJWK(key_set["keys"][0]).key


def test_harness_publishes_its_key_with_kid(
    harness: Harness, browser: httpx.Client
) -> None:
    response = browser.get(harness.platform.key_set_url)

    assert response.status_code == 200
    (key,) = response.json()["keys"]
    assert key["kty"] == "RSA"
    assert key["alg"] == "RS256"
    assert key["kid"] == harness.platform.registration.get_kid()
    assert "d" not in key


def test_harness_login_initiation_redirects_to_tool_login(
    harness: Harness, browser: httpx.Client
) -> None:
    platform = harness.platform

    response = browser.get(platform.start_url("learner-1"))

    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(harness.tool.login_url + "?")
    login = query_of(location)
    assert login["iss"] == platform.issuer
    assert login["login_hint"] == "learner-1"
    assert login["target_link_uri"] == harness.tool.target_link_uri
    assert login["client_id"] == platform.client_id
    assert login["lti_deployment_id"] == platform.deployment_id
    assert login["lti_message_hint"] in platform.message_hints


def test_harness_start_refuses_unknown_user(
    harness: Harness, browser: httpx.Client
) -> None:
    response = browser.get(harness.platform.start_url("nobody"))

    assert response.status_code == 404


def test_harness_auth_answers_with_form_of_signed_id_token(
    harness: Harness, browser: httpx.Client
) -> None:
    platform = harness.platform
    login = start_login(browser, platform, "learner-1")

    response = browser.get(auth_request(platform, login))

    assert response.status_code == 200
    action, fields = parse_form(response.text)
    assert action == harness.tool.launch_url
    assert fields["state"] == "state-1"
    header = jwt.get_unverified_header(fields["id_token"])
    assert header["kid"] == platform.registration.get_kid()
    claims = jwt.decode(
        fields["id_token"],
        platform_key(browser, platform),
        algorithms=["RS256"],
        audience=platform.client_id,
        issuer=platform.issuer,
    )
    assert claims["nonce"] == "nonce-1"
    assert claims["sub"] == "learner-1"
    ags = claims["https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"]
    assert ags["lineitem"] == platform.lineitem_url
    assert SCORE_SCOPE in ags["scope"]
    assert platform.record.id_tokens == [fields["id_token"]]


def test_harness_auth_refuses_unknown_message_hint(
    harness: Harness, browser: httpx.Client
) -> None:
    platform = harness.platform
    login = start_login(browser, platform, "learner-1")
    login["lti_message_hint"] = "forged"

    response = browser.get(auth_request(platform, login))

    assert response.status_code == 400
    assert platform.record.id_tokens == []


def test_harness_token_endpoint_accepts_assertion_signed_by_tool_key(
    harness: Harness, browser: httpx.Client
) -> None:
    platform = harness.platform
    assertion = client_assertion(
        harness.tool_key, client_id=platform.client_id, audience=platform.token_url
    )

    response = request_token(browser, platform, assertion)

    assert response.status_code == 200
    answer = response.json()
    assert answer["token_type"].lower() == "bearer"
    assert answer["scope"] == SCORE_SCOPE
    assert platform.conf().validate_token(answer["access_token"], [SCORE_SCOPE])
    (grant,) = platform.record.token_grants
    assert grant.assertion_claims["iss"] == platform.client_id


def test_harness_token_endpoint_refuses_assertion_from_unknown_key(
    harness: Harness, browser: httpx.Client
) -> None:
    platform = harness.platform
    assertion = client_assertion(
        generate_key(),
        client_id=platform.client_id,
        audience=platform.token_url,
        kid=harness.tool_key.kid,
    )

    response = request_token(browser, platform, assertion)

    assert response.status_code == 401
    assert response.json() == {"error": "invalid_client"}
    assert platform.record.token_grants == []


def post_score(
    browser: httpx.Client, url: str, token: str, user_id: str = "learner-1"
) -> httpx.Response:
    score = {
        "userId": user_id,
        "scoreGiven": 8,
        "scoreMaximum": 10,
        "activityProgress": "Completed",
        "gradingProgress": "FullyGraded",
        "timestamp": "2024-01-01T00:00:00.000+00:00",
    }

    return browser.post(
        url,
        content=json.dumps(score),
        headers={"Authorization": f"Bearer {token}", "Content-Type": SCORE_MEDIA_TYPE},
    )


def test_harness_scores_endpoint_accepts_its_access_token(
    harness: Harness, browser: httpx.Client
) -> None:
    platform = harness.platform
    assertion = client_assertion(
        harness.tool_key, client_id=platform.client_id, audience=platform.token_url
    )
    token = request_token(browser, platform, assertion).json()["access_token"]

    response = post_score(browser, platform.scores_url, token)

    assert response.status_code == 200
    (score,) = platform.record.scores
    assert score.accepted
    assert score.line_item_id == LINE_ITEM_ID
    assert score.query == "type_id=1"
    assert score.content_type == SCORE_MEDIA_TYPE
    assert score.bearer_token == token
    assert score.json()["scoreGiven"] == 8


@pytest.mark.parametrize("kind", ["id_token", "garbage", "none"])
def test_harness_scores_endpoint_refuses_other_tokens(
    harness: Harness, browser: httpx.Client, kind: str
) -> None:
    platform = harness.platform
    token = "not-a-jwt"
    if kind == "id_token":
        login = start_login(browser, platform, "learner-1")
        page = browser.get(auth_request(platform, login)).text
        token = parse_form(page)[1]["id_token"]

    if kind == "none":
        response = browser.post(
            platform.scores_url, json={}, headers={"Content-Type": SCORE_MEDIA_TYPE}
        )
    else:
        response = post_score(browser, platform.scores_url, token)

    assert response.status_code == 401
    (score,) = platform.record.scores
    assert not score.accepted


def test_harness_scores_endpoint_needs_line_item_query(
    harness: Harness, browser: httpx.Client
) -> None:
    platform = harness.platform
    assertion = client_assertion(
        harness.tool_key, client_id=platform.client_id, audience=platform.token_url
    )
    token = request_token(browser, platform, assertion).json()["access_token"]
    without_query = platform.scores_url.split("?")[0]

    response = post_score(browser, without_query, token)

    assert response.status_code == 404
    assert not platform.record.scores[0].accepted


# --- the harness's services, run by the package -----------------------------


def access_token(harness: Harness, browser: httpx.Client, scope: str) -> str:
    platform = harness.platform
    assertion = client_assertion(
        harness.tool_key, client_id=platform.client_id, audience=platform.token_url
    )
    response = request_token(browser, platform, assertion, scope)
    assert response.status_code == 200, response.text

    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("kind", ["id_token", "garbage", "none"])
def test_harness_line_items_need_the_package_access_token(
    harness: Harness, browser: httpx.Client, kind: str
) -> None:
    platform = harness.platform
    headers = {}
    if kind == "id_token":
        login = start_login(browser, platform, "learner-1")
        page = browser.get(auth_request(platform, login)).text
        headers = bearer(parse_form(page)[1]["id_token"])
    elif kind == "garbage":
        headers = bearer("not-a-jwt")

    response = browser.get(platform.lineitems_url, headers=headers)

    assert response.status_code == 401
    (call,) = platform.record.service_calls
    assert call.status == 401


def test_harness_line_items_page_with_the_package_link_header(
    harness: Harness, browser: httpx.Client
) -> None:
    platform = harness.platform
    platform.add_lineitem({"label": "Lab", "scoreMaximum": 5})
    token = access_token(harness, browser, LINEITEM_SCOPE)

    response = browser.get(
        platform.lineitems_url, params={"limit": 1}, headers=bearer(token)
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == LINEITEMS_MEDIA_TYPE
    assert [item["label"] for item in response.json()] == ["Quiz 1"]
    assert response.headers["link"] == (
        f"<{platform.lineitems_url}?limit=1&page=2>; rel=next"
    )


def test_harness_memberships_need_the_nrps_scope(
    harness: Harness, browser: httpx.Client
) -> None:
    platform = harness.platform
    score_token = access_token(harness, browser, SCORE_SCOPE)
    roster_token = access_token(harness, browser, NRPS_SCOPE)

    refused = browser.get(platform.memberships_url, headers=bearer(score_token))
    roster = browser.get(platform.memberships_url, headers=bearer(roster_token))

    assert refused.status_code == 401
    assert roster.status_code == 200
    assert roster.headers["content-type"] == MEMBERSHIPS_MEDIA_TYPE
    body = roster.json()
    assert body["id"] == platform.memberships_url
    assert body["context"]["id"] == CONTEXT_ID
    assert [m["user_id"] for m in body["members"]] == ["learner-1", "instructor-1"]
    # The package gives a member without a status "Active".
    assert {m["status"] for m in body["members"]} == {"Active"}


@pytest.mark.parametrize("link_header", [True, False])
def test_harness_memberships_name_the_next_page_in_the_body(
    harness: Harness, browser: httpx.Client, link_header: bool
) -> None:
    platform = harness.platform
    platform.nrps_next_in_link_header = link_header
    token = access_token(harness, browser, NRPS_SCOPE)

    response = browser.get(
        platform.memberships_url, params={"limit": 1}, headers=bearer(token)
    )

    assert response.status_code == 200
    next_url = f"{platform.memberships_url}?limit=1&page=2"
    assert response.json()["next"] == next_url
    expected_link = f"<{next_url}>; rel=next" if link_header else None
    assert response.headers.get("link") == expected_link


def test_harness_deep_linking_launch_carries_the_package_settings(
    harness: Harness, browser: httpx.Client
) -> None:
    platform = harness.platform
    start = browser.get(platform.start_url("instructor-1", deep_linking=True))
    login = query_of(start.headers["location"])

    response = browser.get(auth_request(platform, login))

    assert login["target_link_uri"] == harness.tool.deep_linking_uri
    claims = jwt.decode(
        parse_form(response.text)[1]["id_token"],
        platform_key(browser, platform),
        algorithms=["RS256"],
        audience=platform.client_id,
    )
    assert claims[MESSAGE_TYPE_CLAIM] == "LtiDeepLinkingRequest"
    assert claims[TARGET_LINK_URI_CLAIM] == harness.tool.deep_linking_uri
    settings = claims[DEEP_LINKING_SETTINGS_CLAIM]
    assert settings["deep_link_return_url"] == platform.deep_link_return_url
    assert set(settings["accept_types"]) == {
        "ltiResourceLink",
        "link",
        "html",
        "image",
        "file",
    }
    assert RESOURCE_LINK_CLAIM not in claims


def test_harness_start_refuses_deep_linking_without_a_registered_url(
    harness: Harness, browser: httpx.Client
) -> None:
    platform = harness.platform
    platform.tool = replace(platform.tool, deep_linking_uri=None)

    response = browser.get(platform.start_url("instructor-1", deep_linking=True))

    assert response.status_code == 404
    assert platform.message_hints == {}


def deep_linking_jwt(
    harness: Harness,
    *,
    key: ToolKey | None = None,
    message_type: str = "LtiDeepLinkingResponse",
    audience: str | None = None,
    item_type: str = "ltiResourceLink",
) -> str:
    platform = harness.platform
    now = int(time.time())
    claims = {
        "iss": platform.client_id,
        "aud": audience or platform.issuer,
        "iat": now,
        "exp": now + 300,
        "nonce": uuid.uuid4().hex,
        MESSAGE_TYPE_CLAIM: message_type,
        CONTENT_ITEMS_CLAIM: [{"type": item_type, "url": harness.tool.target_link_uri}],
    }
    signer = key or harness.tool_key

    return jwt.encode(
        claims,
        signer.private_key,
        algorithm="RS256",
        headers={"kid": harness.tool_key.kid},
    )


@pytest.mark.parametrize(
    "case", ["unknown_key", "resource_link_message", "type_not_accepted", "no_jwt"]
)
def test_harness_deep_linking_return_refuses(
    harness: Harness, browser: httpx.Client, case: str
) -> None:
    platform = harness.platform
    platform.deep_linking_accept_types = ["ltiResourceLink", "link"]
    form = {
        "unknown_key": {"JWT": deep_linking_jwt(harness, key=generate_key())},
        "resource_link_message": {
            "JWT": deep_linking_jwt(harness, message_type="LtiResourceLinkRequest")
        },
        "type_not_accepted": {"JWT": deep_linking_jwt(harness, item_type="html")},
        "no_jwt": {"jwt": deep_linking_jwt(harness)},
    }[case]

    response = browser.post(platform.deep_link_return_url, data=form)

    assert response.status_code == 400
    (answer,) = platform.record.deep_linking_returns
    assert (answer.status, answer.content_items, answer.claims) == (400, [], None)


def test_harness_deep_linking_return_is_lax_on_the_audience(
    harness: Harness, browser: httpx.Client
) -> None:
    platform = harness.platform
    token = deep_linking_jwt(harness, audience="someone-else")

    response = browser.post(platform.deep_link_return_url, data={"JWT": token})

    # The package verifies with verify_aud off: the tests judge aud themselves.
    assert response.status_code == 200
    assert response.json() == {"placed": 1}
    (answer,) = platform.record.deep_linking_returns
    assert answer.claims is not None and answer.claims["aud"] == "someone-else"
    assert answer.content_items[0]["type"] == "ltiResourceLink"


# --- our middleware launched and graded by the independent platform ---------


@dataclass
class Deployment:
    platform: IndependentPlatform
    tool: ToolEndpoints
    tool_key: ToolKey
    app_errors: list[str]


async def grade(request: Request) -> JSONResponse:
    """The tool app's page: posts 8/10 for the launch's user."""
    launch = request.state.lti
    if launch is None:
        return JSONResponse({"error": "no launch"}, status_code=401)

    try:
        await launch.ags.post_score(score_given=8, score_maximum=10)
    except LTIError as error:
        request.app.state.errors.append(f"{type(error).__name__}: {error}")
        return JSONResponse({"error": type(error).__name__}, status_code=502)

    return JSONResponse({"user": launch.user.id, "launch_id": launch.launch_id})


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    tool_key = generate_key()
    key_file = tmp_path / "tool-key.pem"
    key_file.write_bytes(tool_key.private_pem())
    tool_server, platform_server = LocalServer(), LocalServer()
    base = tool_server.base_url
    tool = ToolEndpoints(
        login_url=f"{base}/lti/login",
        launch_url=f"{base}/lti/launch",
        jwks_url=f"{base}/lti/jwks",
        target_link_uri=f"{base}/grade",
    )
    platform = IndependentPlatform(base_url=platform_server.base_url, tool=tool)
    config = ToolConfig(
        login_url=tool.login_url,
        launch_url=tool.launch_url,
        jwks_url=tool.jwks_url,
        private_key_files=(key_file,),
        registrations=(
            Registration(
                issuer=platform.issuer,
                client_id=platform.client_id,
                deployment_ids=(platform.deployment_id,),
                auth_login_url=platform.auth_login_url,
                token_url=platform.token_url,
                key_set_url=platform.key_set_url,
            ),
        ),
    )
    app = Starlette(routes=[Route("/grade", grade)])
    app.state.errors = []

    try:
        # trust_env=False: no proxy from the environment may see this traffic.
        http = httpx.AsyncClient(trust_env=False, timeout=10.0)
        tool_server.start(LTIMiddleware(app, config=config, http=http))
        platform_server.start(platform.app)
        yield Deployment(platform, tool, tool_key, app.state.errors)
    finally:
        platform_server.stop()
        tool_server.stop()


@dataclass
class LaunchForm:
    """The platform's auto-submitting form and the tool's login cookies."""

    action: str
    fields: dict[str, str]
    cookie_header: str


def log_in(browser: httpx.Client, deployment: Deployment) -> LaunchForm:
    """Platform start, tool login, platform auth: up to the launch form."""
    start = browser.get(deployment.platform.start_url("learner-1"))
    assert start.status_code == 302

    login = browser.get(start.headers["location"])
    assert login.status_code in (302, 303), login.text
    auth_url = login.headers["location"]
    assert auth_url.startswith(deployment.platform.auth_login_url + "?")
    # The tool's state cookie is Secure, which httpx (unlike browsers on
    # 127.0.0.1) will not send over http, so it is carried by hand.
    cookie_header = "; ".join(f"{c.name}={c.value}" for c in login.cookies.jar)

    auth = browser.get(auth_url)
    assert auth.status_code == 200, auth.text
    action, fields = parse_form(auth.text)

    return LaunchForm(action, fields, cookie_header)


def submit(
    browser: httpx.Client,
    form: LaunchForm,
    *,
    cookies: bool = True,
    accept: str = "text/html",
) -> httpx.Response:
    headers = {"Accept": accept}
    if cookies:
        headers["Cookie"] = form.cookie_header

    return browser.post(form.action, data=form.fields, headers=headers)


def test_independent_platform_launches_tool_and_receives_score(
    deployment: Deployment, browser: httpx.Client
) -> None:
    platform, tool = deployment.platform, deployment.tool

    form = log_in(browser, deployment)
    launch = submit(browser, form)
    assert launch.status_code == 303, launch.text
    landing = launch.headers["location"]
    assert landing.startswith(tool.target_link_uri + "?")
    assert "lti_launch" in query_of(landing)
    page = browser.get(landing)

    assert page.status_code == 200, (page.text, deployment.app_errors)
    assert page.json()["user"] == "learner-1"
    (score,) = platform.record.scores
    assert score.accepted, score.detail
    assert score.status == 200
    assert score.content_type == SCORE_MEDIA_TYPE
    assert score.query == "type_id=1"
    (grant,) = platform.record.token_grants
    assert score.bearer_token == grant.access_token
    assert score.bearer_token not in platform.record.id_tokens
    assert platform.conf().validate_token(score.bearer_token, [SCORE_SCOPE])
    body = score.json()
    assert body["userId"] == "learner-1"
    assert (body["scoreGiven"], body["scoreMaximum"]) == (8, 10)
    assert body["activityProgress"] == "Completed"
    assert body["gradingProgress"] == "FullyGraded"
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None


def test_tool_auth_request_is_what_oidc_asks_for(
    deployment: Deployment, browser: httpx.Client
) -> None:
    platform = deployment.platform

    form = log_in(browser, deployment)

    assert form.action == deployment.tool.launch_url
    request = platform.record.auth_requests[-1]
    assert request["scope"] == "openid"
    assert request["response_type"] == "id_token"
    assert request["response_mode"] == "form_post"
    assert request["prompt"] == "none"
    assert request["client_id"] == platform.client_id
    assert request["redirect_uri"] == deployment.tool.launch_url
    assert request["login_hint"] == "learner-1"
    assert request["lti_message_hint"] == list(platform.message_hints)[-1]
    assert request["state"] and request["nonce"]


def test_tool_client_assertion_is_strict_where_the_package_is_lax(
    deployment: Deployment, browser: httpx.Client
) -> None:
    platform = deployment.platform
    form = log_in(browser, deployment)
    landing = submit(browser, form).headers["location"]

    assert browser.get(landing).status_code == 200
    (grant,) = platform.record.token_grants
    claims = grant.assertion_claims
    assert claims["iss"] == claims["sub"] == platform.client_id
    assert claims["aud"] == platform.token_url
    assert claims["jti"]
    assert 0 < claims["exp"] - claims["iat"] <= 3600
    assert grant.assertion_header["kid"] == deployment.tool_key.kid
    assert grant.form["client_assertion_type"] == ASSERTION_TYPE
    assert SCORE_SCOPE in grant.form["scope"].split()


def test_tool_refuses_replayed_launch(
    deployment: Deployment, browser: httpx.Client
) -> None:
    form = log_in(browser, deployment)
    assert submit(browser, form).status_code == 303

    replay = submit(browser, form, accept="application/json")

    assert 400 <= replay.status_code < 500
    assert "location" not in replay.headers
    assert replay.json()["error"] in REPLAY_REASONS


def test_tool_refuses_launch_without_login_cookie(
    deployment: Deployment, browser: httpx.Client
) -> None:
    form = log_in(browser, deployment)

    response = submit(browser, form, cookies=False, accept="application/json")

    assert 400 <= response.status_code < 500
    assert "location" not in response.headers
    assert response.json()["error"] == "state_cookie_missing"

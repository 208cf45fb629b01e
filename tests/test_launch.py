"""Launch validation: every check refuses with its own reason code."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lti_middleware import claims as c
from lti_middleware.exceptions import REASONS, LTIError
from lti_middleware.hooks import hookimpl
from lti_middleware.message import LTILaunch

from .conftest import (
    CLIENT_ID,
    DEPLOYMENT_ID,
    DROP,
    ISS,
    LINEITEM,
    TOKEN_URL,
    TOOL_APP,
    TOOL_LAUNCH,
    Clock,
    FakePlatform,
    ToolClient,
    cached_key,
    make_tool,
    registration,
    tool_config,
)


def assert_refused(response: httpx.Response, reason: str) -> dict[str, Any]:
    assert response.status_code == REASONS[reason].status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == reason
    return body


async def test_valid_launch_redirects_to_target_with_launch_id(
    tool: ToolClient,
) -> None:
    response = await tool.launch()

    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(TOOL_APP + "?lti_launch=")
    page = (await tool.follow(response)).json()
    assert page["user"] == "user-1"
    assert page["learner"] is True and page["instructor"] is False
    assert page["context"] == "ctx-5"
    assert page["resource_link"] == "rl-1"
    assert page["custom"] == {"color": "green"}
    assert page["deployment_id"] == DEPLOYMENT_ID


async def test_launch_clears_the_state_cookie(tool: ToolClient) -> None:
    login = await tool.login()

    response = await tool.launch(login)

    cleared = response.headers["set-cookie"]
    assert cleared.startswith(login.cookie_name + "=;")
    # A browser drops the cookie only when path and attributes match the
    # login's cookie; Expires is there for clients that ignore Max-Age.
    attributes = {part.strip() for part in cleared.split(";")[1:]}
    assert attributes == {
        "Max-Age=0",
        "Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        f"Path={httpx.URL(TOOL_LAUNCH).path}",
        "Secure",
        "HttpOnly",
        "SameSite=None",
    }


async def test_launch_with_absent_sub_is_anonymous(tool: ToolClient) -> None:
    response = await tool.launch(sub=DROP)

    page = (await tool.follow(response)).json()
    assert page["user"] is None


async def test_platform_error_answer_gets_its_own_reason(tool: ToolClient) -> None:
    login = await tool.login()
    form = {
        "utf8": "\u2713",
        "authenticity_token": "abc",
        "error": "launch_no_longer_valid",
        "error_description": "The launch has expired",
        "state": login.state,
    }

    response = await tool.post_launch(form, login.cookies)

    body = assert_refused(response, "platform_error")
    assert "launch_no_longer_valid" in body["detail"]
    assert "id_token" not in body["detail"]
    assert "Traceback" not in response.text
    # CASE-03: the error consumed the state; it cannot serve a launch now.
    assert_refused(await tool.launch(login), "state_already_used")


async def test_platform_error_page_in_html_is_escaped(tool: ToolClient) -> None:
    form = {"error": "<script>x</script>", "error_description": "<b>bad</b>"}

    response = await tool.post_launch(form, headers={"accept": "text/html"})

    assert response.status_code == 400
    assert "<script>x" not in response.text
    assert "&lt;script&gt;" in response.text
    assert "platform_error" in response.text


async def test_missing_id_token_refused(tool: ToolClient) -> None:
    login = await tool.login()
    response = await tool.post_launch({"state": login.state}, login.cookies)
    assert_refused(response, "id_token_missing")


async def test_missing_state_refused(tool: ToolClient, platform: FakePlatform) -> None:
    login = await tool.login()
    token = platform.sign(platform.claims(login.nonce))
    response = await tool.post_launch({"id_token": token}, login.cookies)
    assert_refused(response, "state_missing")


async def test_unknown_state_refused(tool: ToolClient, platform: FakePlatform) -> None:
    login = await tool.login()
    token = platform.sign(platform.claims(login.nonce))
    form = {"id_token": token, "state": "never-issued"}
    assert_refused(await tool.post_launch(form, login.cookies), "state_unknown")


async def test_expired_state_refused(
    tool: ToolClient, platform: FakePlatform, clock: Clock
) -> None:
    login = await tool.login()
    clock.now += tool.middleware.config.login_ttl + 1
    assert_refused(await tool.launch(login), "state_unknown")


async def test_state_cookie_missing_is_its_own_reason(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await tool.login()
    token = platform.sign(platform.claims(login.nonce))

    response = await tool.post_launch({"id_token": token, "state": login.state})

    body = assert_refused(response, "state_cookie_missing")
    assert "third-party cookies" in body["hint"]


async def test_state_cookie_with_other_value_is_a_mismatch(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await tool.login()
    token = platform.sign(platform.claims(login.nonce))
    cookies = {login.cookie_name: "some-other-value"}

    response = await tool.post_launch(
        {"id_token": token, "state": login.state}, cookies
    )

    assert_refused(response, "state_mismatch")


async def test_cookie_of_another_login_does_not_fit(
    tool: ToolClient, platform: FakePlatform
) -> None:
    first = await tool.login()
    second = await tool.login()
    token = platform.sign(platform.claims(second.nonce))

    form = {"id_token": token, "state": second.state}
    response = await tool.post_launch(form, first.cookies)

    assert_refused(response, "state_cookie_missing")


async def test_garbage_token_refused(tool: ToolClient) -> None:
    login = await tool.login()
    form = {"id_token": "not.a.jwt", "state": login.state}
    assert_refused(await tool.post_launch(form, login.cookies), "token_malformed")


async def test_non_object_payload_refused(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await tool.login()
    key = platform.key
    token = jwt.api_jws.encode(
        b"[1,2]", key.private_key, algorithm="RS256", headers={"kid": key.kid}
    )
    form = {"id_token": token, "state": login.state}
    assert_refused(await tool.post_launch(form, login.cookies), "token_malformed")


def _unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


@pytest.mark.parametrize("alg", ["none", "HS256", "RS384"])
async def test_disallowed_alg_refused(
    tool: ToolClient, platform: FakePlatform, alg: str
) -> None:
    login = await tool.login()
    claims = platform.claims(login.nonce)
    if alg == "none":
        token = _unsigned(claims, {"alg": "none", "kid": platform.key.kid})
    elif alg == "HS256":
        # The classic confusion attack: the public key used as an HMAC secret.
        secret = platform.key.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        unsigned = _unsigned(claims, {"alg": "HS256", "kid": platform.key.kid})
        mac = hmac.new(secret, unsigned[:-1].encode(), hashlib.sha256).digest()
        token = unsigned + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    else:
        token = platform.sign(claims, alg="RS384")

    form = {"id_token": token, "state": login.state}
    assert_refused(await tool.post_launch(form, login.cookies), "alg_not_allowed")


async def test_missing_kid_refused(tool: ToolClient, platform: FakePlatform) -> None:
    login = await tool.login()
    token = platform.sign(platform.claims(login.nonce), headers={"kid": None})
    form = {"id_token": token, "state": login.state}
    assert_refused(await tool.post_launch(form, login.cookies), "kid_missing")


async def test_unknown_kid_refused(tool: ToolClient, platform: FakePlatform) -> None:
    login = await tool.login()
    stranger = cached_key("stranger")
    token = platform.sign(platform.claims(login.nonce), key=stranger)
    form = {"id_token": token, "state": login.state}
    body = assert_refused(await tool.post_launch(form, login.cookies), "unknown_kid")
    assert stranger.kid in body["detail"]


async def test_forged_signature_refused(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await tool.login()
    forger = cached_key("stranger")
    token = platform.sign(
        platform.claims(login.nonce), key=forger, headers={"kid": platform.key.kid}
    )
    form = {"id_token": token, "state": login.state}
    assert_refused(await tool.post_launch(form, login.cookies), "signature_invalid")


async def test_tampered_payload_refused(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await tool.login()
    header, payload, signature = platform.sign(platform.claims(login.nonce)).split(".")
    claims = platform.claims(login.nonce, sub="admin")
    forged = _unsigned(claims, {}).split(".")[1]
    form = {"id_token": f"{header}.{forged}.{signature}", "state": login.state}
    assert_refused(await tool.post_launch(form, login.cookies), "signature_invalid")


async def test_key_set_unreachable_refused(
    tool: ToolClient, platform: FakePlatform
) -> None:
    platform.key_set_down = True
    body = assert_refused(await tool.launch(), "key_set_unavailable")
    assert "jwks" in body["detail"]


async def test_iss_mismatch_refused(tool: ToolClient) -> None:
    body = assert_refused(await tool.launch(iss="https://evil.example"), "iss_mismatch")
    assert "evil.example" in body["detail"]


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": ["https://other.example.org"]}, "aud_mismatch"),
        ({"aud": "someone-else"}, "aud_mismatch"),
        ({"aud": [CLIENT_ID, "https://other.example.org"]}, "aud_untrusted"),
        ({"aud": [CLIENT_ID, "x"], "azp": "x"}, "aud_untrusted"),
        ({"aud": [CLIENT_ID], "azp": "x"}, "azp_mismatch"),
        ({"aud": 42}, "claim_invalid"),
    ],
)
async def test_audience_checks(
    tool: ToolClient, claims: dict[str, Any], reason: str
) -> None:
    assert_refused(await tool.launch(**claims), reason)


async def test_aud_as_one_element_array_accepted(tool: ToolClient) -> None:
    response = await tool.launch(aud=[CLIENT_ID])
    assert response.status_code == 303


async def test_trusted_extra_audience_needs_azp(platform: FakePlatform) -> None:
    other = "https://other.example.org"
    config = tool_config(registrations=(registration(trusted_audiences=(other,)),))
    tool = make_tool(platform, config=config)

    with_azp = await tool.launch(aud=[CLIENT_ID, other], azp=CLIENT_ID)
    client_id_last = await tool.launch(aud=[other, CLIENT_ID], azp=CLIENT_ID)
    without_azp = await tool.launch(aud=[other, CLIENT_ID])

    assert with_azp.status_code == 303
    assert client_id_last.status_code == 303
    assert_refused(without_azp, "azp_required")


@pytest.mark.parametrize(
    ("offsets", "reason"),
    [
        ({"exp": DROP}, "exp_missing"),
        ({"iat": DROP}, "iat_missing"),
        ({"exp": "soon"}, "claim_invalid"),
        ({"iat": -1000, "exp": -61}, "token_expired"),
        ({"iat": 600, "exp": 660}, "iat_in_future"),
        ({"nbf": 120}, "token_not_yet_valid"),
        ({"iat": -4000, "exp": 600}, "token_too_old"),
        ({"exp": 86400}, "token_lifetime_too_long"),
    ],
)
async def test_time_checks(
    tool: ToolClient, clock: Clock, offsets: dict[str, Any], reason: str
) -> None:
    now = int(clock())
    claims = {
        k: v if v is DROP or isinstance(v, str) else now + v for k, v in offsets.items()
    }
    body = assert_refused(await tool.launch(**claims), reason)
    if reason == "token_expired":
        assert "leeway 60s" in body["detail"]


async def test_iat_slightly_ahead_accepted_within_leeway(
    tool: ToolClient, clock: Clock
) -> None:
    now = int(clock())
    response = await tool.launch(iat=now + 1, exp=now + 61)
    assert response.status_code == 303


async def test_token_expired_within_leeway_accepted(
    tool: ToolClient, clock: Clock
) -> None:
    now = int(clock())
    response = await tool.launch(iat=now - 100, exp=now - 10)
    assert response.status_code == 303


async def test_missing_nonce_refused(tool: ToolClient) -> None:
    assert_refused(await tool.launch(nonce=DROP), "nonce_missing")


async def test_nonce_never_issued_refused(tool: ToolClient) -> None:
    assert_refused(await tool.launch(nonce="never-issued"), "nonce_unknown")


async def test_nonce_of_another_login_refused(tool: ToolClient) -> None:
    other = await tool.login()
    assert_refused(await tool.launch(nonce=other.nonce), "nonce_mismatch")


async def test_replayed_launch_refused_now_and_much_later(
    tool: ToolClient, platform: FakePlatform, clock: Clock
) -> None:
    login = await tool.login()
    claims = platform.claims(login.nonce, exp=int(clock()) + 3600)
    form = {"id_token": platform.sign(claims), "state": login.state}

    first = await tool.post_launch(form, login.cookies)
    clock.now += 3
    again = await tool.post_launch(form, login.cookies)
    clock.now += 1800
    much_later = await tool.post_launch(form, login.cookies)

    assert first.status_code == 303
    assert_refused(again, "state_already_used")
    assert_refused(much_later, "state_already_used")


async def test_replayed_token_with_a_fresh_state_refused(
    tool: ToolClient, platform: FakePlatform, clock: Clock
) -> None:
    login = await tool.login()
    token = platform.sign(platform.claims(login.nonce, exp=int(clock()) + 3600))
    assert (await tool.launch_token(token, login)).status_code == 303

    clock.now += 1800
    fresh = await tool.login()
    response = await tool.launch_token(token, fresh)

    assert_refused(response, "nonce_replayed")


async def test_concurrent_replays_let_exactly_one_through(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await tool.login()
    form = {
        "id_token": platform.sign(platform.claims(login.nonce)),
        "state": login.state,
    }

    responses = await asyncio.gather(
        *(tool.post_launch(form, login.cookies) for _ in range(10))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(303) == 1
    refused = [r.json()["error"] for r in responses if r.status_code != 303]
    assert refused == ["state_already_used"] * 9


async def test_missing_deployment_id_refused(tool: ToolClient) -> None:
    assert_refused(
        await tool.launch(**{c.DEPLOYMENT_ID: DROP}), "deployment_id_missing"
    )


async def test_unknown_deployment_refused_with_ids_in_message(
    tool: ToolClient,
) -> None:
    response = await tool.launch(**{c.DEPLOYMENT_ID: "99:new-course-copy"})
    body = assert_refused(response, "unknown_deployment")
    assert "99:new-course-copy" in body["detail"]
    assert ISS in body["detail"] and CLIENT_ID in body["detail"]


async def test_deployment_policy_accept_lets_new_deployment_in(
    platform: FakePlatform,
) -> None:
    tool = make_tool(platform, config=tool_config(deployment_policy="accept"))
    response = await tool.launch(**{c.DEPLOYMENT_ID: "99:new-course-copy"})
    assert response.status_code == 303


class DeploymentSpy:
    def __init__(self, decision: bool) -> None:
        self.decision = decision
        self.calls: list[str] = []

    @hookimpl
    def lti_accept_deployment(self, registration: Any, deployment_id: str) -> bool:
        self.calls.append(deployment_id)
        return self.decision


async def test_deployment_hook_decides_and_is_called_once(
    platform: FakePlatform,
) -> None:
    spy = DeploymentSpy(True)
    tool = make_tool(platform, plugins=(spy,))

    response = await tool.launch(**{c.DEPLOYMENT_ID: "99:new"})

    assert response.status_code == 303
    assert spy.calls == ["99:new"]


async def test_deployment_hook_never_sees_an_unsigned_token(
    platform: FakePlatform,
) -> None:
    spy = DeploymentSpy(True)
    tool = make_tool(platform, plugins=(spy,))
    login = await tool.login()
    forged = platform.sign(
        platform.claims(login.nonce, **{c.DEPLOYMENT_ID: "99:new"}),
        key=cached_key("stranger"),
        headers={"kid": platform.key.kid},
    )

    response = await tool.launch_token(forged, login)

    assert_refused(response, "signature_invalid")
    assert spy.calls == []


async def test_wrong_version_refused(tool: ToolClient) -> None:
    assert_refused(await tool.launch(**{c.VERSION: "1.1"}), "version_unsupported")


async def test_unsupported_message_type_refused(tool: ToolClient) -> None:
    response = await tool.launch(**{c.MESSAGE_TYPE: "LtiSomethingElse"})
    assert_refused(response, "message_type_unsupported")


@pytest.mark.parametrize("claim", [c.RESOURCE_LINK, c.ROLES, c.TARGET_LINK_URI])
async def test_required_claim_missing_refused(tool: ToolClient, claim: str) -> None:
    body = assert_refused(await tool.launch(**{claim: DROP}), "claim_missing")
    assert claim in body["detail"]


@pytest.mark.parametrize(
    "claims",
    [
        {c.RESOURCE_LINK: {"title": "no id"}},
        {c.ROLES: "Learner"},
        {c.CONTEXT: {"label": "no id"}},
        {"sub": ""},
        {"sub": "x" * 256},
        {c.CUSTOM: ["not", "an", "object"]},
    ],
)
async def test_malformed_claims_refused(
    tool: ToolClient, claims: dict[str, Any]
) -> None:
    assert_refused(await tool.launch(**claims), "claim_invalid")


async def test_empty_roles_accepted(tool: ToolClient) -> None:
    response = await tool.launch(**{c.ROLES: []})
    assert response.status_code == 303


async def test_unknown_claims_are_ignored(tool: ToolClient) -> None:
    response = await tool.launch(**{"https://example.org/claim/extra": {"a": 1}})
    assert response.status_code == 303


async def test_target_link_uri_must_match_login(tool: ToolClient) -> None:
    login = await tool.login(target_link_uri=TOOL_APP + "?res=42")
    response = await tool.launch(login, **{c.TARGET_LINK_URI: TOOL_APP + "?res=43"})
    body = assert_refused(response, "target_link_uri_mismatch")
    assert "res=42" in body["detail"] and "res=43" in body["detail"]


async def test_target_link_uri_query_is_kept_on_landing(tool: ToolClient) -> None:
    target = TOOL_APP + "?res=42"
    login = await tool.login(target_link_uri=target)
    response = await tool.launch(login, **{c.TARGET_LINK_URI: target})
    assert response.headers["location"].startswith(TOOL_APP + "?res=42&lti_launch=")


async def test_target_link_uri_equal_to_launch_url_lands_on_landing_url(
    tool: ToolClient,
) -> None:
    target = "https://tool.example.org/lti/launch"
    login = await tool.login(target_link_uri=target)
    response = await tool.launch(login, **{c.TARGET_LINK_URI: target})
    assert response.headers["location"].startswith("https://tool.example.org/?lti")


async def test_launch_route_refuses_get(tool: ToolClient) -> None:
    response = await tool.http.get(
        "/lti/launch", headers={"accept": "application/json"}
    )
    assert_refused(response, "method_not_allowed")


async def test_launch_body_over_limit_refused(tool: ToolClient) -> None:
    form = {"id_token": "x" * 70_000, "state": "s"}
    assert_refused(await tool.post_launch(form), "request_too_large")


async def test_launch_needs_a_form_body(tool: ToolClient) -> None:
    response = await tool.http.post(
        "/lti/launch", json={"id_token": "x"}, headers={"accept": "application/json"}
    )
    assert_refused(response, "request_malformed")


async def test_repeated_form_field_refused(tool: ToolClient) -> None:
    response = await tool.http.post(
        "/lti/launch",
        content=b"state=a&state=b&id_token=x",
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "accept": "application/json",
        },
    )
    assert_refused(response, "request_malformed")


def test_every_reason_code_is_exercised_by_a_test() -> None:
    import pathlib

    sources = "".join(
        p.read_text() for p in pathlib.Path(__file__).parent.glob("test_*.py")
    )
    untested = [reason for reason in REASONS if f'"{reason}"' not in sources]
    assert untested == []


async def test_refusal_is_logged_with_the_platform_but_no_token(
    tool: ToolClient, platform: FakePlatform, caplog: pytest.LogCaptureFixture
) -> None:
    login = await tool.login()
    token = platform.sign(platform.claims(login.nonce, aud="someone-else"))

    with caplog.at_level("WARNING", logger="lti_middleware"):
        await tool.launch_token(token, login)

    messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(messages) == 1
    assert "aud_mismatch" in messages[0]
    assert f"issuer={ISS}" in messages[0] and f"client_id={CLIENT_ID}" in messages[0]
    assert f"deployment_id={DEPLOYMENT_ID}" in messages[0]
    assert token not in messages[0] and login.state not in messages[0]
    assert "Ada" not in messages[0]


def _signed_raw(platform: FakePlatform, payload: bytes) -> str:
    key = platform.key
    return jwt.api_jws.encode(
        payload, key.private_key, algorithm="RS256", headers={"kid": key.kid}
    )


async def test_integer_too_large_for_a_float_is_claim_invalid(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await tool.login()
    text = json.dumps(platform.claims(login.nonce)).replace(
        f'"iat": {int(platform.clock())}', '"iat": 1' + "0" * 400
    )
    token = _signed_raw(platform, text.encode())
    assert_refused(await tool.launch_token(token, login), "claim_invalid")


async def test_deeply_nested_payload_is_malformed(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await tool.login()
    token = _signed_raw(platform, b'{"a":' + b"[" * 5_000 + b"]" * 5_000 + b"}")
    assert_refused(await tool.launch_token(token, login), "token_malformed")


async def test_lone_surrogate_in_a_claim_is_malformed(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await tool.login()
    text = json.dumps(platform.claims(login.nonce, name="Ada")).replace(
        '"Ada"', '"Ada\\ud800"'
    )
    token = _signed_raw(platform, text.encode())
    body = assert_refused(await tool.launch_token(token, login), "token_malformed")
    assert "Unicode" in body["detail"]


async def test_values_from_requests_cannot_forge_log_lines(
    tool: ToolClient, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "x\nWARNING:lti_middleware:LTI /lti/launch refused: forged"
    with caplog.at_level("WARNING", logger="lti_middleware"):
        await tool.post_launch({"error": "login_required", "error_description": forged})
        login = await tool.login(lti_deployment_id=forged)
        await tool.launch(login, aud="someone-else")

    for record in caplog.records:
        assert "\n" not in record.getMessage()
    assert any("\\nWARNING" in r.getMessage() for r in caplog.records)


async def test_refusal_log_names_the_tokens_deployment(
    tool: ToolClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="lti_middleware.middleware"):
        await tool.launch(**{c.DEPLOYMENT_ID: "99:evil"})

    assert "deployment_id=99:evil" in caplog.records[-1].getMessage()


@pytest.mark.parametrize(
    "constant", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1.5e309"]
)
async def test_non_json_number_constants_are_malformed(
    tool: ToolClient, platform: FakePlatform, constant: str
) -> None:
    login = await tool.login()
    text = json.dumps(platform.claims(login.nonce, **{c.CUSTOM: {"x": 1}})).replace(
        '"x": 1', f'"x": {constant}'
    )
    token = _signed_raw(platform, text.encode())
    assert_refused(await tool.launch_token(token, login), "token_malformed")


async def test_message_type_of_the_wrong_type_is_unsupported(tool: ToolClient) -> None:
    response = await tool.launch(**{c.MESSAGE_TYPE: ["LtiResourceLinkRequest"]})
    assert_refused(response, "message_type_unsupported")


async def test_claims_reach_the_app_as_signed_whatever_their_spelling(
    tool: ToolClient,
) -> None:
    # The launch record keeps the payload text as the platform signed it:
    # raw UTF-8, \u escapes, escaped quotes and nesting must all read back
    # to the claims the validator checked.
    login = await tool.login()
    claims = tool.platform.claims(login.nonce)
    claims[c.CUSTOM] = {"name": 'Zoë "Q" O\'Brien', "emoji": "🎓", "nested": "a\\b"}
    text = json.dumps(claims, ensure_ascii=False).replace("Zoë", "Zo\\u00eb")
    key = tool.platform.key
    token = jwt.api_jws.encode(
        text.encode("utf-8"),
        key.private_key,
        algorithm="RS256",
        headers={"kid": key.kid},
    )

    page = await tool.follow(await tool.launch_token(token, login))

    assert page.json()["custom"] == {
        "name": 'Zoë "Q" O\'Brien',
        "emoji": "🎓",
        "nested": "a\\b",
    }


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = {"d": value} if level % 2 else [value]
    return value


@pytest.mark.parametrize(("depth", "accepted"), [(20, True), (40, False)])
async def test_claims_nested_too_deep_are_malformed(
    tool: ToolClient, depth: int, accepted: bool
) -> None:
    # The app's own json.dumps fails on claims some 950 levels deep; real
    # claims nest four or five. The payload root and custom add two levels.
    response = await tool.launch(**{c.CUSTOM: {"deep": _nested(depth)}})

    if accepted:
        assert response.status_code == 303, response.text
    else:
        assert_refused(response, "token_malformed")
        assert "nests more than 32 levels" in response.text


async def test_many_shallow_arrays_and_objects_are_not_too_deep(
    tool: ToolClient,
) -> None:
    custom = {f"k{n}": [{"v": n}] for n in range(200)}

    response = await tool.launch(**{c.CUSTOM: custom})

    assert response.status_code == 303, response.text


async def test_an_overlong_kid_is_refused_before_any_lookup(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await tool.login()
    fetches = len(platform.key_set_requests)
    token = platform.sign(platform.claims(login.nonce), headers={"kid": "k" * 300})

    response = await tool.launch_token(token, login)

    assert_refused(response, "token_malformed")
    assert len(platform.key_set_requests) == fetches


async def test_an_outlandish_alg_is_not_repeated_at_length(
    tool: ToolClient, caplog: pytest.LogCaptureFixture
) -> None:
    login = await tool.login()
    header = base64.urlsafe_b64encode(
        json.dumps({"alg": "x" * 5000, "kid": "k"}).encode()
    ).rstrip(b"=")
    token = f"{header.decode()}.e30.c2ln"

    response = await tool.launch_token(token, login)

    assert_refused(response, "alg_not_allowed")
    assert "x" * 100 not in response.text
    assert all("x" * 100 not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("kid", [7, ["k"], {"k": 1}, True])
async def test_a_kid_that_is_not_a_string_is_malformed(
    tool: ToolClient, platform: FakePlatform, kid: object
) -> None:
    login = await tool.login()
    claims = platform.claims(login.nonce)
    token = _unsigned(claims, {"alg": "RS256", "kid": kid}) + "c2ln"

    response = await tool.post_launch(
        {"id_token": token, "state": login.state}, login.cookies
    )

    assert_refused(response, "token_malformed")
    assert "kid is a" in response.text


# -- Claim members of the wrong JSON type ---------------------------------------

AGS_LINEITEMS = "https://lms.example.edu/api/lti/courses/5/line_items"
NRPS_URL = "https://lms.example.edu/api/lti/courses/5/names_and_roles"


@pytest.mark.parametrize(
    "kind", ["CourseOffering", c.CONTEXT + "/type#CourseSection", ""]
)
async def test_context_type_as_one_string_reads_as_an_array_of_one(
    kind: str,
) -> None:
    launch = await _launch_of({c.CONTEXT: {"id": "ctx-5", "type": kind}})

    assert launch.context is not None
    assert launch.context.type == (kind,)


async def test_context_type_as_an_array_of_strings_is_kept() -> None:
    kinds = ["http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering", "Group"]

    launch = await _launch_of({c.CONTEXT: {"id": "ctx-5", "type": kinds}})

    assert launch.context is not None and launch.context.type == tuple(kinds)


@pytest.mark.parametrize("kind", [5, True, 1.5, {"a": "b"}, [5], ["Group", None]])
async def test_context_type_of_another_shape_is_refused(
    tool: ToolClient, kind: Any
) -> None:
    response = await tool.launch(**{c.CONTEXT: {"id": "ctx-5", "type": kind}})

    detail = assert_refused(response, "claim_invalid")["detail"]
    assert c.CONTEXT in detail and "'type'" in detail


SERVICE_URLS = [
    (c.AGS_ENDPOINT, "lineitem"),
    (c.AGS_ENDPOINT, "lineitems"),
    (c.NRPS_SERVICE, "context_memberships_url"),
]


def _services(claim: str, member: str, value: Any) -> dict[str, Any]:
    """The AGS and NRPS claims, with ``member`` of ``claim`` set to ``value``."""
    ags: dict[str, Any] = {
        "scope": [c.SCOPE_SCORE, c.SCOPE_LINEITEM],
        "lineitem": LINEITEM,
        "lineitems": AGS_LINEITEMS,
    }
    nrps: dict[str, Any] = {
        "context_memberships_url": NRPS_URL,
        "service_versions": ["2.0"],
    }
    (ags if claim == c.AGS_ENDPOINT else nrps)[member] = value
    return {c.AGS_ENDPOINT: ags, c.NRPS_SERVICE: nrps}


@pytest.mark.parametrize(("claim", "member"), SERVICE_URLS)
@pytest.mark.parametrize(
    "url",
    [
        5,
        True,
        ["https://lms.example.edu/x"],
        {"href": "https://lms.example.edu/x"},
        "https://[::1",
        "https://[::1/x",
        "https://[v1.x]/x",
        "https://999.1.1.1/x",
        "https://lms.example.edu:99999/x",
        "https://lms.example.edu:port/x",
        "https://lms.example.edu:0/x",
        "https://lms.example.edu/li/9\x00",
        "https://lms.example.edu/li/9\x7f",
        "https://lms.example.edu/li 9",
        " https://lms.example.edu/li/9",
        "https://lms.example.edu/li/9\n",
        "https://lms.example.edu/\u200bli/9",
        "ftp://lms.example.edu/li/9",
        "javascript:alert(1)",
        "https:///li/9",
        "/api/lti/courses/5/line_items/9",
        "http://lms.example.edu/li/9",
        "https://lms.example.edu/li/9#scores",
    ],
)
async def test_service_url_that_cannot_be_used_is_refused_at_launch(
    tool: ToolClient, claim: str, member: str, url: Any
) -> None:
    response = await tool.launch(**_services(claim, member, url))

    detail = assert_refused(response, "claim_invalid")["detail"]
    assert claim in detail and repr(member) in detail
    assert "\x00" not in detail


@pytest.mark.parametrize(("claim", "member"), SERVICE_URLS)
@pytest.mark.parametrize(
    "url",
    [
        "https://lms.example.edu/mod/lti/services.php/5/lineitems/9/lineitem?type_id=1",
        "http://localhost:8000/api/lti/courses/5/line_items/9",
        "https://[2001:db8::1]:8443/api/lti/courses/5/line_items/9",
        "https://lms.example.edu/api/lti/courses/5/line_items/%C3%A9",
    ],
)
async def test_service_urls_platforms_send_are_accepted(
    claim: str, member: str, url: str
) -> None:
    launch = await _launch_of(_services(claim, member, url))

    if claim == c.AGS_ENDPOINT:
        assert getattr(launch.ags, member) == url
    else:
        assert launch.nrps.context_memberships_url == url


@pytest.mark.parametrize(("claim", "member"), SERVICE_URLS)
@pytest.mark.parametrize("url", [None, ""])
async def test_null_or_empty_service_url_reads_as_absent(
    claim: str, member: str, url: Any
) -> None:
    launch = await _launch_of(_services(claim, member, url))

    if claim == c.AGS_ENDPOINT:
        assert getattr(launch.ags, member) is None
    else:
        assert launch.nrps.available is False


async def test_presentation_size_of_true_is_no_size() -> None:
    presentation = {"width": True, "height": 480, "document_target": "iframe"}

    launch = await _launch_of({c.LAUNCH_PRESENTATION: presentation})

    assert launch.presentation is not None
    assert (launch.presentation.width, launch.presentation.height) == (None, 480)


def test_launch_view_reads_unchecked_claims_of_any_shape() -> None:
    # The views cope on their own; the launch check is not their only guard.
    for value in ODD_VALUES:
        claims = {
            c.DEPLOYMENT_ID: DEPLOYMENT_ID,
            c.MESSAGE_TYPE: c.RESOURCE_LINK_REQUEST,
            c.ROLES: value,
            c.CUSTOM: value,
            c.LAUNCH_PRESENTATION: {"width": value, "height": value},
            c.CONTEXT: {"id": "ctx-5", "label": value, "type": value},
            c.TOOL_PLATFORM: {"guid": "g", "url": value},
            "sub": value,
            "email": value,
        }
        launch = LTILaunch(launch_id="l", registration=registration(), claims=claims)

        _read_views(launch)


ODD_VALUES: list[Any] = [
    0,
    -1,
    2**70,
    1.5,
    True,
    False,
    None,
    [],
    ["x"],
    [5, None],
    [[]],
    {},
    {"a": 1},
    "",
    " ",
    "x",
    "\x00",
    "\u202e",
    "https://[::1",
    "https://lms.example.edu:99999/x",
    "https://lms.example.edu/x\x00",
    "http://lms.example.edu/x",
    "javascript:alert(1)",
]

RESOURCE_LINK_MEMBERS: dict[str, tuple[str, ...]] = {
    "sub": (),
    "name": (),
    "given_name": (),
    "family_name": (),
    "email": (),
    "picture": (),
    c.ROLES: (),
    c.ROLE_SCOPE_MENTOR: (),
    c.FOR_USER: (),
    c.RESOURCE_LINK: ("id", "title", "description"),
    c.CONTEXT: ("id", "label", "title", "type"),
    c.TOOL_PLATFORM: (
        "guid",
        "name",
        "product_family_code",
        "version",
        "contact_email",
        "url",
    ),
    c.LAUNCH_PRESENTATION: (
        "document_target",
        "return_url",
        "width",
        "height",
        "locale",
    ),
    c.CUSTOM: ("color",),
    c.LIS: ("person_sourcedid", "course_section_sourcedid"),
    c.AGS_ENDPOINT: ("scope", "lineitem", "lineitems"),
    c.NRPS_SERVICE: ("context_memberships_url", "service_versions"),
    c.DEEP_LINKING_SETTINGS: (),
}
DEEP_LINKING_MEMBERS: dict[str, tuple[str, ...]] = {
    c.DEEP_LINKING_SETTINGS: (
        "deep_link_return_url",
        "accept_types",
        "accept_presentation_document_targets",
        "accept_media_types",
        "accept_multiple",
        "accept_lineitem",
        "auto_create",
        "title",
        "text",
        "data",
    ),
}


def _targets(
    message_type: str, members: dict[str, tuple[str, ...]]
) -> list[tuple[str, str, str | None]]:
    """(message type, claim, member) for each claim and each of its members."""
    return [
        (message_type, claim, member)
        for claim, names in members.items()
        for member in (None, *names)
    ]


def _full_claims(message_type: str) -> dict[str, Any]:
    """Every claim the launch view reads, each with a well-formed value."""
    claims: dict[str, Any] = {
        "given_name": "Ada",
        c.RESOURCE_LINK: {"id": "rl-1", "title": "Quiz 1", "description": "Q"},
        c.CUSTOM: {"color": "green"},
        "family_name": "Learner",
        "picture": "https://lms.example.edu/ada.png",
        c.ROLE_SCOPE_MENTOR: ["user-2"],
        c.FOR_USER: {"user_id": "user-2"},
        c.CONTEXT: {"id": "ctx-5", "label": "BIO101", "title": "Bio", "type": []},
        c.TOOL_PLATFORM: {
            "guid": "lms-guid",
            "name": "Example LMS",
            "product_family_code": "example",
            "version": "1",
            "contact_email": "admin@example.edu",
            "url": "https://lms.example.edu",
        },
        c.LAUNCH_PRESENTATION: {
            "document_target": "iframe",
            "return_url": "https://lms.example.edu/return",
            "width": 640,
            "height": 480,
            "locale": "en",
        },
        c.LIS: {"person_sourcedid": "p-1", "course_section_sourcedid": "s-1"},
        **_services(c.AGS_ENDPOINT, "lineitem", LINEITEM),
    }
    if message_type == c.DEEP_LINKING_REQUEST:
        claims[c.RESOURCE_LINK] = DROP
        claims[c.DEEP_LINKING_SETTINGS] = {
            "deep_link_return_url": "https://lms.example.edu/deep_linking/return",
            "accept_types": ["ltiResourceLink"],
            "accept_presentation_document_targets": ["iframe"],
            "accept_media_types": "image/*",
            "accept_multiple": True,
            "accept_lineitem": True,
            "auto_create": False,
            "title": "Pick",
            "text": "Pick one",
            "data": "opaque",
        }
    return {c.MESSAGE_TYPE: message_type, **claims}


class _Capture:
    """An app that keeps the launch its request carries."""

    def __init__(self) -> None:
        self.launches: list[LTILaunch] = []
        self.app = Starlette(routes=[Route("/app", self.page)])

    async def page(self, request: Request) -> JSONResponse:
        self.launches.append(request.state.lti)
        return JSONResponse({})


async def _launch_of(claims: dict[str, Any]) -> LTILaunch:
    """The launch view the app gets for ``claims``; the launch must pass."""
    platform = FakePlatform(Clock())
    capture = _Capture()
    tool = make_tool(platform, app=capture.app)
    try:
        response = await tool.launch(**claims)
        assert (await tool.follow(response)).status_code == 200
    finally:
        await tool.http.aclose()
        await tool.middleware.aclose()
    return capture.launches[-1]


def _optional_texts(*values: object) -> bool:
    return all(value is None or isinstance(value, str) for value in values)


def _read_views(launch: LTILaunch) -> None:
    """Read every property of the launch view, as an app may."""
    assert repr(launch).startswith("LTILaunch(")
    assert isinstance(launch.issuer, str) and isinstance(launch.client_id, str)
    assert isinstance(launch.deployment_id, str)
    assert isinstance(launch.message_type, str)
    user = launch.user
    assert _optional_texts(launch.target_link_uri, user.id, user.name, user.email)
    assert user.anonymous is (user.id is None)

    roles = launch.roles
    assert all(isinstance(uri, str) for uri in roles.uris)
    for check in (
        roles.is_instructor,
        roles.is_learner,
        roles.is_admin,
        roles.is_content_developer,
        roles.is_mentor,
        roles.is_teaching_assistant,
        roles.has("Instructor"),
        roles.has(c.MEMBERSHIP_ROLE + "Learner"),
    ):
        assert isinstance(check, bool)

    context, link, platform = launch.context, launch.resource_link, launch.platform
    if context is not None:
        assert isinstance(context.id, str)
        assert _optional_texts(context.label, context.title, *context.type)
    if link is not None:
        assert isinstance(link.id, str)
        assert _optional_texts(link.title, link.description)
    if platform is not None:
        assert isinstance(platform.guid, str)
        assert _optional_texts(platform.name, platform.url, platform.contact_email)
    assert all(isinstance(name, str) for name in dict(launch.custom))
    presentation = launch.presentation
    if presentation is not None:
        assert _optional_texts(presentation.document_target, presentation.return_url)
        for size in (presentation.width, presentation.height):
            assert size is None or type(size) is int


async def _use_services(launch: LTILaunch) -> None:
    """Build and call the launch's services; they may fail only as LTIError."""
    ags, nrps = launch.ags, launch.nrps
    assert all(isinstance(scope, str) for scope in ags.scopes)
    assert _optional_texts(ags.lineitem, ags.lineitems, nrps.context_memberships_url)
    assert isinstance(nrps.available, bool)
    assert all(isinstance(version, str) for version in nrps.service_versions)
    for call in (
        ags.post_score(score_given=1, score_maximum=2),
        ags.get_lineitems(),
        nrps.get_members(),
    ):
        with contextlib.suppress(LTIError):
            await call

    deep_linking = launch.deep_linking
    if deep_linking is not None:
        page = await deep_linking.respond()
        assert page.status_code == 200


@pytest.mark.parametrize(
    ("message_type", "claim", "member"),
    _targets(c.RESOURCE_LINK_REQUEST, RESOURCE_LINK_MEMBERS)
    + _targets(c.DEEP_LINKING_REQUEST, DEEP_LINKING_MEMBERS),
)
async def test_claims_of_any_json_type_are_refused_or_read_without_error(
    message_type: str, claim: str, member: str | None
) -> None:
    # Whatever a signed launch carries, the app reading request.state.lti
    # and calling its services meets claim_invalid at launch or LTIError at
    # the call: never a TypeError, ValueError or httpx.InvalidURL.
    platform = FakePlatform(Clock())
    platform.extra[TOKEN_URL] = httpx.Response(
        200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 3600}
    )
    capture = _Capture()
    tool = make_tool(platform, app=capture.app)

    for value in ODD_VALUES:
        claims = _full_claims(message_type)
        if member is None:
            claims[claim] = value
        else:
            claims[claim] = {**claims.get(claim, {}), member: value}

        response = await tool.launch(**claims)

        if response.status_code != 303:
            detail = assert_refused(response, "claim_invalid")["detail"]
            assert claim in detail, (value, detail)
            assert member is None or member in detail, (value, detail)
            continue
        assert (await tool.follow(response)).status_code == 200
        launch = capture.launches[-1]
        _read_views(launch)
        await _use_services(launch)

    await tool.http.aclose()
    await tool.middleware.aclose()

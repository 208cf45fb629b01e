"""Launch validation: every check refuses with its own reason code."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from lti_middleware import claims as c
from lti_middleware.exceptions import REASONS
from lti_middleware.hooks import hookimpl

from .conftest import (
    CLIENT_ID,
    DEPLOYMENT_ID,
    DROP,
    ISS,
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

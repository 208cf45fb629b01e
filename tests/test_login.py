"""Third-party initiated login: parameters, registrations, redirect, cookie."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from lti_middleware.exceptions import LaunchError
from lti_middleware.login import LoginRequest, resolve_registration

from .conftest import (
    AUTH_URL,
    CLIENT_ID,
    ISS,
    TOOL_APP,
    TOOL_LAUNCH,
    FakePlatform,
    ToolClient,
    make_tool,
    registration,
    tool_config,
)
from .test_launch import assert_refused

CANVAS = "https://canvas.instructure.com"


def _location_query(response: httpx.Response) -> dict[str, list[str]]:
    return parse_qs(urlsplit(response.headers["location"]).query)


async def test_login_redirects_to_auth_endpoint_with_oidc_parameters(
    tool: ToolClient,
) -> None:
    login = await tool.login()

    assert login.location.startswith(AUTH_URL + "?")
    assert login.params["scope"] == "openid"
    assert login.params["response_type"] == "id_token"
    assert login.params["response_mode"] == "form_post"
    assert login.params["prompt"] == "none"
    assert login.params["client_id"] == CLIENT_ID
    assert login.params["redirect_uri"] == TOOL_LAUNCH
    assert login.params["login_hint"] == "u-123"
    assert login.params["lti_message_hint"] == "m-456"
    assert len(login.state) >= 40 and len(login.nonce) >= 40
    assert login.state != login.nonce


async def test_login_by_get_and_post_give_the_same_redirect(tool: ToolClient) -> None:
    by_get = await tool.login("GET")
    by_post = await tool.login("POST")

    def without_randoms(params: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in params.items() if k not in ("state", "nonce")}

    assert without_randoms(by_get.params) == without_randoms(by_post.params)
    assert by_get.location.split("?")[0] == by_post.location.split("?")[0]


async def test_login_route_matches_path_not_query(tool: ToolClient) -> None:
    response = await tool.http.get(
        "/lti/login?x=1",
        params={"iss": ISS, "login_hint": "h", "target_link_uri": TOOL_APP},
    )
    assert response.status_code == 302


async def test_post_body_wins_over_query_parameter(tool: ToolClient) -> None:
    response = await tool.http.post(
        "/lti/login?login_hint=from-query",
        data={"iss": ISS, "login_hint": "from-body", "target_link_uri": TOOL_APP},
    )
    assert _location_query(response)["login_hint"] == ["from-body"]


async def test_hints_are_echoed_unchanged(tool: ToolClient) -> None:
    odd = "a b+c/=é&x"
    login = await tool.login(login_hint=odd, lti_message_hint=odd)
    assert login.params["login_hint"] == odd
    assert login.params["lti_message_hint"] == odd


async def test_message_hint_omitted_when_not_sent(tool: ToolClient) -> None:
    response = await tool.http.get(
        "/lti/login",
        params={"iss": ISS, "login_hint": "h", "target_link_uri": TOOL_APP},
    )
    assert "lti_message_hint" not in _location_query(response)


async def test_state_cookie_attributes(tool: ToolClient) -> None:
    response = await tool.http.get(
        "/lti/login",
        params={"iss": ISS, "login_hint": "h", "target_link_uri": TOOL_APP},
    )

    cookie = response.headers["set-cookie"]
    attributes = [part.strip().lower() for part in cookie.split(";")]
    assert "secure" in attributes
    assert "httponly" in attributes
    assert "samesite=none" in attributes
    assert "max-age=600" in attributes
    assert "path=/lti/launch" in attributes


async def test_concurrent_logins_get_distinct_cookies(tool: ToolClient) -> None:
    first = await tool.login()
    second = await tool.login()
    assert first.cookie_name != second.cookie_name
    # Both stay usable: each launch finds its own cookie.
    assert (await tool.launch(second)).status_code == 303
    assert (await tool.launch(first)).status_code == 303


@pytest.mark.parametrize("missing", ["iss", "login_hint", "target_link_uri"])
async def test_missing_login_parameter_refused(tool: ToolClient, missing: str) -> None:
    params = {"iss": ISS, "login_hint": "h", "target_link_uri": TOOL_APP}
    del params[missing]
    response = await tool.http.get(
        "/lti/login", params=params, headers={"accept": "application/json"}
    )
    body = assert_refused(response, "login_parameter_missing")
    assert missing in body["detail"]


async def test_overlong_login_parameter_refused(tool: ToolClient) -> None:
    response = await tool.http.post(
        "/lti/login",
        data={"iss": ISS, "login_hint": "h" * 5000, "target_link_uri": TOOL_APP},
        headers={"accept": "application/json"},
    )
    assert_refused(response, "login_parameter_invalid")


async def test_login_route_refuses_put(tool: ToolClient) -> None:
    response = await tool.http.put("/lti/login", headers={"accept": "application/json"})
    assert_refused(response, "method_not_allowed")


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example.net/phish",
        "https://tool.example.org.evil.example/x",
        "javascript:alert(1)",
        "//evil.example.net/x",
        "http://tool.example.org/app",
    ],
)
async def test_foreign_target_link_uri_refused_without_redirect(
    tool: ToolClient, target: str
) -> None:
    response = await tool.http.get(
        "/lti/login",
        params={"iss": ISS, "login_hint": "h", "target_link_uri": target},
        headers={"accept": "application/json"},
    )
    assert_refused(response, "target_link_uri_not_allowed")
    assert "location" not in response.headers


async def test_unknown_issuer_refused_naming_it(tool: ToolClient) -> None:
    body = assert_refused(
        await _json_login(tool, iss="https://canvas.test.instructure.com"),
        "unknown_issuer",
    )
    assert "canvas.test.instructure.com" in body["detail"]


async def test_unknown_client_id_refused(tool: ToolClient) -> None:
    assert_refused(await _json_login(tool, client_id="999"), "unknown_client_id")


async def _json_login(tool: ToolClient, **params: str) -> httpx.Response:
    values = {"iss": ISS, "login_hint": "h", "target_link_uri": TOOL_APP}
    values.update(params)
    return await tool.http.get(
        "/lti/login", params=values, headers={"accept": "application/json"}
    )


def _tenant(name: str, client_id: str) -> object:
    host = f"https://tenant-{name}.example.edu"
    return registration(
        issuer=CANVAS,
        client_id=client_id,
        auth_login_url=host + "/api/lti/authorize_redirect",
        token_url=host + "/login/oauth2/token",
        key_set_url=host + "/jwks",
    )


async def test_shared_issuer_picks_registration_by_client_id(
    platform: FakePlatform,
) -> None:
    config = tool_config(
        registrations=(_tenant("a", "10000000000042"), _tenant("b", "20000000000077"))
    )
    tool = make_tool(platform, config=config)

    login = await tool.login(iss=CANVAS, client_id="20000000000077")
    claims = platform.claims(login.nonce, iss=CANVAS, aud="20000000000077")
    response = await tool.launch_token(platform.sign(claims), login)

    assert login.location.startswith("https://tenant-b.example.edu/")
    assert response.status_code == 303
    assert platform.key_set_requests == ["https://tenant-b.example.edu/jwks"]


async def test_shared_issuer_without_client_id_is_ambiguous(
    platform: FakePlatform,
) -> None:
    config = tool_config(
        registrations=(_tenant("a", "10000000000042"), _tenant("b", "20000000000077"))
    )
    tool = make_tool(platform, config=config)

    response = await _json_login(tool, iss=CANVAS)

    assert_refused(response, "ambiguous_registration")


def test_issuers_compare_exactly() -> None:
    moodle = registration(issuer="https://lms.example.edu/moodle")

    assert resolve_registration([moodle], "https://lms.example.edu/moodle", None)
    with pytest.raises(LaunchError) as error:
        resolve_registration([moodle], "https://lms.example.edu/moodle/", None)
    assert error.value.reason == "unknown_issuer"


def test_login_request_treats_blank_optional_values_as_absent() -> None:
    request = LoginRequest.from_params(
        {"iss": ISS, "login_hint": "h", "target_link_uri": TOOL_APP, "client_id": ""}
    )
    assert request.client_id is None


async def test_redirect_uri_comes_from_configuration_not_the_request(
    platform: FakePlatform,
) -> None:
    # Behind a TLS-terminating proxy the app sees http and another host.
    tool = make_tool(platform)
    proxied = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=tool.middleware),
        base_url="http://internal:8080",
    )
    response = await proxied.get(
        "/lti/login",
        params={"iss": ISS, "login_hint": "h", "target_link_uri": TOOL_APP},
    )
    assert _location_query(response)["redirect_uri"] == [TOOL_LAUNCH]

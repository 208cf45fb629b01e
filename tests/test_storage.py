"""Cookieless launches: the platform-storage login and launch pages."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from lti_middleware.login import BINDING_FIELD, state_cookie_name
from lti_middleware.storage import (
    STORAGE_TARGET_PARAMETER,
    platform_origin,
    storage_key,
    storage_target,
)

from .conftest import (
    AUTH_URL,
    CLIENT_ID,
    DEPLOYMENT_ID,
    ISS,
    TOOL_APP,
    TOOL_LAUNCH,
    FakePlatform,
    ToolClient,
    registration,
    tool_config,
)
from .test_launch import assert_refused

PLATFORM_ORIGIN = "https://lms.example.edu"


@dataclass
class StorageLogin:
    response: httpx.Response
    data: dict[str, Any]
    state: str
    nonce: str


def page_data(html: str) -> dict[str, Any]:
    """The JSON block a storage page hands its script."""
    match = re.search(
        r'<script type="application/json" id="lti-storage-data">(.*?)</script>',
        html,
        re.S,
    )
    assert match is not None, html
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def script_nonce(response: httpx.Response) -> str:
    csp = response.headers["content-security-policy"]
    match = re.search(r"script-src 'nonce-([A-Za-z0-9_\-]+)'", csp)
    assert match is not None, csp
    return match.group(1)


async def storage_login(tool: ToolClient, **params: str) -> StorageLogin:
    values = {
        "iss": ISS,
        "login_hint": "u-123",
        "target_link_uri": TOOL_APP,
        "client_id": CLIENT_ID,
        "lti_deployment_id": DEPLOYMENT_ID,
        STORAGE_TARGET_PARAMETER: "_parent",
    }
    values.update(params)
    response = await tool.http.post("/lti/login", data=values)
    tool.http.cookies.clear()
    assert response.status_code == 200, response.text
    data = page_data(response.text)
    query = parse_qs(urlsplit(data["next"]).query)
    return StorageLogin(response, data, query["state"][0], query["nonce"][0])


async def test_login_with_storage_target_answers_a_page_that_stores_the_binding(
    tool: ToolClient,
) -> None:
    login = await storage_login(tool)

    data = login.data
    assert data["next"].startswith(AUTH_URL + "?")
    assert data["target"] == "_parent"
    assert data["origin"] == PLATFORM_ORIGIN
    assert data["needs"] == "lti.put_data"
    assert data["key"] == storage_key(login.state)
    cookie = login.response.headers["set-cookie"]
    assert cookie.startswith(f"{data['key']}={data['value']};")
    for attribute in ("HttpOnly", "Secure", "SameSite=None", "Max-Age=600"):
        assert attribute.lower() in cookie.lower()


async def test_login_page_runs_only_its_own_script(tool: ToolClient) -> None:
    login = await storage_login(tool)

    nonce = script_nonce(login.response)
    csp = login.response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "base-uri 'none'" in csp
    assert "'unsafe-inline'" not in csp
    scripts = re.findall(r"<script([^>]*)>", login.response.text)
    assert scripts == [' type="application/json" id="lti-storage-data"'] + [
        f' nonce="{nonce}"'
    ]
    assert login.response.headers["cache-control"] == "no-store"


async def test_login_page_values_cannot_close_the_script_block(
    tool: ToolClient,
) -> None:
    hint = '</script><script>alert("x")</script>&'
    login = await storage_login(tool, lti_message_hint=hint)

    block = login.response.text.split('id="lti-storage-data">')[1]
    block = block.split("</script>")[0]
    assert "<" not in block and ">" not in block and "&" not in block
    sent = parse_qs(urlsplit(login.data["next"]).query)
    assert sent["lti_message_hint"] == [hint]


@pytest.mark.parametrize("target", ["", 'x"><script>', "a b", "x" * 129])
async def test_login_with_unusable_storage_target_redirects_as_usual(
    tool: ToolClient, target: str
) -> None:
    login = await tool.login(method="POST", lti_storage_target=target)

    assert login.location.startswith(AUTH_URL)


def test_named_storage_frame_is_kept() -> None:
    assert storage_target({"lti_storage_target": "post_message_forwarding"}) == (
        "post_message_forwarding"
    )
    assert storage_target({}) is None


async def test_login_page_names_the_storage_frame(tool: ToolClient) -> None:
    login = await storage_login(tool, lti_storage_target="post_message_forwarding")

    assert login.data["target"] == "post_message_forwarding"


def launch_form(
    platform: FakePlatform, login: StorageLogin, **fields: str
) -> dict[str, str]:
    token = platform.sign(platform.claims(login.nonce))
    form = {"id_token": token, "state": login.state}
    form.update(fields)
    return form


async def test_cookieless_launch_answers_a_page_without_consuming_the_state(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await storage_login(tool)
    form = launch_form(platform, login, lti_storage_target="_parent")

    page = await tool.post_launch(form)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    data = page_data(page.text)
    assert data["key"] == login.data["key"]
    assert data["origin"] == PLATFORM_ORIGIN
    assert data["needs"] == "lti.get_data"
    assert data["field"] == BINDING_FIELD
    assert f'action="{TOOL_LAUNCH}"' in page.text
    csp = page.headers["content-security-policy"]
    assert "form-action https://tool.example.org" in csp
    assert f"script-src 'nonce-{script_nonce(page)}'" in csp

    # The page's re-post, with the value platform storage gave back.
    repost = {"id_token": form["id_token"], "state": form["state"]}
    repost[BINDING_FIELD] = login.data["value"]
    response = await tool.post_launch(repost)
    assert response.status_code == 303, response.text
    assert (await tool.follow(response)).json()["user"] == "user-1"


async def test_cookieless_launch_page_escapes_the_posted_values(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await storage_login(tool)
    form = launch_form(platform, login, lti_storage_target="_parent")
    form["state"] = login.state + '"><script>x</script>'

    page = await tool.post_launch(form)

    assert "<script>x</script>" not in page.text
    assert "&quot;&gt;&lt;script&gt;" in page.text


async def test_stored_binding_cannot_be_replayed(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await storage_login(tool)
    form = launch_form(platform, login, **{BINDING_FIELD: login.data["value"]})

    first = await tool.post_launch(form)
    second = await tool.post_launch(form)

    assert first.status_code == 303
    assert_refused(second, "state_already_used")


async def test_wrong_stored_binding_is_a_mismatch(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await storage_login(tool)
    form = launch_form(platform, login, **{BINDING_FIELD: "another-browser"})

    body = assert_refused(await tool.post_launch(form), "state_mismatch")
    assert "platform storage" in body["detail"]


async def test_binding_of_another_login_does_not_fit(
    tool: ToolClient, platform: FakePlatform
) -> None:
    first = await storage_login(tool)
    second = await storage_login(tool)
    form = launch_form(platform, second, **{BINDING_FIELD: first.data["value"]})

    assert_refused(await tool.post_launch(form), "state_mismatch")


@pytest.mark.parametrize("fields", [{}, {BINDING_FIELD: ""}])
async def test_without_cookie_or_stored_binding_the_cookie_is_missing(
    tool: ToolClient, platform: FakePlatform, fields: dict[str, str]
) -> None:
    login = await storage_login(tool)
    form = launch_form(platform, login, **fields)

    body = assert_refused(await tool.post_launch(form), "state_cookie_missing")
    assert "third-party cookies" in body["hint"]


async def test_failed_storage_repost_shows_the_explanation_page(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await storage_login(tool)
    form = launch_form(platform, login)

    response = await tool.post_launch(form, headers={"accept": "text/html"})

    assert response.status_code == 401
    assert "state_cookie_missing" in response.text
    assert "Open the tool in a new window" in response.text


async def test_cookie_wins_over_a_stored_binding(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await storage_login(tool)
    form = launch_form(
        platform,
        login,
        lti_storage_target="_parent",
        **{BINDING_FIELD: login.data["value"]},
    )
    cookies = {login.data["key"]: "some-other-value"}

    assert_refused(await tool.post_launch(form, cookies), "state_mismatch")


async def test_launch_with_its_cookie_needs_no_page(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await storage_login(tool)
    form = launch_form(platform, login, lti_storage_target="_parent")
    cookies = {login.data["key"]: login.data["value"]}

    response = await tool.post_launch(form, cookies)

    assert response.status_code == 303, response.text


async def test_platform_error_answer_gets_no_storage_page(
    tool: ToolClient,
) -> None:
    login = await storage_login(tool)
    form = {
        "error": "login_required",
        "state": login.state,
        "id_token": "x.y.z",
        "lti_storage_target": "_parent",
    }

    assert_refused(await tool.post_launch(form), "platform_error")


async def test_launch_from_unknown_issuer_gets_no_storage_page(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await storage_login(tool)
    token = platform.sign(platform.claims(login.nonce, iss="https://evil.example"))
    form = {"id_token": token, "state": login.state, "lti_storage_target": "_parent"}

    assert_refused(await tool.post_launch(form), "state_cookie_missing")


def test_platform_origin_is_the_auth_endpoint_origin(platform: FakePlatform) -> None:
    config = tool_config(
        registrations=(
            registration(),
            registration(
                client_id="other",
                auth_login_url="https://sso.example.net/auth",
            ),
        )
    )
    ours = platform.sign(platform.claims("n"))
    other = platform.sign(platform.claims("n", aud=["other"]))
    both = platform.sign(platform.claims("n", aud=[CLIENT_ID, "other"]))

    assert platform_origin(ours, config) == PLATFORM_ORIGIN
    assert platform_origin(other, config) == "https://sso.example.net"
    assert platform_origin(both, config) is None
    assert platform_origin("not-a-jwt", config) is None


def test_storage_key_is_the_state_cookie_name() -> None:
    assert storage_key("abc") == state_cookie_name("abc")

"""The development platform's Names and Role Provisioning Services, strictly.

The platform runs in-process through httpx.ASGITransport; tokens come from
its own token endpoint, with client assertions built by the test helpers of
tests/test_devplatform.py (PyJWT, not the package's assertion code).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from lti_middleware import claims as c
from lti_middleware.devplatform import INSTRUCTOR, LEARNER, DevUser, PlatformSettings
from lti_middleware.devplatform.nrps import NRPSService
from lti_middleware.exceptions import ConfigurationError

from .test_devplatform import PLATFORM, Clock, Dev, ToolKeys, make_settings

MEMBERSHIPS = PLATFORM + "/nrps/contexts/course-1/memberships"
MEMBERSHIPS_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
HOSTILE_NAME = '<img src=x onerror="alert(1)">'
USERS = (
    DevUser("instructor-1", "Ada Instructor", "ada@example.edu", (INSTRUCTOR,)),
    *(
        DevUser(f"learner-{n}", f"Learner {n}", f"l{n}@example.edu", (LEARNER,))
        for n in range(1, 7)
    ),
    DevUser("learner-x", HOSTILE_NAME, "x@example.edu", (LEARNER,)),
)


@pytest.fixture
async def dev() -> AsyncIterator[Dev]:
    clock = Clock()
    platform = Dev(make_settings(clock, users=USERS), clock, ToolKeys())
    yield platform
    await platform.aclose()


@pytest.fixture
async def token(dev: Dev) -> str:
    return await dev.access_token(c.SCOPE_NRPS)


def service_of(dev: Dev) -> NRPSService:
    service: NRPSService = dev.app.state.nrps
    return service


async def get(
    dev: Dev,
    token: str | None,
    url: str = MEMBERSHIPS,
    *,
    accept: str | None = MEMBERSHIPS_TYPE,
    **params: str,
) -> httpx.Response:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if accept is not None:
        headers["Accept"] = accept
    return await dev.http.get(url, params=params or None, headers=headers)


def user_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [member["user_id"] for member in response.json()["members"]]


def links(response: httpx.Response) -> dict[str, str]:
    return {rel: link["url"] for rel, link in response.links.items()}


def error_of(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/json")
    error: str = response.json()["error"]
    return error


# The launch and the token


async def test_launch_carries_the_names_and_role_service_claim(dev: Dev) -> None:
    claims = jwt.decode(await dev.id_token(), options={"verify_signature": False})

    assert claims[c.NRPS_SERVICE] == {
        "context_memberships_url": MEMBERSHIPS,
        "service_versions": ["2.0"],
    }


async def test_token_endpoint_grants_the_nrps_scope(dev: Dev) -> None:
    response = await dev.request_token(scope=c.SCOPE_NRPS)

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == c.SCOPE_NRPS


async def test_with_nrps_disabled_no_claim_and_no_scope() -> None:
    clock = Clock()
    dev = Dev(make_settings(clock, nrps_enabled=False), clock, ToolKeys())
    try:
        claims = jwt.decode(await dev.id_token(), options={"verify_signature": False})
        response = await dev.request_token(scope=c.SCOPE_NRPS)
    finally:
        await dev.aclose()

    assert c.NRPS_SERVICE not in claims
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_settings_name_the_roster_urls_and_scopes() -> None:
    settings = PlatformSettings.for_tool(base_url=PLATFORM)

    assert settings.context_memberships_url == MEMBERSHIPS
    assert settings.roster_url == PLATFORM + "/roster"
    assert settings.service_scopes[-1] == c.SCOPE_NRPS
    assert c.SCOPE_NRPS not in settings.ags_scopes


@pytest.mark.parametrize("size", [0, -1, True, 2.5])
def test_settings_refuse_a_bad_page_size(size: Any) -> None:
    with pytest.raises(ConfigurationError, match="nrps_page_size"):
        PlatformSettings.for_tool(nrps_page_size=size)


# The membership container


async def test_members_are_the_courses_users_with_roles_and_status(
    dev: Dev, token: str
) -> None:
    response = await get(dev, token)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith(MEMBERSHIPS_TYPE)
    body = response.json()
    assert body["id"] == MEMBERSHIPS
    assert body["context"] == {
        "id": "course-1",
        "label": "DEV101",
        "title": "Development Course",
    }
    assert body["members"][0] == {
        "status": "Active",
        "user_id": "instructor-1",
        "roles": [INSTRUCTOR],
        "name": "Ada Instructor",
        "email": "ada@example.edu",
    }
    assert user_ids(response) == [user.id for user in USERS]


@pytest.mark.parametrize("role", [LEARNER, "Learner"])
async def test_role_filter_takes_a_uri_or_a_short_name(
    dev: Dev, token: str, role: str
) -> None:
    response = await get(dev, token, role=role)

    assert user_ids(response) == [u.id for u in USERS if LEARNER in u.roles]


async def test_role_nobody_holds_gives_an_empty_roster(dev: Dev, token: str) -> None:
    response = await get(dev, token, role="Mentor")

    assert user_ids(response) == []


async def test_limit_pages_with_next_links_until_the_end(dev: Dev, token: str) -> None:
    seen: list[str] = []
    url: str | None = MEMBERSHIPS + "?limit=3"
    pages = 0
    while url is not None:
        response = await get(dev, token, url)
        seen.extend(user_ids(response))
        url = links(response).get("next")
        pages += 1

    assert seen == [user.id for user in USERS]
    assert pages == 3


async def test_next_link_keeps_the_filters(dev: Dev, token: str) -> None:
    response = await get(dev, token, role="Learner", limit="2", rlid="rl-1")

    query = parse_qs(urlsplit(links(response)["next"]).query)
    assert query == {
        "role": ["Learner"],
        "limit": ["2"],
        "rlid": ["rl-1"],
        "page": ["2"],
    }


async def test_every_page_links_first_and_differences(dev: Dev, token: str) -> None:
    response = await get(dev, token, limit="50")

    assert "next" not in links(response)
    assert links(response)["first"] == MEMBERSHIPS + "?limit=50&page=1"
    assert links(response)["differences"] == MEMBERSHIPS + "?limit=50&since=0"


async def test_page_size_is_capped_whatever_limit_asks() -> None:
    clock = Clock()
    dev = Dev(make_settings(clock, users=USERS, nrps_page_size=5), clock, ToolKeys())
    try:
        token = await dev.access_token(c.SCOPE_NRPS)
        first = await get(dev, token, limit="100")
        unlimited = await get(dev, token)
    finally:
        await dev.aclose()

    assert len(user_ids(first)) == 5 and "next" in links(first)
    assert len(user_ids(unlimited)) == 5


async def test_rlid_lists_each_members_launch_claims(dev: Dev, token: str) -> None:
    response = await get(dev, token, rlid="rl-1")

    members = response.json()["members"]
    assert len(members) == len(USERS)
    assert all(
        member["message"] == [{c.MESSAGE_TYPE: c.RESOURCE_LINK_REQUEST, c.CUSTOM: {}}]
        for member in members
    )


async def test_without_rlid_members_carry_no_message(dev: Dev, token: str) -> None:
    response = await get(dev, token)

    assert all("message" not in member for member in response.json()["members"])


@pytest.mark.parametrize(
    "params",
    [
        {"rlid": "rl-unknown"},
        {"limit": "0"},
        {"limit": "abc"},
        {"limit": "-1"},
        {"limit": "1" * 12},
        {"page": "0"},
        {"role": " "},
        {"since": "99"},
    ],
)
async def test_invalid_query_is_refused_with_json(
    dev: Dev, token: str, params: dict[str, str]
) -> None:
    response = await get(dev, token, **params)

    assert response.status_code == 400
    assert error_of(response) == "invalid_request"


async def test_a_repeated_parameter_is_refused(dev: Dev, token: str) -> None:
    response = await get(dev, token, MEMBERSHIPS + "?role=Learner&role=Instructor")

    assert response.status_code == 400
    assert "more than once" in response.json()["error_description"]


async def test_another_context_is_not_found(dev: Dev, token: str) -> None:
    response = await get(dev, token, PLATFORM + "/nrps/contexts/course-2/memberships")

    assert response.status_code == 404
    assert error_of(response) == "not_found"


# Who may read it


async def test_a_bearer_token_is_required(dev: Dev) -> None:
    response = await get(dev, None)

    assert response.status_code == 401
    assert error_of(response) == "invalid_request"
    assert response.headers["www-authenticate"].startswith("Bearer ")


async def test_a_token_without_the_nrps_scope_is_refused(dev: Dev) -> None:
    token = await dev.access_token(c.SCOPE_LINEITEM_READONLY)

    response = await get(dev, token)

    assert response.status_code == 403
    assert error_of(response) == "insufficient_scope"


async def test_an_id_token_as_bearer_is_named_as_such(dev: Dev) -> None:
    response = await get(dev, await dev.id_token())

    assert response.status_code == 401
    assert "id_token" in response.json()["error_description"]


async def test_an_expired_or_unknown_token_is_refused(dev: Dev, token: str) -> None:
    unknown = await get(dev, "made-up-token")
    dev.clock.now += dev.settings.access_token_lifetime + 1
    expired = await get(dev, token)

    assert (unknown.status_code, error_of(unknown)) == (401, "invalid_token")
    assert (expired.status_code, error_of(expired)) == (401, "invalid_token")


@pytest.mark.parametrize(
    "accept",
    [
        MEMBERSHIPS_TYPE,
        f"{MEMBERSHIPS_TYPE}; q=0.9, text/html",
        "application/*",
        "*/*",
        None,
    ],
)
async def test_accept_must_admit_the_container(
    dev: Dev, token: str, accept: str | None
) -> None:
    response = await get(dev, token, accept=accept)

    assert response.status_code == 200


@pytest.mark.parametrize("accept", ["application/json", "text/html"])
async def test_accept_without_the_container_is_refused(
    dev: Dev, token: str, accept: str
) -> None:
    response = await get(dev, token, accept=accept)

    assert response.status_code == 406
    assert error_of(response) == "not_acceptable"


# Status changes and differences


async def change_status(dev: Dev, user_id: str, status: str) -> httpx.Response:
    return await dev.http.post("/roster", data={"user_id": user_id, "status": status})


async def test_differences_list_only_the_changes_since(dev: Dev, token: str) -> None:
    before = links(await get(dev, token))["differences"]

    assert (await change_status(dev, "learner-1", "Deleted")).status_code == 303
    assert (await change_status(dev, "learner-2", "Inactive")).status_code == 303
    changes = await get(dev, token, before)

    assert [(m["user_id"], m["status"]) for m in changes.json()["members"]] == [
        ("learner-1", "Deleted"),
        ("learner-2", "Inactive"),
    ]
    later = await get(dev, token, links(changes)["differences"])
    assert user_ids(later) == []


async def test_a_deleted_member_leaves_the_roster_an_inactive_one_stays(
    dev: Dev, token: str
) -> None:
    await change_status(dev, "learner-1", "Deleted")
    await change_status(dev, "learner-2", "Inactive")

    members = (await get(dev, token)).json()["members"]

    statuses = {m["user_id"]: m["status"] for m in members}
    assert "learner-1" not in statuses
    assert statuses["learner-2"] == "Inactive"


async def test_setting_the_same_status_again_is_no_change(dev: Dev, token: str) -> None:
    await change_status(dev, "learner-3", "Active")

    assert service_of(dev).memberships.sequence == 0


async def test_the_roster_page_lists_members_and_escapes_names(dev: Dev) -> None:
    await change_status(dev, "learner-2", "Inactive")

    page = await dev.http.get("/roster")

    assert page.status_code == 200
    assert HOSTILE_NAME not in page.text
    assert "&lt;img src=x" in page.text
    assert "Ada Instructor" in page.text and "Instructor" in page.text
    assert '<option value="Inactive" selected>' in page.text
    assert MEMBERSHIPS in page.text


async def test_home_page_links_to_the_roster(dev: Dev) -> None:
    home = await dev.http.get("/")

    assert f'href="{PLATFORM}/roster"' in home.text


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"user_id": "learner-1", "status": "Gone"}, 400),
        ({"user_id": "nobody", "status": "Inactive"}, 404),
        ({"user_id": "learner-1"}, 400),
    ],
)
async def test_roster_form_refuses_bad_changes(
    dev: Dev, form: dict[str, str], status: int
) -> None:
    response = await dev.http.post("/roster", data=form)

    assert response.status_code == status
    assert service_of(dev).memberships.sequence == 0


async def test_roster_form_must_be_urlencoded(dev: Dev) -> None:
    response = await dev.http.post("/roster", json={"user_id": "learner-1"})

    assert response.status_code == 400

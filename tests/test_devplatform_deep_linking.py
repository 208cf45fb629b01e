"""The development platform's deep linking: the request, the strict return.

The platform runs in-process through httpx.ASGITransport and fetches the
tool's key set from an httpx.MockTransport. Responses are built here by hand
with PyJWT, independently of the package's own deep-linking code.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import pytest

from lti_middleware import claims as c
from lti_middleware.devplatform import (
    DevResourceLink,
    PlatformSettings,
    create_platform,
)
from lti_middleware.devplatform.deep_linking import DATA_LIFETIME, course_settings
from lti_middleware.devplatform.settings import DEEP_LINKING_LINK_ID
from lti_middleware.devplatform.state import PlatformState
from lti_middleware.exceptions import ConfigurationError
from lti_middleware.keys import generate_key

PLATFORM = "https://platform.example.edu"
TOOL = "https://tool.example.org"
TOOL_JWKS = TOOL + "/lti/jwks"
PLATFORM_KEY = generate_key()
TOOL_KEY = generate_key()
STRANGER_KEY = generate_key()
DROP = object()
HOSTILE = '<script>alert("x")</script>'


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def tool_keys(request: httpx.Request) -> httpx.Response:
    if str(request.url) != TOOL_JWKS:
        return httpx.Response(404)
    return httpx.Response(200, json={"keys": [TOOL_KEY.public_jwk()]})


class Parsed(HTMLParser):
    """Forms, links and text of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}
        self.links: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form" and not self.action:
            self.action = values["action"]
        elif tag == "input":
            self.fields[values["name"]] = values["value"]
        elif tag == "a":
            self.links.append(values["href"])


class Dev:
    """The platform app and a browser for it."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.settings = PlatformSettings.for_tool(
            TOOL, base_url=PLATFORM, key=PLATFORM_KEY, clock=clock
        )
        self.jwks = httpx.AsyncClient(transport=httpx.MockTransport(tool_keys))
        self.app = create_platform(self.settings, http_client=self.jwks)
        self.state: PlatformState = self.app.state.platform
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=PLATFORM
        )

    async def id_token_claims(
        self, user_id: str, link_id: str = DEEP_LINKING_LINK_ID
    ) -> dict[str, Any]:
        """Launch ``link_id`` as ``user_id``; the verified id_token claims."""
        start = await self.http.get(
            "/launch", params={"user_id": user_id, "resource_link_id": link_id}
        )
        assert start.status_code == 302, start.text
        login = dict(parse_qsl(urlsplit(start.headers["location"]).query))
        auth = await self.http.get(
            "/oidc/auth",
            params={
                "scope": "openid",
                "response_type": "id_token",
                "response_mode": "form_post",
                "prompt": "none",
                "client_id": self.settings.client_id,
                "redirect_uri": TOOL + "/lti/launch",
                "login_hint": login["login_hint"],
                "lti_message_hint": login["lti_message_hint"],
                "state": uuid.uuid4().hex,
                "nonce": uuid.uuid4().hex,
            },
        )
        assert auth.status_code == 200, auth.text
        token = Parsed(auth.text).fields["id_token"]
        claims: dict[str, Any] = jwt.decode(
            token,
            PLATFORM_KEY.private_key.public_key(),
            algorithms=["RS256"],
            audience=self.settings.client_id,
        )
        return claims

    async def data(self) -> str:
        request = await self.id_token_claims("instructor-1")
        data: str = request[c.DEEP_LINKING_SETTINGS]["data"]
        return data

    def response_claims(self, data: str, **overrides: Any) -> dict[str, Any]:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.settings.client_id,
            "aud": PLATFORM,
            "iat": now,
            "exp": now + 300,
            "nonce": uuid.uuid4().hex,
            c.DEPLOYMENT_ID: self.settings.deployment_id,
            c.MESSAGE_TYPE: c.DEEP_LINKING_RESPONSE,
            c.VERSION: "1.3.0",
            c.CONTENT_ITEMS: [QUIZ_ITEM],
            c.DEEP_LINKING_DATA: data,
        }
        for name, value in overrides.items():
            if value is DROP:
                claims.pop(name)
            else:
                claims[name] = value
        return claims

    async def send(
        self, claims: dict[str, Any], *, key: Any = TOOL_KEY, **header: Any
    ) -> httpx.Response:
        headers = {"kid": key.kid, **header}
        token = jwt.encode(claims, key.private_key, algorithm="RS256", headers=headers)
        return await self.post({"JWT": token})

    async def post(self, form: dict[str, str]) -> httpx.Response:
        return await self.http.post(self.settings.deep_linking_return_url, data=form)

    async def home(self) -> str:
        response = await self.http.get("/")
        assert response.status_code == 200
        return response.text


QUIZ_ITEM: dict[str, Any] = {
    "type": "ltiResourceLink",
    "title": "Fractions",
    "url": TOOL + "/activity/7",
    "custom": {"activity": "fractions-7"},
    "window": {"targetName": "quiz"},
    "lineItem": {
        "scoreMaximum": 7,
        "label": "Fractions quiz",
        "tag": "quiz",
        "resourceId": "fractions-7",
    },
    "available": {"startDateTime": "2026-03-01T08:00:00Z"},
}


@pytest.fixture
async def dev() -> AsyncIterator[Dev]:
    platform = Dev(Clock())
    yield platform
    await platform.http.aclose()
    await platform.jwks.aclose()


# -- The request ----------------------------------------------------------------


async def test_home_offers_deep_linking_to_instructors_after_the_launch_links(
    dev: Dev,
) -> None:
    links = Parsed(await dev.home()).links
    deep = [
        href for href in links if f"resource_link_id={DEEP_LINKING_LINK_ID}" in href
    ]

    assert len(deep) == 1 and "user_id=instructor-1" in deep[0]
    first_instructor_link = next(h for h in links if "user_id=instructor-1" in h)
    assert "resource_link_id=rl-1" in first_instructor_link
    assert "Add content (deep linking)" in await dev.home()


async def test_deep_linking_request_claims(dev: Dev) -> None:
    claims = await dev.id_token_claims("instructor-1")

    assert claims[c.MESSAGE_TYPE] == c.DEEP_LINKING_REQUEST
    assert c.RESOURCE_LINK not in claims
    assert claims[c.TARGET_LINK_URI] == TOOL + "/"
    assert claims[c.ROLES] == [c.MEMBERSHIP_ROLE + "Instructor"]
    assert "lineitem" not in claims[c.AGS_ENDPOINT]
    assert claims[c.AGS_ENDPOINT]["lineitems"] == dev.settings.lineitems_url
    settings = claims[c.DEEP_LINKING_SETTINGS]
    assert settings["deep_link_return_url"] == (
        PLATFORM + "/deep-linking/return?context_id=course-1"
    )
    assert settings["accept_types"] == ["ltiResourceLink", "link", "html"]
    assert settings["accept_presentation_document_targets"] == ["iframe", "window"]
    assert settings["accept_multiple"] is True
    assert settings["accept_lineitem"] is True
    assert isinstance(settings["data"], str) and settings["data"]


async def test_each_request_carries_its_own_data(dev: Dev) -> None:
    assert await dev.data() != await dev.data()


# -- Placing what the tool sent -----------------------------------------------


async def test_resource_link_with_line_item_is_placed_and_launches(dev: Dev) -> None:
    response = await dev.send(dev.response_claims(await dev.data()))

    assert response.status_code == 200, response.text
    assert "1 item(s) placed" in response.text and "Fractions" in response.text
    [link] = dev.state.placed_links
    assert link == DevResourceLink(
        "dl-link-1",
        "Fractions",
        "dl-1",
        "Fractions quiz",
        7.0,
        custom=(("activity", "fractions-7"),),
        url=TOOL + "/activity/7",
    )
    home = Parsed(await dev.home()).links
    assert sum("resource_link_id=dl-link-1" in h for h in home) == 3
    gradebook = (await dev.http.get("/gradebook")).text
    assert "Fractions quiz (max 7)" in gradebook

    launch = await dev.id_token_claims("learner-1", "dl-link-1")
    assert launch[c.MESSAGE_TYPE] == c.RESOURCE_LINK_REQUEST
    assert launch[c.RESOURCE_LINK]["id"] == "dl-link-1"
    assert launch[c.CUSTOM] == {"activity": "fractions-7"}
    assert launch[c.AGS_ENDPOINT]["lineitem"] == dev.settings.line_item_url("dl-1")
    course = course_settings(dev.settings, dev.state)
    assert course.find_line_item("dl-1") == link
    record = dev.state.line_items["dl-1"]
    assert (record.resource_id, record.tag, record.resource_link_id) == (
        "fractions-7",
        "quiz",
        "dl-link-1",
    )


async def test_link_html_and_ungraded_link_are_placed_and_escaped(dev: Dev) -> None:
    items = [
        {"type": "link", "url": "https://example.org/read", "title": HOSTILE},
        {"type": "html", "html": HOSTILE},
        {"type": "ltiResourceLink", "title": "Practice"},
    ]

    response = await dev.send(
        dev.response_claims(await dev.data(), **{c.CONTENT_ITEMS: items})
    )

    assert response.status_code == 200, response.text
    assert HOSTILE not in response.text
    home = await dev.home()
    assert HOSTILE not in home
    assert "&lt;script&gt;" in home and "https://example.org/read" in home
    [practice] = dev.state.placed_links
    assert practice.graded is False
    assert "Practice" not in (await dev.http.get("/gradebook")).text
    launch = await dev.id_token_claims("learner-1", practice.id)
    assert "lineitem" not in launch[c.AGS_ENDPOINT]
    assert course_settings(dev.settings, dev.state).find_line_item("dl-1") is None


async def test_empty_response_with_messages_places_nothing(dev: Dev) -> None:
    claims = dev.response_claims(
        await dev.data(),
        **{
            c.CONTENT_ITEMS: [],
            c.DEEP_LINKING_MSG: "Nothing picked",
            c.DEEP_LINKING_ERRORMSG: HOSTILE,
        },
    )

    response = await dev.send(claims)

    assert response.status_code == 200
    assert "0 item(s) placed" in response.text
    assert "Nothing picked" in response.text
    assert HOSTILE not in response.text and "&lt;script&gt;" in response.text
    assert dev.state.placed_links == [] and dev.state.placed_content == []
    assert dev.state.stats()["deep_linking_responses"] == 1


# -- Strict checks --------------------------------------------------------------

OTHER_ITEM = {"type": "ltiResourceLink", "url": "https://elsewhere.example/x"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"iss": "someone-else"}, "iss must be the client_id"),
        ({"aud": [PLATFORM]}, "aud must be the single string"),
        ({"aud": "https://other.example"}, "aud must be"),
        ({"azp": "someone-else"}, "azp"),
        ({"exp": -1}, "expired"),
        ({"iat": "now"}, "iat must be a number"),
        ({"nonce": DROP}, "nonce is missing"),
        ({c.DEPLOYMENT_ID: "other"}, "deployment_id"),
        ({c.MESSAGE_TYPE: c.DEEP_LINKING_REQUEST}, "message_type"),
        ({c.VERSION: "1.1"}, "version"),
        ({c.DEEP_LINKING_DATA: DROP}, "echo the request's data"),
        ({c.DEEP_LINKING_MSG: 5}, "msg must be a string"),
        ({c.CONTENT_ITEMS: {"type": "link"}}, "array of objects"),
        ({c.CONTENT_ITEMS: [{"type": "image", "url": TOOL}]}, "type 'image'"),
        ({c.CONTENT_ITEMS: [{"type": "link", "url": TOOL, "embed": {}}]}, "embed"),
        ({c.CONTENT_ITEMS: [{"type": "link"}]}, "url must be"),
        ({c.CONTENT_ITEMS: [{"type": "html", "html": ""}]}, "html is required"),
        ({c.CONTENT_ITEMS: [OTHER_ITEM]}, "not on the tool's origin"),
        (
            {c.CONTENT_ITEMS: [{"type": "ltiResourceLink", "custom": {"n": 1}}]},
            "custom must be an object of string values",
        ),
        (
            {
                c.CONTENT_ITEMS: [
                    {"type": "ltiResourceLink", "lineItem": {"scoreMaximum": 0}}
                ]
            },
            "scoreMaximum",
        ),
        (
            {
                c.CONTENT_ITEMS: [
                    {
                        "type": "ltiResourceLink",
                        "available": {"endDateTime": "2026-03-01T08:00:00"},
                    }
                ]
            },
            "time zone",
        ),
    ],
)
async def test_response_breaking_a_rule_is_refused(
    dev: Dev, overrides: dict[str, Any], message: str
) -> None:
    data = await dev.data()
    if overrides.get("exp") == -1:
        overrides = {"exp": int(dev.clock()) - 1, "iat": int(dev.clock()) - 60}

    response = await dev.send(dev.response_claims(data, **overrides))

    assert response.status_code == 400, response.text
    assert message in response.text.replace("&#x27;", "'")
    assert dev.state.placed_links == [] and dev.state.placed_content == []
    assert dev.state.stats()["deep_linking_refused"] == 1


async def test_response_times_are_checked(dev: Dev) -> None:
    data = await dev.data()
    now = int(dev.clock())

    future = await dev.send(dev.response_claims(data, iat=now + 120, exp=now + 300))
    long = await dev.send(dev.response_claims(data, exp=now + 3600))

    assert future.status_code == 400 and "iat is in the future" in future.text
    assert long.status_code == 400 and "at most 600" in long.text


async def test_header_and_signature_are_checked(dev: Dev) -> None:
    data = await dev.data()

    no_kid = jwt.encode(
        dev.response_claims(data), TOOL_KEY.private_key, algorithm="RS256"
    )
    hs256 = jwt.encode(
        dev.response_claims(data),
        "a-shared-secret-that-is-long-enough-for-hs256",
        algorithm="HS256",
        headers={"kid": TOOL_KEY.kid},
    )
    answers = [
        await dev.post({"JWT": no_kid}),
        await dev.post({"JWT": hs256}),
        await dev.send(dev.response_claims(data), key=STRANGER_KEY),
        await dev.send(dev.response_claims(data), key=STRANGER_KEY, kid=TOOL_KEY.kid),
        await dev.post({"JWT": "not-a-jwt"}),
    ]

    assert [a.status_code for a in answers] == [401, 400, 401, 401, 400]
    assert "kid is missing" in answers[0].text
    assert "alg must be" in answers[1].text
    assert "not in the tool" in answers[2].text
    assert "signature does not verify" in answers[3].text
    assert dev.state.placed_links == []


async def test_a_response_is_single_use(dev: Dev) -> None:
    data = await dev.data()
    claims = dev.response_claims(data)
    token = jwt.encode(
        claims, TOOL_KEY.private_key, algorithm="RS256", headers={"kid": TOOL_KEY.kid}
    )

    first = await dev.post({"JWT": token})
    replay = await dev.post({"JWT": token})
    same_data = await dev.send(dev.response_claims(data))

    assert first.status_code == 200
    assert replay.status_code == 400 and "nonce was already used" in replay.text
    assert same_data.status_code == 400 and "already answered" in same_data.text
    assert len(dev.state.placed_links) == 1


async def test_altered_or_expired_data_is_refused(dev: Dev) -> None:
    data = await dev.data()

    altered = await dev.send(dev.response_claims(data[:-2] + "xx"))
    forged = jwt.encode(
        {"iss": PLATFORM, "aud": PLATFORM, "iat": 1, "exp": 2**40, "jti": "j"},
        STRANGER_KEY.private_key,
        algorithm="RS256",
    )
    foreign = await dev.send(dev.response_claims(forged))
    dev.clock.now += DATA_LIFETIME + 1
    expired = await dev.send(dev.response_claims(data))

    assert altered.status_code == 400 and "not the data" in altered.text
    assert foreign.status_code == 400 and "not the data" in foreign.text
    assert expired.status_code == 400 and "has expired" in expired.text


@pytest.mark.parametrize(
    "form",
    [{"other": "x"}, {"JWT": "x", "extra": "y"}, {"jwt": "x"}],
)
async def test_return_form_must_carry_exactly_one_jwt_field(
    dev: Dev, form: dict[str, str]
) -> None:
    response = await dev.post(form)

    assert response.status_code == 400
    assert "exactly one field, JWT" in response.text


async def test_return_endpoint_takes_only_a_form_post(dev: Dev) -> None:
    url = dev.settings.deep_linking_return_url

    as_json = await dev.http.post(url, json={"JWT": "x"})
    as_get = await dev.http.get(url)

    assert as_json.status_code == 400 and "Content-Type" in as_json.text
    assert as_get.status_code == 405


async def test_error_page_escapes_what_the_tool_sent(dev: Dev) -> None:
    response = await dev.send(dev.response_claims(await dev.data(), iss=HOSTILE))

    assert response.status_code == 400
    assert HOSTILE not in response.text


def test_deep_linking_placement_id_is_reserved() -> None:
    link = DevResourceLink(DEEP_LINKING_LINK_ID, "Clash", "9", "Clash")

    with pytest.raises(ConfigurationError, match="reserved"):
        PlatformSettings(resource_links=(link,))


def test_course_settings_are_the_settings_until_something_is_placed() -> None:
    settings = PlatformSettings(key=PLATFORM_KEY)
    state = PlatformState()

    assert course_settings(settings, state) is settings
    state.placed_links.append(DevResourceLink("dl-link-1", "X", "dl-1", "X"))
    assert [link.id for link in course_settings(settings, state).resource_links] == [
        "rl-1",
        "dl-link-1",
    ]

"""Deep Linking 2.0 on the tool side: settings, items, refusals, the response.

Launches go through the middleware with the FakePlatform of conftest; the
response JWT is verified with the key set the tool publishes at its JWKS
route (CASE-10), the way a platform would.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from typing import Any

import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lti_middleware import (
    HTML,
    ConfigurationError,
    DeepLinking,
    DeepLinkingError,
    DeepLinkingSettings,
    File,
    Image,
    LineItemSpec,
    Link,
    LTILaunch,
    LTIResourceLink,
)
from lti_middleware import claims as c
from lti_middleware.deep_linking import (
    Embed,
    Icon,
    IFrame,
    TimeWindow,
    Window,
    build_response_claims,
    check_items,
)
from lti_middleware.hooks import hookimpl
from lti_middleware.keys import StaticKeyProvider, ToolKey

from .conftest import (
    CLIENT_ID,
    DEPLOYMENT_ID,
    DROP,
    ISS,
    FakePlatform,
    ToolClient,
    cached_key,
    make_tool,
    registration,
)

RETURN_URL = "https://lms.example.edu/deep_linking/return?course=5&placement=a b"
TOOL_ITEM_URL = "https://tool.example.org/activity/7"


def dl_settings(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "deep_link_return_url": RETURN_URL,
        "accept_types": ["ltiResourceLink", "link", "file", "html", "image"],
        "accept_presentation_document_targets": ["iframe", "window", "embed"],
        "accept_media_types": "image/*,application/pdf",
        "accept_multiple": True,
        "accept_lineitem": True,
        "auto_create": False,
        "title": "Pick content",
        "text": "Anything you like",
        "data": "opaque-platform-data",
    }
    for name, member in overrides.items():
        if member is DROP:
            value.pop(name, None)
        else:
            value[name] = member
    return value


def dl_claims(settings: Any = None, **overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        c.MESSAGE_TYPE: c.DEEP_LINKING_REQUEST,
        c.RESOURCE_LINK: DROP,
        c.DEEP_LINKING_SETTINGS: dl_settings() if settings is None else settings,
        c.ROLES: [c.MEMBERSHIP_ROLE + "Instructor"],
    }
    claims.update(overrides)
    return claims


class Capture:
    """An app that keeps the launch each request carries."""

    def __init__(self) -> None:
        self.launches: list[LTILaunch | None] = []
        self.app = Starlette(routes=[Route("/app", self.page)])

    async def page(self, request: Request) -> JSONResponse:
        self.launches.append(request.state.lti)
        return JSONResponse({"ok": True})


@pytest.fixture
def capture() -> Capture:
    return Capture()


@pytest.fixture
async def dl_tool(
    platform: FakePlatform, capture: Capture
) -> AsyncIterator[ToolClient]:
    client = make_tool(platform, app=capture.app)
    yield client
    await client.http.aclose()
    await client.middleware.aclose()


async def launch_of(tool: ToolClient, capture: Capture, **claims: Any) -> LTILaunch:
    response = await tool.launch(**claims)
    page = await tool.follow(response)
    assert page.status_code == 200, page.text
    launch = capture.launches[-1]
    assert launch is not None
    return launch


async def deep_linking_of(
    tool: ToolClient, capture: Capture, settings: Any = None
) -> DeepLinking:
    launch = await launch_of(tool, capture, **dl_claims(settings))
    deep_linking = launch.deep_linking
    assert deep_linking is not None
    return deep_linking


async def verify(tool: ToolClient, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of ``token``, checked with the tool's published keys."""
    published = (await tool.http.get("/lti/jwks")).json()["keys"]
    header = jwt.get_unverified_header(token)
    jwk = next(k for k in published if k["kid"] == header["kid"])
    key = jwt.PyJWK(jwk).key
    # The test clock is in the past: exp is compared with it by the tests.
    claims = jwt.decode(
        token,
        key,
        algorithms=[jwk["alg"]],
        audience=ISS,
        options={"verify_exp": False, "verify_iat": False},
    )
    return header, claims


def refused(response: Any, reason: str) -> dict[str, Any]:
    assert response.status_code >= 400, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == reason, body
    return body


# -- Settings ---------------------------------------------------------------


def test_settings_read_every_member() -> None:
    settings = DeepLinkingSettings.from_claim(dl_settings())

    assert settings.deep_link_return_url == RETURN_URL
    assert settings.accept_types == ("ltiResourceLink", "link", "file", "html", "image")
    assert settings.accept_presentation_document_targets == (
        "iframe",
        "window",
        "embed",
    )
    assert settings.accept_media_types == ("image/*", "application/pdf")
    assert settings.accept_multiple is True
    assert settings.accept_lineitem is True
    assert settings.auto_create is False
    assert (settings.title, settings.text) == ("Pick content", "Anything you like")
    assert settings.data == "opaque-platform-data"
    assert settings.has_data is True


def test_settings_defaults_when_members_are_absent() -> None:
    settings = DeepLinkingSettings.from_claim({"deep_link_return_url": RETURN_URL})

    assert settings.accept_types == ()
    assert settings.accept_multiple is False
    assert settings.accept_lineitem is None
    assert settings.has_data is False
    assert settings.accepts_type("image") and settings.accepts_target("embed")


def test_settings_keep_a_null_or_structured_data_value() -> None:
    assert DeepLinkingSettings.from_claim(dl_settings(data=None)).has_data is True
    settings = DeepLinkingSettings.from_claim(dl_settings(data={"a": [1, "b"]}))
    assert settings.data == {"a": [1, "b"]}


def test_settings_read_string_booleans_and_media_type_arrays() -> None:
    settings = DeepLinkingSettings.from_claim(
        dl_settings(
            accept_multiple="false",
            accept_lineitem="TRUE",
            accept_media_types=["text/html"],
        )
    )

    assert settings.accept_multiple is False
    assert settings.accept_lineitem is True
    assert settings.accept_media_types == ("text/html",)


@pytest.mark.parametrize(
    ("claim", "named"),
    [
        ("not an object", "JSON object"),
        (dl_settings(deep_link_return_url=DROP), "deep_link_return_url"),
        (
            dl_settings(deep_link_return_url="javascript:alert(1)"),
            "deep_link_return_url",
        ),
        (dl_settings(deep_link_return_url="/relative/return"), "deep_link_return_url"),
        (dl_settings(accept_types="ltiResourceLink"), "accept_types"),
        (dl_settings(accept_multiple="yes"), "accept_multiple"),
        (dl_settings(accept_lineitem=1), "accept_lineitem"),
        (dl_settings(title=7), "title"),
    ],
)
def test_settings_refuse_malformed_members(claim: Any, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        DeepLinkingSettings.from_claim(claim)


# -- Launch validation ------------------------------------------------------


async def test_deep_linking_launch_is_accepted_without_a_resource_link(
    dl_tool: ToolClient, capture: Capture
) -> None:
    launch = await launch_of(dl_tool, capture, **dl_claims())

    assert launch.message_type == c.DEEP_LINKING_REQUEST
    assert launch.resource_link is None
    assert launch.deep_linking is not None
    assert launch.deep_linking.settings.deep_link_return_url == RETURN_URL
    assert launch.deep_linking.return_url == RETURN_URL


async def test_resource_link_launch_has_no_deep_linking(
    dl_tool: ToolClient, capture: Capture
) -> None:
    launch = await launch_of(dl_tool, capture)

    assert launch.deep_linking is None


@pytest.mark.parametrize("claim", [c.DEEP_LINKING_SETTINGS, c.ROLES])
async def test_deep_linking_launch_missing_a_required_claim_is_refused(
    dl_tool: ToolClient, claim: str
) -> None:
    response = await dl_tool.launch(**dl_claims(**{claim: DROP}))

    assert claim in refused(response, "claim_missing")["detail"]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ([RETURN_URL], "JSON object"),
        (dl_settings(deep_link_return_url=DROP), "deep_link_return_url"),
        (dl_settings(deep_link_return_url="javascript:alert(1)"), "http(s)"),
        (dl_settings(accept_presentation_document_targets="window"), "targets"),
        (dl_settings(auto_create="sometimes"), "auto_create"),
    ],
)
async def test_deep_linking_launch_with_malformed_settings_is_refused(
    dl_tool: ToolClient, settings: Any, named: str
) -> None:
    response = await dl_tool.launch(**dl_claims(settings))

    detail = refused(response, "claim_invalid")["detail"]
    assert c.DEEP_LINKING_SETTINGS in detail
    assert named in detail


async def test_deep_linking_launch_still_checks_target_link_uri(
    dl_tool: ToolClient,
) -> None:
    response = await dl_tool.launch(**dl_claims(**{c.TARGET_LINK_URI: DROP}))

    refused(response, "target_link_uri_mismatch")


async def test_resource_link_launch_ignores_deep_linking_settings(
    dl_tool: ToolClient, capture: Capture
) -> None:
    launch = await launch_of(dl_tool, capture, **{c.DEEP_LINKING_SETTINGS: "junk"})

    assert launch.resource_link is not None
    assert launch.deep_linking is None


async def test_resource_link_launch_still_needs_its_resource_link(
    dl_tool: ToolClient,
) -> None:
    response = await dl_tool.launch(**{c.RESOURCE_LINK: DROP})

    assert c.RESOURCE_LINK in refused(response, "claim_missing")["detail"]


# -- Content items ------------------------------------------------------------

START = datetime(2026, 3, 1, 9, 0, tzinfo=timezone(timedelta(hours=1)))


def test_lti_resource_link_serialises_every_member() -> None:
    item = LTIResourceLink(
        url=TOOL_ITEM_URL,
        title="Fractions",
        text="Seven questions",
        icon=Icon("https://tool.example.org/icon.png", 16, 16),
        thumbnail=Icon("https://tool.example.org/thumb.png"),
        window=Window(target_name="quiz", width=800, window_features="menubar=no"),
        iframe=IFrame(width=640, height=480),
        custom={"activity": "fractions-7", "level": "2"},
        line_item=LineItemSpec(
            score_maximum=7,
            label="Fractions quiz",
            resource_id="fractions-7",
            tag="quiz",
            grades_released=True,
        ),
        available=TimeWindow(start=START, end=START + timedelta(days=7)),
        submission=TimeWindow(end=START + timedelta(days=8)),
        extensions={"https://tool.example.org/ext": {"x": 1}},
    )

    assert item.to_json() == {
        "type": "ltiResourceLink",
        "url": TOOL_ITEM_URL,
        "title": "Fractions",
        "text": "Seven questions",
        "icon": {"url": "https://tool.example.org/icon.png", "width": 16, "height": 16},
        "thumbnail": {"url": "https://tool.example.org/thumb.png"},
        "window": {"targetName": "quiz", "width": 800, "windowFeatures": "menubar=no"},
        "iframe": {"width": 640, "height": 480},
        "custom": {"activity": "fractions-7", "level": "2"},
        "lineItem": {
            "scoreMaximum": 7,
            "label": "Fractions quiz",
            "resourceId": "fractions-7",
            "tag": "quiz",
            "gradesReleased": True,
        },
        "available": {
            "startDateTime": "2026-03-01T08:00:00Z",
            "endDateTime": "2026-03-08T08:00:00Z",
        },
        "submission": {"endDateTime": "2026-03-09T08:00:00Z"},
        "https://tool.example.org/ext": {"x": 1},
    }


def test_lti_resource_link_needs_no_member() -> None:
    assert LTIResourceLink().to_json() == {"type": "ltiResourceLink"}


def test_link_serialises_embed_window_and_iframe() -> None:
    item = Link(
        url="https://example.org/page",
        title="A page",
        embed=Embed("<iframe src='https://example.org/page'></iframe>"),
        window=Window(target_name="_blank"),
        iframe=IFrame(src="https://example.org/page", height=300),
    )

    assert item.to_json() == {
        "type": "link",
        "url": "https://example.org/page",
        "title": "A page",
        "embed": {"html": "<iframe src='https://example.org/page'></iframe>"},
        "window": {"targetName": "_blank"},
        "iframe": {"src": "https://example.org/page", "height": 300},
    }
    assert item.presentation_targets() == ("iframe", "window", "embed")


def test_file_html_and_image_serialise() -> None:
    expires = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    file = File(
        url="https://tool.example.org/f.pdf",
        title="Notes",
        media_type="application/pdf",
        expires_at=expires,
    )
    fragment = HTML(html="<p>Hi</p>", title="Greeting", text="A fragment")
    image = Image(url="https://tool.example.org/i.png", width=20, height=10)

    assert file.to_json() == {
        "type": "file",
        "url": "https://tool.example.org/f.pdf",
        "title": "Notes",
        "mediaType": "application/pdf",
        "expiresAt": "2026-01-02T03:04:05Z",
    }
    assert fragment.to_json() == {
        "type": "html",
        "html": "<p>Hi</p>",
        "title": "Greeting",
        "text": "A fragment",
    }
    assert image.to_json() == {
        "type": "image",
        "url": "https://tool.example.org/i.png",
        "width": 20,
        "height": 10,
    }


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: LTIResourceLink(url="ftp://tool.example.org/x"), "http"),
        (lambda: LTIResourceLink(custom={"n": 7}), "custom parameters"),
        (lambda: LineItemSpec(score_maximum=0), "score_maximum"),
        (lambda: LineItemSpec(score_maximum=True), "score_maximum"),
        (lambda: LineItemSpec(score_maximum=math.inf), "score_maximum"),
        (lambda: LineItemSpec(score_maximum=5, label="  "), "label"),
        (lambda: LineItemSpec(score_maximum=5, grades_released="y"), "grades"),
        (lambda: TimeWindow(start=datetime(2026, 1, 1)), "time zone"),
        (lambda: TimeWindow(start=START, end=START - timedelta(1)), "before"),
        (lambda: Link(url="https://e.org", iframe=IFrame()), "src"),
        (lambda: Link(url="mailto:someone@example.org"), "http"),
        (lambda: Image(url="https://e.org/i.png", width=0), "width"),
        (lambda: Icon("https://e.org/i.png", height=-1), "height"),
        (lambda: HTML(html=""), "html"),
        (lambda: Embed(""), "html"),
        (lambda: File(url="https://e.org/f", extensions={"vendor": 1}), "full URL"),
        (lambda: Link(url="https://e.org", title=5), "title"),
        (lambda: File(url="https://e.org/f", expires_at=datetime(2026, 1, 1)), "zone"),
    ],
)
def test_items_refuse_invalid_values_when_built(build: Any, message: str) -> None:
    with pytest.raises(DeepLinkingError, match=message):
        build()


# -- Local refusals against the platform's settings -------------------------


def settings_of(**overrides: Any) -> DeepLinkingSettings:
    return DeepLinkingSettings.from_claim(dl_settings(**overrides))


def test_item_of_a_type_the_platform_did_not_accept_is_refused() -> None:
    settings = settings_of(accept_types=["ltiResourceLink"])

    with pytest.raises(DeepLinkingError, match="'link'.*accepts only"):
        check_items([Link(url="https://e.org")], settings)


def test_several_items_refused_when_accept_multiple_is_false() -> None:
    settings = settings_of(accept_multiple=False)
    items = [LTIResourceLink(), LTIResourceLink()]

    check_items(items[:1], settings)
    with pytest.raises(DeepLinkingError, match="accept_multiple is false"):
        check_items(items, settings)


def test_several_items_refused_when_accept_multiple_is_absent() -> None:
    with pytest.raises(DeepLinkingError, match="accepts only one"):
        check_items([HTML(html="a"), HTML(html="b")], settings_of(accept_multiple=DROP))


@pytest.mark.parametrize(
    "item",
    [
        LTIResourceLink(window=Window()),
        Link(url="https://e.org", embed=Embed("<b>x</b>")),
    ],
)
def test_presentation_target_the_platform_did_not_accept_is_refused(
    item: Any,
) -> None:
    settings = settings_of(accept_presentation_document_targets=["iframe"])

    with pytest.raises(DeepLinkingError, match="presentation target"):
        check_items([item], settings)


def test_line_item_refused_only_when_accept_lineitem_is_false() -> None:
    item = LTIResourceLink(line_item=LineItemSpec(score_maximum=10))

    check_items([item], settings_of(accept_lineitem=DROP))
    with pytest.raises(DeepLinkingError, match="accept_lineitem is false"):
        check_items([item], settings_of(accept_lineitem=False))


def test_file_media_type_is_checked_against_accept_media_types() -> None:
    settings = settings_of()

    check_items([File(url="https://e.org/a.png", media_type="image/png")], settings)
    check_items([File(url="https://e.org/a", media_type="Application/PDF")], settings)
    with pytest.raises(DeepLinkingError, match="media type 'text/html'"):
        check_items([File(url="https://e.org/a", media_type="text/html")], settings)


def test_something_that_is_not_an_item_is_refused() -> None:
    with pytest.raises(DeepLinkingError, match="not a content item"):
        check_items([{"type": "link"}], settings_of())  # type: ignore[list-item]


def test_response_claims_refuse_unknown_or_non_text_messages() -> None:
    values: dict[str, Any] = {
        "registration": registration(),
        "deployment_id": DEPLOYMENT_ID,
        "settings": settings_of(),
        "items": [],
        "now": 1_700_000_000,
    }
    with pytest.raises(DeepLinkingError, match="unknown message 'note'"):
        build_response_claims(messages={"note": "x"}, **values)
    with pytest.raises(DeepLinkingError, match="msg must be a string"):
        build_response_claims(messages={"msg": 5}, **values)  # type: ignore[dict-item]


# -- The signed response --------------------------------------------------------


async def test_response_jwt_claims_and_header(
    dl_tool: ToolClient, capture: Capture, platform: FakePlatform
) -> None:
    deep_linking = await deep_linking_of(dl_tool, capture)
    item = LTIResourceLink(
        url=TOOL_ITEM_URL,
        title="Fractions",
        custom={"activity": "fractions-7"},
        line_item=LineItemSpec(score_maximum=7, label="Fractions"),
    )

    token = await deep_linking.response_jwt(
        [item], msg="Added", log="1 item", errormsg="none", errorlog="none"
    )
    header, claims = await verify(dl_tool, token)

    tool_key = cached_key("tool")
    assert header == {"alg": "RS256", "kid": tool_key.kid, "typ": "JWT"}
    assert claims["iss"] == CLIENT_ID
    assert claims["aud"] == ISS
    assert claims["iat"] == int(platform.clock())
    assert claims["exp"] - claims["iat"] == 300
    assert len(claims["nonce"]) >= 32
    assert claims[c.DEPLOYMENT_ID] == DEPLOYMENT_ID
    assert claims[c.MESSAGE_TYPE] == "LtiDeepLinkingResponse"
    assert claims[c.VERSION] == "1.3.0"
    assert claims[c.CONTENT_ITEMS] == [item.to_json()]
    assert claims[c.DEEP_LINKING_DATA] == "opaque-platform-data"
    assert claims[c.DEEP_LINKING_MSG] == "Added"
    assert claims[c.DEEP_LINKING_LOG] == "1 item"
    assert claims[c.DEEP_LINKING_ERRORMSG] == "none"
    assert claims[c.DEEP_LINKING_ERRORLOG] == "none"
    assert "azp" not in claims


async def test_every_response_has_a_fresh_nonce(
    dl_tool: ToolClient, capture: Capture
) -> None:
    deep_linking = await deep_linking_of(dl_tool, capture)

    first = (await verify(dl_tool, await deep_linking.response_jwt()))[1]
    second = (await verify(dl_tool, await deep_linking.response_jwt()))[1]

    assert first["nonce"] != second["nonce"]
    assert first[c.CONTENT_ITEMS] == []


async def test_structured_data_is_echoed_unchanged(
    dl_tool: ToolClient, capture: Capture
) -> None:
    data = {"course": 5, "nested": ["é", None, {"k": True}]}
    deep_linking = await deep_linking_of(dl_tool, capture, dl_settings(data=data))

    claims = (await verify(dl_tool, await deep_linking.response_jwt()))[1]

    assert claims[c.DEEP_LINKING_DATA] == data


async def test_no_data_claim_when_the_request_had_none(
    dl_tool: ToolClient, capture: Capture
) -> None:
    deep_linking = await deep_linking_of(dl_tool, capture, dl_settings(data=DROP))

    claims = (await verify(dl_tool, await deep_linking.response_jwt()))[1]

    assert c.DEEP_LINKING_DATA not in claims
    assert c.DEEP_LINKING_MSG not in claims


async def test_response_is_refused_before_signing(
    dl_tool: ToolClient, capture: Capture
) -> None:
    deep_linking = await deep_linking_of(
        dl_tool, capture, dl_settings(accept_types=["link"])
    )

    with pytest.raises(DeepLinkingError, match="accepts only"):
        await deep_linking.respond([LTIResourceLink()])


class KeysPlugin:
    """A key provider that signs with a key it does not publish, or rotates."""

    def __init__(self, signing: ToolKey, published: list[ToolKey]) -> None:
        self.signing = signing
        self.published = StaticKeyProvider(published)

    async def signing_key(self) -> ToolKey:
        return self.signing

    async def public_key_set(self) -> dict[str, list[dict[str, str]]]:
        return await self.published.public_key_set()

    @hookimpl(tryfirst=True)
    def lti_key_provider(self, config: Any) -> KeysPlugin:
        return self


async def test_signing_key_missing_from_the_key_set_is_refused(
    platform: FakePlatform, capture: Capture
) -> None:
    plugin = KeysPlugin(cached_key("stranger"), [cached_key("tool")])
    tool = make_tool(platform, app=capture.app, plugins=(plugin,))
    deep_linking = await deep_linking_of(tool, capture)

    with pytest.raises(ConfigurationError, match="not in the published key set"):
        await deep_linking.response_jwt()
    await tool.http.aclose()
    await tool.middleware.aclose()


async def test_during_rotation_the_newest_key_signs_and_both_are_published(
    platform: FakePlatform, capture: Capture
) -> None:
    new, old = cached_key("tool-next"), cached_key("tool")
    plugin = KeysPlugin(new, [new, old])
    tool = make_tool(platform, app=capture.app, plugins=(plugin,))
    deep_linking = await deep_linking_of(tool, capture)

    header, _ = await verify(tool, await deep_linking.response_jwt())
    published = (await tool.http.get("/lti/jwks")).json()["keys"]

    assert header["kid"] == new.kid
    assert {k["kid"] for k in published} == {new.kid, old.kid}
    assert all(set(k) == {"kty", "n", "e", "kid", "alg", "use"} for k in published)
    await tool.http.aclose()
    await tool.middleware.aclose()


# -- The auto-submitting form -------------------------------------------------


class Form(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.action = ""
        self.method = ""
        self.fields: dict[str, str] = {}
        self.buttons = 0
        self.script = ""
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action, self.method = values["action"], values["method"]
        elif tag == "input":
            self.fields[values["name"]] = values["value"]
        elif tag == "button":
            self.buttons += 1
        self._in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script += data

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


async def test_respond_posts_one_jwt_field_to_the_return_url(
    dl_tool: ToolClient, capture: Capture
) -> None:
    deep_linking = await deep_linking_of(dl_tool, capture)

    response = await deep_linking.respond([HTML(html="<b>bold</b>")], msg="Done")
    form = Form(response.body.decode())

    assert response.status_code == 200
    assert response.media_type == "text/html"
    assert form.method == "post"
    assert form.action == RETURN_URL
    assert list(form.fields) == ["JWT"]
    assert form.buttons == 1 and "<noscript>" in response.body.decode()
    claims = (await verify(dl_tool, form.fields["JWT"]))[1]
    assert claims[c.CONTENT_ITEMS] == [{"type": "html", "html": "<b>bold</b>"}]
    assert claims[c.DEEP_LINKING_MSG] == "Done"


async def test_respond_escapes_the_return_url_and_keeps_its_query(
    dl_tool: ToolClient, capture: Capture
) -> None:
    hostile = 'https://lms.example.edu/return?a=1&b="><script>alert(1)</script>'
    deep_linking = await deep_linking_of(
        dl_tool, capture, dl_settings(deep_link_return_url=hostile)
    )

    response = await deep_linking.respond()
    page = response.body.decode()

    assert "<script>alert(1)" not in page
    assert "?a=1&amp;b=&quot;&gt;&lt;script&gt;" in page
    assert Form(page).action == hostile


async def test_respond_sends_no_referrer_and_allows_only_its_own_script(
    dl_tool: ToolClient, capture: Capture
) -> None:
    deep_linking = await deep_linking_of(dl_tool, capture)

    response = await deep_linking.respond()
    script = Form(response.body.decode()).script
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()

    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
    csp = response.headers["content-security-policy"]
    assert f"script-src 'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp


async def test_deep_linking_of_an_unbound_launch_fails_clearly() -> None:
    launch = LTILaunch(
        launch_id="x",
        registration=registration(),
        claims={c.MESSAGE_TYPE: c.DEEP_LINKING_REQUEST, c.DEPLOYMENT_ID: "d"},
    )

    with pytest.raises(RuntimeError, match="not bound"):
        _ = launch.deep_linking


def test_data_is_echoed_as_sent_even_if_the_app_changes_its_copy() -> None:
    sent = {"csrf": "abc", "nested": {"n": 1}}
    settings = settings_of(data=sent)
    settings.data["csrf"] = "tampered"
    settings.data["nested"]["n"] = 2

    claims = build_response_claims(
        registration=registration(),
        deployment_id=DEPLOYMENT_ID,
        settings=settings,
        items=[],
        now=1_700_000_000,
    )

    assert claims[c.DEEP_LINKING_DATA] == {"csrf": "abc", "nested": {"n": 1}}

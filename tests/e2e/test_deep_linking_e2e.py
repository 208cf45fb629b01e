"""Deep linking over real HTTP: placed by an instructor, launched, graded.

The development platform and a small tool serve under uvicorn on 127.0.0.1
free ports; httpx plays the browser. The instructor adds content by deep
linking, the tool answers with an LTIResourceLink declaring a line item, the
platform places it; a learner then launches the new link, which carries its
custom parameters to the tool, and the tool's score lands in the new column.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from example_apps.demo import first_form, prepare_state
from lti_middleware import LineItemSpec, LTIMiddleware, LTIResourceLink, load_config
from lti_middleware.devplatform import PlatformSettings, create_platform
from lti_middleware.devplatform.settings import DEEP_LINKING_LINK_ID
from lti_middleware.devplatform.state import PlatformState

from .independent_platform import LocalServer
from .processes import ClosingClient

pytestmark = pytest.mark.e2e

CUSTOM = {"activity": "fractions-7", "level": "2"}


def tool_app(tool_base: str) -> Starlette:
    """A tool that answers deep linking with one graded activity."""

    async def home(request: Request) -> Response:
        launch = request.state.lti
        if launch is None:
            return JSONResponse({"launch": None})
        if launch.deep_linking is not None:
            activity = LTIResourceLink(
                url=tool_base + "/",
                title="Fractions",
                custom=CUSTOM,
                line_item=LineItemSpec(
                    score_maximum=7, label="Fractions quiz", resource_id="fractions-7"
                ),
            )
            return await launch.deep_linking.respond([activity], msg="Fractions added")
        return JSONResponse(
            {
                "launch": launch.launch_id,
                "user": launch.user.id,
                "resource_link": launch.resource_link.id,
                "custom": dict(launch.custom),
            }
        )

    async def grade(request: Request) -> Response:
        launch = request.state.lti
        await launch.ags.post_score(score_given=5, score_maximum=7)
        return JSONResponse({"posted": True})

    return Starlette(
        routes=[Route("/", home), Route("/grade", grade, methods=["POST"])]
    )


@dataclass
class Course:
    settings: PlatformSettings
    state: PlatformState
    browser: httpx.Client
    tool_base: str

    def link(self, user_id: str, link_id: str) -> str:
        """The home page's launch link for ``user_id`` and ``link_id``."""
        home = self.browser.get(self.settings.home_url)
        assert home.status_code == 200, home.text
        for href in _hrefs(home.text):
            query = parse_qs(urlsplit(href).query)
            if query.get("user_id") == [user_id] and query.get("resource_link_id") == [
                link_id
            ]:
                return href
        raise AssertionError(f"no link for {user_id} {link_id} on the home page")

    def launch(self, href: str) -> httpx.Response:
        """Follow a launch link through login, auth and launch; the tool's page."""
        start = self.browser.get(href)
        assert start.status_code == 302, start.text
        login = self.browser.get(start.headers["location"])
        assert login.status_code == 302, login.text
        # The state cookie is Secure; a browser on http://127.0.0.1 would send
        # it, httpx does not, so it is carried by hand.
        cookie = "; ".join(f"{k.name}={k.value}" for k in login.cookies.jar)
        auth = self.browser.get(login.headers["location"])
        assert auth.status_code == 200, auth.text
        action, fields = first_form(auth, "platform auth")
        launched = self.browser.post(action, data=fields, headers={"Cookie": cookie})
        assert launched.status_code == 303, launched.text

        return self.browser.get(launched.headers["location"])


class _Links(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.hrefs.append(href)


def _hrefs(html: str) -> list[str]:
    return _Links(html).hrefs


@pytest.fixture
def course(tmp_path: Path) -> Iterator[Course]:
    tool_server, platform_server = LocalServer(), LocalServer()
    try:
        settings = PlatformSettings.for_tool(
            tool_server.base_url, base_url=platform_server.base_url
        )
        config = load_config(prepare_state(tmp_path / "tool", settings))
        tool = LTIMiddleware(
            tool_app(tool_server.base_url),
            config=config,
            http=httpx.AsyncClient(trust_env=False, timeout=10.0),
        )
        platform_http = httpx.AsyncClient(trust_env=False, timeout=10.0)
        platform = create_platform(settings, http_client=platform_http)
        tool_server.start(tool)
        platform_server.start(ClosingClient(platform, platform_http))
        # trust_env=False: no proxy from the environment may see this traffic.
        with httpx.Client(trust_env=False, timeout=10.0) as browser:
            yield Course(
                settings, platform.state.platform, browser, tool_server.base_url
            )
    finally:
        platform_server.stop()
        tool_server.stop()


def test_instructor_places_a_graded_activity_that_a_learner_launches(
    course: Course,
) -> None:
    page = course.launch(course.link("instructor-1", DEEP_LINKING_LINK_ID))
    assert page.status_code == 200, page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    action, fields = first_form(page, "tool deep linking response")
    assert action == course.settings.deep_linking_return_url
    assert list(fields) == ["JWT"]

    placed = course.browser.post(action, data=fields)

    assert placed.status_code == 200, placed.text
    assert "1 item(s) placed" in placed.text and "Fractions added" in placed.text
    [link] = course.state.placed_links
    assert (link.line_item_label, link.score_maximum) == ("Fractions quiz", 7.0)

    activity = course.launch(course.link("learner-1", link.id))
    assert activity.status_code == 200, activity.text
    body = activity.json()
    assert body["resource_link"] == link.id
    assert body["custom"] == CUSTOM

    graded = course.browser.post(
        course.tool_base + "/grade", params={"lti_launch": body["launch"]}
    )
    assert graded.status_code == 200, graded.text
    score = course.state.scores[(link.line_item_id, "learner-1")]
    assert (score.score_given, score.score_maximum) == (5.0, 7.0)
    gradebook = course.browser.get(course.settings.gradebook_url).text
    assert "Fractions quiz (max 7)" in gradebook and "5 / 7" in gradebook


def test_a_deep_linking_response_cannot_be_replayed(course: Course) -> None:
    page = course.launch(course.link("instructor-1", DEEP_LINKING_LINK_ID))
    action, fields = first_form(page, "tool deep linking response")

    first = course.browser.post(action, data=fields)
    replay = course.browser.post(action, data=fields)

    assert first.status_code == 200, first.text
    assert replay.status_code == 400 and "already used" in replay.text
    assert len(course.state.placed_links) == 1

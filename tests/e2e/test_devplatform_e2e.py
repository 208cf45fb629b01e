"""The quiz app and the development platform, over real HTTP.

Both run under uvicorn on 127.0.0.1 free ports; the tests drive them with
httpx the way a browser would, and read what the platform recorded: its
state, its ``/stats``, and the score requests as they arrived. Besides the
learner's quiz and grade: the instructor's deep linking of the quiz into the
course, launches of the placed link, the results and the roster pages.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from example_apps.demo import (
    WalkThroughError,
    first_form,
    prepare_state,
    table,
    walk_through,
)
from example_apps.quiz_app import QUESTIONS, QUIZ_TEXT, QUIZ_TITLE, create_app
from lti_middleware import LTIMiddleware, load_config
from lti_middleware import claims as c
from lti_middleware.devplatform import (
    DEFAULT_USERS,
    LEARNER,
    DevResourceLink,
    DevUser,
    PlatformSettings,
    create_platform,
)
from lti_middleware.devplatform.settings import DEEP_LINKING_LINK_ID
from lti_middleware.devplatform.state import PlatformState, fingerprint

from .independent_platform import LocalServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
LINE_ITEM = "1"
HOSTILE_NAME = '<img src=x onerror="alert(1)">'
HOSTILE = DevUser("learner-x", HOSTILE_NAME, "x@example.edu", (LEARNER,))
QUIZ_LINK = DevResourceLink("rl-1", "Quiz 1", LINE_ITEM, "Quiz 1", 3.0)


@dataclass(frozen=True)
class ScoreRequest:
    """A request to a scores URL as the platform received it."""

    path: str
    query: str
    content_type: str
    bearer: str


class Recorder:
    """Wraps the platform app: records score requests as they arrive.

    It also closes the platform's HTTP client when the server shuts down,
    in the server's own event loop.
    """

    def __init__(self, app: ASGIApp, http: httpx.AsyncClient) -> None:
        self.app = app
        self.http = http
        self.scores: list[ScoreRequest] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/scores"):
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            scheme, _, token = headers.get("authorization", "").partition(" ")
            self.scores.append(
                ScoreRequest(
                    path=scope["path"],
                    query=scope["query_string"].decode(),
                    content_type=headers.get("content-type", ""),
                    bearer=token if scheme.lower() == "bearer" else "",
                )
            )
        if scope["type"] == "lifespan":
            await self.app(scope, self._closing(receive), send)
            return

        await self.app(scope, receive, send)

    def _closing(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.http.aclose()
            return message

        return wrapped


@dataclass
class Deployment:
    """The platform and the quiz tool, both serving."""

    settings: PlatformSettings
    state: PlatformState
    tool: LTIMiddleware
    recorder: Recorder
    tool_server: LocalServer
    platform_server: LocalServer
    tool_base: str

    def stats(self, browser: httpx.Client) -> dict[str, Any]:
        response = browser.get(self.settings.stats_url)
        assert response.status_code == 200
        result: dict[str, Any] = response.json()
        return result


@dataclass
class LaunchForm:
    """The platform's auto-submitting form and the tool's state cookie."""

    action: str
    fields: dict[str, str]
    cookie: str


@dataclass
class Quiz:
    """A quiz page reached by a launch."""

    page: httpx.Response
    launch_id: str
    action: str
    answers: dict[str, str] = field(default_factory=dict)


Start = Callable[..., Deployment]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Starts a deployment; ``platform_overrides`` change only the platform.

    The tool's configuration is written from the unchanged settings, so an
    override is a platform that no longer matches its registration.
    """
    servers: list[LocalServer] = []

    def run(**platform_overrides: Any) -> Deployment:
        tool_server, platform_server = LocalServer(), LocalServer()
        servers.extend([tool_server, platform_server])
        settings = PlatformSettings.for_tool(
            tool_server.base_url,
            base_url=platform_server.base_url,
            users=(*DEFAULT_USERS, HOSTILE),
            resource_links=(QUIZ_LINK,),
        )
        config_path = prepare_state(tmp_path / "state", settings)
        tool = create_app(
            load_config(config_path),
            http=httpx.AsyncClient(trust_env=False, timeout=10.0),
        )
        platform_settings = dataclasses.replace(settings, **platform_overrides)
        platform_http = httpx.AsyncClient(trust_env=False, timeout=10.0)
        platform = create_platform(platform_settings, http_client=platform_http)
        recorder = Recorder(platform, platform_http)

        tool_server.start(tool)
        platform_server.start(recorder)
        return Deployment(
            settings=platform_settings,
            state=platform.state.platform,
            tool=tool,
            recorder=recorder,
            tool_server=tool_server,
            platform_server=platform_server,
            tool_base=tool_server.base_url,
        )

    try:
        yield run
    finally:
        for server in reversed(servers):
            server.stop()


@pytest.fixture
def deployment(start: Start) -> Deployment:
    return start()


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    # trust_env=False: no proxy from the environment may see this traffic.
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        yield client


def log_in(
    browser: httpx.Client, d: Deployment, user_id: str, link_id: str = QUIZ_LINK.id
) -> LaunchForm:
    """Platform launch link, tool login, platform auth: up to the launch form."""
    query = urlencode({"user_id": user_id, "resource_link_id": link_id})
    start = browser.get(f"{d.settings.launch_url}?{query}")
    assert start.status_code == 302, start.text

    login = browser.get(start.headers["location"])
    assert login.status_code == 302, login.text
    # The state cookie is Secure: browsers send it to http://localhost, httpx
    # never sends it over http, so it is carried by hand.
    cookie = "; ".join(f"{k.name}={k.value}" for k in login.cookies.jar)
    assert cookie

    auth = browser.get(login.headers["location"])
    assert auth.status_code == 200, auth.text
    action, fields = first_form(auth, "platform auth")
    assert "id_token" in fields, fields

    return LaunchForm(action, fields, cookie)


def post_launch(
    browser: httpx.Client, form: LaunchForm, accept: str = "text/html"
) -> httpx.Response:
    headers = {"Cookie": form.cookie, "Accept": accept}
    return browser.post(form.action, data=form.fields, headers=headers)


def launch(
    browser: httpx.Client, d: Deployment, user_id: str, link_id: str = QUIZ_LINK.id
) -> Quiz:
    """A full launch of ``link_id`` as ``user_id``, ending on the tool's page.

    ``action`` is that of the page's first form: the quiz's, or the picker's.
    """
    response = post_launch(browser, log_in(browser, d, user_id, link_id))
    assert response.status_code == 303, response.text
    landing = response.headers["location"]
    assert landing.startswith(d.tool_base + "/?")

    page = browser.get(landing)
    assert page.status_code == 200, page.text
    action, _ = first_form(page, "tool page")
    launch_id = parse_qs(urlsplit(landing).query)["lti_launch"][0]

    return Quiz(page, launch_id, action)


def answers(correct: int) -> dict[str, str]:
    """Answers with the first ``correct`` questions right and the rest wrong."""
    chosen = {}
    for index, question in enumerate(QUESTIONS):
        wrong = next(choice for choice in question.choices if choice != question.answer)
        chosen[question.name] = question.answer if index < correct else wrong
    return chosen


def test_learner_launch_and_grade_reach_the_platform(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment

    quiz = launch(browser, d, "learner-1")
    result = browser.post(quiz.action, data=answers(2))

    assert "Ben Learner</strong> (learner)" in quiz.page.text
    assert "Development Course" in quiz.page.text
    assert "Quiz 1" in quiz.page.text
    assert quiz.page.text.count('type="radio"') == 9
    assert "You are an instructor" not in quiz.page.text
    assert quiz.action == f"{d.tool_base}/submit?lti_launch={quiz.launch_id}"
    assert quiz.page.headers["referrer-policy"] == "no-referrer"
    assert result.status_code == 200, result.text
    assert "You scored <strong>2/3</strong>" in result.text

    score = d.state.scores[(LINE_ITEM, "learner-1")]
    assert (score.score_given, score.score_maximum) == (2.0, 3.0)
    assert score.activity_progress == "Completed"
    assert score.grading_progress == "FullyGraded"
    assert score.comment == "2/3 answers correct"

    (request,) = d.recorder.scores
    scores_url = urlsplit(d.settings.scores_url(LINE_ITEM))
    assert (request.path, request.query) == (scores_url.path, "type_id=1")
    assert request.content_type == c.MEDIA_TYPE_SCORE
    assert fingerprint(request.bearer) not in d.state.id_tokens
    token = d.state.access_tokens[fingerprint(request.bearer)]
    assert c.SCOPE_SCORE in token.scopes

    stats = d.stats(browser)
    assert stats["scores_received"] == 1
    assert stats["scores_refused"] == 0
    assert stats["tokens_issued"] == 1


def test_instructor_launch_shows_instructor_view(
    deployment: Deployment, browser: httpx.Client
) -> None:
    quiz = launch(browser, deployment, "instructor-1")

    assert "Ada Instructor</strong> (instructor)" in quiz.page.text
    assert "You are an instructor:</strong> grades go to learners" in quiz.page.text
    assert quiz.action.endswith(f"/submit?lti_launch={quiz.launch_id}")


def test_page_escapes_names_from_the_platform(
    deployment: Deployment, browser: httpx.Client
) -> None:
    quiz = launch(browser, deployment, HOSTILE.id)

    assert HOSTILE_NAME not in quiz.page.text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in quiz.page.text


def test_tool_without_launch_points_to_the_course(
    deployment: Deployment, browser: httpx.Client
) -> None:
    base = deployment.tool_base

    home = browser.get(base + "/")
    submit = browser.post(base + "/submit", data=answers(3))
    unknown = browser.post(
        base + "/submit?lti_launch=forged",
        data=answers(3),
        headers={"Accept": "application/json"},
    )

    assert home.status_code == 200
    assert "Open this tool from your course" in home.text
    assert "<form" not in home.text
    assert submit.status_code == 401
    assert "Open this tool from your course" in submit.text
    assert unknown.status_code == 401
    assert unknown.json()["error"] == "launch_not_found"
    assert deployment.recorder.scores == []


def test_replayed_launch_is_refused(
    deployment: Deployment, browser: httpx.Client
) -> None:
    form = log_in(browser, deployment, "learner-1")
    assert post_launch(browser, form).status_code == 303

    replay = post_launch(browser, form, accept="application/json")

    assert replay.status_code == 400
    assert "location" not in replay.headers
    assert replay.json()["error"] == "state_already_used"


def test_ten_launches_fetch_key_set_once_and_one_token(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment

    for round_ in range(10):
        user_id = ("learner-1", "learner-2")[round_ % 2]
        quiz = launch(browser, d, user_id)
        result = browser.post(quiz.action, data=answers(round_ % 4))
        assert result.status_code == 200, result.text

    stats = d.stats(browser)
    assert stats["id_tokens_issued"] == 10
    assert stats["scores_received"] == 10
    assert stats["scores_refused"] == stats["scores_ignored"] == 0
    assert d.tool.key_sets.fetch_count == 1
    assert stats["token_requests"] == 1
    assert stats["tool_jwks_fetches"] == 1
    assert len({request.bearer for request in d.recorder.scores}) == 1


def test_two_tabs_grade_their_own_users(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    first = launch(browser, d, "learner-1")
    second = launch(browser, d, "learner-2")
    assert first.launch_id != second.launch_id

    second_result = browser.post(second.action, data=answers(1))
    first_result = browser.post(first.action, data=answers(3))

    assert "<strong>1/3</strong>" in second_result.text
    assert "<strong>3/3</strong>" in first_result.text
    assert d.state.scores[(LINE_ITEM, "learner-1")].score_given == 3.0
    assert d.state.scores[(LINE_ITEM, "learner-2")].score_given == 1.0
    assert d.state.scores_by_user == {"learner-1": 1, "learner-2": 1}


def test_platform_refusing_the_token_request_is_a_clear_page(
    start: Start, browser: httpx.Client
) -> None:
    # The platform now wants another assertion audience than the tool sends.
    d = start(token_audience="http://127.0.0.1/another-audience")
    quiz = launch(browser, d, "learner-1")

    result = browser.post(quiz.action, data=answers(3))

    assert result.status_code == 502
    assert result.headers["content-type"].startswith("text/html")
    assert "the grade was not recorded" in result.text
    assert "What to do:</strong> The platform refused the tool" in result.text
    assert "invalid_client" in result.text
    stats = d.stats(browser)
    assert stats["token_request_log"] == [
        {"scopes": [c.SCOPE_SCORE], "success": False, "error": "invalid_client"}
    ]
    assert stats["scores_received"] == 0


def test_launch_without_the_score_scope_fails_before_any_request(
    start: Start, browser: httpx.Client
) -> None:
    d = start(ags_scopes=(c.SCOPE_LINEITEM_READONLY,))
    quiz = launch(browser, d, "learner-1")

    result = browser.post(quiz.action, data=answers(3))

    assert result.status_code == 403
    assert "the grade was not recorded" in result.text
    assert "enable grade passback" in result.text
    stats = d.stats(browser)
    assert stats["token_requests"] == 0
    assert stats["scores_received"] == 0


def test_unreachable_platform_is_a_clear_page(
    deployment: Deployment, browser: httpx.Client
) -> None:
    quiz = launch(browser, deployment, "learner-1")
    deployment.platform_server.stop()

    result = browser.post(quiz.action, data=answers(3))

    assert result.status_code == 502
    assert "the grade was not recorded" in result.text
    assert "could not reach the course&#x27;s grade service" in result.text


def place_quiz(browser: httpx.Client, d: Deployment) -> DevResourceLink:
    """As the instructor: the tool's picker, its answer, the platform's return."""
    picker = launch(browser, d, "instructor-1", DEEP_LINKING_LINK_ID)
    answer = browser.post(picker.action)
    assert answer.status_code == 200, answer.text
    action, fields = first_form(answer, "deep linking response")
    placed = browser.post(action, data=fields)
    assert placed.status_code == 200, placed.text

    link: DevResourceLink = d.state.placed_links[-1]
    return link


def roster_href(page: httpx.Response) -> str:
    """The instructor view's link to the roster page."""
    found = re.search(r'href="(/roster\?[^"]+)"', page.text)
    assert found is not None, page.text
    return unescape(found[1])


def token_scopes(d: Deployment, browser: httpx.Client) -> list[list[str]]:
    """The scopes of each token request the platform received, in order."""
    log = d.stats(browser)["token_request_log"]
    return [entry["scopes"] for entry in log]


def test_instructor_places_the_quiz_and_its_column_by_deep_linking(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    picker = launch(browser, d, "instructor-1", DEEP_LINKING_LINK_ID)
    assert picker.page.headers["referrer-policy"] == "no-referrer"
    assert "<h1>Add content</h1>" in picker.page.text
    assert f"<strong>{QUIZ_TITLE}</strong>" in picker.page.text
    assert 'type="radio"' not in picker.page.text
    assert picker.action == f"{d.tool_base}/deep-link?lti_launch={picker.launch_id}"

    answer = browser.post(picker.action)
    assert answer.status_code == 200, answer.text
    action, fields = first_form(answer, "deep linking response")
    assert action == d.settings.deep_linking_return_url
    assert list(fields) == ["JWT"]
    response = jwt.decode(fields["JWT"], options={"verify_signature": False})
    assert response[c.CONTENT_ITEMS] == [
        {
            "type": "ltiResourceLink",
            "title": QUIZ_TITLE,
            "text": QUIZ_TEXT,
            "custom": {"quiz": "1"},
            "lineItem": {
                "scoreMaximum": 3,
                "label": "Quiz",
                "resourceId": "quiz-1",
                "tag": "quiz",
            },
        }
    ]

    placed = browser.post(action, data=fields)

    assert placed.status_code == 200, placed.text
    assert "1 item(s) placed" in placed.text
    assert f"The tool says: {QUIZ_TITLE} added" in placed.text
    (link,) = d.state.placed_links
    assert (link.title, link.url, link.custom) == (QUIZ_TITLE, None, (("quiz", "1"),))
    column = d.state.line_items[link.line_item_id]
    assert (column.label, column.score_maximum) == ("Quiz", 3.0)
    assert (column.resource_id, column.tag) == ("quiz-1", "quiz")
    assert column.resource_link_id == link.id
    assert "<h2>Quiz (max 3)</h2>" in browser.get(d.settings.gradebook_url).text
    assert d.stats(browser)["deep_linking_responses"] == 1


def test_placed_quiz_launches_with_its_custom_parameters_and_grades_its_column(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    link = place_quiz(browser, d)

    quiz = launch(browser, d, "learner-1", link.id)
    result = browser.post(quiz.action, data=answers(3))

    assert f"link <em>{QUIZ_TITLE}</em>" in quiz.page.text
    assert "Custom parameters: <code>quiz=1</code>" in quiz.page.text
    assert quiz.page.text.count('type="radio"') == 9
    assert result.status_code == 200, result.text
    assert "You scored <strong>3/3</strong>" in result.text
    score = d.state.scores[(link.line_item_id, "learner-1")]
    assert (score.score_given, score.score_maximum) == (3.0, 3.0)
    assert (LINE_ITEM, "learner-1") not in d.state.scores
    (request,) = d.recorder.scores
    assert request.path == urlsplit(d.settings.scores_url(link.line_item_id)).path
    gradebook = browser.get(d.settings.gradebook_url)
    assert ["Ben Learner", "3 / 3"] in [
        row[:2] for row in table(gradebook, "Quiz (max 3)")
    ]


def test_page_escapes_custom_parameters_from_the_platform(
    start: Start, browser: httpx.Client
) -> None:
    hostile = dataclasses.replace(QUIZ_LINK, custom=(("note", HOSTILE_NAME),))
    d = start(resource_links=(hostile,))

    quiz = launch(browser, d, "learner-1")

    assert HOSTILE_NAME not in quiz.page.text
    assert "note=&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in quiz.page.text


def test_deep_link_route_needs_a_deep_linking_launch(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    quiz = launch(browser, d, "instructor-1")

    with_quiz_launch = browser.post(
        f"{d.tool_base}/deep-link?lti_launch={quiz.launch_id}"
    )
    without_launch = browser.post(f"{d.tool_base}/deep-link")

    for refused in (with_quiz_launch, without_launch):
        assert refused.status_code == 400
        assert "<em>Add content</em> page" in refused.text
        assert "JWT" not in refused.text
    assert d.state.placed_links == []


def test_instructor_view_lists_the_results_of_its_column(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    learner = launch(browser, d, "learner-1")
    assert browser.post(learner.action, data=answers(2)).status_code == 200

    view = launch(browser, d, "instructor-1")

    assert table(view.page, "Results") == [["learner-1", "2/3", "2/3 answers correct"]]
    assert token_scopes(d, browser) == [[c.SCOPE_SCORE], [c.SCOPE_RESULT_READONLY]]
    assert "2/3 answers correct" not in learner.page.text


def test_instructor_view_says_when_results_are_not_granted(
    start: Start, browser: httpx.Client
) -> None:
    d = start(ags_scopes=(c.SCOPE_SCORE,))

    view = launch(browser, d, "instructor-1")

    assert view.page.status_code == 200
    assert "The course does not let this tool read results." in view.page.text
    assert "<h2>Results</h2>" not in view.page.text
    assert d.stats(browser)["token_requests"] == 0


def test_instructor_view_shows_a_platform_refusing_results(
    start: Start, browser: httpx.Client
) -> None:
    d = start(token_audience="http://127.0.0.1/another-audience")

    view = launch(browser, d, "instructor-1")

    assert view.page.status_code == 200
    assert "The results could not be read:" in view.page.text
    assert "invalid_client" in view.page.text
    assert 'type="radio"' in view.page.text


def test_roster_page_lists_the_course_with_names_escaped(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    view = launch(browser, d, "instructor-1")

    roster = browser.get(d.tool_base + roster_href(view.page))

    assert roster.status_code == 200, roster.text
    assert roster.headers["referrer-policy"] == "no-referrer"
    assert "4 members in the course." in roster.text
    assert table(roster) == [
        ["Ada Instructor", "ada@example.edu", "Instructor", "Active"],
        ["Ben Learner", "ben@example.edu", "Learner", "Active"],
        ["Chloé Learner", "chloe@example.edu", "Learner", "Active"],
        [HOSTILE_NAME, "x@example.edu", "Learner", "Active"],
    ]
    assert HOSTILE_NAME not in roster.text
    assert f'href="/?lti_launch={view.launch_id}"' in roster.text
    assert token_scopes(d, browser)[-1] == [c.SCOPE_NRPS]


def test_roster_page_is_for_instructors(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    learner = launch(browser, d, "learner-1")

    refused = browser.get(f"{d.tool_base}/roster?lti_launch={learner.launch_id}")
    no_launch = browser.get(f"{d.tool_base}/roster")

    assert refused.status_code == 403
    assert "The roster is for instructors." in refused.text
    assert "/roster?" not in learner.page.text
    assert no_launch.status_code == 401
    assert "Open this tool from your course" in no_launch.text
    assert d.stats(browser)["token_requests"] == 0


def test_roster_page_says_when_the_roster_is_not_granted(
    start: Start, browser: httpx.Client
) -> None:
    d = start(nrps_enabled=False, ags_scopes=(c.SCOPE_SCORE,))
    view = launch(browser, d, "instructor-1")

    roster = browser.get(d.tool_base + roster_href(view.page))

    assert roster.status_code == 403
    assert "has not shared its roster with this tool" in roster.text
    assert "Names and Role Provisioning Services" in roster.text
    assert d.stats(browser)["token_requests"] == 0


def test_roster_page_shows_a_platform_refusal(
    start: Start, browser: httpx.Client
) -> None:
    d = start(token_audience="http://127.0.0.1/another-audience")
    view = launch(browser, d, "instructor-1")

    roster = browser.get(d.tool_base + roster_href(view.page))

    assert roster.status_code == 502
    assert "The roster could not be read:" in roster.text
    assert "invalid_client" in roster.text
    assert "Ada Instructor" not in roster.text


async def test_demo_walk_through_reports_each_step(start: Start) -> None:
    d = start()
    reported: list[str] = []

    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as browser:
        lines = await walk_through(browser, d.settings, d.tool, reported.append)

    assert lines == reported
    assert lines[4:] == [
        f"deep linking started as Ada Instructor; the tool offers {QUIZ_TITLE!r}",
        "quiz picked; the tool's signed JWT went back to the platform: 1 item placed",
        "platform placed link dl-link-1 with gradebook column 'Quiz (max 3)'",
        f"placed link launched as {HOSTILE_NAME}; custom parameters arrived: quiz=1",
        "score 3/3 posted; the new column shows 3/3",
        f"instructor view lists the new column's result: {HOSTILE.id} 3/3",
        "roster page lists 4 members: Ada Instructor, Ben Learner, Chloé Learner, "
        + HOSTILE_NAME,
    ]
    (link,) = d.state.placed_links
    assert d.state.scores[(link.line_item_id, HOSTILE.id)].score_given == 3.0


async def test_demo_walk_through_names_a_failed_roster_step(start: Start) -> None:
    d = start(nrps_enabled=False)
    reported: list[str] = []

    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as browser:
        with pytest.raises(WalkThroughError) as failure:
            await walk_through(browser, d.settings, d.tool, reported.append)

    assert str(failure.value).startswith("roster page: expected HTTP 200, got 403")
    assert (
        reported[-1]
        == f"instructor view lists the new column's result: {HOSTILE.id} 3/3"
    )


async def test_demo_walk_through_names_the_failed_step(start: Start) -> None:
    d = start(token_audience="http://127.0.0.1/another-audience")

    async with httpx.AsyncClient(trust_env=False, timeout=10.0) as browser:
        with pytest.raises(WalkThroughError) as failure:
            await walk_through(browser, d.settings, d.tool)

    message = str(failure.value)
    assert message.startswith("quiz submit: expected HTTP 200, got 502")
    assert "the grade was not recorded" in message


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_demo_once_walks_through_and_exits_0(tmp_path: Path) -> None:
    tool_port, platform_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "example_apps.demo",
        "--once",
        "--tool-port",
        str(tool_port),
        "--platform-port",
        str(platform_port),
        "--state-dir",
        str(tmp_path / "state"),
    ]

    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 0, done.stderr
    steps = done.stdout.split("Walk-through:\n", 1)[1].splitlines()
    assert steps == [
        "  launch ok (Ben Learner, learner)",
        "  score 2/3 posted; gradebook shows 2/3",
        "  token requests: 1 (1 access token issued)",
        "  key set fetches: the tool fetched the platform's 1, the platform fetched "
        "the tool's 1",
        f"  deep linking started as Ada Instructor; the tool offers {QUIZ_TITLE!r}",
        "  quiz picked; the tool's signed JWT went back to the platform: 1 item placed",
        "  platform placed link dl-link-1 with gradebook column 'Quiz (max 3)'",
        "  placed link launched as Chloé Learner; custom parameters arrived: quiz=1",
        "  score 3/3 posted; the new column shows 3/3",
        "  instructor view lists the new column's result: learner-2 3/3",
        "  roster page lists 3 members: Ada Instructor, Ben Learner, Chloé Learner",
    ]
    assert f"http://localhost:{platform_port}/" in done.stdout
    assert (tmp_path / "state" / "tool-key.pem").exists()


def test_demo_state_keeps_its_key_and_rewrites_config(tmp_path: Path) -> None:
    first = PlatformSettings.for_tool(
        "http://localhost:9000", base_url="http://localhost:9001"
    )
    second = PlatformSettings.for_tool(
        "http://localhost:9100", base_url="http://localhost:9101"
    )

    prepare_state(tmp_path, first)
    key = (tmp_path / "tool-key.pem").read_bytes()
    config = load_config(prepare_state(tmp_path, second))

    assert (tmp_path / "tool-key.pem").read_bytes() == key
    assert stat.S_IMODE(os.stat(tmp_path / "tool-key.pem").st_mode) == 0o600
    assert config.launch_url == "http://localhost:9100/lti/launch"
    (registration,) = config.registrations
    assert registration.issuer == "http://localhost:9101"
    assert registration.token_url == second.token_url
    assert config.private_key_files == (tmp_path / "tool-key.pem",)

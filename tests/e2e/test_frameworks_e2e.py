"""One launch-and-grade test, run against the quiz in every framework.

Each app serves on a free port of 127.0.0.1 next to the development
platform: the Starlette and FastAPI quizzes and the Django project's ASGI
application under uvicorn; the Flask quiz and the Django project's WSGI
application under ``wsgiref`` (threaded), both through
:class:`LTIWSGIMiddleware`. The test drives them with httpx the way a browser
would and reads the grade the platform recorded.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
import pytest

from example_apps import fastapi_app, flask_app, quiz_app
from example_apps.demo import first_form
from lti_middleware import ToolConfig, load_config
from lti_middleware.wsgi import LTIWSGIMiddleware

from .independent_platform import LOOPBACK, LocalServer
from .lti_steps import (
    JSON,
    QUIZ_LINK,
    Platform,
    answers,
    error_of,
    log_in,
    post_launch,
    write_tool_config,
)

pytestmark = pytest.mark.e2e

SERVER_STOP_TIMEOUT = 10.0
#: Submissions sent at once, from as many threads.
CONCURRENT = 8


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output free of access logs."""


class WSGIThreadServer:
    """Serves a WSGI app with wsgiref on 127.0.0.1, in a background thread.

    Bound to a free port from construction, so the platform can be told the
    tool's URL before the app exists.
    """

    def __init__(self) -> None:
        self._server = make_server(
            LOOPBACK,
            0,
            _unset_app,
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        self.base_url = f"http://{LOOPBACK}:{self._server.server_port}"
        self._thread: threading.Thread | None = None

    def start(self, app: Any) -> None:
        """Serve ``app`` until :meth:`stop`."""
        self._server.set_app(app)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="wsgiref", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(SERVER_STOP_TIMEOUT)
        self._server.server_close()


def _unset_app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"not started"]


@dataclass
class Tool:
    """A quiz app serving next to the platform."""

    base_url: str
    platform: Platform


Starter = Callable[[Path], tuple[Tool, Callable[[], None]]]


def _asgi(create: Callable[..., Any]) -> Starter:
    def start(directory: Path) -> tuple[Tool, Callable[[], None]]:
        server = LocalServer()
        platform = Platform(server.base_url)
        config = load_config(write_tool_config(directory, platform.settings))
        http = httpx.AsyncClient(trust_env=False, timeout=10.0)
        try:
            server.start(create(config, http=http))
        except BaseException:
            platform.stop()
            raise

        def stop() -> None:
            server.stop()
            platform.stop()

        return Tool(server.base_url, platform), stop

    return start


def _flask(directory: Path) -> tuple[Tool, Callable[[], None]]:
    server = WSGIThreadServer()
    platform = Platform(server.base_url)
    config = load_config(write_tool_config(directory, platform.settings))
    app = flask_app.create_app(
        config, http=httpx.AsyncClient(trust_env=False, timeout=10.0)
    )
    server.start(app)

    def stop() -> None:
        server.stop()
        middleware = app.extensions["lti_middleware"]
        assert isinstance(middleware, LTIWSGIMiddleware)
        middleware.close()
        platform.stop()

    return Tool(server.base_url, platform), stop


#: The Django example project's settings, for both Django starters.
DJANGO_SETTINGS = "example_apps.django_project.settings"


def _django_asgi(config: ToolConfig, http: httpx.AsyncClient) -> Any:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", DJANGO_SETTINGS)
    from lti_middleware.django import get_asgi_application

    return get_asgi_application(config=config, http=http)


def _django_wsgi(directory: Path) -> tuple[Tool, Callable[[], None]]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", DJANGO_SETTINGS)
    from lti_middleware.django import get_wsgi_application

    server = WSGIThreadServer()
    platform = Platform(server.base_url)
    try:
        config = load_config(write_tool_config(directory, platform.settings))
        app = get_wsgi_application(
            config=config, http=httpx.AsyncClient(trust_env=False, timeout=10.0)
        )
    except BaseException:
        server.stop()
        platform.stop()
        raise
    server.start(app)

    def stop() -> None:
        server.stop()
        # WSGI has no shutdown event: close the HTTP client and the loop here.
        app.close()
        platform.stop()

    return Tool(server.base_url, platform), stop


APPS: dict[str, Starter] = {
    "starlette": _asgi(quiz_app.create_app),
    "fastapi": _asgi(fastapi_app.create_app),
    "flask": _flask,
    "django-asgi": _asgi(_django_asgi),
    "django-wsgi": _django_wsgi,
}


@pytest.fixture(params=sorted(APPS))
def tool(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tool]:
    running, stop = APPS[request.param](tmp_path)
    try:
        yield running
    finally:
        stop()


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    # trust_env=False: no proxy from the environment may see this traffic.
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        yield client


def open_quiz(browser: httpx.Client, tool: Tool, user_id: str) -> str:
    """Launch as ``user_id`` from the platform; the quiz form's action."""
    form = log_in(browser, tool.platform.settings, user_id)
    launched = post_launch(browser, form, accept="text/html")
    assert launched.status_code == 303, launched.text
    landing = launched.headers["location"]
    assert landing.startswith(tool.base_url + "/?lti_launch="), landing

    page = browser.get(landing)
    assert page.status_code == 200, page.text
    assert page.text.count('type="radio"') == 3 * len(answers(0))
    action, _ = first_form(page, "quiz page")
    assert action.startswith(tool.base_url + "/submit?lti_launch="), action

    return action


def take_quiz(
    browser: httpx.Client, tool: Tool, user_id: str, correct: int
) -> httpx.Response:
    """Launch as ``user_id`` and submit the quiz with ``correct`` answers right."""
    return browser.post(open_quiz(browser, tool, user_id), data=answers(correct))


def test_learner_launch_and_grade_reach_the_platform(
    tool: Tool, browser: httpx.Client
) -> None:
    result = take_quiz(browser, tool, "learner-1", 2)

    assert result.status_code == 200, result.text
    assert "You scored <strong>2/3</strong>" in result.text
    score = tool.platform.state.scores[(QUIZ_LINK.line_item_id, "learner-1")]
    assert (score.score_given, score.score_maximum) == (2.0, 3.0)
    assert score.activity_progress == "Completed"
    assert score.grading_progress == "FullyGraded"
    assert score.comment == "2/3 answers correct"
    stats = tool.platform.stats(browser)
    assert (stats["scores_received"], stats["scores_refused"]) == (1, 0)


def test_two_learners_graded_with_one_access_token(
    tool: Tool, browser: httpx.Client
) -> None:
    first = take_quiz(browser, tool, "learner-1", 3)
    second = take_quiz(browser, tool, "learner-2", 1)

    assert "<strong>3/3</strong>" in first.text
    assert "<strong>1/3</strong>" in second.text
    scores = tool.platform.state.scores
    assert scores[(QUIZ_LINK.line_item_id, "learner-1")].score_given == 3.0
    assert scores[(QUIZ_LINK.line_item_id, "learner-2")].score_given == 1.0
    stats = tool.platform.stats(browser)
    assert (stats["scores_received"], stats["token_requests"]) == (2, 1)


def test_concurrent_submissions_are_all_graded_with_one_token(
    tool: Tool, browser: httpx.Client
) -> None:
    users = ["learner-1", "learner-2"] * (CONCURRENT // 2)
    actions = [open_quiz(browser, tool, user_id) for user_id in users]

    def submit(action: str) -> httpx.Response:
        with httpx.Client(trust_env=False, timeout=10.0) as client:
            return client.post(action, data=answers(3))

    with ThreadPoolExecutor(CONCURRENT) as pool:
        results = list(pool.map(submit, actions))

    assert [r.status_code for r in results] == [200] * CONCURRENT
    assert all("<strong>3/3</strong>" in r.text for r in results)
    stats = tool.platform.stats(browser)
    assert (stats["scores_received"], stats["token_requests"]) == (CONCURRENT, 1)


def test_requests_without_a_valid_launch_are_not_graded(
    tool: Tool, browser: httpx.Client
) -> None:
    home = browser.get(tool.base_url + "/")
    no_launch = browser.post(tool.base_url + "/submit", data=answers(3))
    forged = browser.post(
        tool.base_url + "/submit?lti_launch=forged",
        data=answers(3),
        headers={"Accept": JSON},
    )

    assert home.status_code == 200
    assert "Open this tool from your course" in home.text
    assert no_launch.status_code == 401
    assert forged.status_code == 401
    assert error_of(forged) == "launch_not_found"
    assert tool.platform.state.scores == {}

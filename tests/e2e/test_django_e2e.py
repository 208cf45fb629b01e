"""The Django example project and the development platform, over real HTTP.

The project is served under ASGI (uvicorn) and under WSGI (the standard
library's WSGI server, threaded), both on 127.0.0.1 free ports, next to the
development platform. The browser's steps are those of the Starlette quiz's
end-to-end test: launch as a learner, submit, and the grade is recorded at
the platform. Both the sync and the async submit views are driven.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import httpx
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_apps.django_project.settings")

from example_apps.demo import first_form  # noqa: E402
from lti_middleware import load_config  # noqa: E402
from lti_middleware.django import (  # noqa: E402
    get_asgi_application,
    get_wsgi_application,
)
from lti_middleware.wsgi import LTIWSGIMiddleware  # noqa: E402

from .independent_platform import LocalServer  # noqa: E402
from .lti_steps import (  # noqa: E402
    QUIZ_LINK,
    Platform,
    answers,
    launch_id_of,
    log_in,
    post_launch,
    write_tool_config,
)

pytestmark = pytest.mark.e2e

LOOPBACK = "127.0.0.1"
STOP_TIMEOUT = 10.0


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class WSGIServing:
    """The WSGI project on a free port of 127.0.0.1, in threads.

    The socket is bound at construction, so the platform can be told the
    tool's URLs before the project (which needs the platform's) is built.
    """

    def __init__(self) -> None:
        self.server = ThreadingWSGIServer((LOOPBACK, 0), QuietHandler)
        self.base_url = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        self.application: LTIWSGIMiddleware | None = None
        self._thread: threading.Thread | None = None

    def start(self, config_path: Path) -> None:
        """Build the project and serve it."""
        self.application = get_wsgi_application(
            config=load_config(config_path),
            http=httpx.AsyncClient(trust_env=False, timeout=10.0),
        )
        self.server.set_app(self.application)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, then close the middleware and its loop."""
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(STOP_TIMEOUT)
        self.server.server_close()
        if self.application is not None:
            self.application.close()


@dataclass
class Deployment:
    """The platform and the Django project, both serving."""

    platform: Platform
    tool_base: str


Start = Callable[[str], Deployment]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Starts the platform and the project under ``"asgi"`` or ``"wsgi"``."""
    stops: list[Callable[[], None]] = []

    def run(server: str) -> Deployment:
        if server == "asgi":
            asgi = LocalServer()
            stops.append(asgi.stop)
            tool_base = asgi.base_url
        else:
            wsgi = WSGIServing()
            stops.append(wsgi.stop)
            tool_base = wsgi.base_url
        platform = Platform(tool_base)
        stops.append(platform.stop)
        config_path = write_tool_config(tmp_path / server, platform.settings)

        if server == "asgi":
            asgi.start(
                get_asgi_application(
                    config=load_config(config_path),
                    http=httpx.AsyncClient(trust_env=False, timeout=10.0),
                )
            )
        else:
            wsgi.start(config_path)
        return Deployment(platform, tool_base)

    try:
        yield run
    finally:
        for stop in reversed(stops):
            stop()


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    # trust_env=False: no proxy from the environment may see this traffic.
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        yield client


@pytest.mark.parametrize("view", ["sync", "async"])
@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_learner_launch_and_grade_reach_the_platform(
    start: Start, browser: httpx.Client, server: str, view: str
) -> None:
    d = start(server)
    form = log_in(browser, d.platform.settings, "learner-1")

    launched = post_launch(browser, form, accept="text/html")
    launch_id = launch_id_of(launched)
    page = browser.get(launched.headers["location"])
    action, _ = first_form(page, "quiz page")
    if view == "async":
        action = action.replace("/submit?", "/submit-async?")
    result = browser.post(action, data=answers(2))

    assert launched.headers["location"].startswith(d.tool_base + "/?")
    assert page.status_code == 200, page.text
    assert "<strong>Ben Learner</strong> (learner)" in page.text
    assert action == f"{d.tool_base}/submit{'-async' * (view == 'async')}" + (
        f"?lti_launch={launch_id}"
    )
    assert page.headers["referrer-policy"] == "no-referrer"
    assert result.status_code == 200, result.text
    assert "You scored <strong>2/3</strong>" in result.text
    score = d.platform.state.scores[(QUIZ_LINK.line_item_id, "learner-1")]
    assert (score.score_given, score.score_maximum) == (2.0, 3.0)
    assert score.grading_progress == "FullyGraded"
    assert score.comment == "2/3 answers correct"
    stats = d.platform.stats(browser)
    assert stats["scores_received"] == 1
    assert stats["tokens_issued"] == 1


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_requests_without_a_valid_launch_are_refused(
    start: Start, browser: httpx.Client, server: str
) -> None:
    d = start(server)

    home = browser.get(d.tool_base + "/")
    bare = browser.post(d.tool_base + "/submit", data=answers(3))
    forged = browser.post(
        d.tool_base + "/submit?lti_launch=forged",
        data=answers(3),
        headers={"Accept": "application/json"},
    )

    assert home.status_code == 200
    assert "Open this tool from your course" in home.text
    assert bare.status_code == 401
    assert forged.status_code == 401
    assert forged.json()["error"] == "launch_not_found"
    assert d.platform.stats(browser)["scores_received"] == 0


@pytest.mark.parametrize("server", ["asgi", "wsgi"])
def test_replayed_launch_is_refused(
    start: Start, browser: httpx.Client, server: str
) -> None:
    d = start(server)
    form = log_in(browser, d.platform.settings, "learner-1")
    assert post_launch(browser, form).status_code == 303

    replay = post_launch(browser, form)

    assert replay.status_code == 400
    assert replay.json()["error"] == "state_already_used"

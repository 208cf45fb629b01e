"""The quiz app on a Redis that goes away, comes back, or stops answering.

Each test starts its own ``redis-server`` (with a password, on a free port,
saving nothing), the development platform and the quiz app, both serving in
this process. The app's Redis timeouts are short. The server is really
stopped, restarted on the same port, or paused with SIGSTOP: no mock.

What must hold: while Redis cannot be used, logins, launches and pages with a
launch id are answered 503 ``store_unavailable`` naming the Redis store and
its address but never its password, and no launch is accepted without its
state and nonce checked; once Redis answers again, the same app serves new
launches without a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from example_apps.quiz_app import create_app
from lti_middleware import load_config

from .independent_platform import LocalServer
from .lti_steps import (
    JSON,
    LaunchForm,
    Platform,
    error_of,
    launch_id_of,
    log_in,
    login_url,
    post_launch,
    write_tool_config,
)
from .processes import RedisServer

pytestmark = pytest.mark.e2e

SOCKET_TIMEOUT = 0.5
# A paused Redis costs a timeout and one retry; well under this bound.
ANSWER_BOUND = 5.0


@dataclass
class Deployment:
    """The platform, the quiz app and the Redis server it uses."""

    platform: Platform
    tool: LocalServer
    redis: RedisServer

    def launch(self, browser: httpx.Client, user_id: str) -> str:
        """A whole launch; returns its launch id once its page has shown."""
        launched = post_launch(
            browser, log_in(browser, self.platform.settings, user_id)
        )
        launch_id = launch_id_of(launched)
        page = browser.get(launched.headers["location"])
        assert page.status_code == 200, page.text
        assert "Launched by <strong>" in page.text
        return launch_id

    def login(self, browser: httpx.Client, user_id: str) -> httpx.Response:
        """The tool's login step, asking for JSON should it be refused."""
        url = login_url(browser, self.platform.settings, user_id)
        return browser.get(url, headers={"Accept": JSON})

    def page(self, browser: httpx.Client, launch_id: str) -> httpx.Response:
        """The quiz page for ``launch_id``, asking for JSON should it be refused."""
        return browser.get(
            f"{self.tool.base_url}/",
            params={"lti_launch": launch_id},
            headers={"Accept": JSON},
        )


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    redis_server = RedisServer(tmp_path)
    tool_server = LocalServer()
    platform: Platform | None = None
    try:
        redis_server.start()
        platform = Platform(tool_server.base_url)
        settings: dict[str, str | float] = {
            "url": redis_server.url,
            "prefix": "lti-faults:",
            "socket_timeout": SOCKET_TIMEOUT,
            "connect_timeout": SOCKET_TIMEOUT,
        }
        config = write_tool_config(
            tmp_path / "tool", platform.settings, {"redis": settings}
        )
        http = httpx.AsyncClient(trust_env=False, timeout=10.0)
        tool_server.start(create_app(load_config(config), http=http))

        yield Deployment(platform, tool_server, redis_server)
    finally:
        tool_server.stop()
        if platform is not None:
            platform.stop()
        redis_server.stop()


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    # trust_env=False: no proxy from the environment may see this traffic.
    with httpx.Client(trust_env=False, timeout=ANSWER_BOUND) as client:
        yield client


def assert_store_unavailable(response: httpx.Response, redis: RedisServer) -> None:
    """A 503 naming the Redis store, but not its address or its password.

    The address and Redis's own error text go to the tool's log only.
    """
    assert response.status_code == 503, response.text
    assert error_of(response) == "store_unavailable"
    detail = response.json()["detail"]
    assert "redis" in detail
    assert f"127.0.0.1:{redis.port}" not in response.text
    assert redis.password not in response.text
    assert "location" not in response.headers
    assert "set-cookie" not in response.headers


def test_stopped_redis_fails_closed_with_503_naming_the_store(
    deployment: Deployment, browser: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    d = deployment
    launch_id = d.launch(browser, "learner-1")
    pending: LaunchForm = log_in(browser, d.platform.settings, "learner-2")
    d.redis.stop()

    with caplog.at_level(logging.WARNING, logger="lti_middleware"):
        login = d.login(browser, "learner-1")
        launch = post_launch(browser, pending)
        page = d.page(browser, launch_id)

    assert_store_unavailable(login, d.redis)
    assert_store_unavailable(launch, d.redis)
    assert_store_unavailable(page, d.redis)
    assert "redis nonce store" in login.json()["detail"]
    assert "redis nonce store" in launch.json()["detail"]
    assert "redis launch store" in page.json()["detail"]
    assert caplog.text.count("store_unavailable") == 3
    assert f"redis nonce store at 127.0.0.1:{d.redis.port}" in caplog.text
    assert d.redis.password not in caplog.text


def test_restarted_redis_serves_new_launches_without_restarting_the_app(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    old_launch = d.launch(browser, "learner-1")
    pending = log_in(browser, d.platform.settings, "learner-2")
    d.redis.stop()
    assert_store_unavailable(d.login(browser, "learner-1"), d.redis)
    assert_store_unavailable(post_launch(browser, pending), d.redis)

    d.redis.start()
    new_launch = d.launch(browser, "learner-1")
    old_page = d.page(browser, old_launch)
    # The login made before the restart was lost with Redis's memory: the
    # launch refused while Redis was down is still not accepted.
    late = post_launch(browser, pending)

    assert new_launch != old_launch
    assert d.page(browser, new_launch).status_code == 200
    assert old_page.status_code == 401
    assert error_of(old_page) == "launch_not_found"
    assert late.status_code == 400
    assert error_of(late) == "state_unknown"


def test_paused_redis_answers_503_in_bounded_time_and_recovers(
    deployment: Deployment, browser: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    d = deployment
    launch_id = d.launch(browser, "learner-1")
    pending = log_in(browser, d.platform.settings, "learner-2")

    d.redis.pause()
    caplog.set_level(logging.ERROR, logger="lti_middleware")
    try:
        # The browser's timeout is the bound: a hang fails with ReadTimeout.
        login = d.login(browser, "learner-1")
        launch = post_launch(browser, pending)
        page = d.page(browser, launch_id)
    finally:
        d.redis.resume()

    assert_store_unavailable(login, d.redis)
    assert_store_unavailable(launch, d.redis)
    assert_store_unavailable(page, d.redis)
    assert "TimeoutError" in caplog.text
    assert d.page(browser, launch_id).status_code == 200
    assert d.launch(browser, "learner-2") != launch_id

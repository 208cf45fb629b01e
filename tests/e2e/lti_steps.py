"""The development platform in this process, and a browser's steps through it.

:class:`Platform` serves the development platform on a free port of
127.0.0.1; :func:`write_tool_config` writes the tool's TOML configuration for
it, with plugin tables; :func:`log_in` and :func:`post_launch` are what a
browser does between the platform and the tool, with the launch POST
optionally sent to another process of the tool than the one named in the form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from example_apps.demo import first_form, prepare_state
from example_apps.quiz_app import QUESTIONS
from lti_middleware.devplatform import (
    DevResourceLink,
    PlatformSettings,
    create_platform,
)
from lti_middleware.devplatform.state import PlatformState

from .independent_platform import LocalServer
from .processes import ClosingClient

QUIZ_LINK = DevResourceLink("rl-1", "Quiz 1", "1", "Quiz 1", float(len(QUESTIONS)))
JSON = "application/json"


class Platform:
    """The development platform serving in a thread, for the tool at ``tool_base``."""

    def __init__(self, tool_base: str) -> None:
        self.server = LocalServer()
        self.settings = PlatformSettings.for_tool(
            tool_base, base_url=self.server.base_url, resource_links=(QUIZ_LINK,)
        )
        http = httpx.AsyncClient(trust_env=False, timeout=10.0)
        app = create_platform(self.settings, http_client=http)
        self.state: PlatformState = app.state.platform
        self.server.start(ClosingClient(app, http))

    def stats(self, browser: httpx.Client) -> dict[str, Any]:
        """The platform's ``/stats`` counters."""
        response = browser.get(self.settings.stats_url)
        assert response.status_code == 200, response.text
        stats: dict[str, Any] = response.json()
        return stats

    def stop(self) -> None:
        """Stop serving; safe to call twice."""
        self.server.stop()


def write_tool_config(
    directory: Path,
    settings: PlatformSettings,
    plugins: Mapping[str, Mapping[str, str | float]] | None = None,
) -> Path:
    """The tool's TOML for ``settings``, with a ``[plugins.<name>]`` table each."""
    path = prepare_state(directory, settings)
    tables = []
    for name, table in (plugins or {}).items():
        # A JSON string or number is a valid TOML value.
        lines = [f"{key} = {json.dumps(value)}" for key, value in table.items()]
        tables.append(f"\n[plugins.{name}]\n" + "\n".join(lines) + "\n")
    with path.open("a", encoding="utf-8") as file:
        file.write("".join(tables))

    return path


@dataclass(frozen=True)
class LaunchForm:
    """The platform's auto-submitting form and the tool's state cookie."""

    action: str
    fields: dict[str, str]
    cookie: str


def login_url(browser: httpx.Client, settings: PlatformSettings, user_id: str) -> str:
    """The tool's login URL, with its parameters, as the platform's link gives it."""
    query = urlencode({"user_id": user_id, "resource_link_id": QUIZ_LINK.id})
    start = browser.get(f"{settings.launch_url}?{query}")
    assert start.status_code == 302, start.text

    location: str = start.headers["location"]
    assert location.startswith(settings.tool_login_url + "?"), location
    return location


def log_in(
    browser: httpx.Client, settings: PlatformSettings, user_id: str
) -> LaunchForm:
    """Platform launch link, tool login, platform auth: up to the launch form."""
    login = browser.get(login_url(browser, settings, user_id))
    assert login.status_code == 302, login.text
    # The state cookie is Secure: httpx keeps it from http URLs, a browser on
    # http://localhost would send it, so it is carried by hand.
    cookie = "; ".join(f"{k.name}={k.value}" for k in login.cookies.jar)
    assert cookie

    auth = browser.get(login.headers["location"])
    assert auth.status_code == 200, auth.text
    action, fields = first_form(auth, "platform auth")
    assert "id_token" in fields, fields

    return LaunchForm(action, fields, cookie)


def launch_request(
    form: LaunchForm, *, to: str | None = None, accept: str = JSON
) -> tuple[str, dict[str, str]]:
    """The URL and headers of the launch POST, sent to origin ``to`` if given.

    A load balancer would pass the request on unchanged, so the Host header
    stays the one of the form's action.
    """
    action = urlsplit(form.action)
    headers = {"Cookie": form.cookie, "Accept": accept, "Host": action.netloc}
    if to is None:
        return form.action, headers

    target = urlsplit(to)
    url = action._replace(scheme=target.scheme, netloc=target.netloc).geturl()
    return url, headers


def post_launch(
    browser: httpx.Client,
    form: LaunchForm,
    *,
    to: str | None = None,
    accept: str = JSON,
) -> httpx.Response:
    """POST the launch form, to origin ``to`` instead of the action's if given."""
    url, headers = launch_request(form, to=to, accept=accept)
    return browser.post(url, data=form.fields, headers=headers)


def launch_id_of(response: httpx.Response) -> str:
    """The launch id in a 303 answer to a launch."""
    assert response.status_code == 303, response.text
    location = response.headers["location"]
    launch_id: str = parse_qs(urlsplit(location).query)["lti_launch"][0]
    return launch_id


def answers(correct: int) -> dict[str, str]:
    """Quiz answers with the first ``correct`` questions right, the rest wrong."""
    chosen = {}
    for index, question in enumerate(QUESTIONS):
        wrong = next(choice for choice in question.choices if choice != question.answer)
        chosen[question.name] = question.answer if index < correct else wrong
    return chosen


def error_of(response: httpx.Response) -> str:
    """The reason code of a JSON refusal."""
    assert response.headers["content-type"].startswith(JSON), response.text
    reason: str = response.json()["error"]
    return reason

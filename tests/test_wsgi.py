"""The WSGI bridge and Flask support, through Werkzeug's and Flask's test clients.

The middleware runs on the bridge's own loop thread; platform calls go to
httpx.MockTransport, so nothing leaves the process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from flask import Flask, g, jsonify, request
from flask.testing import FlaskClient
from werkzeug.test import Client

from lti_middleware import TokenRequestError
from lti_middleware import claims as c
from lti_middleware.flask import current_launch, init_app, run_sync
from lti_middleware.wsgi import LTIWSGIMiddleware, launch_of
from lti_middleware.wsgi import run_sync as run_sync_in

from .conftest import (
    CLIENT_ID,
    DEPLOYMENT_ID,
    ISS,
    LINEITEM,
    TOKEN_URL,
    TOOL,
    TOOL_APP,
    FakePlatform,
    StoresPlugin,
    tool_config,
)

JSON = {"Accept": "application/json"}
Requests = list[httpx.Request]


def middleware_kwargs(platform: FakePlatform, seen: Requests) -> dict[str, Any]:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return platform.handle(request)

    return {
        "config": tool_config(),
        "plugins": (StoresPlugin(platform.clock),),
        "http": httpx.AsyncClient(transport=httpx.MockTransport(handle)),
        "clock": platform.clock,
    }


def launch(client: Client, platform: FakePlatform, **claims: Any) -> dict[str, str]:
    """Log in and launch through ``client``; the landing URL's query."""
    login = client.get(
        "/lti/login",
        base_url=TOOL,
        query_string={
            "iss": ISS,
            "login_hint": "u-1",
            "target_link_uri": TOOL_APP,
            "client_id": CLIENT_ID,
            "lti_deployment_id": DEPLOYMENT_ID,
        },
    )
    assert login.status_code == 302, login.text
    query = parse_qs(urlsplit(login.headers["location"]).query)
    cookie = login.headers["set-cookie"].split(";")[0]

    token = platform.sign(platform.claims(query["nonce"][0], **claims))
    launched = client.post(
        "/lti/launch",
        base_url=TOOL,
        data={"id_token": token, "state": query["state"][0]},
        headers={"Cookie": cookie, **JSON},
    )
    assert launched.status_code == 303, launched.text
    landing = urlsplit(launched.headers["location"])
    assert landing.path == "/app"

    return {"lti_launch": parse_qs(landing.query)["lti_launch"][0]}


def flask_app() -> Flask:
    app = Flask(__name__)
    app.config["TESTING"] = True

    @app.get("/app")
    def page() -> Any:
        same = g.lti is current_launch()
        if g.lti is None:
            return jsonify(user=None, same=same)
        return jsonify(user=g.lti.user.id, launch=g.lti.launch_id, same=same)

    @app.post("/grade")
    def grade() -> Any:
        given = float(request.form["given"])
        try:
            run_sync(g.lti.ags.post_score(score_given=given, score_maximum=10))
        except TokenRequestError as error:
            return jsonify(error=type(error).__name__, status=error.status), 502
        return jsonify(graded=given)

    return app


@pytest.fixture
def seen() -> Requests:
    return []


@pytest.fixture
def flask_tool(platform: FakePlatform, seen: Requests) -> Iterator[Flask]:
    app = flask_app()
    middleware = init_app(app, **middleware_kwargs(platform, seen))
    yield app
    middleware.close()


@pytest.fixture
def client(flask_tool: Flask) -> FlaskClient:
    return flask_tool.test_client(use_cookies=False)


def test_flask_view_reads_the_launch_from_g(
    client: FlaskClient, platform: FakePlatform
) -> None:
    query = launch(client, platform, sub="learner-9")

    page = client.get("/app", query_string=query)

    assert page.status_code == 200
    assert page.json == {
        "user": "learner-9",
        "launch": query["lti_launch"],
        "same": True,
    }


def test_flask_request_without_a_launch_gets_none(client: FlaskClient) -> None:
    page = client.get("/app")

    assert page.json == {"user": None, "same": True}


def test_unknown_launch_id_is_refused_before_the_view(client: FlaskClient) -> None:
    page = client.get("/app?lti_launch=forged", headers=JSON)

    assert page.status_code == 401
    assert page.json is not None
    assert page.json["error"] == "launch_not_found"
    assert "user" not in page.json


def test_launch_header_works_as_well_as_the_query(
    client: FlaskClient, platform: FakePlatform
) -> None:
    query = launch(client, platform)

    page = client.get("/app", headers={"X-LTI-Launch": query["lti_launch"]})

    assert page.json is not None
    assert page.json["launch"] == query["lti_launch"]


def test_run_sync_posts_a_score_from_a_sync_view(
    client: FlaskClient, platform: FakePlatform, seen: Requests
) -> None:
    platform.extra[TOKEN_URL] = httpx.Response(
        200, json={"access_token": "flask-token", "token_type": "bearer"}
    )
    platform.extra[LINEITEM + "/scores"] = httpx.Response(200)
    query = launch(client, platform, sub="learner-4")

    graded = client.post("/grade", query_string=query, data={"given": "7"})

    assert graded.status_code == 200, graded.text
    assert graded.json == {"graded": 7.0}
    (score,) = [r for r in seen if str(r.url) == LINEITEM + "/scores"]
    assert score.headers["authorization"] == "Bearer flask-token"
    assert score.headers["content-type"] == c.MEDIA_TYPE_SCORE
    body = json.loads(score.content)
    assert (body["userId"], body["scoreGiven"]) == ("learner-4", 7)


def test_run_sync_raises_what_the_call_raises(
    client: FlaskClient, platform: FakePlatform
) -> None:
    # No token endpoint answer configured: the mock answers 404.
    query = launch(client, platform)

    graded = client.post("/grade", query_string=query, data={"given": "1"})

    assert graded.status_code == 502
    assert graded.json == {"error": "TokenRequestError", "status": 404}


def test_middleware_routes_answer_through_the_bridge(client: FlaskClient) -> None:
    jwks = client.get("/lti/jwks")
    wrong = client.get("/lti/launch", headers=JSON)

    assert jwks.status_code == 200
    assert jwks.json is not None
    assert [key["kty"] for key in jwks.json["keys"]] == ["RSA"]
    assert "d" not in jwks.json["keys"][0]
    assert wrong.status_code == 405
    assert wrong.json is not None
    assert wrong.json["error"] == "method_not_allowed"


def test_run_sync_without_init_app_raises(platform: FakePlatform) -> None:
    app = flask_app()
    closed: list[bool] = []

    async def call() -> None:
        closed.append(True)

    with app.app_context(), pytest.raises(RuntimeError, match="init_app"):
        run_sync(call())
    assert closed == []


def plain_app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
    """A WSGI app with no framework: the launch's user id, or ``-``."""
    found = launch_of(environ)
    start("200 OK", [("Content-Type", "text/plain")])
    text = "-" if found is None else str(found.user.id)
    return [text.encode()]


def test_plain_wsgi_app_finds_the_launch_in_the_environ(
    platform: FakePlatform, seen: Requests
) -> None:
    middleware = LTIWSGIMiddleware(plain_app, **middleware_kwargs(platform, seen))
    client = Client(middleware)
    try:
        query = launch(client, platform, sub="learner-5")

        with_launch = client.get("/app", query_string=query).get_data(as_text=True)
        without = client.get("/app").get_data(as_text=True)
    finally:
        middleware.close()

    assert with_launch == "learner-5"
    assert without == "-"


def test_run_on_the_loop_thread_refuses_instead_of_deadlocking(
    platform: FakePlatform, seen: Requests
) -> None:
    middleware = LTIWSGIMiddleware(plain_app, **middleware_kwargs(platform, seen))

    async def nested() -> int:
        async def answer() -> int:
            return 42

        return middleware.run(answer())

    try:
        outside = middleware.run(asyncio.sleep(0, result=7))
        future = asyncio.run_coroutine_threadsafe(nested(), middleware.loop)
        with pytest.raises(RuntimeError, match="own loop"):
            future.result(timeout=10)
    finally:
        middleware.close()

    assert outside == 7


def test_run_sync_needs_a_request_through_the_middleware() -> None:
    async def call() -> None:
        raise AssertionError("must not run")

    with pytest.raises(RuntimeError, match="LTIWSGIMiddleware"):
        run_sync_in({}, call())


def test_close_stops_the_loop_and_is_idempotent(
    platform: FakePlatform, seen: Requests
) -> None:
    middleware = LTIWSGIMiddleware(plain_app, **middleware_kwargs(platform, seen))

    middleware.close()
    middleware.close()

    assert middleware.loop.is_closed()
    assert middleware.lti.http.is_closed

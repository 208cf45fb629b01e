"""Grade services over real HTTP: a tool's handlers manage the platform's columns.

The development platform and a small tool serve under uvicorn on free ports
of 127.0.0.1. A browser (httpx) launches the tool as an instructor; the
tool's handlers then call ``launch.ags`` and answer with what they got. A
thin wrapper in front of the platform records each service request as it
arrived and, when a test asks, answers one with a fault the way a
misbehaving platform would (a 5xx, a non-JSON page, a looping next link).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lti_middleware import LineItem, LTIError, LTIMiddleware, Result, load_config
from lti_middleware import claims as c
from lti_middleware.devplatform import PlatformSettings, create_platform
from lti_middleware.devplatform.state import PlatformState

from .independent_platform import LocalServer
from .lti_steps import QUIZ_LINK, launch_id_of, log_in, post_launch, write_tool_config
from .processes import ClosingClient

pytestmark = pytest.mark.e2e

ALL_SCOPES = (
    c.SCOPE_LINEITEM,
    c.SCOPE_LINEITEM_READONLY,
    c.SCOPE_RESULT_READONLY,
    c.SCOPE_SCORE,
)


@dataclass(frozen=True)
class Seen:
    """A service request as the platform received it."""

    method: str
    path: str
    query: str
    accept: str
    content_type: str


@dataclass(frozen=True)
class Fault:
    """An answer the wrapper sends instead of the platform's, on matching paths."""

    path_suffix: str
    status: int
    content_type: str
    body: bytes


@dataclass
class Wrapper:
    """Records AGS and token requests; answers with a fault, or loops, when set."""

    app: ASGIApp
    seen: list[Seen] = field(default_factory=list)
    fault: Fault | None = None
    loop: bool = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(("/ags/", "/oauth2/")):
            await self.app(scope, receive, send)
            return

        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        query = scope["query_string"].decode()
        self.seen.append(
            Seen(
                method=scope["method"],
                path=path,
                query=query,
                accept=headers.get("accept", ""),
                content_type=headers.get("content-type", ""),
            )
        )
        fault = self.fault
        if fault is not None and path.endswith(fault.path_suffix):
            start = {
                "type": "http.response.start",
                "status": fault.status,
                "headers": [(b"content-type", fault.content_type.encode())],
            }
            await send(start)
            await send({"type": "http.response.body", "body": fault.body})
            return
        if self.loop and "page=" in query:
            # CASE-17's loop: a later page names itself as the next.
            here = f"http://{headers['host']}{path}?{query}"
            await self.app(scope, receive, _next_link_to(here, send))
            return

        await self.app(scope, receive, send)

    def requests(self, method: str, path_suffix: str) -> list[Seen]:
        """The recorded requests with ``method`` to a path ending so."""
        return [
            s for s in self.seen if s.method == method and s.path.endswith(path_suffix)
        ]


def _next_link_to(url: str, send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            kept = [(k, v) for k, v in message["headers"] if k.lower() != b"link"]
            link = f'<{url}>; rel="next"'.encode()
            message = {**message, "headers": [*kept, (b"link", link)]}
        await send(message)

    return sending


# The tool: one handler per operation, answering JSON


def item_view(item: LineItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "label": item.label,
        "score_maximum": item.score_maximum,
        "resource_link_id": item.resource_link_id,
        "resource_id": item.resource_id,
        "tag": item.tag,
    }


def result_view(result: Result) -> dict[str, Any]:
    return {
        "user_id": result.user_id,
        "result_score": result.result_score,
        "result_maximum": result.result_maximum,
        "comment": result.comment,
        "score_of": result.score_of,
    }


async def _update(ags: Any, body: dict[str, Any]) -> Any:
    item = await ags.get_lineitem(body["url"])
    changed = dataclasses.replace(item, label=body["label"])
    return item_view(await ags.update_lineitem(changed))


async def _score(ags: Any, body: dict[str, Any]) -> Any:
    response = await ags.post_score(**body)
    return {"status": response.status_code}


async def _delete(ags: Any, body: dict[str, Any]) -> Any:
    await ags.delete_lineitem(body["url"])
    return {"deleted": body["url"]}


Operation = Callable[[Any, dict[str, Any]], Any]
OPERATIONS: dict[str, Operation] = {
    "create": lambda ags, body: ags.create_lineitem(**body),
    "list": lambda ags, body: ags.get_lineitems(**body),
    "get": lambda ags, body: ags.get_lineitem(body["url"]),
    "get_or_create": lambda ags, body: ags.get_or_create_lineitem(**body),
    "results": lambda ags, body: ags.get_results(**body),
    "update": _update,
    "score": _score,
    "delete": _delete,
}


def _view(value: Any) -> Any:
    if isinstance(value, list):
        return [_view(entry) for entry in value]
    if isinstance(value, LineItem):
        return item_view(value)
    if isinstance(value, Result):
        return result_view(value)
    return value


async def landing(request: Request) -> Response:
    launch = request.state.lti
    return JSONResponse({"launch": None if launch is None else launch.launch_id})


async def operate(request: Request) -> Response:
    """The tool's handler: one AGS operation, or the error it met, as JSON."""
    ags = request.state.lti.ags
    body = json.loads(await request.body())
    try:
        value = await OPERATIONS[request.path_params["operation"]](ags, body)
    except LTIError as error:
        failure = {
            "error": type(error).__name__,
            "message": str(error),
            "status": getattr(error, "status", None),
            "body": getattr(error, "body", None),
            "scope": getattr(error, "scope", None),
        }
        return JSONResponse(failure, status_code=502)

    return JSONResponse(_view(value))


@dataclass
class Deployment:
    """The platform (behind its wrapper) and the tool, both serving."""

    settings: PlatformSettings
    state: PlatformState
    wrapper: Wrapper
    tool_base: str
    browser: httpx.Client
    launch_id: str = ""

    def call(self, operation: str, **body: Any) -> httpx.Response:
        """Ask the tool's handler to run ``operation`` in the launch."""
        return self.browser.post(
            f"{self.tool_base}/ags/{operation}",
            params={"lti_launch": self.launch_id},
            json=body,
        )

    def ok(self, operation: str, **body: Any) -> Any:
        response = self.call(operation, **body)
        assert response.status_code == 200, response.text
        return response.json()

    def failed(self, operation: str, **body: Any) -> dict[str, Any]:
        response = self.call(operation, **body)
        assert response.status_code == 502, response.text
        failure: dict[str, Any] = response.json()
        return failure

    def token_scopes(self) -> list[tuple[str, ...]]:
        """The scopes of each token request the platform answered."""
        return [r.scopes for r in self.state.token_requests]


Start = Callable[..., Deployment]


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    # trust_env=False: no proxy from the environment may see this traffic.
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        yield client


@pytest.fixture
def start(tmp_path: Path, browser: httpx.Client) -> Iterator[Start]:
    """Starts the platform and the tool, and launches as the instructor."""
    servers: list[LocalServer] = []

    def run(user_id: str = "instructor-1", **platform_settings: Any) -> Deployment:
        tool_server, platform_server = LocalServer(), LocalServer()
        servers.extend([tool_server, platform_server])
        settings = PlatformSettings.for_tool(
            tool_server.base_url,
            base_url=platform_server.base_url,
            resource_links=(QUIZ_LINK,),
            **platform_settings,
        )
        platform_http = httpx.AsyncClient(trust_env=False, timeout=10.0)
        platform = create_platform(settings, http_client=platform_http)
        wrapper = Wrapper(platform)
        config_path = write_tool_config(tmp_path / f"tool-{len(servers)}", settings)
        tool_http = httpx.AsyncClient(trust_env=False, timeout=10.0)
        routes = [
            Route("/", landing, methods=["GET"]),
            Route("/ags/{operation}", operate, methods=["POST"]),
        ]
        tool = LTIMiddleware(
            Starlette(routes=routes), config=load_config(config_path), http=tool_http
        )

        platform_server.start(ClosingClient(wrapper, platform_http))
        tool_server.start(tool)
        deployment = Deployment(
            settings=settings,
            state=platform.state.platform,
            wrapper=wrapper,
            tool_base=tool_server.base_url,
            browser=browser,
        )
        form = log_in(browser, settings, user_id)
        deployment.launch_id = launch_id_of(post_launch(browser, form))
        return deployment

    try:
        yield run
    finally:
        for server in reversed(servers):
            server.stop()


@pytest.fixture
def deployment(start: Start) -> Deployment:
    return start()


def test_a_column_is_created_listed_updated_graded_read_and_deleted(
    deployment: Deployment,
) -> None:
    d = deployment

    created = d.ok(
        "create", label="Lab 1", score_maximum=20, resource_id="lab-1", tag="lab"
    )
    listed = d.ok("list", tag="lab")
    updated = d.ok("update", url=created["id"], label="Lab 1 (graded)")
    posted = d.ok(
        "score",
        lineitem=created["id"],
        user_id="learner-1",
        score_given=15,
        score_maximum=20,
        comment="Good lab",
    )
    results = d.ok("results", lineitem=created["id"])
    fetched = d.ok("get", url=created["id"])

    assert created["id"].startswith(d.settings.base_url + "/ags/contexts/course-1/")
    assert created["id"].endswith("/lineitem?type_id=1")
    assert (created["label"], created["score_maximum"]) == ("Lab 1", 20.0)
    assert listed == [created]
    assert updated == {**created, "label": "Lab 1 (graded)"}
    assert fetched == updated
    assert posted == {"status": 204}
    assert results == [
        {
            "user_id": "learner-1",
            "result_score": 15.0,
            "result_maximum": 20.0,
            "comment": "Good lab",
            "score_of": created["id"],
        }
    ]
    page = d.browser.get(d.settings.gradebook_url)
    assert "Lab 1 (graded) (max 20)" in page.text and "15 / 20" in page.text

    assert d.ok("delete", url=created["id"]) == {"deleted": created["id"]}
    assert d.ok("list", tag="lab") == []
    gone = d.failed("get", url=created["id"])
    assert (gone["error"], gone["status"]) == ("PlatformResponseError", 404)
    assert json.loads(gone["body"])["error"] == "not_found"


def test_requests_carry_the_spec_media_types(deployment: Deployment) -> None:
    d = deployment

    created = d.ok("create", label="Lab", score_maximum=5)
    d.ok("list")
    d.ok("update", url=created["id"], label="Lab 2")
    d.ok(
        "score",
        lineitem=created["id"],
        user_id="learner-1",
        score_given=1,
        score_maximum=5,
    )
    d.ok("results", lineitem=created["id"])

    (post,) = d.wrapper.requests("POST", "/lineitems")
    assert (post.content_type, post.accept) == (c.MEDIA_TYPE_LINEITEM,) * 2
    listing = d.wrapper.requests("GET", "/lineitems")
    assert [s.accept for s in listing] == [c.MEDIA_TYPE_LINEITEMS]
    (put,) = d.wrapper.requests("PUT", "/lineitem")
    assert (put.content_type, put.accept, put.query) == (
        c.MEDIA_TYPE_LINEITEM,
        c.MEDIA_TYPE_LINEITEM,
        "type_id=1",
    )
    (score,) = d.wrapper.requests("POST", "/scores")
    assert (score.content_type, score.query) == (c.MEDIA_TYPE_SCORE, "type_id=1")
    (results,) = d.wrapper.requests("GET", "/results")
    assert (results.accept, results.query) == (c.MEDIA_TYPE_RESULTS, "type_id=1")


def test_get_or_create_makes_one_column_per_activity(deployment: Deployment) -> None:
    d = deployment
    wanted = {"resource_id": "quiz-7", "label": "Quiz 7", "score_maximum": 7}

    first = d.ok("get_or_create", **wanted)
    second = d.ok("get_or_create", **wanted)
    other = d.ok("get_or_create", **{**wanted, "resource_id": "quiz-8"})

    assert second == first and first["resource_id"] == "quiz-7"
    assert other["id"] != first["id"]
    assert len(d.wrapper.requests("POST", "/lineitems")) == 2
    assert len(d.ok("list")) == 3


def test_get_or_create_names_duplicates_instead_of_guessing(
    deployment: Deployment,
) -> None:
    d = deployment
    one = d.ok("create", label="Quiz", score_maximum=5, tag="dup")
    two = d.ok("create", label="Quiz", score_maximum=5, tag="dup")

    failure = d.failed("get_or_create", tag="dup", label="Quiz", score_maximum=5)

    assert failure["error"] == "ServiceError"
    assert one["id"] in failure["message"] and two["id"] in failure["message"]
    assert len(d.wrapper.requests("POST", "/lineitems")) == 2


def test_listing_follows_every_next_link_as_given(deployment: Deployment) -> None:
    d = deployment
    for number in range(11):
        d.ok("create", label=f"Lab {number}", score_maximum=5)

    items = d.ok("list", limit=5)

    assert [item["label"] for item in items] == [
        "Quiz 1",
        *(f"Lab {n}" for n in range(11)),
    ]
    queries = [s.query for s in d.wrapper.requests("GET", "/lineitems")]
    # The second and third are the platform's next links, requested as given.
    assert queries == [
        "type_id=1&limit=5",
        "type_id=1&limit=5&page=2",
        "type_id=1&limit=5&page=3",
    ]


def test_results_are_read_over_pages(deployment: Deployment) -> None:
    d = deployment
    for user, given in (("learner-1", 3), ("learner-2", 2), ("instructor-1", 1)):
        d.ok("score", user_id=user, score_given=given, score_maximum=3)

    results = d.ok("results", limit=2)
    mine = d.ok("results", user_id="learner-2")

    assert [(r["user_id"], r["result_score"]) for r in results] == [
        ("learner-1", 3.0),
        ("learner-2", 2.0),
        ("instructor-1", 1.0),
    ]
    assert [r["user_id"] for r in mine] == ["learner-2"]
    queries = [s.query for s in d.wrapper.requests("GET", "/results")]
    assert queries == [
        "type_id=1&limit=2",
        "type_id=1&limit=2&page=2",
        "type_id=1&user_id=learner-2",
    ]


def test_a_looping_next_link_is_an_error_not_a_partial_list(
    deployment: Deployment,
) -> None:
    d = deployment
    for number in range(3):
        d.ok("create", label=f"Lab {number}", score_maximum=5)
    d.wrapper.loop = True

    failure = d.failed("list", limit=2)

    assert failure["error"] == "PaginationError"
    assert "loops" in failure["message"]


def test_only_the_write_scope_granted_is_used_for_reading(start: Start) -> None:
    # CASE-14: this platform grants lineitem and score, not lineitem.readonly.
    d = start(ags_scopes=(c.SCOPE_LINEITEM, c.SCOPE_SCORE))

    d.ok("list")
    d.ok("score", score_given=1, score_maximum=3, user_id="learner-1")
    refused = d.failed("results")

    assert d.token_scopes() == [(c.SCOPE_LINEITEM,), (c.SCOPE_SCORE,)]
    assert refused["error"] == "ScopeNotGrantedError"
    assert refused["scope"] == c.SCOPE_RESULT_READONLY
    assert d.wrapper.requests("GET", "/results") == []


def test_the_read_only_scope_is_preferred_for_reading(deployment: Deployment) -> None:
    d = deployment

    d.ok("list")
    d.ok("get", url=d.settings.line_item_url(QUIZ_LINK.line_item_id))
    d.ok("create", label="Lab", score_maximum=5)

    assert d.token_scopes() == [(c.SCOPE_LINEITEM_READONLY,), (c.SCOPE_LINEITEM,)]


def test_a_platform_refusal_keeps_its_status_and_json_body(
    deployment: Deployment,
) -> None:
    d = deployment
    own = d.settings.line_item_url(QUIZ_LINK.line_item_id)

    failure = d.failed("delete", url=own)

    assert (failure["error"], failure["status"]) == ("PlatformResponseError", 403)
    assert json.loads(failure["body"])["error"] == "forbidden"
    assert d.ok("get", url=own)["label"] == "Quiz 1"


@pytest.mark.parametrize(
    ("operation", "suffix"),
    [("list", "/lineitems"), ("results", "/results"), ("create", "/lineitems")],
)
@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (500, "text/html", b"<html><h1>Internal Server Error</h1></html>"),
        (503, "application/json", b'{"error": "temporarily_unavailable"}'),
        (200, "text/html", b"<html>Please log in</html>"),
    ],
)
def test_faulty_answers_reach_the_handler_with_status_and_body(
    deployment: Deployment,
    operation: str,
    suffix: str,
    status: int,
    content_type: str,
    body: bytes,
) -> None:
    d = deployment
    d.wrapper.fault = Fault(suffix, status, content_type, body)
    arguments = {"create": {"label": "Lab", "score_maximum": 5}}.get(operation, {})

    failure = d.failed(operation, **arguments)

    # A 503 to a read is retried (with the configured, real, backoff) before
    # the handler hears of it; a creation is never repeated.
    retried = status == 503 and operation != "create"
    error = "ServiceUnavailableError" if retried else "PlatformResponseError"
    assert (failure["error"], failure["status"]) == (error, status)
    assert failure["body"] == body.decode()
    method = "POST" if operation == "create" else "GET"
    assert len(d.wrapper.requests(method, suffix)) == (4 if retried else 1)


def test_a_token_endpoint_refusal_is_a_token_request_error(
    deployment: Deployment,
) -> None:
    d = deployment
    oauth_error = b'{"error": "invalid_scope", "error_description": "not for you"}'
    d.wrapper.fault = Fault("/token", 400, "application/json", oauth_error)

    failure = d.failed("list")

    assert (failure["error"], failure["status"]) == ("TokenRequestError", 400)
    assert json.loads(failure["body"])["error"] == "invalid_scope"
    assert d.wrapper.requests("GET", "/lineitems") == []

"""The roster over real HTTP: a tool's handler reads the development platform's.

The platform and a small tool serve under uvicorn on free ports of
127.0.0.1. A browser (httpx) launches the tool; the tool's handler then
calls ``launch.nrps`` and answers with what it read. A thin wrapper in front
of the platform records each membership request as it arrived and, when a
test asks, answers one with a fault (a 5xx, a non-JSON page, a looping next
link) the way a misbehaving platform would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lti_middleware import LTIError, LTIMiddleware, Roster, load_config
from lti_middleware import claims as c
from lti_middleware.devplatform import (
    INSTRUCTOR,
    LEARNER,
    DevUser,
    PlatformSettings,
    create_platform,
)

from .independent_platform import LocalServer
from .lti_steps import QUIZ_LINK, launch_id_of, log_in, post_launch, write_tool_config
from .processes import ClosingClient

pytestmark = pytest.mark.e2e

MEMBERSHIPS_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
PAGE_SIZE = 3
USERS = (
    DevUser("instructor-1", "Ada Instructor", "ada@example.edu", (INSTRUCTOR,)),
    DevUser("ta-1", "Tom Assistant", "tom@example.edu", (INSTRUCTOR, LEARNER)),
    *(
        DevUser(f"learner-{n}", f"Learner {n}", f"l{n}@example.edu", (LEARNER,))
        for n in range(1, 7)
    ),
)


@dataclass(frozen=True)
class Seen:
    """A membership request as the platform received it."""

    path: str
    query: str
    accept: str
    bearer: str


@dataclass(frozen=True)
class Fault:
    """An answer the wrapper sends instead of the platform's."""

    status: int
    content_type: str
    body: bytes


@dataclass
class Faults:
    """Records membership requests; answers with a fault, or loops, when set."""

    app: ASGIApp
    seen: list[Seen] = field(default_factory=list)
    fault: Fault | None = None
    loop: bool = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "/nrps/" not in scope["path"]:
            await self.app(scope, receive, send)
            return

        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        scheme, _, token = headers.get("authorization", "").partition(" ")
        query = scope["query_string"].decode()
        self.seen.append(
            Seen(
                path=scope["path"],
                query=query,
                accept=headers.get("accept", ""),
                bearer=token if scheme.lower() == "bearer" else "",
            )
        )
        if self.fault is not None:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.fault.status,
                    "headers": [(b"content-type", self.fault.content_type.encode())],
                }
            )
            await send({"type": "http.response.body", "body": self.fault.body})
            return
        if self.loop and "page=" in query:
            # CASE-17's loop: the second page names itself as the next.
            here = f"http://{headers['host']}{scope['path']}?{query}"
            await self.app(scope, receive, _next_link_to(here, send))
            return

        await self.app(scope, receive, send)


def _next_link_to(url: str, send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            kept = [(k, v) for k, v in message["headers"] if k.lower() != b"link"]
            link = f'<{url}>; rel="next"'.encode()
            message = {**message, "headers": [*kept, (b"link", link)]}
        await send(message)

    return sending


async def landing(request: Request) -> Response:
    launch = request.state.lti
    return JSONResponse({"launch": None if launch is None else launch.launch_id})


async def roster_page(request: Request) -> Response:
    """The tool's handler: the roster as JSON, or the error it met."""
    nrps = request.state.lti.nrps
    params = request.query_params
    rlid = params.get("rlid")
    filters: dict[str, Any] = {
        "role": params.get("role"),
        "limit": int(params["limit"]) if "limit" in params else None,
        "resource_link_id": True if rlid == "launch" else rlid,
    }
    try:
        if "differences" in params:
            roster = await nrps.get_differences(params["differences"])
        elif "iterate" in params:
            members = [member async for member in nrps.iter_members(**filters)]
            roster = Roster(members=tuple(members))
        else:
            roster = await nrps.get_members(**filters)
    except LTIError as error:
        failure = {
            "error": type(error).__name__,
            "status": getattr(error, "status", None),
            "body": getattr(error, "body", None),
            "message": str(error),
        }
        return JSONResponse(failure, status_code=502)

    return JSONResponse(
        {
            "members": [
                {
                    "user_id": m.user_id,
                    "status": str(m.status),
                    "roles": list(m.roles),
                    "name": m.name,
                    "email": m.email,
                    "instructor": m.is_instructor,
                    "learner": m.is_learner,
                    "message": [dict(claim) for claim in m.message],
                }
                for m in roster
            ],
            "context": None if roster.context is None else roster.context.id,
            "differences_url": roster.differences_url,
        }
    )


@dataclass
class Deployment:
    """The platform, behind its fault wrapper, and the tool, both serving."""

    settings: PlatformSettings
    faults: Faults
    tool_base: str

    def launch(self, browser: httpx.Client, user_id: str = "instructor-1") -> str:
        """A launch as ``user_id``; returns its launch id."""
        response = post_launch(browser, log_in(browser, self.settings, user_id))
        return launch_id_of(response)

    def roster(self, browser: httpx.Client, launch_id: str, **params: str) -> Any:
        """What the tool's handler answers, with its status."""
        query = {"lti_launch": launch_id, **params}
        response = browser.get(self.tool_base + "/roster", params=query)
        assert response.status_code in (200, 502), response.text
        return response.status_code, response.json()

    def token_requests(self, browser: httpx.Client) -> list[list[str]]:
        """The scopes of each token request the platform answered."""
        stats = browser.get(self.settings.stats_url).json()
        return [entry["scopes"] for entry in stats["token_request_log"]]


Start = Callable[..., Deployment]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Starts a deployment; ``platform_overrides`` change only the platform."""
    servers: list[LocalServer] = []

    def run(**platform_overrides: Any) -> Deployment:
        tool_server, platform_server = LocalServer(), LocalServer()
        servers.extend([tool_server, platform_server])
        settings = PlatformSettings.for_tool(
            tool_server.base_url,
            base_url=platform_server.base_url,
            users=USERS,
            resource_links=(QUIZ_LINK,),
            nrps_page_size=PAGE_SIZE,
            **platform_overrides,
        )
        config = load_config(write_tool_config(tmp_path / "state", settings))
        tool_http = httpx.AsyncClient(trust_env=False, timeout=10.0)
        routes = [Route("/", landing), Route("/roster", roster_page)]
        tool = LTIMiddleware(Starlette(routes=routes), config=config, http=tool_http)
        platform_http = httpx.AsyncClient(trust_env=False, timeout=10.0)
        faults = Faults(create_platform(settings, http_client=platform_http))

        tool_server.start(tool)
        platform_server.start(ClosingClient(faults, platform_http))
        return Deployment(settings, faults, tool_server.base_url)

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


def test_handler_reads_every_page_of_the_platforms_roster(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    launch_id = d.launch(browser, "instructor-1")

    status, body = d.roster(browser, launch_id)

    assert status == 200
    assert [m["user_id"] for m in body["members"]] == [u.id for u in USERS]
    first = body["members"][0]
    assert first["roles"] == [INSTRUCTOR] and first["instructor"]
    assert (first["name"], first["email"]) == ("Ada Instructor", "ada@example.edu")
    assert {m["status"] for m in body["members"]} == {"Active"}
    assert body["members"][1]["instructor"] and body["members"][1]["learner"]
    assert body["context"] == d.settings.context_id
    # 8 members in pages of 3, each with one token for the roster scope.
    assert len(d.faults.seen) == 3
    assert {seen.accept for seen in d.faults.seen} == {MEMBERSHIPS_TYPE}
    assert len({seen.bearer for seen in d.faults.seen}) == 1
    assert d.token_requests(browser) == [[c.SCOPE_NRPS]]


def test_role_and_limit_filters_reach_the_platform(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    launch_id = d.launch(browser, "learner-1")

    status, body = d.roster(browser, launch_id, role=LEARNER, limit="2")

    assert status == 200
    learners = [u.id for u in USERS if LEARNER in u.roles]
    assert [m["user_id"] for m in body["members"]] == learners
    assert all(m["learner"] for m in body["members"])
    queries = [parse_qs(seen.query) for seen in d.faults.seen]
    assert queries[0] == {"role": [LEARNER], "limit": ["2"]}
    assert [q.get("page") for q in queries] == [None, ["2"], ["3"], ["4"]]
    assert all(q["role"] == [LEARNER] for q in queries)


def test_rlid_scopes_the_roster_to_the_launchs_link(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    launch_id = d.launch(browser)

    status, body = d.roster(browser, launch_id, rlid="launch")

    assert status == 200
    assert parse_qs(d.faults.seen[0].query) == {"rlid": [QUIZ_LINK.id]}
    assert all(
        m["message"][0][c.MESSAGE_TYPE] == c.RESOURCE_LINK_REQUEST
        for m in body["members"]
    )


def test_iterating_gives_the_same_members(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    launch_id = d.launch(browser)

    _, listed = d.roster(browser, launch_id)
    _, iterated = d.roster(browser, launch_id, iterate="1")

    assert iterated["members"] == listed["members"]


def test_differences_bring_status_changes_made_on_the_platform(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    launch_id = d.launch(browser)
    _, before = d.roster(browser, launch_id)

    for user_id, status in (("learner-1", "Deleted"), ("learner-2", "Inactive")):
        form = {"user_id": user_id, "status": status}
        changed = browser.post(d.settings.roster_url, data=form)
        assert changed.status_code == 303, changed.text
    status, changes = d.roster(
        browser, launch_id, differences=before["differences_url"]
    )
    _, after = d.roster(browser, launch_id)

    assert status == 200
    assert [(m["user_id"], m["status"]) for m in changes["members"]] == [
        ("learner-1", "Deleted"),
        ("learner-2", "Inactive"),
    ]
    assert "learner-1" not in [m["user_id"] for m in after["members"]]
    roster_page = browser.get(d.settings.roster_url)
    assert '<option value="Inactive" selected>' in roster_page.text


def test_launch_without_the_service_fails_before_any_request(
    start: Start, browser: httpx.Client
) -> None:
    d = start(nrps_enabled=False)
    launch_id = d.launch(browser)

    status, body = d.roster(browser, launch_id)

    assert (status, body["error"]) == (502, "ScopeNotGrantedError")
    assert d.faults.seen == []
    assert d.token_requests(browser) == []


def test_platform_refusal_keeps_its_json_error(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    launch_id = d.launch(browser)

    status, body = d.roster(browser, launch_id, rlid="no-such-link")

    assert (status, body["error"], body["status"]) == (
        502,
        "PlatformResponseError",
        400,
    )
    assert json.loads(body["body"])["error"] == "invalid_request"


@pytest.mark.parametrize(
    "fault",
    [
        Fault(503, "text/plain", b"service unavailable"),
        Fault(403, "application/json", b'{"error": "insufficient_scope"}'),
        Fault(200, "text/html", b"<html>Log in to continue</html>"),
        Fault(200, MEMBERSHIPS_TYPE, b'{"members": {"user_id": "x"}}'),
    ],
    ids=["5xx", "oauth-403", "not-json", "members-not-array"],
)
def test_platform_faults_reach_the_handler_as_errors(
    deployment: Deployment, browser: httpx.Client, fault: Fault
) -> None:
    d = deployment
    launch_id = d.launch(browser)
    d.faults.fault = fault

    status, body = d.roster(browser, launch_id)

    # A 503 is retried (with the configured, real, backoff) before the
    # handler hears of it; the other faults are not.
    retried = fault.status == 503
    error = "ServiceUnavailableError" if retried else "PlatformResponseError"
    assert (status, body["error"], body["status"]) == (502, error, fault.status)
    assert body["body"] == fault.body.decode()
    assert len(d.faults.seen) == (4 if retried else 1)


def test_a_looping_next_link_is_an_error_not_a_partial_roster(
    deployment: Deployment, browser: httpx.Client
) -> None:
    d = deployment
    launch_id = d.launch(browser)
    d.faults.loop = True

    status, body = d.roster(browser, launch_id)

    assert (status, body["error"]) == (502, "PaginationError")
    assert [seen.query for seen in d.faults.seen] == ["", "page=2"]
    assert "loops" in body["message"]

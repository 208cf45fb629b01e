"""Retries of grade service calls against a real platform stand-in on 127.0.0.1.

The platform is a small Starlette app under uvicorn (a free port of
127.0.0.1) with a token endpoint and AGS routes that answer as each test
scripts them: a status, a ``Retry-After``, or a stall that holds the request
until the test ends (so the tool's HTTP timeout fires; nothing here sleeps).
The retry policy's sleep and clock are injected: a wait is recorded and moves
the clock, so tests assert the delays asked for and the deadline without
waiting them out.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lti_middleware import AGSClient, LineItem, ServiceUnavailableError
from lti_middleware import claims as c
from lti_middleware.config import Registration
from lti_middleware.exceptions import (
    ConfigurationError,
    PlatformResponseError,
    ServiceError,
)
from lti_middleware.keys import StaticKeyProvider
from lti_middleware.retries import MAX_DELAY, RetryPolicy, retry_after
from lti_middleware.tokens import AccessTokenClient

from .conftest import (
    LINEITEM,
    TOKEN_URL,
    Clock,
    FakePlatform,
    cached_key,
    make_tool,
    tool_config,
)
from .e2e.independent_platform import LOOPBACK, LocalServer

pytestmark = pytest.mark.e2e

ISS = "https://lms.example.edu"
SCORES = "/lineitems/9/scores"
ALL_SCOPES = [
    c.SCOPE_SCORE,
    c.SCOPE_LINEITEM,
    c.SCOPE_LINEITEM_READONLY,
    c.SCOPE_RESULT_READONLY,
]
#: The tool's HTTP timeout in the stall tests; each stalled try costs this.
SHORT_TIMEOUT = 0.2


@dataclass(frozen=True)
class Answer:
    """What the platform answers to one request instead of its usual reply."""

    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    stall: bool = False


STALL = Answer(stall=True)


@dataclass(frozen=True)
class Seen:
    """A request as the platform received it."""

    method: str
    path: str
    query: str
    authorization: str
    body: bytes


class Platform:
    """A token endpoint and a grade service that answer as scripted.

    Each (method, path) has a queue of :class:`Answer`; once it is empty the
    usual reply is sent. Stalled requests wait on :attr:`released`, which the
    fixture sets when each test ends. One server serves the module's tests;
    :meth:`reset` gives each a fresh script and record.
    """

    def __init__(self) -> None:
        self.base_url = ""
        self.reset()

    def reset(self) -> None:
        self.seen: list[Seen] = []
        self.script: dict[tuple[str, str], list[Answer]] = {}
        self.released = threading.Event()
        self.on_request: Callable[[], None] = lambda: None

    def answer(self, method: str, path: str, *answers: Answer) -> None:
        self.script[(method, path)] = list(answers)

    def requests(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if (s.method, s.path) == (method, path)]

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "DELETE"]
        return Starlette(routes=[Route("/{rest:path}", self.handle, methods=methods)])

    async def handle(self, request: Request) -> Response:
        key = (request.method, request.url.path)
        self.seen.append(
            Seen(
                method=request.method,
                path=request.url.path,
                query=request.url.query,
                authorization=request.headers.get("authorization", ""),
                body=await request.body(),
            )
        )
        self.on_request()

        queue = self.script.get(key, [])
        if not queue:
            return self.usual(key)
        scripted = queue.pop(0)
        if scripted.stall:
            released = self.released
            await anyio.to_thread.run_sync(released.wait)
        return Response(
            scripted.body, status_code=scripted.status, headers=scripted.headers
        )

    def usual(self, key: tuple[str, str]) -> Response:
        method, path = key
        if path == "/token":
            number = len(self.requests("POST", "/token"))
            token = {"access_token": f"access-{number}", "token_type": "Bearer"}
            return JSONResponse(token)
        if path == "/lineitems":
            if method == "GET":
                return JSONResponse([])
            return JSONResponse(self.item(), status_code=201)
        if path == "/lineitems/9" and method != "DELETE":
            return JSONResponse(self.item())
        if path == "/lineitems/9/results":
            return JSONResponse([])

        return Response(status_code=204 if method == "DELETE" else 200)

    def item(self) -> dict[str, Any]:
        url = f"{self.base_url}/lineitems/9"
        return {"id": url, "label": "Quiz", "scoreMaximum": 10}


class Waits:
    """The injected clock and sleep: a wait is recorded and moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.delays: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def served() -> Iterator[Platform]:
    platform = Platform()
    server = LocalServer()
    platform.base_url = server.base_url
    server.start(platform.app())
    try:
        yield platform
    finally:
        platform.released.set()
        server.stop()


@pytest.fixture
def platform(served: Platform) -> Iterator[Platform]:
    served.reset()
    yield served
    served.released.set()


@pytest.fixture
def waits() -> Waits:
    return Waits()


Connect = Callable[..., AGSClient]


@pytest.fixture
async def connect(platform: Platform, waits: Waits) -> AsyncIterator[Connect]:
    """Builds an AGS client for the platform, as a launch would."""
    clients: list[httpx.AsyncClient] = []

    def make(
        *,
        timeout: float = 5.0,
        retries: int = 3,
        deadline: float = 30.0,
        service: str | None = None,
    ) -> AGSClient:
        base = service or platform.base_url
        http = httpx.AsyncClient(timeout=timeout, trust_env=False)
        clients.append(http)
        tokens = AccessTokenClient(
            key_provider=StaticKeyProvider([cached_key("tool")]), http=http
        )
        registration = Registration(
            issuer=ISS,
            client_id="10000000000042",
            deployment_ids=("1:abc",),
            auth_login_url=f"{platform.base_url}/auth",
            token_url=f"{platform.base_url}/token",
            key_set_url=f"{platform.base_url}/jwks",
        )
        policy = RetryPolicy(
            retries=retries,
            deadline=deadline,
            sleep=waits.sleep,
            clock=waits.clock,
            jitter=lambda: 0.0,
        )
        return AGSClient(
            endpoint={
                "scope": ALL_SCOPES,
                "lineitem": f"{base}/lineitems/9?type_id=1",
                "lineitems": f"{base}/lineitems",
            },
            registration=registration,
            tokens=tokens,
            http=http,
            user_id="learner-1",
            retry=policy,
        )

    yield make
    for http in clients:
        await http.aclose()


def endpoint(platform: Platform, path: str) -> str:
    return platform.base_url.removeprefix("http://") + path


# Score posts


async def test_a_score_post_met_by_two_503s_is_posted_on_the_third_try(
    platform: Platform,
    connect: Connect,
    waits: Waits,
    caplog: pytest.LogCaptureFixture,
) -> None:
    platform.answer("POST", SCORES, Answer(503), Answer(503))
    caplog.set_level(logging.INFO, logger="lti_middleware")

    response = await connect().post_score(score_given=7, score_maximum=10)

    assert response.status_code == 200
    posts = platform.requests("POST", SCORES)
    assert len(posts) == 3
    # The same document each time, timestamp included: a repeat replaces it.
    assert len({post.body for post in posts}) == 1
    assert json.loads(posts[0].body)["scoreGiven"] == 7
    assert waits.delays == [0.5, 1.0]
    assert len(platform.requests("POST", "/token")) == 1

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.name for r in warnings] == ["lti_middleware.services"] * 2
    for number, record in enumerate(warnings, start=1):
        message = record.getMessage()
        assert ISS in message and endpoint(platform, SCORES) in message
        assert f"attempt {number} of 4" in message and "answered 503" in message
    assert "access-" not in caplog.text and "Bearer" not in caplog.text


async def test_a_score_post_that_always_meets_503_raises_with_the_score_kept(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", SCORES, *[Answer(503, "down for upgrade")] * 4)
    ags = connect()

    with pytest.raises(ServiceUnavailableError) as caught:
        await ags.post_score(score_given=7, score_maximum=10, comment="Good")

    error = caught.value
    posts = platform.requests("POST", SCORES)
    assert isinstance(error, ServiceError) and error.retryable
    assert error.attempts == len(posts) == 4
    assert (error.status, error.body) == (503, "down for upgrade")
    assert (error.issuer, error.method) == (ISS, "POST")
    assert error.endpoint == endpoint(platform, SCORES)
    assert "type_id" not in str(error)
    assert waits.delays == [0.5, 1.0, 2.0]
    assert isinstance(error.__cause__, PlatformResponseError)
    assert error.__cause__.status == 503
    message = str(error)
    assert "post it again later" in message and "safe" in message
    assert "all 3 retries were used" in message
    assert "access-" not in message

    # Nothing is lost: the kept score, posted again, is the same document.
    assert error.score is not None and error.score.comment == "Good"
    assert error.lineitem == f"{platform.base_url}/lineitems/9?type_id=1"
    assert error.score.to_json() == json.loads(posts[0].body)
    response = await ags.send_score(error.score, lineitem=error.lineitem)

    again = platform.requests("POST", SCORES)[-1]
    assert response.status_code == 200
    assert (again.body, again.query) == (posts[0].body, "type_id=1")


async def test_a_platform_that_stalls_past_the_timeout_is_retried_then_raised(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", SCORES, STALL, STALL, STALL)

    with pytest.raises(ServiceUnavailableError) as caught:
        await connect(timeout=SHORT_TIMEOUT, retries=2).post_score(
            score_given=1, score_maximum=2
        )

    error = caught.value
    assert error.attempts == len(platform.requests("POST", SCORES)) == 3
    assert (error.status, error.body) == (None, "")
    assert error.failure == "no answer in time (ReadTimeout)"
    assert isinstance(error.__cause__, ServiceError)
    assert isinstance(error.__cause__.__cause__, httpx.ReadTimeout)
    assert waits.delays == [0.5, 1.0]
    assert error.score is not None


async def test_one_stall_then_an_answer_posts_the_score(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", SCORES, STALL)

    response = await connect(timeout=SHORT_TIMEOUT).post_score(
        score_given=1, score_maximum=2
    )

    assert response.status_code == 200
    assert len(platform.requests("POST", SCORES)) == 2
    assert waits.delays == [0.5]


async def test_a_refused_connection_is_retried_then_raised(
    connect: Connect, waits: Waits
) -> None:
    # A port of 127.0.0.1 where nothing listens (bound, then closed).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        closed = f"http://{LOOPBACK}:{sock.getsockname()[1]}"

    with pytest.raises(ServiceUnavailableError) as caught:
        await connect(service=closed).post_score(score_given=1, score_maximum=2)

    error = caught.value
    assert error.failure == "the connection failed (ConnectError)"
    assert (error.attempts, error.status) == (4, None)
    assert waits.delays == [0.5, 1.0, 2.0]
    assert error.score is not None


# Retry-After


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_waited_out_before_the_next_try(
    platform: Platform, connect: Connect, waits: Waits, status: int
) -> None:
    platform.answer("POST", SCORES, Answer(status, headers={"Retry-After": "4"}))

    response = await connect().post_score(score_given=1, score_maximum=2)

    assert response.status_code == 200
    assert waits.delays == [4.0]
    assert len(platform.requests("POST", SCORES)) == 2


async def test_a_429_without_retry_after_backs_off(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", SCORES, Answer(429), Answer(429))

    await connect().post_score(score_given=1, score_maximum=2)

    assert waits.delays == [0.5, 1.0]


async def test_a_retry_after_past_the_deadline_stops_at_once(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", SCORES, Answer(429, headers={"Retry-After": "120"}))

    with pytest.raises(ServiceUnavailableError) as caught:
        await connect(deadline=30).post_score(score_given=1, score_maximum=2)

    error = caught.value
    assert (error.attempts, error.status, error.retry_after) == (1, 429, 120.0)
    assert waits.delays == []
    assert "asked to wait 120 s (Retry-After)" in str(error)
    assert len(platform.requests("POST", SCORES)) == 1


def test_retry_after_reads_seconds_and_http_dates() -> None:
    def asked(headers: dict[str, str]) -> float | None:
        return retry_after(httpx.Response(503, headers=headers))

    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert asked({"Retry-After": "120"}) == 120.0
    assert asked({"Retry-After": date, "Date": "Wed, 21 Oct 2015 07:27:30 GMT"}) == 30
    # A date already past asks for no wait; nonsense asks for nothing.
    assert asked({"Retry-After": date}) == 0.0
    assert asked({"Retry-After": "soon"}) is None
    assert asked({"Retry-After": "-5"}) is None
    assert asked({}) is None


# What is not retried


@pytest.mark.parametrize("status", [400, 403, 404, 500])
async def test_client_errors_and_500_are_raised_at_once(
    platform: Platform, connect: Connect, waits: Waits, status: int
) -> None:
    platform.answer("POST", SCORES, Answer(status, '{"error": "no"}'))

    with pytest.raises(PlatformResponseError) as caught:
        await connect().post_score(score_given=1, score_maximum=2)

    assert (caught.value.status, caught.value.body) == (status, '{"error": "no"}')
    assert not caught.value.retryable
    assert len(platform.requests("POST", SCORES)) == 1
    assert waits.delays == []


async def test_line_item_creation_meeting_a_503_is_sent_exactly_once(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", "/lineitems", Answer(503))

    with pytest.raises(PlatformResponseError) as caught:
        await connect().create_lineitem(label="Lab", score_maximum=5)

    assert caught.value.status == 503
    assert not isinstance(caught.value, ServiceUnavailableError)
    assert len(platform.requests("POST", "/lineitems")) == 1
    assert waits.delays == []


async def test_line_item_creation_meeting_a_timeout_is_sent_exactly_once(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", "/lineitems", STALL)

    with pytest.raises(ServiceError, match="got no answer in time") as caught:
        await connect(timeout=SHORT_TIMEOUT).create_lineitem(
            label="Lab", score_maximum=5
        )

    # The platform got the POST: the message must not invite sending it again.
    assert "may have acted on it" in str(caught.value)
    assert "list the line items" in str(caught.value)
    assert not caught.value.retryable
    assert len(platform.requests("POST", "/lineitems")) == 1
    assert waits.delays == []


async def test_line_item_creation_is_retried_when_only_its_token_request_failed(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", "/token", Answer(503))

    await connect().create_lineitem(label="Lab", score_maximum=5)

    assert len(platform.requests("POST", "/token")) == 2
    assert len(platform.requests("POST", "/lineitems")) == 1
    assert waits.delays == [0.5]


async def test_a_401_gets_one_new_token_and_is_not_retried_as_transient(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", SCORES, Answer(503), Answer(401), Answer(401))

    with pytest.raises(PlatformResponseError) as caught:
        await connect().post_score(score_given=1, score_maximum=2)

    assert caught.value.status == 401
    posts = platform.requests("POST", SCORES)
    assert [p.authorization for p in posts] == [
        "Bearer access-1",
        "Bearer access-1",
        "Bearer access-2",
    ]
    assert waits.delays == [0.5]


async def test_a_401_then_a_503_is_refreshed_then_retried(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", SCORES, Answer(401), Answer(503))

    response = await connect().post_score(score_given=1, score_maximum=2)

    assert response.status_code == 200
    posts = platform.requests("POST", SCORES)
    assert [p.authorization for p in posts] == [
        "Bearer access-1",
        "Bearer access-2",
        "Bearer access-2",
    ]
    assert waits.delays == [0.5]


async def test_a_call_gets_a_new_token_only_once(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", SCORES, Answer(401), Answer(503), Answer(401))

    with pytest.raises(PlatformResponseError) as caught:
        await connect().post_score(score_given=1, score_maximum=2)

    # The second 401 comes after a retry: the token was renewed already.
    assert caught.value.status == 401
    assert len(platform.requests("POST", SCORES)) == 3
    assert len(platform.requests("POST", "/token")) == 2
    assert waits.delays == [0.5]


async def test_a_token_endpoint_503_is_retried_too(
    platform: Platform,
    connect: Connect,
    waits: Waits,
    caplog: pytest.LogCaptureFixture,
) -> None:
    platform.answer("POST", "/token", Answer(503))

    response = await connect().post_score(score_given=1, score_maximum=2)

    assert response.status_code == 200
    assert len(platform.requests("POST", "/token")) == 2
    assert len(platform.requests("POST", SCORES)) == 1
    assert waits.delays == [0.5]
    assert endpoint(platform, "/token") in caplog.text


async def test_a_token_endpoint_retry_after_is_honoured(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", "/token", Answer(429, headers={"Retry-After": "3"}))

    response = await connect().post_score(score_given=1, score_maximum=2)

    assert response.status_code == 200
    assert len(platform.requests("POST", "/token")) == 2
    assert waits.delays == [3.0]


# Other calls safe to repeat


def own(ags: AGSClient) -> str:
    assert ags.lineitem is not None
    return ags.lineitem


OPERATIONS: dict[str, tuple[str, str, Callable[[AGSClient], Any]]] = {
    "get_lineitem": ("GET", "/lineitems/9", lambda ags: ags.get_lineitem(own(ags))),
    "get_lineitems": ("GET", "/lineitems", lambda ags: ags.get_lineitems()),
    "update_lineitem": (
        "PUT",
        "/lineitems/9",
        lambda ags: ags.update_lineitem(
            LineItem(id=own(ags), label="Quiz", score_maximum=10)
        ),
    ),
    "delete_lineitem": (
        "DELETE",
        "/lineitems/9",
        lambda ags: ags.delete_lineitem(own(ags)),
    ),
    "get_results": ("GET", "/lineitems/9/results", lambda ags: ags.get_results()),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize("status", [502, 504])
async def test_reads_updates_and_deletions_are_retried(
    platform: Platform, connect: Connect, waits: Waits, operation: str, status: int
) -> None:
    method, path, call = OPERATIONS[operation]
    platform.answer(method, path, Answer(status))

    await call(connect())

    assert len(platform.requests(method, path)) == 2
    assert waits.delays == [0.5]


# Bounds


async def test_the_deadline_stops_retries_before_they_run_out(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", SCORES, *[Answer(503)] * 10)

    with pytest.raises(ServiceUnavailableError) as caught:
        await connect(retries=10, deadline=3).post_score(score_given=1, score_maximum=2)

    # 0.5 + 1 waited; the next 2 s would end past the 3 s deadline.
    assert waits.delays == [0.5, 1.0]
    assert caught.value.attempts == 3
    assert "past the retry deadline of 3 s" in str(caught.value)


async def test_time_spent_in_tries_counts_against_the_deadline(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", SCORES, *[Answer(503)] * 4)

    def slow_answer() -> None:
        waits.now += 4.0

    platform.on_request = slow_answer

    with pytest.raises(ServiceUnavailableError) as caught:
        await connect(deadline=5).post_score(score_given=1, score_maximum=2)

    # Token request and first post took 8 s of the clock: no time is left.
    assert caught.value.attempts == 1
    assert waits.delays == []


async def test_retries_set_to_zero_tries_once_and_still_says_try_later(
    platform: Platform, connect: Connect, waits: Waits
) -> None:
    platform.answer("POST", SCORES, Answer(503))

    with pytest.raises(ServiceUnavailableError) as caught:
        await connect(retries=0).post_score(score_given=1, score_maximum=2)

    assert caught.value.attempts == 1
    assert "retrying is off" in str(caught.value)
    assert waits.delays == []


def test_backoff_doubles_up_to_a_cap_with_jitter_below_it() -> None:
    exact = RetryPolicy(retries=10, jitter=lambda: 0.0)
    assert [exact.backoff(n) for n in range(1, 8)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        MAX_DELAY,
        MAX_DELAY,
        MAX_DELAY,
    ]

    jittered = RetryPolicy(retries=10, jitter=lambda: 0.99)
    assert jittered.backoff(3) == pytest.approx(2.0 * (1 - 0.5 * 0.99))
    default = RetryPolicy()
    assert all(0.5 <= default.backoff(2) <= 1.0 for _ in range(50))


@pytest.mark.parametrize(
    ("values", "key"),
    [({"retries": -1}, "retries"), ({"deadline": 0.5}, "deadline")],
)
def test_a_policy_out_of_bounds_is_refused(values: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RetryPolicy(**values)
    assert caught.value.key == key


# Through the middleware


async def test_launch_ags_uses_the_configured_retries() -> None:
    platform = FakePlatform(Clock(1_700_000_000.0))
    scores: list[httpx.Request] = []
    serve = platform.handle

    def handle(request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            return httpx.Response(
                200, json={"access_token": "t", "token_type": "Bearer"}
            )
        if str(request.url) == LINEITEM + "/scores":
            scores.append(request)
            return httpx.Response(503, text="busy")
        return serve(request)

    async def grade(request: Request) -> JSONResponse:
        try:
            await request.state.lti.ags.post_score(score_given=1, score_maximum=2)
        except ServiceUnavailableError as error:
            return JSONResponse({"attempts": error.attempts}, status_code=503)
        return JSONResponse({})

    platform.handle = handle  # type: ignore[method-assign]
    config = tool_config(service_retries=1, service_retry_deadline=5)
    tool = make_tool(
        platform, config=config, app=Starlette(routes=[Route("/app", grade)])
    )
    waits = Waits()
    assert tool.middleware.service_retry == RetryPolicy(retries=1, deadline=5)
    tool.middleware.service_retry = dataclasses.replace(
        tool.middleware.service_retry, sleep=waits.sleep, clock=waits.clock
    )

    page = await tool.follow(await tool.launch())
    await tool.http.aclose()
    await tool.middleware.aclose()

    assert (page.status_code, page.json()) == (503, {"attempts": 2})
    assert len(scores) == 2 and len(waits.delays) == 1

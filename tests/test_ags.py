"""The AGS client: scores, line items, results, scopes, paging, errors."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from lti_middleware.ags import (
    ActivityProgress,
    AGSClient,
    LineItem,
    Result,
)
from lti_middleware.config import Registration
from lti_middleware.exceptions import (
    PaginationError,
    PlatformResponseError,
    ScopeNotGrantedError,
    ScoreError,
    ServiceError,
    ServiceUnavailableError,
)
from lti_middleware.keys import StaticKeyProvider, ToolKey, generate_key
from lti_middleware.retries import RetryPolicy
from lti_middleware.services import MAX_PAGES
from lti_middleware.tokens import AccessTokenClient

TOKEN_URL = "https://lms.example.edu/login/oauth2/token"
LINEITEM_URL = "https://lms.example.edu/api/lti/courses/5/line_items/9"
LINEITEMS_URL = "https://lms.example.edu/api/lti/courses/5/line_items"
SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
LINEITEM_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly"
SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"
)
MOODLE_LINEITEM = "https://moodle.example/mod/lti/services.php/2/lineitems/7/lineitem"
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.the-launch-id-token.sig"

Handler = Callable[[httpx.Request], httpx.Response]


async def no_wait(seconds: float) -> None:
    """Retries here need not wait (tests/test_service_retry.py times them)."""


INSTANT_RETRY = RetryPolicy(sleep=no_wait)


class FakePlatform:
    """A token endpoint and AGS endpoints that record what they receive."""

    def __init__(self) -> None:
        self.token_forms: list[dict[str, str]] = []
        self.service_requests: list[httpx.Request] = []
        self.service: Handler = lambda request: httpx.Response(200, json={})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            self.token_forms.append(form)
            number = len(self.token_forms)
            return httpx.Response(
                200,
                json={
                    "access_token": f"access-{number}",
                    "token_type": "Bearer",
                    "expires_in": 3600,
                },
            )

        self.service_requests.append(request)
        return self.service(request)

    @property
    def token_scopes(self) -> list[str]:
        return [form["scope"] for form in self.token_forms]


def make_registration() -> Registration:
    return Registration(
        issuer="https://lms.example.edu",
        client_id="10000000000042",
        deployment_ids=("1:abc",),
        auth_login_url="https://lms.example.edu/api/lti/authorize_redirect",
        token_url=TOKEN_URL,
        key_set_url="https://lms.example.edu/api/lti/security/jwks",
    )


@pytest.fixture(scope="module")
def key() -> ToolKey:
    return generate_key()


@pytest.fixture
def platform() -> FakePlatform:
    return FakePlatform()


@pytest.fixture
async def http(platform: FakePlatform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(platform)) as client:
        yield client


@pytest.fixture
def tokens(key: ToolKey, http: httpx.AsyncClient) -> AccessTokenClient:
    return AccessTokenClient(key_provider=StaticKeyProvider([key]), http=http)


@pytest.fixture
def make_client(
    tokens: AccessTokenClient, http: httpx.AsyncClient
) -> Callable[..., AGSClient]:
    def make(
        scope: Any = (SCORE,),
        *,
        lineitem: str | None = LINEITEM_URL,
        lineitems: str | None = None,
        user_id: str | None = "u-1",
    ) -> AGSClient:
        endpoint: dict[str, Any] = {"scope": list(scope)}
        if lineitem is not None:
            endpoint["lineitem"] = lineitem
        if lineitems is not None:
            endpoint["lineitems"] = lineitems
        return AGSClient(
            endpoint=endpoint,
            registration=make_registration(),
            tokens=tokens,
            http=http,
            user_id=user_id,
            retry=INSTANT_RETRY,
        )

    return make


def sent_json(request: httpx.Request) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(request.content)
    return body


# Score posting


async def test_post_score_sends_score_to_lineitem_scores(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    ags = make_client()

    response = await ags.post_score(score_given=7, score_maximum=10, comment="Good")

    assert response.status_code == 200
    request = platform.service_requests[0]
    assert request.method == "POST"
    assert str(request.url) == LINEITEM_URL + "/scores"
    assert request.headers["content-type"] == SCORE_TYPE
    assert request.headers["authorization"] == "Bearer access-1"
    assert request.headers["user-agent"] == "lti-middleware"
    body = sent_json(request)
    assert body["userId"] == "u-1"
    assert body["scoreGiven"] == 7 and body["scoreMaximum"] == 10
    assert body["activityProgress"] == "Completed"
    assert body["gradingProgress"] == "FullyGraded"
    assert body["comment"] == "Good"
    assert TIMESTAMP.match(body["timestamp"])


async def test_post_score_numbers_are_json_numbers(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    await make_client().post_score(score_given=7, score_maximum=10.5)

    raw = platform.service_requests[0].content.decode()
    body = json.loads(raw)
    assert type(body["scoreGiven"]) is int
    assert type(body["scoreMaximum"]) is float
    assert '"7"' not in raw and '"10.5"' not in raw


async def test_post_score_uses_access_token_never_id_token(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    await make_client().post_score(score_given=1, score_maximum=1)

    request = platform.service_requests[0]
    assert request.headers["authorization"] == "Bearer access-1"
    assert ID_TOKEN not in request.headers["authorization"]
    assert len(platform.token_forms) == 1


async def test_post_score_requests_token_for_exactly_score_scope(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    # CASE-14: Schoolbox refuses a token request that adds the lineitem scope.
    ags = make_client([SCORE, LINEITEM, LINEITEM_READONLY])

    await ags.post_score(score_given=1, score_maximum=2)

    assert platform.token_scopes == [SCORE]


async def test_post_score_without_granted_scope_sends_nothing(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    ags = make_client([LINEITEM_READONLY])

    with pytest.raises(ScopeNotGrantedError) as caught:
        await ags.post_score(score_given=1, score_maximum=2)

    assert caught.value.scope == SCORE
    assert caught.value.granted == [LINEITEM_READONLY]
    assert "scope_not_granted" in str(caught.value)
    assert platform.token_forms == [] and platform.service_requests == []


async def test_scope_must_match_exactly(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    ags = make_client([SCORE + ".readonly", " " + SCORE])

    with pytest.raises(ScopeNotGrantedError):
        await ags.post_score(score_given=1, score_maximum=2)

    assert platform.token_forms == []


async def test_token_is_reused_across_score_posts(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    ags = make_client()

    for n in range(100):
        await ags.post_score(score_given=n, score_maximum=100)

    assert len(platform.token_forms) == 1
    assert len(platform.service_requests) == 100


async def test_401_drops_token_and_retries_once(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    answers = iter([httpx.Response(401, text="expired"), httpx.Response(200)])
    platform.service = lambda request: next(answers)

    response = await make_client().post_score(score_given=1, score_maximum=2)

    assert response.status_code == 200
    auth = [r.headers["authorization"] for r in platform.service_requests]
    assert auth == ["Bearer access-1", "Bearer access-2"]
    assert len(platform.token_forms) == 2


async def test_401_twice_raises_platform_response_error(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    platform.service = lambda request: httpx.Response(401, text="token revoked")

    with pytest.raises(PlatformResponseError) as caught:
        await make_client().post_score(score_given=1, score_maximum=2)

    assert caught.value.status == 401
    assert caught.value.body == "token revoked"
    assert len(platform.service_requests) == 2


async def test_refusal_keeps_method_url_status_and_body(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    body = '{"errors": [{"message": "Incorrect score received"}]}'
    platform.service = lambda request: httpx.Response(400, text=body)

    with pytest.raises(PlatformResponseError) as caught:
        await make_client().post_score(score_given=1, score_maximum=2)

    error = caught.value
    assert (error.method, error.url, error.status) == (
        "POST",
        LINEITEM_URL + "/scores",
        400,
    )
    assert error.body == body
    assert "Incorrect score received" in str(error)
    assert "access-1" not in str(error)
    assert len(platform.service_requests) == 1


@pytest.mark.parametrize("status", [200, 201, 204])
async def test_any_2xx_is_success(
    make_client: Callable[..., AGSClient], platform: FakePlatform, status: int
) -> None:
    platform.service = lambda request: httpx.Response(status)

    response = await make_client().post_score(score_given=1, score_maximum=2)

    assert response.status_code == status


async def test_network_error_is_wrapped(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    platform.service = fail

    # A timeout may pass: the score post is retried, then raised as unavailable.
    with pytest.raises(ServiceUnavailableError) as caught:
        await make_client().post_score(score_given=1, score_maximum=2)

    cause = caught.value.__cause__
    assert isinstance(cause, ServiceError) and "got no answer in time" in str(cause)
    assert isinstance(cause.__cause__, httpx.ReadTimeout)
    assert len(platform.service_requests) == 4


async def test_a_refusal_echoing_the_access_token_does_not_carry_it(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, text=f"denied: {request.headers['authorization']}")

    platform.service = echo

    with pytest.raises(PlatformResponseError) as caught:
        await make_client().post_score(score_given=1, score_maximum=2)

    sent = (
        platform.service_requests[-1].headers["authorization"].removeprefix("Bearer ")
    )
    assert sent not in caught.value.body
    assert sent not in str(caught.value)
    assert caught.value.body == "denied: Bearer [redacted]"


async def test_post_score_keeps_lineitem_query_string(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    ags = make_client(lineitem=MOODLE_LINEITEM + "?type_id=1")

    await ags.post_score(score_given=1, score_maximum=2)

    url = str(platform.service_requests[0].url)
    assert url == MOODLE_LINEITEM + "/scores?type_id=1"


async def test_post_score_to_explicit_lineitem(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    other = "https://lms.example.edu/api/lti/courses/5/line_items/11"

    await make_client(lineitem=None, lineitems=LINEITEMS_URL).post_score(
        score_given=1, score_maximum=2, lineitem=other
    )

    assert str(platform.service_requests[0].url) == other + "/scores"


@pytest.mark.parametrize(
    "lineitem",
    [
        "https://attacker.example/capture",
        "https://lms.example.edu.attacker.example/line_items/9",
        "https://user:pw@lms.example.edu/api/lti/courses/5/line_items/9",
        "https://lms.example.edu:8443/api/lti/courses/5/line_items/9",
    ],
)
async def test_access_token_goes_only_to_the_launchs_service_origin(
    make_client: Callable[..., AGSClient], platform: FakePlatform, lineitem: str
) -> None:
    with pytest.raises(ServiceError, match="refusing to send an access token"):
        await make_client().post_score(
            score_given=1, score_maximum=2, lineitem=lineitem
        )

    assert platform.token_forms == [] and platform.service_requests == []


async def test_score_too_large_for_a_float_is_a_score_error(
    make_client: Callable[..., AGSClient],
) -> None:
    with pytest.raises(ScoreError, match="finite"):
        await make_client().post_score(score_given=10**400, score_maximum=2)


async def test_post_score_without_lineitem_says_so(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    with pytest.raises(ServiceError, match="no line item"):
        await make_client(lineitem=None).post_score(score_given=1, score_maximum=2)

    assert platform.token_forms == [] and platform.service_requests == []


async def test_post_score_user_defaults_to_launch_user_and_can_be_given(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    ags = make_client(user_id="launch-user")

    await ags.post_score(score_given=1, score_maximum=2)
    await ags.post_score(score_given=1, score_maximum=2, user_id="other-user")

    users = [sent_json(r)["userId"] for r in platform.service_requests]
    assert users == ["launch-user", "other-user"]


async def test_post_score_needs_a_user(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    with pytest.raises(ScoreError, match="user_id"):
        await make_client(user_id=None).post_score(score_given=1, score_maximum=2)

    assert platform.token_forms == []


async def test_post_score_validates_before_any_request(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    # CASE-15: scoreGiven without scoreMaximum is Moodle's opaque 400.
    with pytest.raises(ScoreError, match="score_maximum"):
        await make_client().post_score(score_given=7, score_maximum=None)

    with pytest.raises(ScoreError, match="time zone"):
        await make_client().post_score(
            score_given=7,
            score_maximum=10,
            timestamp=datetime(2024, 4, 7, 13, 26, 14, 786962),
        )

    assert platform.token_forms == [] and platform.service_requests == []


async def test_post_score_sends_given_timestamp_and_progress(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    when = datetime(2024, 4, 7, 13, 26, 14, 786962, tzinfo=UTC)

    await make_client().post_score(
        activity_progress=ActivityProgress.SUBMITTED,
        grading_progress="PendingManual",
        timestamp=when,
    )

    body = sent_json(platform.service_requests[0])
    assert body["timestamp"] == "2024-04-07T13:26:14.786962Z"
    assert body["activityProgress"] == "Submitted"
    assert body["gradingProgress"] == "PendingManual"
    assert "scoreGiven" not in body and "scoreMaximum" not in body


async def test_service_url_must_be_https(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    ags = make_client(lineitem="http://lms.example.edu/api/lti/line_items/9")

    with pytest.raises(ServiceError, match="refusing to send an access token"):
        await ags.post_score(score_given=1, score_maximum=2)

    assert platform.token_forms == [] and platform.service_requests == []


async def test_service_call_is_logged_without_token(
    make_client: Callable[..., AGSClient],
    platform: FakePlatform,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="lti_middleware")

    await make_client().post_score(score_given=1, score_maximum=2)

    messages = [
        r.getMessage() for r in caplog.records if r.name == "lti_middleware.services"
    ]
    assert messages == ["POST lms.example.edu/api/lti/courses/5/line_items/9/scores"]
    assert all("access-1" not in r.getMessage() for r in caplog.records)


def test_client_exposes_granted_scopes_and_urls(
    make_client: Callable[..., AGSClient],
) -> None:
    ags = make_client([SCORE, LINEITEM], lineitems=LINEITEMS_URL)

    assert ags.scopes == (SCORE, LINEITEM)
    assert ags.lineitem == LINEITEM_URL
    assert ags.lineitems == LINEITEMS_URL


def test_client_tolerates_missing_or_odd_claim_members(
    tokens: AccessTokenClient, http: httpx.AsyncClient
) -> None:
    ags = AGSClient(
        endpoint={"scope": None, "lineitem": 5},
        registration=make_registration(),
        tokens=tokens,
        http=http,
        user_id=None,
    )

    assert (ags.scopes, ags.lineitem, ags.lineitems) == ((), None, None)


# Line items

LINEITEM_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
CONTAINER_TYPE = "application/vnd.ims.lis.v2.lineitemcontainer+json"
RESULTS_TYPE = "application/vnd.ims.lis.v2.resultcontainer+json"
RESULT_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"


def item_json(number: int, **members: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": f"{LINEITEMS_URL}/{number}",
        "label": f"Item {number}",
        "scoreMaximum": 10,
    }
    item.update(members)
    return item


def answer(status: int = 200, body: Any = None, **headers: str) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    return handle


async def test_list_lineitems_with_only_write_scope_requests_write_scope(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    # CASE-14: lineitem granted, lineitem.readonly not; the write scope covers it.
    platform.service = answer(body=[item_json(9, label="Quiz")])
    ags = make_client([LINEITEM, SCORE], lineitems=LINEITEMS_URL)

    items = await ags.get_lineitems()

    assert [item.label for item in items] == ["Quiz"]
    assert platform.token_scopes == [LINEITEM]
    request = platform.service_requests[0]
    assert request.method == "GET"
    assert str(request.url) == LINEITEMS_URL
    assert request.headers["accept"] == CONTAINER_TYPE


async def test_list_lineitems_prefers_readonly_scope(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    platform.service = answer(body=[])
    ags = make_client([LINEITEM, LINEITEM_READONLY], lineitems=LINEITEMS_URL)

    assert await ags.get_lineitems() == []

    assert platform.token_scopes == [LINEITEM_READONLY]


async def test_list_lineitems_returns_typed_items_with_raw_members(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    extension = "https://canvas.instructure.com/lti/submission_type"
    platform.service = answer(
        body=[
            item_json(
                1, resourceLinkId="rl-1", tag="quiz", **{extension: {"type": "none"}}
            )
        ]
    )
    ags = make_client([LINEITEM_READONLY], lineitems=LINEITEMS_URL)

    (item,) = await ags.get_lineitems()

    assert isinstance(item, LineItem)
    assert item.id == LINEITEMS_URL + "/1"
    assert (item.label, item.score_maximum) == ("Item 1", 10.0)
    assert (item.resource_link_id, item.tag, item.resource_id) == ("rl-1", "quiz", None)
    assert item.raw[extension] == {"type": "none"}


async def test_score_token_is_not_reused_for_lineitems(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    platform.service = lambda request: httpx.Response(200, json=[])
    ags = make_client([LINEITEM, SCORE], lineitems=LINEITEMS_URL)

    await ags.post_score(score_given=1, score_maximum=2)
    await ags.get_lineitems()

    assert platform.token_scopes == [SCORE, LINEITEM]
    auth = [r.headers["authorization"] for r in platform.service_requests]
    assert auth == ["Bearer access-1", "Bearer access-2"]


async def test_list_lineitems_reads_201_items_over_pages_of_a_link_header(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    # CASE-17: D2L pages line items by 200; the next URL is used as given,
    # found among several links in a header whose name is lower case.
    page_two = LINEITEMS_URL + "?page=2&per_page=200&cursor=a%2Fb~c"
    first = LINEITEMS_URL + "?page=1&per_page=200"

    def pages(request: httpx.Request) -> httpx.Response:
        if str(request.url) == page_two:
            return httpx.Response(200, json=[item_json(201)])
        link = (
            f'<{first}>; rel="first", <{page_two}>; rel="next", '
            f'<{LINEITEMS_URL}?page=2&per_page=200>; rel="last"'
        )
        items = [item_json(n) for n in range(1, 201)]
        return httpx.Response(200, json=items, headers=[("link", link)])

    platform.service = pages
    ags = make_client([LINEITEM_READONLY], lineitems=LINEITEMS_URL)

    items = await ags.get_lineitems()

    assert [item.label for item in items] == [f"Item {n}" for n in range(1, 202)]
    assert [str(r.url) for r in platform.service_requests] == [LINEITEMS_URL, page_two]
    assert len(platform.token_forms) == 1


async def test_list_lineitems_sends_filters_and_keeps_the_container_query(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    page_two = LINEITEMS_URL + "?page=2"

    def pages(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "2":
            return httpx.Response(200, json=[item_json(2)])
        link = f'<{page_two}>; rel="next"'
        return httpx.Response(200, json=[item_json(1)], headers={"Link": link})

    platform.service = pages
    ags = make_client([LINEITEM_READONLY], lineitems=LINEITEMS_URL + "?type_id=1")

    items = await ags.get_lineitems(
        resource_link_id="rl 1", resource_id="quiz-1", tag="quiz", limit=1
    )

    assert [item.id for item in items] == [LINEITEMS_URL + "/1", LINEITEMS_URL + "/2"]
    urls = [str(r.url) for r in platform.service_requests]
    assert urls == [
        LINEITEMS_URL
        + "?type_id=1&resource_link_id=rl+1&resource_id=quiz-1&tag=quiz&limit=1",
        page_two,
    ]


async def test_list_lineitems_refuses_next_link_to_other_origin(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    platform.service = answer(
        body=[], link='<https://elsewhere.example/steal>; rel="next"'
    )
    ags = make_client([LINEITEM_READONLY], lineitems=LINEITEMS_URL)

    with pytest.raises(ServiceError, match="refusing to send an access token"):
        await ags.get_lineitems()

    assert len(platform.service_requests) == 1


async def test_list_lineitems_refuses_a_looping_next_link(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    page_two = LINEITEMS_URL + "?page=2"
    platform.service = answer(body=[item_json(1)], Link=f'<{page_two}>; rel="next"')
    ags = make_client([LINEITEM_READONLY], lineitems=LINEITEMS_URL)

    with pytest.raises(PaginationError, match="loops"):
        await ags.get_lineitems()

    assert [str(r.url) for r in platform.service_requests] == [LINEITEMS_URL, page_two]


async def test_list_lineitems_refuses_to_pass_the_page_cap(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "0")) + 1
        link = f'<{LINEITEMS_URL}?page={page}>; rel="next"'
        return httpx.Response(200, json=[item_json(page)], headers={"Link": link})

    platform.service = endless
    ags = make_client([LINEITEM_READONLY], lineitems=LINEITEMS_URL)

    with pytest.raises(PaginationError, match="page cap"):
        await ags.get_lineitems()

    assert len(platform.service_requests) == MAX_PAGES


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"items": []}, "JSON array"),
        ([item_json(1), "two"], "JSON object"),
        ([{"label": "No id", "scoreMaximum": 1}], "no id"),
        ([item_json(1, scoreMaximum=None)], "scoreMaximum"),
    ],
)
async def test_list_lineitems_refuses_a_body_that_is_not_line_items(
    make_client: Callable[..., AGSClient],
    platform: FakePlatform,
    body: Any,
    problem: str,
) -> None:
    platform.service = answer(body=body)
    ags = make_client([LINEITEM_READONLY], lineitems=LINEITEMS_URL)

    with pytest.raises(PlatformResponseError, match=problem) as caught:
        await ags.get_lineitems()

    assert caught.value.status == 200
    assert json.loads(caught.value.body) == body


async def test_get_lineitem_reads_one_item_at_its_url(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    url = MOODLE_LINEITEM + "?type_id=1"
    platform.service = answer(body=item_json(7, id=url, gradesReleased=False))
    ags = make_client([LINEITEM_READONLY], lineitem=url)

    item = await ags.get_lineitem(url)

    assert (item.id, item.grades_released) == (url, False)
    request = platform.service_requests[0]
    assert (request.method, str(request.url)) == ("GET", url)
    assert request.headers["accept"] == LINEITEM_TYPE
    assert platform.token_scopes == [LINEITEM_READONLY]


async def test_create_lineitem_posts_lineitem_media_type(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    created = {"id": LINEITEMS_URL + "/12", "label": "Essay", "scoreMaximum": 20}
    platform.service = answer(201, created)
    ags = make_client([LINEITEM], lineitems=LINEITEMS_URL)

    item = await ags.create_lineitem(
        label="Essay",
        score_maximum=20,
        resource_link_id="rl-1",
        tag="essay",
        end_date_time=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
        grades_released=True,
    )

    assert item == LineItem.from_json(created)
    request = platform.service_requests[0]
    assert (request.method, str(request.url)) == ("POST", LINEITEMS_URL)
    assert request.headers["content-type"] == LINEITEM_TYPE
    assert request.headers["accept"] == LINEITEM_TYPE
    assert sent_json(request) == {
        "label": "Essay",
        "scoreMaximum": 20,
        "resourceLinkId": "rl-1",
        "tag": "essay",
        "endDateTime": "2024-05-01T12:00:00.000000Z",
        "gradesReleased": True,
    }
    assert platform.token_scopes == [LINEITEM]


async def test_create_lineitem_refuses_an_answer_without_id(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    platform.service = answer(201, {"label": "Essay", "scoreMaximum": 20})
    ags = make_client([LINEITEM], lineitems=LINEITEMS_URL)

    with pytest.raises(PlatformResponseError, match="no id") as caught:
        await ags.create_lineitem(label="Essay", score_maximum=20)

    assert caught.value.status == 201


@pytest.mark.parametrize(
    ("label", "maximum", "problem"),
    [(" ", 10, "label"), ("Quiz", 0, "score_maximum"), ("Quiz", "10", "number")],
)
async def test_create_lineitem_validates_locally(
    make_client: Callable[..., AGSClient],
    platform: FakePlatform,
    label: str,
    maximum: Any,
    problem: str,
) -> None:
    ags = make_client([LINEITEM], lineitems=LINEITEMS_URL)

    with pytest.raises(ScoreError, match=problem):
        await ags.create_lineitem(label=label, score_maximum=maximum)

    assert platform.token_forms == []


async def test_create_lineitem_needs_write_scope_and_container(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    with pytest.raises(ScopeNotGrantedError):
        await make_client([LINEITEM_READONLY], lineitems=LINEITEMS_URL).create_lineitem(
            label="Quiz", score_maximum=10
        )
    with pytest.raises(ServiceError, match="no line item container"):
        await make_client([LINEITEM]).create_lineitem(label="Quiz", score_maximum=10)

    assert platform.token_forms == []


async def test_update_lineitem_puts_the_whole_item_to_its_id(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    url = MOODLE_LINEITEM + "?type_id=1"
    extension = "https://moodle.example/ext/grade_type"
    received = item_json(7, id=url, tag="quiz", **{extension: "points"})
    ags = make_client([LINEITEM], lineitem=url)
    item = LineItem.from_json(received)
    platform.service = lambda request: httpx.Response(200, content=request.content)

    updated = await ags.update_lineitem(dataclasses.replace(item, label="Quiz (v2)"))

    assert updated.label == "Quiz (v2)" and updated.id == url
    request = platform.service_requests[0]
    assert (request.method, str(request.url)) == ("PUT", url)
    assert request.headers["content-type"] == LINEITEM_TYPE
    assert request.headers["accept"] == LINEITEM_TYPE
    assert sent_json(request) == {**received, "label": "Quiz (v2)"}
    assert platform.token_scopes == [LINEITEM]


async def test_update_lineitem_with_an_empty_answer_returns_the_item_sent(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    platform.service = lambda request: httpx.Response(204)
    ags = make_client([LINEITEM], lineitems=LINEITEMS_URL)
    item = LineItem(id=LINEITEMS_URL + "/3", label="Lab", score_maximum=5)

    assert await ags.update_lineitem(item) is item


async def test_update_lineitem_checks_the_item_before_any_request(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    ags = make_client([LINEITEM], lineitems=LINEITEMS_URL)

    with pytest.raises(ServiceError, match="no id"):
        await ags.update_lineitem(LineItem(label="Lab", score_maximum=5))
    with pytest.raises(ScoreError, match="label"):
        await ags.update_lineitem(
            LineItem(id=LINEITEMS_URL + "/3", label="", score_maximum=5)
        )
    with pytest.raises(ScopeNotGrantedError):
        await make_client([LINEITEM_READONLY], lineitems=LINEITEMS_URL).update_lineitem(
            LineItem(id=LINEITEMS_URL + "/3", label="Lab", score_maximum=5)
        )

    assert platform.token_forms == [] and platform.service_requests == []


async def test_delete_lineitem_deletes_at_its_url(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    platform.service = lambda request: httpx.Response(204)
    ags = make_client([LINEITEM], lineitems=LINEITEMS_URL)
    item = LineItem.from_json(item_json(4))

    assert await ags.delete_lineitem(item) is None
    await ags.delete_lineitem(LINEITEMS_URL + "/5?type_id=1")

    requests = [(r.method, str(r.url)) for r in platform.service_requests]
    assert requests == [
        ("DELETE", LINEITEMS_URL + "/4"),
        ("DELETE", LINEITEMS_URL + "/5?type_id=1"),
    ]
    assert platform.token_scopes == [LINEITEM]


@pytest.mark.parametrize(
    "operation",
    ["get_lineitem", "update_lineitem", "delete_lineitem", "get_results", "post_score"],
)
async def test_a_line_item_elsewhere_gets_no_access_token(
    make_client: Callable[..., AGSClient], platform: FakePlatform, operation: str
) -> None:
    # An item's id (or a result's scoreOf) from a listing is still a URL the
    # platform chose: only the launch's service origins get the token.
    ags = make_client(
        [LINEITEM, RESULT_READONLY, SCORE], lineitems=LINEITEMS_URL, lineitem=None
    )
    item = LineItem(
        id="https://attacker.example/lineitems/1", label="X", score_maximum=1
    )
    calls: dict[str, Callable[[], Any]] = {
        "get_lineitem": lambda: ags.get_lineitem(item),
        "update_lineitem": lambda: ags.update_lineitem(item),
        "delete_lineitem": lambda: ags.delete_lineitem(item),
        "get_results": lambda: ags.get_results(item),
        "post_score": lambda: ags.post_score(
            score_given=1, score_maximum=1, lineitem=item
        ),
    }

    with pytest.raises(ServiceError, match="refusing to send an access token"):
        await calls[operation]()

    assert platform.token_forms == [] and platform.service_requests == []


# get_or_create_lineitem


async def test_get_or_create_returns_the_one_matching_item(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    platform.service = answer(body=[item_json(3, resourceId="quiz-1", tag="quiz")])
    ags = make_client([LINEITEM], lineitems=LINEITEMS_URL)

    item = await ags.get_or_create_lineitem(
        resource_id="quiz-1", tag="quiz", label="Quiz", score_maximum=10
    )

    assert item.id == LINEITEMS_URL + "/3"
    (request,) = platform.service_requests
    assert str(request.url) == LINEITEMS_URL + "?resource_id=quiz-1&tag=quiz"
    assert platform.token_scopes == [LINEITEM]


async def test_get_or_create_creates_when_none_matches(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    created = item_json(8, resourceId="quiz-1", label="Quiz")

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            # This platform ignores filters: the other item must not be taken.
            return httpx.Response(200, json=[item_json(2, resourceId="quiz-2")])
        return httpx.Response(201, json=created)

    platform.service = handle
    ags = make_client([LINEITEM, LINEITEM_READONLY], lineitems=LINEITEMS_URL)

    item = await ags.get_or_create_lineitem(
        resource_id="quiz-1", label="Quiz", score_maximum=10
    )

    assert item.id == created["id"]
    get, post = platform.service_requests
    assert str(get.url) == LINEITEMS_URL + "?resource_id=quiz-1"
    assert (post.method, str(post.url)) == ("POST", LINEITEMS_URL)
    assert sent_json(post) == {
        "label": "Quiz",
        "scoreMaximum": 10,
        "resourceId": "quiz-1",
    }
    assert platform.token_scopes == [LINEITEM_READONLY, LINEITEM]


async def test_get_or_create_refuses_to_guess_between_several(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    platform.service = answer(
        body=[item_json(3, tag="quiz"), item_json(4, tag="quiz"), item_json(5)]
    )
    ags = make_client([LINEITEM], lineitems=LINEITEMS_URL)

    with pytest.raises(ServiceError, match="2 line items match") as caught:
        await ags.get_or_create_lineitem(tag="quiz", label="Quiz", score_maximum=10)

    assert LINEITEMS_URL + "/3" in str(caught.value)
    assert LINEITEMS_URL + "/4" in str(caught.value)
    assert LINEITEMS_URL + "/5" not in str(caught.value)
    assert [r.method for r in platform.service_requests] == ["GET"]


async def test_get_or_create_needs_a_key_and_the_write_scope(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    with pytest.raises(ScoreError, match="resource_id or tag"):
        await make_client([LINEITEM], lineitems=LINEITEMS_URL).get_or_create_lineitem(
            label="Quiz", score_maximum=10
        )
    # Only read-only granted: it may have to create, so nothing is sent.
    readonly = make_client([LINEITEM_READONLY, SCORE], lineitems=LINEITEMS_URL)
    with pytest.raises(ScopeNotGrantedError) as caught:
        await readonly.get_or_create_lineitem(tag="q", label="Quiz", score_maximum=10)

    assert caught.value.scope == LINEITEM
    assert platform.token_forms == [] and platform.service_requests == []


# Results


def result_json(user: str, score: float, **members: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": f"{LINEITEM_URL}/results/{user}",
        "scoreOf": LINEITEM_URL,
        "userId": user,
        "resultScore": score,
        "resultMaximum": 10,
    }
    result.update(members)
    return result


async def test_get_results_reads_the_launch_line_items_results(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    platform.service = answer(
        body=[result_json("u-1", 7, comment="Good"), result_json("u-2", 3)]
    )
    ags = make_client([RESULT_READONLY, LINEITEM, SCORE])

    results = await ags.get_results()

    assert [(r.user_id, r.result_score, r.comment) for r in results] == [
        ("u-1", 7.0, "Good"),
        ("u-2", 3.0, None),
    ]
    assert all(isinstance(r, Result) for r in results)
    assert results[0].score_of == LINEITEM_URL
    request = platform.service_requests[0]
    assert (request.method, str(request.url)) == ("GET", LINEITEM_URL + "/results")
    assert request.headers["accept"] == RESULTS_TYPE
    assert platform.token_scopes == [RESULT_READONLY]


async def test_get_results_keeps_the_line_item_query_and_adds_filters(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    url = MOODLE_LINEITEM + "?type_id=1"
    platform.service = answer(body=[result_json("u-1", 7)])
    ags = make_client([RESULT_READONLY], lineitem=url, lineitems=LINEITEMS_URL)

    await ags.get_results(user_id="u-1", limit=50)
    await ags.get_results(LineItem.from_json(item_json(4)))

    urls = [str(r.url) for r in platform.service_requests]
    assert urls == [
        MOODLE_LINEITEM + "/results?type_id=1&user_id=u-1&limit=50",
        LINEITEMS_URL + "/4/results",
    ]


async def test_get_results_reads_every_page(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    page_two = LINEITEM_URL + "/results?limit=2&page=2"

    def pages(request: httpx.Request) -> httpx.Response:
        if str(request.url) == page_two:
            return httpx.Response(200, json=[result_json("u-3", 1)])
        link = (
            f'<{page_two}>; rel="next", <{LINEITEM_URL}/results?limit=2>; rel="first"'
        )
        body = [result_json("u-1", 7), result_json("u-2", 3)]
        return httpx.Response(200, json=body, headers={"LINK": link})

    platform.service = pages
    ags = make_client([RESULT_READONLY])

    results = await ags.get_results(limit=2)

    assert [r.user_id for r in results] == ["u-1", "u-2", "u-3"]
    urls = [str(r.url) for r in platform.service_requests]
    assert urls == [LINEITEM_URL + "/results?limit=2", page_two]


async def test_get_results_refuses_a_result_without_user(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    platform.service = answer(body=[{"resultScore": 1}])

    with pytest.raises(PlatformResponseError, match="userId"):
        await make_client([RESULT_READONLY]).get_results()


async def test_get_results_needs_a_line_item_and_its_scope(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    with pytest.raises(ServiceError, match="no line item"):
        await make_client([RESULT_READONLY], lineitem=None).get_results()
    with pytest.raises(ScopeNotGrantedError) as caught:
        await make_client([LINEITEM, LINEITEM_READONLY, SCORE]).get_results()

    assert caught.value.scope == RESULT_READONLY
    assert platform.token_forms == [] and platform.service_requests == []


# Scope selection and platform errors, for every operation

Operation = Callable[[AGSClient], Any]
OPERATIONS: dict[str, Operation] = {
    "get_lineitems": lambda ags: ags.get_lineitems(),
    "get_lineitem": lambda ags: ags.get_lineitem(LINEITEM_URL),
    "create_lineitem": lambda ags: ags.create_lineitem(label="Q", score_maximum=1),
    "update_lineitem": lambda ags: ags.update_lineitem(
        LineItem(id=LINEITEM_URL, label="Q", score_maximum=1)
    ),
    "delete_lineitem": lambda ags: ags.delete_lineitem(LINEITEM_URL),
    "get_or_create_lineitem": lambda ags: ags.get_or_create_lineitem(
        tag="q", label="Q", score_maximum=1
    ),
    "get_results": lambda ags: ags.get_results(),
    "post_score": lambda ags: ags.post_score(score_given=1, score_maximum=1),
}
#: What each operation answers with on success.
SUCCESS: dict[str, Any] = {
    "get_lineitems": [],
    "get_lineitem": item_json(9),
    "create_lineitem": item_json(9),
    "update_lineitem": item_json(9),
    "delete_lineitem": None,
    "get_or_create_lineitem": [item_json(9, tag="q")],
    "get_results": [],
    "post_score": None,
}
ALL = (LINEITEM, LINEITEM_READONLY, RESULT_READONLY, SCORE)


@pytest.mark.parametrize(
    ("operation", "granted", "requested"),
    [
        ("get_lineitems", ALL, LINEITEM_READONLY),
        ("get_lineitems", (LINEITEM,), LINEITEM),
        ("get_lineitem", ALL, LINEITEM_READONLY),
        ("get_lineitem", (LINEITEM, SCORE), LINEITEM),
        ("create_lineitem", ALL, LINEITEM),
        ("update_lineitem", ALL, LINEITEM),
        ("delete_lineitem", ALL, LINEITEM),
        ("get_or_create_lineitem", (LINEITEM,), LINEITEM),
        ("get_results", ALL, RESULT_READONLY),
        ("post_score", ALL, SCORE),
    ],
)
async def test_each_operation_asks_for_exactly_one_granted_scope(
    make_client: Callable[..., AGSClient],
    platform: FakePlatform,
    operation: str,
    granted: tuple[str, ...],
    requested: str,
) -> None:
    platform.service = answer(body=SUCCESS[operation])
    ags = make_client(granted, lineitems=LINEITEMS_URL)

    await OPERATIONS[operation](ags)

    assert set(platform.token_scopes) == {requested}
    assert platform.service_requests


@pytest.mark.parametrize(
    ("operation", "granted"),
    [
        ("get_lineitems", (SCORE, RESULT_READONLY)),
        ("get_lineitem", (SCORE,)),
        ("create_lineitem", (LINEITEM_READONLY, SCORE)),
        ("update_lineitem", (LINEITEM_READONLY,)),
        ("delete_lineitem", (LINEITEM_READONLY, RESULT_READONLY)),
        ("get_or_create_lineitem", (LINEITEM_READONLY,)),
        ("get_results", (LINEITEM, LINEITEM_READONLY, SCORE)),
        ("post_score", (LINEITEM, RESULT_READONLY)),
        ("get_lineitems", ()),
    ],
)
async def test_an_operation_without_its_scope_sends_nothing(
    make_client: Callable[..., AGSClient],
    platform: FakePlatform,
    operation: str,
    granted: tuple[str, ...],
) -> None:
    ags = make_client(granted, lineitems=LINEITEMS_URL)

    with pytest.raises(ScopeNotGrantedError, match="scope_not_granted"):
        await OPERATIONS[operation](ags)

    assert platform.token_forms == [] and platform.service_requests == []


PLATFORM_ERRORS = [
    pytest.param(
        400,
        '{"error": "invalid_request", "error_description": "bad line item"}',
        "application/json",
        id="400-oauth-json",
    ),
    pytest.param(
        403,
        '{"error": "insufficient_scope", "error_description": "needs lineitem"}',
        "application/json",
        id="403-oauth-json",
    ),
    pytest.param(
        404, '{"errors": [{"message": "not found"}]}', "application/json", id="404"
    ),
    pytest.param(500, "<html>Internal Server Error</html>", "text/html", id="500"),
]


@pytest.mark.parametrize("operation", list(OPERATIONS))
@pytest.mark.parametrize(("status", "body", "content_type"), PLATFORM_ERRORS)
async def test_platform_error_answers_carry_status_and_body(
    make_client: Callable[..., AGSClient],
    platform: FakePlatform,
    operation: str,
    status: int,
    body: str,
    content_type: str,
) -> None:
    platform.service = lambda request: httpx.Response(
        status, text=body, headers={"Content-Type": content_type}
    )
    ags = make_client(ALL, lineitems=LINEITEMS_URL)

    with pytest.raises(PlatformResponseError) as caught:
        await OPERATIONS[operation](ags)

    error = caught.value
    assert (error.status, error.body) == (status, body)
    assert error.url == str(platform.service_requests[0].url)
    assert str(status) in str(error)
    assert "access-1" not in str(error)
    assert len(platform.service_requests) == 1


@pytest.mark.parametrize(
    "operation",
    [
        "get_lineitems",
        "get_lineitem",
        "create_lineitem",
        "update_lineitem",
        "get_or_create_lineitem",
        "get_results",
    ],
)
async def test_a_2xx_answer_that_is_not_json_is_an_error(
    make_client: Callable[..., AGSClient], platform: FakePlatform, operation: str
) -> None:
    platform.service = lambda request: httpx.Response(
        200, text="<html>Log in</html>", headers={"Content-Type": "text/html"}
    )
    ags = make_client(ALL, lineitems=LINEITEMS_URL)

    with pytest.raises(PlatformResponseError) as caught:
        await OPERATIONS[operation](ags)

    assert (caught.value.status, caught.value.body) == (200, "<html>Log in</html>")


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_a_503_is_retried_except_on_line_item_creation(
    make_client: Callable[..., AGSClient], platform: FakePlatform, operation: str
) -> None:
    platform.service = lambda request: httpx.Response(503, text="")
    ags = make_client(ALL, lineitems=LINEITEMS_URL)

    with pytest.raises(ServiceError) as caught:
        await OPERATIONS[operation](ags)

    error = caught.value
    if operation == "create_lineitem":
        assert isinstance(error, PlatformResponseError) and not error.retryable
        assert len(platform.service_requests) == 1
    else:
        assert isinstance(error, ServiceUnavailableError) and error.retryable
        assert (error.body, error.attempts) == ("", 4)
        assert len(platform.service_requests) == 4
    assert error.status == 503


def test_documents_are_still_importable_from_ags() -> None:
    from lti_middleware import ags, scores

    for name in ("Score", "ActivityProgress", "GradingProgress", "scores_url"):
        assert getattr(ags, name) is getattr(scores, name)
    assert (ags.LineItem, ags.Result) == (scores.LineItem, scores.Result)

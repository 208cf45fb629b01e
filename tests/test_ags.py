"""Assignment and Grade Services: scores, scopes, tokens, line items."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from lti_middleware.ags import (
    ActivityProgress,
    AGSClient,
    GradingProgress,
    Score,
    scores_url,
)
from lti_middleware.config import Registration
from lti_middleware.exceptions import (
    PaginationError,
    PlatformResponseError,
    ScopeNotGrantedError,
    ScoreError,
    ServiceError,
)
from lti_middleware.keys import StaticKeyProvider, ToolKey, generate_key
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

    with pytest.raises(ServiceError, match="could not be sent") as caught:
        await make_client().post_score(score_given=1, score_maximum=2)

    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)


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


async def test_list_lineitems_with_only_write_scope_requests_write_scope(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    # CASE-14: lineitem granted, lineitem.readonly not; the write scope covers it.
    platform.service = lambda request: httpx.Response(
        200, json=[{"id": LINEITEM_URL, "label": "Quiz", "scoreMaximum": 10}]
    )
    ags = make_client([LINEITEM, SCORE], lineitems=LINEITEMS_URL)

    items = await ags.get_lineitems()

    assert [item["label"] for item in items] == ["Quiz"]
    assert platform.token_scopes == [LINEITEM]
    request = platform.service_requests[0]
    assert request.method == "GET"
    assert request.headers["accept"] == (
        "application/vnd.ims.lis.v2.lineitemcontainer+json"
    )


async def test_list_lineitems_prefers_readonly_scope(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    platform.service = lambda request: httpx.Response(200, json=[])
    ags = make_client([LINEITEM, LINEITEM_READONLY], lineitems=LINEITEMS_URL)

    await ags.get_lineitems()

    assert platform.token_scopes == [LINEITEM_READONLY]


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


async def test_list_lineitems_without_scope_sends_nothing(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    ags = make_client([SCORE], lineitems=LINEITEMS_URL)

    with pytest.raises(ScopeNotGrantedError):
        await ags.get_lineitems()

    assert platform.token_forms == [] and platform.service_requests == []


async def test_list_lineitems_follows_next_links_and_keeps_filters(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    page_two = LINEITEMS_URL + "?page=2&tag=quiz"

    def pages(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "2":
            return httpx.Response(200, json=[{"id": "b"}])
        link = f'<{page_two}>; rel="next"'
        return httpx.Response(200, json=[{"id": "a"}], headers={"Link": link})

    platform.service = pages
    ags = make_client([LINEITEM_READONLY], lineitems=LINEITEMS_URL + "?type_id=1")

    items = await ags.get_lineitems(tag="quiz", limit=1)

    assert [item["id"] for item in items] == ["a", "b"]
    urls = [str(r.url) for r in platform.service_requests]
    assert urls == [LINEITEMS_URL + "?type_id=1&tag=quiz&limit=1", page_two]


async def test_list_lineitems_refuses_next_link_to_other_origin(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    link = '<https://elsewhere.example/steal>; rel="next"'
    platform.service = lambda request: httpx.Response(
        200, json=[], headers={"Link": link}
    )
    ags = make_client([LINEITEM_READONLY], lineitems=LINEITEMS_URL)

    with pytest.raises(ServiceError, match="refusing to send an access token"):
        await ags.get_lineitems()

    assert len(platform.service_requests) == 1


async def test_list_lineitems_refuses_a_looping_next_link(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    page_two = LINEITEMS_URL + "?page=2"
    link = f'<{page_two}>; rel="next"'
    platform.service = lambda request: httpx.Response(
        200, json=[{"id": "a"}], headers={"Link": link}
    )
    ags = make_client([LINEITEM_READONLY], lineitems=LINEITEMS_URL)

    with pytest.raises(PaginationError, match="loops"):
        await ags.get_lineitems()

    assert len(platform.service_requests) == 2


async def test_list_lineitems_refuses_to_pass_the_page_cap(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    def endless(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", "0")) + 1
        link = f'<{LINEITEMS_URL}?page={page}>; rel="next"'
        return httpx.Response(200, json=[{"id": str(page)}], headers={"Link": link})

    platform.service = endless
    ags = make_client([LINEITEM_READONLY], lineitems=LINEITEMS_URL)

    with pytest.raises(PaginationError, match="page cap"):
        await ags.get_lineitems()

    assert len(platform.service_requests) == MAX_PAGES


async def test_list_lineitems_rejects_non_array_answer(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    platform.service = lambda request: httpx.Response(200, json={"items": []})
    ags = make_client([LINEITEM_READONLY], lineitems=LINEITEMS_URL)

    with pytest.raises(PlatformResponseError, match="JSON array"):
        await ags.get_lineitems()


async def test_create_lineitem_posts_lineitem_media_type(
    make_client: Callable[..., AGSClient], platform: FakePlatform
) -> None:
    created = {"id": LINEITEMS_URL + "/12", "label": "Essay", "scoreMaximum": 20}
    platform.service = lambda request: httpx.Response(201, json=created)
    ags = make_client([LINEITEM], lineitems=LINEITEMS_URL)

    item = await ags.create_lineitem(
        label="Essay",
        score_maximum=20,
        resource_link_id="rl-1",
        tag="essay",
        end_date_time=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    )

    assert item == created
    request = platform.service_requests[0]
    lineitem_type = "application/vnd.ims.lis.v2.lineitem+json"
    assert request.headers["content-type"] == lineitem_type
    assert request.headers["accept"] == lineitem_type
    assert sent_json(request) == {
        "label": "Essay",
        "scoreMaximum": 20,
        "resourceLinkId": "rl-1",
        "tag": "essay",
        "endDateTime": "2024-05-01T12:00:00.000000Z",
    }
    assert platform.token_scopes == [LINEITEM]


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


# The score serializer (CASE-15)


def test_score_rejects_naive_timestamp() -> None:
    with pytest.raises(ScoreError, match="no time zone"):
        Score(
            user_id="u-1",
            score_given=7,
            score_maximum=10,
            timestamp=datetime(2024, 4, 7, 13, 26, 14, 786962),
        )


def test_score_default_timestamp_is_now_utc_with_offset() -> None:
    before = datetime.now(UTC)

    stamp = Score(user_id="u-1", score_given=7, score_maximum=10).to_json()["timestamp"]

    assert TIMESTAMP.match(stamp)
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0)
    assert before <= parsed <= datetime.now(UTC)


def test_score_timestamp_keeps_sub_second_precision_on_whole_seconds() -> None:
    score = Score(user_id="u-1", timestamp=datetime(2024, 4, 7, 13, 26, 14, tzinfo=UTC))

    assert score.to_json()["timestamp"] == "2024-04-07T13:26:14.000000Z"


def test_score_timestamp_with_offset_is_sent_as_the_same_instant() -> None:
    paris = timezone(timedelta(hours=2))
    score = Score(
        user_id="u-1", timestamp=datetime(2024, 4, 7, 15, 0, 0, 5, tzinfo=paris)
    )

    stamp = score.to_json()["timestamp"]

    assert stamp == "2024-04-07T13:00:00.000005Z"
    assert TIMESTAMP.match(stamp)


def test_score_given_without_maximum_fails() -> None:
    with pytest.raises(ScoreError, match="score_maximum"):
        Score(user_id="u-1", score_given=7, score_maximum=None)


@pytest.mark.parametrize(
    ("given", "maximum", "problem"),
    [
        (-1, 10, ">= 0"),
        ("7", 10, "number"),
        (True, 10, "number"),
        (math.nan, 10, "finite"),
        (math.inf, 10, "finite"),
        (7, 0, "> 0"),
        (7, -10, "> 0"),
        (7, "10", "number"),
        (None, False, "number"),
    ],
)
def test_score_numbers_are_validated(given: Any, maximum: Any, problem: str) -> None:
    with pytest.raises(ScoreError, match=problem):
        Score(user_id="u-1", score_given=given, score_maximum=maximum)


def test_score_allows_zero_and_extra_credit() -> None:
    assert (
        Score(user_id="u-1", score_given=0, score_maximum=10).to_json()["scoreGiven"]
        == 0
    )
    assert (
        Score(user_id="u-1", score_given=12.5, score_maximum=10).to_json()["scoreGiven"]
        == 12.5
    )


@pytest.mark.parametrize("user_id", ["", "   ", None, 42])
def test_score_needs_user_id(user_id: Any) -> None:
    with pytest.raises(ScoreError, match="user_id"):
        Score(user_id=user_id)


@pytest.mark.parametrize(
    ("activity", "grading"),
    [
        ("completed", "FullyGraded"),
        ("Completed", "Graded"),
        (GradingProgress.FAILED, "Failed"),
    ],
)
def test_score_progress_values_must_be_spec_values(activity: Any, grading: Any) -> None:
    with pytest.raises(ScoreError):
        Score(user_id="u-1", activity_progress=activity, grading_progress=grading)


def test_progress_enums_have_exact_spec_values() -> None:
    assert [a.value for a in ActivityProgress] == [
        "Initialized",
        "Started",
        "InProgress",
        "Submitted",
        "Completed",
    ]
    assert [g.value for g in GradingProgress] == [
        "FullyGraded",
        "Pending",
        "PendingManual",
        "Failed",
        "NotReady",
    ]


def test_score_accepts_progress_strings_and_stores_enums() -> None:
    score = Score(
        user_id="u-1", activity_progress="InProgress", grading_progress="NotReady"
    )

    assert score.activity_progress is ActivityProgress.IN_PROGRESS
    assert score.grading_progress is GradingProgress.NOT_READY


def test_score_optional_members_serialize_in_spec_names() -> None:
    started = datetime(2024, 4, 7, 12, 0, tzinfo=UTC)
    score = Score(
        user_id="u-1",
        score_given=3,
        score_maximum=4,
        comment="ok",
        scoring_user_id="teacher-9",
        started_at=started,
        submitted_at=started + timedelta(minutes=30),
        extensions={"https://tool.example/ext/attempts": 2},
    )

    body = score.to_json()

    assert body["scoringUserId"] == "teacher-9"
    assert body["submission"] == {
        "startedAt": "2024-04-07T12:00:00.000000Z",
        "submittedAt": "2024-04-07T12:30:00.000000Z",
    }
    assert body["https://tool.example/ext/attempts"] == 2
    assert body["comment"] == "ok"


def test_score_omits_absent_optional_members() -> None:
    body = Score(user_id="u-1").to_json()

    assert set(body) == {"userId", "activityProgress", "gradingProgress", "timestamp"}


@pytest.mark.parametrize("key", ["attempts", "urn:x:attempts", "/ext/attempts"])
def test_score_extension_keys_must_be_full_urls(key: str) -> None:
    with pytest.raises(ScoreError, match="full URL"):
        Score(user_id="u-1", extensions={key: 1})


def test_score_rejects_naive_submission_times() -> None:
    with pytest.raises(ScoreError, match="submitted_at"):
        Score(user_id="u-1", submitted_at=datetime(2024, 4, 7, 12, 0))


def test_score_is_frozen() -> None:
    score = Score(user_id="u-1")

    with pytest.raises(AttributeError):
        score.user_id = "u-2"  # type: ignore[misc]


# scores_url


@pytest.mark.parametrize(
    ("lineitem", "expected"),
    [
        (LINEITEM_URL, LINEITEM_URL + "/scores"),
        (LINEITEM_URL + "/", LINEITEM_URL + "/scores"),
        (MOODLE_LINEITEM + "?type_id=1", MOODLE_LINEITEM + "/scores?type_id=1"),
        (
            "https://lms.example.edu/lineitems/7/?a=1&b=2",
            "https://lms.example.edu/lineitems/7/scores?a=1&b=2",
        ),
    ],
)
def test_scores_url_adds_to_path_and_keeps_query(lineitem: str, expected: str) -> None:
    assert scores_url(lineitem) == expected

"""Names and Role Provisioning Services: rosters, paging, scopes, errors.

The platform's token and membership endpoints are fakes behind an
httpx.MockTransport that record every request; nothing leaves the process.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lti_middleware import Member, MemberStatus, NRPSClient, Roster
from lti_middleware import claims as c
from lti_middleware.config import Registration
from lti_middleware.exceptions import (
    PaginationError,
    PlatformResponseError,
    ScopeNotGrantedError,
    ServiceError,
    ServiceUnavailableError,
    TokenRequestError,
)
from lti_middleware.keys import StaticKeyProvider, ToolKey, generate_key
from lti_middleware.nrps import parse_member
from lti_middleware.retries import RetryPolicy
from lti_middleware.services import MAX_PAGES
from lti_middleware.tokens import AccessTokenClient

from .conftest import TOKEN_URL, FakePlatform, ToolClient, make_tool

NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
MEMBERSHIPS_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
ROSTER = "https://lms.example.edu/api/lti/courses/5/names_and_roles"
PAGE_2 = ROSTER + "?page=2&per_page=50"
PAGE_1 = ROSTER + "?page=1&per_page=50"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
TEACHING_ASSISTANT = (
    "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"
)
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.the-launch-id-token.sig"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeRoster:
    """A token endpoint and a membership service that record their requests."""

    def __init__(self) -> None:
        self.token_forms: list[dict[str, str]] = []
        self.requests: list[httpx.Request] = []
        self.token_answer: httpx.Response | None = None
        self.service: Handler = lambda request: container([])

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            self.token_forms.append(form)
            if self.token_answer is not None:
                return self.token_answer
            return httpx.Response(
                200,
                json={
                    "access_token": f"access-{len(self.token_forms)}",
                    "token_type": "Bearer",
                    "expires_in": 3600,
                },
            )

        self.requests.append(request)
        return self.service(request)

    @property
    def urls(self) -> list[str]:
        return [str(request.url) for request in self.requests]


def member_json(number: int, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": "Active",
        "user_id": f"user-{number}",
        "roles": [LEARNER],
        "name": f"Student {number}",
        "email": f"student{number}@example.edu",
    }
    data.update(extra)
    return data


def container(
    members: Any, *, link: str | None = None, status: int = 200
) -> httpx.Response:
    body = {
        "id": ROSTER,
        "context": {"id": "ctx-5", "label": "BIO101", "title": "Biology"},
        "members": members,
    }
    headers = {"Content-Type": MEMBERSHIPS_TYPE}
    if link is not None:
        headers["Link"] = link
    return httpx.Response(status, json=body, headers=headers)


def canvas_pages(loop: bool = False) -> Handler:
    """CASE-17: 63 members over pages of 50 and 13, as Canvas sends them."""

    def handle(request: httpx.Request) -> httpx.Response:
        if str(request.url) == PAGE_2:
            link = f'<{PAGE_2}>; rel="next"' if loop else None
            return container([member_json(n) for n in range(50, 63)], link=link)
        link = f'<{PAGE_2}>; rel="next", <{PAGE_1}>; rel="first"'
        return container([member_json(n) for n in range(50)], link=link)

    return handle


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
def fake() -> FakeRoster:
    return FakeRoster()


@pytest.fixture
async def http(fake: FakeRoster) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
        yield client


@pytest.fixture
def make_client(key: ToolKey, http: httpx.AsyncClient) -> Callable[..., NRPSClient]:
    tokens = AccessTokenClient(key_provider=StaticKeyProvider([key]), http=http)

    def make(
        service: Any = "claim",
        *,
        url: str = ROSTER,
        resource_link_id: str | None = "rl-1",
    ) -> NRPSClient:
        if service == "claim":
            service = {"context_memberships_url": url, "service_versions": ["2.0"]}
        return NRPSClient(
            service=service,
            registration=make_registration(),
            tokens=tokens,
            http=http,
            resource_link_id=resource_link_id,
            retry=RetryPolicy(sleep=no_wait),
        )

    return make


async def no_wait(seconds: float) -> None:
    """Retries here need not wait (tests/test_service_retry.py times them)."""


def ids(members: Any) -> list[str]:
    return [member.user_id for member in members]


def query_of(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(request.url)).query)


# CASE-17: paging


async def test_get_members_reads_every_page_of_a_canvas_roster(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    fake.service = canvas_pages()

    roster = await make_client().get_members()

    assert len(roster) == 63
    assert ids(roster) == [f"user-{n}" for n in range(63)]
    assert fake.urls == [ROSTER, PAGE_2]


async def test_next_link_is_requested_verbatim(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    # Filters are not added again, odd encodings and order are left alone.
    odd_next = ROSTER + "?cursor=a%2Fb%3D&role=x&z=1&a=2"

    def handle(request: httpx.Request) -> httpx.Response:
        if str(request.url) == odd_next:
            return container([member_json(2)])
        return container([member_json(1)], link=f'<{odd_next}>; rel="next"')

    fake.service = handle

    roster = await make_client().get_members(role=LEARNER, limit=1)

    assert ids(roster) == ["user-1", "user-2"]
    assert fake.requests[1].url.raw_path == b"/api/lti/courses/5/names_and_roles" + (
        b"?cursor=a%2Fb%3D&role=x&z=1&a=2"
    )


async def test_each_page_reuses_the_cached_token(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    fake.service = canvas_pages()

    await make_client().get_members()

    assert len(fake.token_forms) == 1
    bearers = {request.headers["authorization"] for request in fake.requests}
    assert bearers == {"Bearer access-1"}


async def test_a_next_link_looping_back_raises_pagination_error(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    fake.service = canvas_pages(loop=True)

    with pytest.raises(PaginationError, match="loops"):
        await make_client().get_members()

    assert fake.urls == [ROSTER, PAGE_2]


async def test_a_roster_past_the_page_cap_raises_pagination_error(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        page = int(query_of(request).get("page", ["0"])[0])
        link = f'<{ROSTER}?page={page + 1}>; rel="next"'
        return container([member_json(page)], link=link)

    fake.service = handle

    with pytest.raises(PaginationError, match="page cap"):
        await make_client().get_members()

    assert len(fake.requests) == MAX_PAGES


async def test_link_header_name_is_case_insensitive_and_may_repeat(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if str(request.url) == PAGE_2:
            return container([member_json(2)])
        headers = [
            ("LINK", f'<{PAGE_1}>; rel="first"'),
            ("lInK", f'<{PAGE_2}>; rel="next"'),
        ]
        return httpx.Response(200, json={"members": [member_json(1)]}, headers=headers)

    fake.service = handle

    assert ids(await make_client().get_members()) == ["user-1", "user-2"]


async def test_relative_next_link_is_resolved_against_the_page(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "2":
            return container([member_json(2)])
        return container([member_json(1)], link='<names_and_roles?page=2>; rel="next"')

    fake.service = handle

    await make_client().get_members()

    assert fake.urls == [ROSTER, ROSTER + "?page=2"]


async def test_next_link_to_another_origin_is_refused(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    elsewhere = "https://evil.example/names_and_roles?page=2"
    fake.service = lambda request: container(
        [member_json(1)], link=f'<{elsewhere}>; rel="next"'
    )

    with pytest.raises(ServiceError, match="evil.example"):
        await make_client().get_members()

    assert fake.urls == [ROSTER]


@pytest.mark.parametrize(
    "members",
    [{"user_id": "u"}, None, "members", 3],
    ids=["object", "null", "string", "number"],
)
async def test_members_that_are_not_an_array_are_an_error(
    make_client: Callable[..., NRPSClient], fake: FakeRoster, members: Any
) -> None:
    fake.service = lambda request: container(members)

    with pytest.raises(PlatformResponseError, match="members array") as caught:
        await make_client().get_members()

    assert caught.value.status == 200


async def test_a_next_page_named_only_in_the_body_is_not_a_silent_partial_roster(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    body = {"members": [member_json(1)], "next": PAGE_2}
    fake.service = lambda request: httpx.Response(200, json=body)

    with pytest.raises(PaginationError, match="Link header"):
        await make_client().get_members()

    assert fake.urls == [ROSTER]


async def test_a_body_next_beside_a_link_header_is_ignored(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if str(request.url) == PAGE_2:
            return container([member_json(2)])
        body = {"members": [member_json(1)], "next": PAGE_2}
        return httpx.Response(
            200, json=body, headers={"Link": f'<{PAGE_2}>; rel="next"'}
        )

    fake.service = handle

    assert ids(await make_client().get_members()) == ["user-1", "user-2"]


async def test_a_container_without_members_is_an_error(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    fake.service = lambda request: httpx.Response(200, json={"id": ROSTER})

    with pytest.raises(PlatformResponseError, match="members array"):
        await make_client().get_members()


async def test_a_bare_array_body_is_an_error(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    fake.service = lambda request: httpx.Response(200, json=[member_json(1)])

    with pytest.raises(PlatformResponseError, match="membership container"):
        await make_client().get_members()


async def test_an_empty_members_array_is_an_empty_roster(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    fake.service = lambda request: container([])

    roster = await make_client().get_members()

    assert roster.members == ()
    assert len(roster) == 0
    assert roster.context is not None and roster.context.id == "ctx-5"


async def test_a_bad_member_on_a_later_page_fails_the_whole_listing(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if str(request.url) == PAGE_2:
            return container([member_json(2), {"roles": [LEARNER], "name": "Zoe"}])
        return container([member_json(1)], link=f'<{PAGE_2}>; rel="next"')

    fake.service = handle

    with pytest.raises(PlatformResponseError, match="member 1: a member has no"):
        await make_client().get_members()


async def test_a_malformed_body_is_kept_on_the_error_but_not_in_its_message(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    body = {"members": {"name": "Zoe Private", "email": "zoe@example.edu"}}
    fake.service = lambda request: httpx.Response(200, json=body)

    with pytest.raises(PlatformResponseError) as caught:
        await make_client().get_members()

    assert "Zoe Private" not in str(caught.value)
    assert "zoe@example.edu" not in str(caught.value)
    assert "zoe@example.edu" in caught.value.body


# Filters


async def test_role_limit_and_rlid_are_sent_as_query_parameters(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    await make_client().get_members(role=LEARNER, limit=25, resource_link_id="rl-9")

    assert query_of(fake.requests[0]) == {
        "role": [LEARNER],
        "limit": ["25"],
        "rlid": ["rl-9"],
    }
    assert urlsplit(fake.urls[0]).path == urlsplit(ROSTER).path


async def test_rlid_true_means_the_launchs_resource_link(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    await make_client(resource_link_id="rl-launch").get_members(resource_link_id=True)

    assert query_of(fake.requests[0]) == {"rlid": ["rl-launch"]}


async def test_no_filters_sends_the_claims_url_unchanged(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    await make_client().get_members(resource_link_id=False)

    assert fake.urls == [ROSTER]


async def test_filters_keep_the_query_string_of_the_membership_url(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    url = "https://moodle.example/mod/lti/services.php/CourseSection/2/memberships?x=1"

    await make_client(url=url).get_members(role="Learner")

    assert fake.urls == [url + "&role=Learner"]


async def test_rlid_true_without_a_resource_link_sends_nothing(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    client = make_client(resource_link_id=None)

    with pytest.raises(ServiceError, match="resource link"):
        await client.get_members(resource_link_id=True)

    assert fake.requests == [] and fake.token_forms == []


@pytest.mark.parametrize(
    "filters",
    [
        {"limit": 0},
        {"limit": -5},
        {"limit": True},
        {"limit": "10"},
        {"role": ""},
        {"role": "  "},
        {"resource_link_id": ""},
    ],
)
async def test_invalid_filters_are_refused_before_any_request(
    make_client: Callable[..., NRPSClient], fake: FakeRoster, filters: dict[str, Any]
) -> None:
    with pytest.raises(ServiceError):
        await make_client().get_members(**filters)

    assert fake.requests == [] and fake.token_forms == []


# Scope and request form


async def test_token_is_requested_for_exactly_the_nrps_scope(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    await make_client().get_members()

    assert [form["scope"] for form in fake.token_forms] == [NRPS_SCOPE]


async def test_request_accepts_the_membership_container_with_an_access_token(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    await make_client().get_members()

    request = fake.requests[0]
    assert request.method == "GET"
    assert request.headers["accept"] == MEMBERSHIPS_TYPE
    assert request.headers["authorization"] == "Bearer access-1"
    assert ID_TOKEN not in request.headers["authorization"]


async def test_launch_without_the_claim_raises_before_any_request(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    client = make_client(None)

    with pytest.raises(ScopeNotGrantedError) as caught:
        await client.get_members()
    with pytest.raises(ScopeNotGrantedError):
        await client.get_differences(ROSTER + "?since=1")
    with pytest.raises(ScopeNotGrantedError):
        async for _ in client.iter_members():
            pass

    assert caught.value.scope == NRPS_SCOPE
    assert "enable the service" in str(caught.value)
    assert not client.available
    assert fake.requests == [] and fake.token_forms == []


async def test_claim_without_a_membership_url_says_so(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    client = make_client({"service_versions": ["2.0"]})

    with pytest.raises(ServiceError, match="context_memberships_url"):
        await client.get_members()

    assert not client.available
    assert fake.requests == [] and fake.token_forms == []


def test_client_exposes_the_claim(make_client: Callable[..., NRPSClient]) -> None:
    client = make_client()

    assert client.available
    assert client.context_memberships_url == ROSTER
    assert client.service_versions == ("2.0",)


async def test_membership_url_must_be_https(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    client = make_client(url="http://lms.example.edu/names_and_roles")

    with pytest.raises(ServiceError, match="https"):
        await client.get_members()

    assert fake.requests == [] and fake.token_forms == []


# Platform errors


async def test_oauth_error_answer_keeps_status_and_body(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    body = {"error": "insufficient_scope", "error_description": "needs NRPS"}
    fake.service = lambda request: httpx.Response(403, json=body)

    with pytest.raises(PlatformResponseError) as caught:
        await make_client().get_members()

    error = caught.value
    assert (error.method, error.url, error.status) == ("GET", ROSTER, 403)
    assert "insufficient_scope" in error.body
    assert "membership listing" in str(error)


async def test_401_drops_the_token_and_retries_once(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    answers = [httpx.Response(401, json={"error": "invalid_token"}), container([])]
    fake.service = lambda request: answers.pop(0)

    roster = await make_client().get_members()

    assert roster.members == ()
    assert [r.headers["authorization"] for r in fake.requests] == [
        "Bearer access-1",
        "Bearer access-2",
    ]


async def test_401_twice_raises_with_the_platforms_body(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    fake.service = lambda request: httpx.Response(401, json={"error": "invalid_token"})

    with pytest.raises(PlatformResponseError, match="invalid_token") as caught:
        await make_client().get_members()

    assert caught.value.status == 401
    assert len(fake.requests) == 2


async def test_server_error_raises_with_status_and_body(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    fake.service = lambda request: httpx.Response(503, text="upstream timed out")

    # A roster read is safe to repeat: a 503 is retried before it is raised.
    with pytest.raises(ServiceUnavailableError) as caught:
        await make_client().get_members()

    assert caught.value.status == 503
    assert caught.value.body == "upstream timed out"
    assert caught.value.attempts == len(fake.requests) == 4


async def test_error_on_a_later_page_fails_the_listing(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if str(request.url) == PAGE_2:
            return httpx.Response(500, text="boom")
        return container([member_json(1)], link=f'<{PAGE_2}>; rel="next"')

    fake.service = handle

    with pytest.raises(PlatformResponseError) as caught:
        await make_client().get_members()

    assert caught.value.url == PAGE_2


async def test_non_json_answer_is_an_error(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    fake.service = lambda request: httpx.Response(200, text="<html>Login</html>")

    with pytest.raises(PlatformResponseError, match="membership container") as caught:
        await make_client().get_members()

    assert caught.value.body == "<html>Login</html>"


async def test_non_json_error_page_is_kept(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    fake.service = lambda request: httpx.Response(404, text="<h1>Not Found</h1>")

    with pytest.raises(PlatformResponseError) as caught:
        await make_client().get_members()

    assert (caught.value.status, caught.value.body) == (404, "<h1>Not Found</h1>")


async def test_token_refusal_raises_and_sends_no_service_request(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    fake.token_answer = httpx.Response(
        400, json={"error": "invalid_scope", "error_description": "not granted"}
    )

    with pytest.raises(TokenRequestError) as caught:
        await make_client().get_members()

    assert caught.value.status == 400
    assert fake.requests == []


async def test_network_error_is_wrapped(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    fake.service = fail

    with pytest.raises(ServiceUnavailableError, match="connection failed") as caught:
        await make_client().get_members()

    assert "could not be sent" in str(caught.value.__cause__)


# Differences


async def test_roster_carries_context_id_and_differences_link(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    link = (
        f'<{ROSTER}?since=623698163>; rel="differences", '
        f'<{PAGE_1}>; rel="first", <{PAGE_1}>; rel="last"'
    )
    fake.service = lambda request: container([member_json(1)], link=link)

    roster = await make_client().get_members()

    assert roster.differences_url == ROSTER + "?since=623698163"
    assert roster.id == ROSTER
    assert roster.context is not None
    assert (roster.context.id, roster.context.label, roster.context.title) == (
        "ctx-5",
        "BIO101",
        "Biology",
    )


async def test_differences_link_of_the_first_page_is_kept(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if str(request.url) == PAGE_2:
            link = f'<{ROSTER}?since=2>; rel="differences"'
            return container([member_json(2)], link=link)
        link = f'<{ROSTER}?since=1>; rel="differences", <{PAGE_2}>; rel="next"'
        return container([member_json(1)], link=link)

    fake.service = handle

    roster = await make_client().get_members()

    assert roster.differences_url == ROSTER + "?since=1"


async def test_roster_without_differences_link_has_none(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    fake.service = lambda request: container([member_json(1)])

    roster = await make_client().get_members()

    assert roster.differences_url is None


async def test_get_differences_reads_changes_with_deleted_members(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    since = ROSTER + "?since=1"
    changes = [member_json(1, status="Deleted"), member_json(2, status="Inactive")]
    fake.service = lambda request: container(
        changes, link=f'<{ROSTER}?since=2>; rel="differences"'
    )

    roster = await make_client().get_differences(since)

    assert fake.urls == [since]
    assert [m.status for m in roster] == [MemberStatus.DELETED, MemberStatus.INACTIVE]
    assert roster.differences_url == ROSTER + "?since=2"
    assert fake.requests[0].headers["accept"] == MEMBERSHIPS_TYPE


async def test_get_differences_refuses_another_origin(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    with pytest.raises(ServiceError, match="roster service"):
        await make_client().get_differences("https://evil.example/diff?since=1")

    assert fake.requests == [] and fake.token_forms == []


@pytest.mark.parametrize("url", ["", None])
async def test_get_differences_needs_a_url(
    make_client: Callable[..., NRPSClient], fake: FakeRoster, url: Any
) -> None:
    with pytest.raises(ServiceError, match="differences URL"):
        await make_client().get_differences(url)

    assert fake.requests == []


# Iterating


async def test_iter_members_fetches_a_page_only_when_needed(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    fake.service = canvas_pages()
    seen: list[str] = []
    requests_when_seen: list[int] = []

    async for member in make_client().iter_members(limit=50):
        seen.append(member.user_id)
        requests_when_seen.append(len(fake.requests))

    assert seen == [f"user-{n}" for n in range(63)]
    assert requests_when_seen[0] == 1 and requests_when_seen[49] == 1
    assert requests_when_seen[50] == 2


async def test_iter_members_raises_on_a_loop_after_the_earlier_pages(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    fake.service = canvas_pages(loop=True)
    seen: list[str] = []

    with pytest.raises(PaginationError):
        async for member in make_client().iter_members():
            seen.append(member.user_id)

    assert len(seen) == 63


async def test_iter_members_sends_the_filters(
    make_client: Callable[..., NRPSClient], fake: FakeRoster
) -> None:
    members = [m async for m in make_client().iter_members(role=INSTRUCTOR)]

    assert members == []
    assert query_of(fake.requests[0]) == {"role": [INSTRUCTOR]}


# Members


def test_member_is_parsed_with_every_spec_field() -> None:
    data = {
        "status": "Active",
        "name": "Jane Q. Public",
        "picture": "https://platform.example.edu/jane.jpg",
        "given_name": "Jane",
        "family_name": "Public",
        "middle_name": "Quinn",
        "email": "jane@platform.example.edu",
        "user_id": "0ae836b9-7fc9-4060-006f-27b2066ac545",
        "lis_person_sourcedid": "59254-6782-12ab",
        "lti11_legacy_user_id": "668321221-2879",
        "roles": [INSTRUCTOR],
        "message": [
            {
                c.MESSAGE_TYPE: c.RESOURCE_LINK_REQUEST,
                c.CUSTOM: {"country": "Canada", "user_mobile": "123456789"},
            }
        ],
    }

    member = parse_member(data)

    assert member.user_id == "0ae836b9-7fc9-4060-006f-27b2066ac545"
    assert member.status is MemberStatus.ACTIVE and member.is_active
    assert member.roles == (INSTRUCTOR,)
    assert (member.name, member.given_name, member.family_name) == (
        "Jane Q. Public",
        "Jane",
        "Public",
    )
    assert member.middle_name == "Quinn"
    assert member.email == "jane@platform.example.edu"
    assert member.picture == "https://platform.example.edu/jane.jpg"
    assert member.lis_person_sourcedid == "59254-6782-12ab"
    assert member.lti11_legacy_user_id == "668321221-2879"
    assert member.custom == {"country": "Canada", "user_mobile": "123456789"}
    assert member.message[0][c.MESSAGE_TYPE] == c.RESOURCE_LINK_REQUEST
    assert member.raw == data


def test_member_without_shared_personal_data_has_none() -> None:
    member = parse_member({"user_id": "u-1", "roles": [LEARNER]})

    assert member.name is None and member.email is None and member.picture is None
    assert member.status == MemberStatus.ACTIVE  # absent status means Active
    assert member.custom == {} and member.message == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Inactive", MemberStatus.INACTIVE),
        ("inactive", MemberStatus.INACTIVE),
        ("DELETED", MemberStatus.DELETED),
        ("Suspended", "Suspended"),
    ],
)
def test_member_status_is_read_leniently(value: str, expected: str) -> None:
    member = parse_member({"user_id": "u-1", "roles": [], "status": value})

    assert member.status == expected
    assert not member.is_active


def test_member_fields_of_the_wrong_type_are_read_as_absent() -> None:
    member = parse_member(
        {
            "user_id": 42,
            "roles": [LEARNER, 7, None],
            "name": ["Zoe"],
            "email": False,
            "message": "not a list",
            "lis_person_sourcedid": {"id": 1},
        }
    )

    assert member.user_id == "42"
    assert member.roles == (LEARNER,)
    assert member.name is None and member.email is None
    assert member.message == () and member.lis_person_sourcedid is None


def test_a_single_role_string_is_read_as_one_role() -> None:
    assert parse_member({"user_id": "u", "roles": LEARNER}).roles == (LEARNER,)


@pytest.mark.parametrize(
    "data",
    [{"roles": [LEARNER]}, {"user_id": ""}, {"user_id": True}, ["u-1"], "u-1", None],
)
def test_member_without_a_user_id_is_refused(data: Any) -> None:
    with pytest.raises(ValueError):
        parse_member(data)


def test_member_role_helpers_reuse_launch_roles() -> None:
    teacher = parse_member({"user_id": "t", "roles": [TEACHING_ASSISTANT]})
    learner = parse_member({"user_id": "l", "roles": ["Learner"]})

    assert teacher.is_instructor and not teacher.is_learner
    assert teacher.has_role("Instructor") and teacher.has_role(TEACHING_ASSISTANT)
    assert learner.is_learner and not learner.is_instructor
    assert not learner.has_role(INSTRUCTOR)


def test_member_repr_shows_no_personal_data() -> None:
    member = parse_member(member_json(1, picture="https://lms.example.edu/p.png"))

    text = repr(member)

    assert "user-1" in text
    for private in ("Student 1", "student1@example.edu", "p.png"):
        assert private not in text


def test_member_and_roster_are_read_only() -> None:
    member = parse_member(member_json(1, message=[{c.CUSTOM: {"a": "1"}}]))
    roster = Roster(members=(member,))

    with pytest.raises(AttributeError):
        member.user_id = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        member.raw["user_id"] = "other"  # type: ignore[index]
    with pytest.raises(TypeError):
        member.custom["a"] = "2"  # type: ignore[index]
    assert list(roster) == [member]


async def test_listing_is_logged_without_tokens_or_personal_data(
    make_client: Callable[..., NRPSClient],
    fake: FakeRoster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="lti_middleware")
    fake.service = canvas_pages()

    await make_client().get_members(role=LEARNER)

    service_logs = [
        r.getMessage() for r in caplog.records if r.name == "lti_middleware.services"
    ]
    assert service_logs == [
        "GET lms.example.edu/api/lti/courses/5/names_and_roles",
        "GET lms.example.edu/api/lti/courses/5/names_and_roles",
    ]
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in ("access-1", "Student 1", "student1@example.edu"):
        assert secret not in text


# Bound to a launch by the middleware


async def roster_page(request: Request) -> JSONResponse:
    launch = request.state.lti
    nrps: NRPSClient = launch.nrps
    if not nrps.available:
        return JSONResponse({"available": False})
    roster = await nrps.get_members(resource_link_id=True)
    members: list[Member] = list(roster)
    return JSONResponse(
        {
            "available": True,
            "url": nrps.context_memberships_url,
            "members": [[m.user_id, m.is_instructor] for m in members],
        }
    )


@pytest.fixture
async def roster_tool(platform: FakePlatform) -> AsyncIterator[ToolClient]:
    app = Starlette(routes=[Route("/app", roster_page)])
    client = make_tool(platform, app=app)
    yield client
    await client.http.aclose()
    await client.middleware.aclose()


async def test_launch_nrps_uses_the_launchs_claim_and_resource_link(
    roster_tool: ToolClient, platform: FakePlatform
) -> None:
    url = "https://lms.example.edu/api/lti/courses/5/names_and_roles"
    platform.extra[TOKEN_URL] = httpx.Response(
        200, json={"access_token": "nrps-token", "token_type": "bearer"}
    )
    members = [{"user_id": "user-1", "roles": [INSTRUCTOR]}]
    platform.extra[url + "?rlid=rl-1"] = httpx.Response(200, json={"members": members})
    service = {"context_memberships_url": url, "service_versions": ["2.0"]}

    launched = await roster_tool.launch(**{c.NRPS_SERVICE: service})
    page = await roster_tool.follow(launched)

    assert page.json() == {
        "available": True,
        "url": url,
        "members": [["user-1", True]],
    }


async def test_launch_without_nrps_claim_has_no_roster_service(
    roster_tool: ToolClient,
) -> None:
    page = await roster_tool.follow(await roster_tool.launch())

    assert page.json() == {"available": False}

"""Our service clients against an independent platform (lti1p3platform 0.1.8).

The platform's protocol code is the package's (see ``independent_platform``):
its claim builders put the service claims in the launch, its token endpoint
issues the access tokens, its service handlers check them and page, and its
deep linking validation verifies our response JWT. Our middleware serves a
small tool whose handlers call ``launch.ags``, ``launch.nrps`` and
``launch.deep_linking``; httpx plays the browser. All on 127.0.0.1.

What the package supports, service by service, and what these tests show:

- **AGS line items** (``AssignmentsGradesService.handle_get_lineitems``,
  ``handle_create_lineitem``, ``handle_get_lineitem``,
  ``handle_update_lineitem``, ``handle_delete_lineitem``): supported. List
  (filters, paging by the next URL the package builds), create, get, update,
  delete and get-or-create work. The package grants ``lineitem`` or
  ``lineitem.readonly`` (``LtiAgs.get_available_scopes``), and our client
  picks the one granted. With a ``lineitem`` URL alone the package's claim
  builder keeps ``result.readonly`` by accident (it removes from the scope
  list while iterating over it); we use what the claim grants.
- **AGS results** (``handle_get_results``): supported, with ``user_id`` and
  ``limit``. Paging works for a line item URL without a query string. For one
  with a query string (Moodle's style) the package appends ``/results?...`` to
  the whole URL, query included, so its next link is malformed; our client
  follows it as given and fails with PlatformResponseError instead of
  returning part of the results.
- **AGS scores**: supported; covered in ``test_independent_platform.py``.
  Here a score is also read back as a result.
- **NRPS** (``NamesRoleProvisioningService.handle_get_members``, claim from
  ``LtiNrps``): supported, with ``role``, ``limit`` and ``rlid`` (an unknown
  resource link is refused 403). The service names the next page only in the
  body's ``next`` member (and only when a ``limit`` was asked); the package's
  Django adapter (``framework/django/response.py``) also copies it into a
  ``Link`` header. Our client follows the header; a body ``next`` without the
  header, which NRPS 2.0 does not define, makes it raise PaginationError on
  purpose rather than return a partial roster, while a single-page roster
  reads fine. The package has no ``differences`` link (``since`` is only a
  parameter of its abstract ``get_member_data_page``), so none is read.
- **Deep linking** (``LtiDeepLinking.get_lti_deep_linking_launch_claim``,
  ``LTIAdvantageMessageLaunchAbstract.set_dl``,
  ``LTI1P3PlatformConfAbstract.validate_deeplinking_resp``): supported. The
  package's settings claim is read as sent; every item type it accepts is
  signed by us and verified and parsed by it. It sends no
  ``accept_media_types`` or ``accept_lineitem``. Its validation skips aud,
  iss, nonce, deployment_id, version and data, so the tests check those on
  the JWT it accepted.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lti_middleware import (
    HTML,
    File,
    Image,
    LineItem,
    LineItemSpec,
    Link,
    LTIError,
    LTILaunch,
    LTIMiddleware,
    LTIResourceLink,
    Member,
    Registration,
    Result,
    ToolConfig,
    ToolKey,
    generate_key,
)
from lti_middleware import claims as c

from .independent_platform import (
    CONTEXT_ID,
    DEEP_LINKING_RETURN_QUERY,
    INSTRUCTOR_ROLE,
    LEARNER_ROLE,
    LINE_ITEM_ID,
    LINE_ITEM_QUERY,
    RESOURCE_LINK_ID,
    IndependentPlatform,
    LocalServer,
    PlatformUser,
    ToolEndpoints,
    parse_form,
    query_of,
)

pytestmark = pytest.mark.e2e

ALL_ITEM_TYPES = {"ltiResourceLink", "link", "html", "image", "file"}
DEEP_LINKING_DATA = {"placement": "week-3", "slot": 2}
CUSTOM = {"activity": "fractions-7"}
LEARNERS = tuple(
    PlatformUser(f"learner-{n}", f"Learner {n}", f"l{n}@example.org", (LEARNER_ROLE,))
    for n in range(1, 5)
)
INSTRUCTOR = PlatformUser(
    "instructor-1", "Ida Instructor", "ida@example.org", (INSTRUCTOR_ROLE,)
)


# --- the tool: handlers that call our service clients ------------------------


def _lineitem_json(item: LineItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "label": item.label,
        "score_maximum": item.score_maximum,
        "resource_link_id": item.resource_link_id,
        "resource_id": item.resource_id,
        "tag": item.tag,
    }


def _result_json(result: Result) -> dict[str, Any]:
    return {
        "id": result.id,
        "user_id": result.user_id,
        "result_score": result.result_score,
        "result_maximum": result.result_maximum,
        "comment": result.comment,
        "score_of": result.score_of,
    }


def _member_json(member: Member) -> dict[str, Any]:
    return {
        "user_id": member.user_id,
        "status": str(member.status),
        "roles": list(member.roles),
        "name": member.name,
        "email": member.email,
        "is_instructor": member.is_instructor,
    }


def _error_json(error: LTIError) -> dict[str, Any]:
    return {
        "error": type(error).__name__,
        "message": str(error),
        "status": getattr(error, "status", None),
        "body": getattr(error, "body", None),
    }


Call = Callable[[LTILaunch, Request], Awaitable[Any]]


def _handler(call: Call) -> Callable[[Request], Awaitable[Response]]:
    """A route running ``call``; an LTIError comes back as JSON with 502."""

    async def handle(request: Request) -> Response:
        launch = request.state.lti
        if launch is None:
            return JSONResponse({"error": "no launch"}, status_code=401)
        try:
            value = await call(launch, request)
        except LTIError as error:
            return JSONResponse(_error_json(error), status_code=502)

        return value if isinstance(value, Response) else JSONResponse(value)

    return handle


def _text_filters(request: Request, *names: str) -> dict[str, Any]:
    filters: dict[str, Any] = {
        name: request.query_params[name]
        for name in names
        if name in request.query_params
    }
    if "limit" in request.query_params:
        filters["limit"] = int(request.query_params["limit"])

    return filters


async def _home(launch: LTILaunch, request: Request) -> Any:
    return {"launch": launch.launch_id, "message_type": launch.message_type}


async def _list_lineitems(launch: LTILaunch, request: Request) -> Any:
    filters = _text_filters(request, "resource_link_id", "resource_id", "tag")
    items = await launch.ags.get_lineitems(**filters)

    return [_lineitem_json(item) for item in items]


async def _create_lineitem(launch: LTILaunch, request: Request) -> Any:
    body = json.loads(await request.body())
    item = await launch.ags.create_lineitem(**body)

    return _lineitem_json(item)


async def _get_or_create_lineitem(launch: LTILaunch, request: Request) -> Any:
    body = json.loads(await request.body())
    item = await launch.ags.get_or_create_lineitem(**body)

    return _lineitem_json(item)


async def _one_lineitem(launch: LTILaunch, request: Request) -> Any:
    url = request.query_params["url"]
    if request.method == "DELETE":
        await launch.ags.delete_lineitem(url)
        return {"deleted": url}

    item = await launch.ags.get_lineitem(url)
    if request.method == "PUT":
        label = request.query_params["label"]
        item = await launch.ags.update_lineitem(replace(item, label=label))

    return _lineitem_json(item)


async def _post_score(launch: LTILaunch, request: Request) -> Any:
    params = request.query_params
    response = await launch.ags.post_score(
        user_id=params["user_id"],
        score_given=float(params["given"]),
        score_maximum=float(params["maximum"]),
        comment=params.get("comment"),
        lineitem=params.get("lineitem"),
    )

    return {"status": response.status_code}


async def _results(launch: LTILaunch, request: Request) -> Any:
    filters = _text_filters(request, "user_id")
    results = await launch.ags.get_results(
        request.query_params.get("lineitem"), **filters
    )

    return [_result_json(result) for result in results]


async def _roster(launch: LTILaunch, request: Request) -> Any:
    filters = _text_filters(request, "role")
    if "rlid" in request.query_params:
        rlid = request.query_params["rlid"]
        filters["resource_link_id"] = True if rlid == "launch" else rlid
    roster = await launch.nrps.get_members(**filters)

    context = roster.context
    return {
        "id": roster.id,
        "context": None if context is None else [context.id, context.title],
        "differences_url": roster.differences_url,
        "members": [_member_json(member) for member in roster],
    }


async def _pick(launch: LTILaunch, request: Request) -> Any:
    """The deep linking landing page: the settings as the tool read them."""
    assert launch.deep_linking is not None
    settings = launch.deep_linking.settings

    return {
        "launch": launch.launch_id,
        "message_type": launch.message_type,
        "return_url": settings.deep_link_return_url,
        "accept_types": sorted(settings.accept_types),
        "targets": sorted(settings.accept_presentation_document_targets),
        "media_types": list(settings.accept_media_types),
        "accept_multiple": settings.accept_multiple,
        "accept_lineitem": settings.accept_lineitem,
        "auto_create": settings.auto_create,
        "title": settings.title,
        "text": settings.text,
        "data": settings.data,
        "resource_link": launch.resource_link is not None,
    }


def _items(base: str) -> dict[str, Any]:
    """One content item of each type, by name."""
    return {
        "resource": LTIResourceLink(
            url=f"{base}/activity",
            title="Fractions",
            custom=CUSTOM,
            line_item=LineItemSpec(
                score_maximum=7, label="Fractions quiz", resource_id="fractions-7"
            ),
        ),
        "link": Link(url=f"{base}/reading", title="Reading"),
        "html": HTML(html="<p>Week 3</p>", title="Note"),
        "image": Image(url=f"{base}/diagram.png", width=640, height=480),
        "file": File(url=f"{base}/notes.pdf", title="Notes"),
    }


async def _respond(launch: LTILaunch, request: Request) -> Any:
    assert launch.deep_linking is not None
    names = [n for n in request.query_params.get("items", "").split(",") if n]
    catalogue = _items(str(request.base_url).rstrip("/"))

    return await launch.deep_linking.respond(
        [catalogue[name] for name in names],
        msg=request.query_params.get("msg"),
        errormsg=request.query_params.get("errormsg"),
    )


def tool_app() -> Starlette:
    """The tool's app: one route per client call."""
    return Starlette(
        routes=[
            Route("/home", _handler(_home)),
            Route("/lineitems", _handler(_list_lineitems)),
            Route("/lineitems", _handler(_create_lineitem), methods=["POST"]),
            Route(
                "/lineitem", _handler(_one_lineitem), methods=["GET", "PUT", "DELETE"]
            ),
            Route("/column", _handler(_get_or_create_lineitem), methods=["POST"]),
            Route("/score", _handler(_post_score), methods=["POST"]),
            Route("/results", _handler(_results)),
            Route("/roster", _handler(_roster)),
            Route("/pick", _handler(_pick)),
            Route("/respond", _handler(_respond), methods=["POST"]),
        ]
    )


# --- the deployment: platform, tool and browser -------------------------------


@dataclass
class Deployment:
    """The independent platform, our tool behind the middleware, a browser."""

    platform: IndependentPlatform
    tool: ToolEndpoints
    tool_key: ToolKey
    tool_base: str
    browser: httpx.Client

    def launch(
        self, user_id: str = "instructor-1", *, deep_linking: bool = False
    ) -> str:
        """Start, log in and launch; the launch id the tool handed out."""
        start = self.browser.get(
            self.platform.start_url(user_id, deep_linking=deep_linking)
        )
        assert start.status_code == 302, start.text
        login = self.browser.get(start.headers["location"])
        assert login.status_code in (302, 303), login.text
        # The tool's state cookie is Secure, which httpx (unlike browsers on
        # 127.0.0.1) will not send over http, so it is carried by hand.
        cookie = "; ".join(f"{k.name}={k.value}" for k in login.cookies.jar)
        auth = self.browser.get(login.headers["location"])
        assert auth.status_code == 200, auth.text
        action, fields = parse_form(auth.text)

        launched = self.browser.post(
            action,
            data=fields,
            headers={"Cookie": cookie, "Accept": "application/json"},
        )
        assert launched.status_code == 303, launched.text
        return query_of(launched.headers["location"])["lti_launch"]

    def call(
        self, method: str, path: str, launch_id: str, **kwargs: Any
    ) -> httpx.Response:
        """A request to the tool's ``path`` within the launch."""
        headers = {"X-LTI-Launch": launch_id}

        return self.browser.request(
            method, self.tool_base + path, headers=headers, **kwargs
        )

    def ok(self, method: str, path: str, launch_id: str, **kwargs: Any) -> Any:
        """The JSON of a call that must succeed."""
        response = self.call(method, path, launch_id, **kwargs)
        assert response.status_code == 200, response.text

        return response.json()

    def fails(self, method: str, path: str, launch_id: str, **kwargs: Any) -> Any:
        """The error JSON of a call whose client raised an LTIError."""
        response = self.call(method, path, launch_id, **kwargs)
        assert response.status_code == 502, response.text

        return response.json()

    def scopes_requested(self) -> list[str]:
        """The scope of each token request the platform granted, in order."""
        return [grant.form["scope"] for grant in self.platform.record.token_grants]

    def calls(self, method: str = "GET") -> list[str]:
        """Path and query of each service call with ``method``, in order."""
        return [
            call.url
            for call in self.platform.record.service_calls
            if call.method == method
        ]


Deploy = Callable[..., Deployment]


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Deploy]:
    """Starts a deployment with the platform options given; stops it after."""
    servers: list[LocalServer] = []
    browsers: list[httpx.Client] = []

    def start(**options: Any) -> Deployment:
        tool_key = generate_key()
        key_file = tmp_path / f"tool-key-{len(servers)}.pem"
        key_file.write_bytes(tool_key.private_pem())
        tool_server, platform_server = LocalServer(), LocalServer()
        servers.extend((tool_server, platform_server))
        base = tool_server.base_url
        tool = ToolEndpoints(
            login_url=f"{base}/lti/login",
            launch_url=f"{base}/lti/launch",
            jwks_url=f"{base}/lti/jwks",
            target_link_uri=f"{base}/home",
            deep_linking_uri=f"{base}/pick",
        )
        options.setdefault("users", (INSTRUCTOR, *LEARNERS[:1]))
        platform = IndependentPlatform(
            base_url=platform_server.base_url, tool=tool, **options
        )
        config = ToolConfig(
            login_url=tool.login_url,
            launch_url=tool.launch_url,
            jwks_url=tool.jwks_url,
            private_key_files=(key_file,),
            registrations=(
                Registration(
                    issuer=platform.issuer,
                    client_id=platform.client_id,
                    deployment_ids=(platform.deployment_id,),
                    auth_login_url=platform.auth_login_url,
                    token_url=platform.token_url,
                    key_set_url=platform.key_set_url,
                ),
            ),
        )
        # trust_env=False: no proxy from the environment may see this traffic.
        http = httpx.AsyncClient(trust_env=False, timeout=10.0)
        tool_server.start(LTIMiddleware(tool_app(), config=config, http=http))
        platform_server.start(platform.app)
        browser = httpx.Client(trust_env=False, timeout=10.0)
        browsers.append(browser)

        return Deployment(platform, tool, tool_key, base, browser)

    try:
        yield start
    finally:
        for browser in browsers:
            browser.close()
        for server in reversed(servers):
            server.stop()


def _ags_claim(platform: IndependentPlatform) -> dict[str, Any]:
    claims = jwt.decode(
        platform.record.id_tokens[-1], options={"verify_signature": False}
    )
    endpoint: dict[str, Any] = claims[c.AGS_ENDPOINT]

    return endpoint


# --- AGS: line items -----------------------------------------------------------


def test_line_items_are_listed_with_the_scope_the_package_granted(
    deploy: Deploy,
) -> None:
    deployment = deploy()
    platform = deployment.platform
    launch_id = deployment.launch()

    items = deployment.ok("GET", "/lineitems", launch_id)

    assert items == [
        {
            "id": platform.lineitem_url,
            "label": "Quiz 1",
            "score_maximum": 10,
            "resource_link_id": RESOURCE_LINK_ID,
            "resource_id": "quiz-1",
            "tag": "quiz",
        }
    ]
    # The package grants lineitem (not .readonly) when creating is allowed.
    assert c.SCOPE_LINEITEM_READONLY not in _ags_claim(platform)["scope"]
    assert deployment.scopes_requested() == [c.SCOPE_LINEITEM]
    (call,) = platform.record.service_calls
    assert (call.path, call.query, call.status) == ("/ags/lineitems", "", 200)
    assert call.accept == c.MEDIA_TYPE_LINEITEMS
    assert call.bearer_token == platform.record.token_grants[0].access_token


def test_read_only_grant_lists_with_it_and_refuses_creation_locally(
    deploy: Deploy,
) -> None:
    deployment = deploy(allow_creating_lineitems=False)
    platform = deployment.platform
    launch_id = deployment.launch()

    items = deployment.ok("GET", "/lineitems", launch_id)
    refusal = deployment.fails(
        "POST", "/lineitems", launch_id, json={"label": "Lab", "score_maximum": 5}
    )

    assert [item["id"] for item in items] == [platform.lineitem_url]
    assert c.SCOPE_LINEITEM_READONLY in _ags_claim(platform)["scope"]
    assert refusal["error"] == "ScopeNotGrantedError"
    assert c.SCOPE_LINEITEM in refusal["message"]
    assert deployment.scopes_requested() == [c.SCOPE_LINEITEM_READONLY]
    assert deployment.calls("POST") == []
    assert platform.lineitems.keys() == {LINE_ITEM_ID}


def test_line_item_listing_follows_every_next_link_the_package_builds(
    deploy: Deploy,
) -> None:
    deployment = deploy()
    platform = deployment.platform
    for number in range(4):
        platform.add_lineitem({"label": f"Lab {number}", "scoreMaximum": 5})
    launch_id = deployment.launch()

    items = deployment.ok("GET", "/lineitems", launch_id, params={"limit": 2})

    assert [item["id"] for item in items] == [
        item["id"] for item in platform.lineitems.values()
    ]
    assert deployment.calls() == [
        "/ags/lineitems?limit=2",
        "/ags/lineitems?limit=2&page=2",
        "/ags/lineitems?limit=2&page=3",
    ]
    links = [call.link for call in platform.record.service_calls]
    assert links == [
        f"<{platform.lineitems_url}?limit=2&page=2>; rel=next",
        f"<{platform.lineitems_url}?limit=2&page=3>; rel=next",
        None,
    ]
    assert len(platform.record.token_grants) == 1


def test_line_item_filters_reach_the_package(deploy: Deploy) -> None:
    deployment = deploy()
    platform = deployment.platform
    platform.add_lineitem({"label": "Lab", "scoreMaximum": 5, "tag": "lab"})
    launch_id = deployment.launch()

    by_resource = deployment.ok(
        "GET", "/lineitems", launch_id, params={"resource_id": "quiz-1"}
    )
    by_tag = deployment.ok("GET", "/lineitems", launch_id, params={"tag": "lab"})
    by_link = deployment.ok(
        "GET", "/lineitems", launch_id, params={"resource_link_id": "elsewhere"}
    )

    assert [item["label"] for item in by_resource] == ["Quiz 1"]
    assert [item["label"] for item in by_tag] == ["Lab"]
    assert by_link == []
    assert deployment.calls() == [
        "/ags/lineitems?resource_id=quiz-1",
        "/ags/lineitems?tag=lab",
        "/ags/lineitems?resource_link_id=elsewhere",
    ]


def test_created_line_item_is_read_back_and_found_again(deploy: Deploy) -> None:
    deployment = deploy()
    platform = deployment.platform
    launch_id = deployment.launch()
    column = {"label": "Lab 3", "score_maximum": 20, "resource_id": "lab-3"}

    created = deployment.ok("POST", "/lineitems", launch_id, json=column)
    read = deployment.ok("GET", "/lineitem", launch_id, params={"url": created["id"]})
    again = deployment.ok("POST", "/column", launch_id, json=column)

    assert created["id"] == f"{platform.lineitems_url}/8/lineitem"
    assert (created["label"], created["score_maximum"]) == ("Lab 3", 20)
    assert read == created
    assert again == created
    (post,) = [call for call in platform.record.service_calls if call.method == "POST"]
    assert (post.status, post.content_type) == (201, c.MEDIA_TYPE_LINEITEM)
    assert post.accept == c.MEDIA_TYPE_LINEITEM
    assert post.json() == {"label": "Lab 3", "scoreMaximum": 20, "resourceId": "lab-3"}
    assert len(platform.lineitems) == 2


def test_launch_line_item_is_read_with_its_query_string(deploy: Deploy) -> None:
    deployment = deploy()
    platform = deployment.platform
    launch_id = deployment.launch()

    item = deployment.ok(
        "GET", "/lineitem", launch_id, params={"url": platform.lineitem_url}
    )

    assert (item["id"], item["label"]) == (platform.lineitem_url, "Quiz 1")
    assert deployment.calls() == [
        f"/ags/lineitems/{LINE_ITEM_ID}/lineitem?{LINE_ITEM_QUERY}"
    ]
    (call,) = platform.record.service_calls
    assert call.accept == c.MEDIA_TYPE_LINEITEM


def test_unknown_line_item_is_the_package_404(deploy: Deploy) -> None:
    deployment = deploy()
    platform = deployment.platform
    launch_id = deployment.launch()
    missing = f"{platform.lineitems_url}/99/lineitem"

    error = deployment.fails("GET", "/lineitem", launch_id, params={"url": missing})

    assert error["error"] == "PlatformResponseError"
    assert error["status"] == 404
    assert json.loads(error["body"]) == {"error": "Line item not found"}


def test_line_item_is_updated_and_deleted(deploy: Deploy) -> None:
    deployment = deploy()
    platform = deployment.platform
    created = platform.add_lineitem(
        {"label": "Lab", "scoreMaximum": 5, "resourceId": "lab", "x-note": "kept"}
    )
    launch_id = deployment.launch()
    url = created["id"]

    updated = deployment.ok(
        "PUT", "/lineitem", launch_id, params={"url": url, "label": "Lab (final)"}
    )
    deleted = deployment.ok("DELETE", "/lineitem", launch_id, params={"url": url})
    gone = deployment.fails("GET", "/lineitem", launch_id, params={"url": url})

    assert (updated["id"], updated["label"]) == (url, "Lab (final)")
    put = next(call for call in platform.record.service_calls if call.method == "PUT")
    assert put.content_type == c.MEDIA_TYPE_LINEITEM
    # A PUT replaces the whole item: what the platform sent comes back.
    assert put.json() == {**created, "label": "Lab (final)"}
    assert deleted == {"deleted": url}
    assert gone["status"] == 404
    assert platform.lineitems.keys() == {LINE_ITEM_ID}
    assert deployment.scopes_requested() == [c.SCOPE_LINEITEM]


def test_claim_with_line_item_alone_is_used_as_the_package_built_it(
    deploy: Deploy,
) -> None:
    deployment = deploy(line_item_container=False)
    platform = deployment.platform
    launch_id = deployment.launch()

    listing = deployment.fails("GET", "/lineitems", launch_id)
    scored = deployment.ok(
        "POST",
        "/score",
        launch_id,
        params={"user_id": "learner-1", "given": 3, "maximum": 10},
    )
    results = deployment.ok("GET", "/results", launch_id)

    # The package meant to leave only the score scope; its loop kept one more.
    claim = _ags_claim(platform)
    assert "lineitems" not in claim
    assert claim["scope"] == [c.SCOPE_RESULT_READONLY, c.SCOPE_SCORE]
    assert listing["error"] == "ScopeNotGrantedError"
    assert scored == {"status": 200}
    assert [r["user_id"] for r in results] == ["learner-1"]
    assert deployment.scopes_requested() == [c.SCOPE_SCORE, c.SCOPE_RESULT_READONLY]
    assert deployment.calls() == [
        f"/ags/lineitems/{LINE_ITEM_ID}/lineitem/results?{LINE_ITEM_QUERY}"
    ]


def test_a_token_the_package_stops_accepting_is_replaced_once(
    deploy: Deploy,
) -> None:
    deployment = deploy()
    platform = deployment.platform
    launch_id = deployment.launch()
    deployment.ok("GET", "/lineitems", launch_id)
    # Tokens signed with the old key now fail the package's token check.
    platform.rotate_key()

    items = deployment.ok("GET", "/lineitems", launch_id)

    assert [item["id"] for item in items] == [platform.lineitem_url]
    statuses = [call.status for call in platform.record.service_calls]
    assert statuses == [200, 401, 200]
    first, second = platform.record.token_grants
    tokens = [call.bearer_token for call in platform.record.service_calls]
    assert tokens == [first.access_token, first.access_token, second.access_token]
    assert deployment.scopes_requested() == [c.SCOPE_LINEITEM] * 2


# --- AGS: results -----------------------------------------------------------------


def test_posted_score_is_read_back_as_a_result(deploy: Deploy) -> None:
    deployment = deploy(users=(INSTRUCTOR, *LEARNERS[:2]))
    platform = deployment.platform
    launch_id = deployment.launch()
    for user, given in (("learner-1", 8), ("learner-2", 6)):
        deployment.ok(
            "POST",
            "/score",
            launch_id,
            params={"user_id": user, "given": given, "maximum": 10, "comment": "ok"},
        )

    every = deployment.ok("GET", "/results", launch_id)
    one = deployment.ok("GET", "/results", launch_id, params={"user_id": "learner-2"})

    assert [(r["user_id"], r["result_score"]) for r in every] == [
        ("learner-1", 8),
        ("learner-2", 6),
    ]
    assert one == [
        {
            "id": f"{platform.lineitems_url}/{LINE_ITEM_ID}/lineitem/results/learner-2",
            "user_id": "learner-2",
            "result_score": 6,
            "result_maximum": 10,
            "comment": "ok",
            "score_of": platform.lineitem_url,
        }
    ]
    results_path = f"/ags/lineitems/{LINE_ITEM_ID}/lineitem/results"
    assert deployment.calls() == [
        f"{results_path}?{LINE_ITEM_QUERY}",
        f"{results_path}?{LINE_ITEM_QUERY}&user_id=learner-2",
    ]
    assert platform.record.service_calls[0].accept == c.MEDIA_TYPE_RESULTS
    assert deployment.scopes_requested() == [c.SCOPE_SCORE, c.SCOPE_RESULT_READONLY]


def test_results_with_numeric_user_ids_as_the_package_types_them(
    deploy: Deploy,
) -> None:
    deployment = deploy()
    platform = deployment.platform
    # lti1p3platform's TResult types userId as int (result.py).
    platform.results[LINE_ITEM_ID] = {
        "1234": {"userId": 1234, "resultScore": 0.5, "scoreOf": platform.lineitem_url}
    }
    launch_id = deployment.launch()

    results = deployment.ok("GET", "/results", launch_id)

    assert [(r["user_id"], r["result_score"]) for r in results] == [("1234", 0.5)]


def test_results_of_a_plain_line_item_are_read_page_by_page(deploy: Deploy) -> None:
    deployment = deploy(users=(INSTRUCTOR, *LEARNERS[:3]))
    platform = deployment.platform
    created = platform.add_lineitem({"label": "Lab", "scoreMaximum": 10})
    launch_id = deployment.launch()
    for number in (1, 2, 3):
        deployment.ok(
            "POST",
            "/score",
            launch_id,
            params={
                "user_id": f"learner-{number}",
                "given": number,
                "maximum": 10,
                "lineitem": created["id"],
            },
        )

    results = deployment.ok(
        "GET", "/results", launch_id, params={"lineitem": created["id"], "limit": 1}
    )

    assert [r["user_id"] for r in results] == ["learner-1", "learner-2", "learner-3"]
    assert deployment.calls() == [
        "/ags/lineitems/8/lineitem/results?limit=1",
        "/ags/lineitems/8/lineitem/results?limit=1&page=2",
        "/ags/lineitems/8/lineitem/results?limit=1&page=3",
    ]


def test_results_next_link_of_a_line_item_with_a_query_fails_loudly(
    deploy: Deploy,
) -> None:
    deployment = deploy(users=(INSTRUCTOR, *LEARNERS[:2]))
    platform = deployment.platform
    launch_id = deployment.launch()
    for user in ("learner-1", "learner-2"):
        deployment.ok(
            "POST",
            "/score",
            launch_id,
            params={"user_id": user, "given": 5, "maximum": 10},
        )

    error = deployment.fails("GET", "/results", launch_id, params={"limit": 1})

    # handle_get_results appends "/results?..." to the whole line item URL,
    # query and all; the link is followed as given, reaches no results
    # container, and the listing fails instead of returning one result.
    first, second = platform.record.service_calls
    assert first.link == (
        f"<{platform.lineitem_url}/results?{LINE_ITEM_QUERY}&limit=1&page=2>; rel=next"
    )
    assert second.path == f"/ags/lineitems/{LINE_ITEM_ID}/lineitem"
    assert second.query == f"{LINE_ITEM_QUERY}/results?{LINE_ITEM_QUERY}&limit=1&page=2"
    assert error["error"] == "PlatformResponseError"
    assert error["status"] == 404


def test_results_not_offered_are_refused_locally(deploy: Deploy) -> None:
    deployment = deploy(results_service_enabled=False)
    launch_id = deployment.launch()

    error = deployment.fails("GET", "/results", launch_id)

    assert c.SCOPE_RESULT_READONLY not in _ags_claim(deployment.platform)["scope"]
    assert error["error"] == "ScopeNotGrantedError"
    assert deployment.platform.record.service_calls == []
    assert deployment.platform.record.token_grants == []


# --- NRPS ---------------------------------------------------------------------------


def test_single_page_roster_is_read_with_the_nrps_scope(deploy: Deploy) -> None:
    deployment = deploy()
    platform = deployment.platform
    launch_id = deployment.launch()

    roster = deployment.ok("GET", "/roster", launch_id)

    assert roster["id"] == platform.memberships_url
    assert roster["context"] == [CONTEXT_ID, "Course One"]
    # The package has no differences link to offer.
    assert roster["differences_url"] is None
    assert roster["members"] == [
        {
            "user_id": "instructor-1",
            "status": "Active",
            "roles": [INSTRUCTOR_ROLE],
            "name": "Ida Instructor",
            "email": "ida@example.org",
            "is_instructor": True,
        },
        {
            "user_id": "learner-1",
            "status": "Active",
            "roles": [LEARNER_ROLE],
            "name": "Learner 1",
            "email": "l1@example.org",
            "is_instructor": False,
        },
    ]
    assert deployment.scopes_requested() == [c.SCOPE_NRPS]
    (call,) = platform.record.service_calls
    assert (call.path, call.query) == (f"/nrps/contexts/{CONTEXT_ID}/memberships", "")
    assert call.accept == c.MEDIA_TYPE_MEMBERSHIPS
    assert call.bearer_token == platform.record.token_grants[0].access_token


def test_roster_follows_the_next_links_of_the_package_adapter(deploy: Deploy) -> None:
    deployment = deploy(users=(INSTRUCTOR, *LEARNERS))
    platform = deployment.platform
    launch_id = deployment.launch()

    roster = deployment.ok("GET", "/roster", launch_id, params={"limit": 2})

    assert [m["user_id"] for m in roster["members"]] == [
        "instructor-1",
        "learner-1",
        "learner-2",
        "learner-3",
        "learner-4",
    ]
    path = f"/nrps/contexts/{CONTEXT_ID}/memberships"
    assert deployment.calls() == [
        f"{path}?limit=2",
        f"{path}?limit=2&page=2",
        f"{path}?limit=2&page=3",
    ]
    assert [call.link is not None for call in platform.record.service_calls] == [
        True,
        True,
        False,
    ]


def test_roster_with_next_only_in_the_body_reads_a_single_page(
    deploy: Deploy,
) -> None:
    deployment = deploy(users=(INSTRUCTOR, *LEARNERS), nrps_next_in_link_header=False)
    launch_id = deployment.launch()

    roster = deployment.ok("GET", "/roster", launch_id)

    # Without a limit the package puts the whole roster on one page.
    assert len(roster["members"]) == 5
    assert len(deployment.platform.record.service_calls) == 1


def test_roster_with_next_only_in_the_body_is_a_pagination_error(
    deploy: Deploy,
) -> None:
    deployment = deploy(users=(INSTRUCTOR, *LEARNERS), nrps_next_in_link_header=False)
    platform = deployment.platform
    launch_id = deployment.launch()

    error = deployment.fails("GET", "/roster", launch_id, params={"limit": 2})

    # NRPS 2.0 pages by Link header only; reading on from the body is not
    # the spec, and stopping would give a partial roster, so the client
    # refuses on purpose (see nrps.py).
    (call,) = platform.record.service_calls
    assert call.link is None
    assert error["error"] == "PaginationError"
    assert "'next'" in error["message"] and "Link header" in error["message"]


def test_roster_role_filter_reaches_the_package(deploy: Deploy) -> None:
    deployment = deploy(users=(INSTRUCTOR, *LEARNERS))
    launch_id = deployment.launch()

    roster = deployment.ok(
        "GET", "/roster", launch_id, params={"role": INSTRUCTOR_ROLE}
    )

    assert [m["user_id"] for m in roster["members"]] == ["instructor-1"]
    (call,) = deployment.platform.record.service_calls
    assert query_of(f"?{call.query}") == {"role": INSTRUCTOR_ROLE}


def test_roster_of_a_resource_link_is_checked_by_the_package(deploy: Deploy) -> None:
    deployment = deploy()
    launch_id = deployment.launch()

    own = deployment.ok("GET", "/roster", launch_id, params={"rlid": "launch"})
    other = deployment.fails("GET", "/roster", launch_id, params={"rlid": "other-link"})

    assert len(own["members"]) == 2
    assert other["error"] == "PlatformResponseError"
    assert other["status"] == 403
    queries = [call.query for call in deployment.platform.record.service_calls]
    assert queries == [f"rlid={RESOURCE_LINK_ID}", "rlid=other-link"]


def test_roster_not_offered_is_refused_locally(deploy: Deploy) -> None:
    deployment = deploy(names_and_roles=False)
    launch_id = deployment.launch()

    error = deployment.fails("GET", "/roster", launch_id)

    assert error["error"] == "ScopeNotGrantedError"
    assert deployment.platform.record.service_calls == []
    assert deployment.platform.record.token_grants == []


# --- Deep linking ---------------------------------------------------------------------


def test_deep_linking_settings_are_read_as_the_package_sends_them(
    deploy: Deploy,
) -> None:
    deployment = deploy(deep_linking_data=DEEP_LINKING_DATA)
    platform = deployment.platform

    launch_id = deployment.launch(deep_linking=True)
    settings = deployment.ok("GET", "/pick", launch_id)

    assert settings == {
        "launch": launch_id,
        "message_type": c.DEEP_LINKING_REQUEST,
        "return_url": platform.deep_link_return_url,
        "accept_types": sorted(ALL_ITEM_TYPES),
        "targets": ["embed", "iframe", "window"],
        "media_types": [],
        "accept_multiple": True,
        "accept_lineitem": None,
        "auto_create": True,
        "title": "Add an activity",
        "text": "Pick what to place in Course One",
        "data": DEEP_LINKING_DATA,
        "resource_link": False,
    }


def test_deep_linking_response_is_verified_and_parsed_by_the_package(
    deploy: Deploy,
) -> None:
    deployment = deploy(deep_linking_data=DEEP_LINKING_DATA)
    platform = deployment.platform
    launch_id = deployment.launch(deep_linking=True)
    names = ["resource", "link", "html", "image", "file"]

    page = deployment.call(
        "POST",
        "/respond",
        launch_id,
        params={"items": ",".join(names), "msg": "Added"},
    )
    assert page.status_code == 200, page.text
    action, fields = parse_form(page.text)
    placed = deployment.browser.post(action, data=fields)

    assert action == platform.deep_link_return_url
    assert list(fields) == ["JWT"]
    assert placed.status_code == 200, placed.text
    assert placed.json() == {"placed": 5}
    (answer,) = platform.record.deep_linking_returns
    assert answer.query == DEEP_LINKING_RETURN_QUERY
    expected = _items(deployment.tool_base)
    assert answer.content_items == [expected[name].to_json() for name in names]
    resource = answer.content_items[0]
    assert resource["lineItem"]["scoreMaximum"] == 7
    assert resource["custom"] == CUSTOM
    _assert_strict_response(deployment, answer.header, answer.claims)
    assert answer.claims is not None
    assert answer.claims[c.DEEP_LINKING_MSG] == "Added"


def _assert_strict_response(
    deployment: Deployment,
    header: dict[str, Any] | None,
    claims: dict[str, Any] | None,
) -> None:
    """What the package does not check in a response JWT, checked here."""
    platform = deployment.platform
    assert header is not None and claims is not None
    assert (header["alg"], header["kid"]) == ("RS256", deployment.tool_key.kid)
    assert claims["iss"] == platform.client_id
    assert claims["aud"] == platform.issuer
    assert claims["nonce"]
    assert claims["exp"] - claims["iat"] == 300
    assert claims[c.DEPLOYMENT_ID] == platform.deployment_id
    assert claims[c.MESSAGE_TYPE] == c.DEEP_LINKING_RESPONSE
    assert claims[c.VERSION] == c.LTI_VERSION
    assert claims[c.DEEP_LINKING_DATA] == platform.deep_linking_data


def test_types_the_package_does_not_accept_are_refused_before_signing(
    deploy: Deploy,
) -> None:
    deployment = deploy(deep_linking_accept_types=["ltiResourceLink"])
    platform = deployment.platform
    launch_id = deployment.launch(deep_linking=True)

    refused = deployment.call("POST", "/respond", launch_id, params={"items": "link"})
    page = deployment.call("POST", "/respond", launch_id, params={"items": "resource"})
    action, fields = parse_form(page.text)
    placed = deployment.browser.post(action, data=fields)

    assert refused.status_code == 502
    assert refused.json()["error"] == "DeepLinkingError"
    assert "'link'" in refused.json()["message"]
    assert placed.json() == {"placed": 1}
    (answer,) = platform.record.deep_linking_returns
    assert [item["type"] for item in answer.content_items] == ["ltiResourceLink"]


def test_empty_responses_are_accepted_each_with_a_fresh_nonce(
    deploy: Deploy,
) -> None:
    deployment = deploy()
    platform = deployment.platform
    launch_id = deployment.launch(deep_linking=True)

    for _ in range(2):
        page = deployment.call(
            "POST", "/respond", launch_id, params={"errormsg": "Nothing picked"}
        )
        action, fields = parse_form(page.text)
        assert deployment.browser.post(action, data=fields).json() == {"placed": 0}

    first, second = platform.record.deep_linking_returns
    assert first.content_items == second.content_items == []
    assert first.claims is not None and second.claims is not None
    assert first.claims[c.CONTENT_ITEMS] == []
    assert first.claims[c.DEEP_LINKING_ERRORMSG] == "Nothing picked"
    # No data was sent, so none comes back.
    assert c.DEEP_LINKING_DATA not in first.claims
    # The package keeps no record of nonces; ours differ all the same.
    assert first.claims["nonce"] != second.claims["nonce"]

"""An LTI 1.3 platform built on lti1p3platform, to judge our tool end to end.

Our own development platform should not be the only judge of the tool, so this
harness wraps an independent implementation, the PyPI package
``lti1p3platform`` (0.1.8), in a small Starlette app. The package's code builds
the login initiation, checks the auth request, builds and signs the id_token
with its service claims (AGS endpoint and scopes, names and role service,
deep linking settings), validates token requests, issues and checks access
tokens, runs its AGS and NRPS service handlers (token and scope check, method
check, paging and next links) and verifies deep linking responses. The glue
here only adapts HTTP to its objects, keeps the gradebook and roster its
abstract storage methods ask for, and records what the tool sent, so tests
can look at it.

Routes of :class:`IndependentPlatform`:

- ``GET /start?user=<id>[&message=deep_linking]``: the package's OIDC login
  initiation, a redirect to the tool's login URL; for a deep linking request
  the target is the tool's registered deep linking URL.
- ``GET|POST /auth``: the package's auth request handling; answers with an
  auto-submitting form of ``id_token`` and ``state``.
- ``GET /jwks``: the package's key set.
- ``POST /token``: the package's token request validation.
- ``GET|POST /ags/lineitems``: the package's line item listing (filtered and
  paged) and creation.
- ``GET|PUT|DELETE /ags/lineitems/<id>/lineitem``: one line item. The
  launch's own line item URL carries a query string (``?type_id=1``), as
  Moodle's do, and every line item is found only with its URL's query.
- ``GET /ags/lineitems/<id>/lineitem/results`` and ``POST .../scores``: the
  package's result listing and score handling.
- ``GET /nrps/contexts/<id>/memberships``: the package's membership handler.
- ``POST /dl/return``: the package's deep linking response validation.

Service answers are written the way the package's only HTTP adapter for
them writes them (``framework/django/response.py``, ``wrap_json_resp``):
a page's ``content`` as the body, the service's ``next`` URL in a ``Link``
header made by the package's ``generate_next_link``, an error as
``{"error": message}``. The harness cannot use that adapter itself (it needs
Django) and mirrors it in :func:`_http_answer`.

Where the package is lax the glue records what came and leaves judging to the
tests; where it has a bug that blocks a step, the workaround is commented.
Everything binds and points at 127.0.0.1 only.
"""

from __future__ import annotations

import html
import json
import secrets
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lti1p3platform import exceptions as platform_errors
from lti1p3platform.ltiplatform import JWKS, LTI1P3PlatformConfAbstract
from lti1p3platform.membership import Context
from lti1p3platform.message_launch import LTIAdvantageMessageLaunchAbstract
from lti1p3platform.oidc_login import OIDCLoginAbstract
from lti1p3platform.registration import Registration as PlatformRegistration
from lti1p3platform.request import Request as PlatformRequest
from lti1p3platform.request import TRequest
from lti1p3platform.response import Response as ServiceAnswer
from lti1p3platform.response import generate_next_link
from lti1p3platform.score import TScore, UpdateScoreStatus
from lti1p3platform.service_connector import (
    AssignmentsGradesService,
    BasicService,
    NamesRoleProvisioningService,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

LOOPBACK = "127.0.0.1"
LEARNER_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR_ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
LINE_ITEM_ID = "7"
LINE_ITEM_QUERY = "type_id=1"
CONTEXT_ID = "course-1"
RESOURCE_LINK_ID = "resource-link-1"
DEEP_LINKING_RETURN_QUERY = f"course={CONTEXT_ID}"
SERVER_START_TIMEOUT = 10.0
_FORM_TYPES = ("application/x-www-form-urlencoded",)
_DEEP_LINKING = "deep_linking"


def require_loopback(url: str) -> str:
    """Return ``url`` if it points at 127.0.0.1, else raise ValueError."""
    if urlsplit(url).hostname != LOOPBACK:
        raise ValueError(f"{url!r} does not point at {LOOPBACK}")

    return url


class LocalServer:
    """Serves an ASGI app with uvicorn on 127.0.0.1, in a background thread.

    The socket is bound (to a free port) and listening from construction, so
    both sides of a test can learn each other's URLs before either starts.
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((LOOPBACK, 0))
        self._socket.listen(64)
        self.port: int = self._socket.getsockname()[1]
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """Origin of the server, without a trailing slash."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, app: ASGIApp) -> None:
        """Serve ``app``; returns once uvicorn has started, or raises."""
        config = uvicorn.Config(
            app,
            http="h11",
            ws="none",
            lifespan="auto",
            log_config=None,
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        started = threading.Event()

        def run() -> None:
            assert self._server is not None
            try:
                self._server.run(sockets=[self._socket])
            finally:
                started.set()

        original_startup = self._server.startup

        async def startup(sockets: list[socket.socket] | None = None) -> None:
            await original_startup(sockets=sockets)
            started.set()

        self._server.startup = startup  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=run, name=f"uvicorn-{self.port}", daemon=True
        )
        self._thread.start()
        if not started.wait(SERVER_START_TIMEOUT) or not self._server.started:
            self.stop()
            raise RuntimeError(f"uvicorn did not start on {self.base_url}")

    def stop(self) -> None:
        """Stop the server and close the socket; safe to call twice."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(SERVER_START_TIMEOUT)
            self._thread = None
        self._socket.close()


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form" and self.action is None:
            self.action = values.get("action")
        elif tag == "input" and "name" in values:
            self.fields[values["name"]] = values.get("value", "")


def parse_form(page: str) -> tuple[str, dict[str, str]]:
    """The action and named input fields of the first form on ``page``."""
    parser = _FormParser()
    parser.feed(page)
    assert parser.action is not None, "no form on the page"

    return parser.action, parser.fields


def query_of(url: str) -> dict[str, str]:
    """Single-valued query parameters of ``url``."""
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


@dataclass(frozen=True)
class ToolEndpoints:
    """The tool's URLs as the platform registers them.

    ``deep_linking_uri`` is where deep linking requests go (the package's
    registration calls it the deep link launch URL); None registers none.
    """

    login_url: str
    launch_url: str
    jwks_url: str
    target_link_uri: str
    deep_linking_uri: str | None = None

    def __post_init__(self) -> None:
        for url in (self.login_url, self.launch_url, self.jwks_url):
            require_loopback(url)
        require_loopback(self.target_link_uri)
        if self.deep_linking_uri is not None:
            require_loopback(self.deep_linking_uri)


@dataclass(frozen=True)
class PlatformUser:
    """A user of the platform, as the launch describes them."""

    user_id: str
    name: str
    email: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class TokenGrant:
    """One token request the package accepted, with what the tool asserted."""

    access_token: str
    scope: str
    form: dict[str, str]
    assertion_header: dict[str, Any]
    assertion_claims: dict[str, Any]


@dataclass(frozen=True)
class ScorePost:
    """One POST to the scores endpoint and how the package answered it."""

    line_item_id: str
    query: str
    content_type: str | None
    bearer_token: str | None
    body: bytes
    status: int
    detail: str
    accepted: bool

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class ServiceCall:
    """One request to a line item, result or membership endpoint.

    ``link`` is the ``Link`` header of the answer (None when it had none).
    """

    method: str
    path: str
    query: str
    accept: str | None
    content_type: str | None
    bearer_token: str | None
    body: bytes
    status: int
    link: str | None

    @property
    def url(self) -> str:
        """Path and query as the request named them."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def json(self) -> Any:
        """The request body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class DeepLinkingReturn:
    """One POST to the deep linking return URL and the package's verdict.

    ``content_items`` are what the package's validation returned (empty when
    it refused); ``header`` and ``claims`` the response JWT's, read only
    after the package accepted it (None otherwise).
    """

    query: str
    form: dict[str, str]
    status: int
    detail: str
    content_items: list[dict[str, Any]]
    header: dict[str, Any] | None
    claims: dict[str, Any] | None


@dataclass
class PlatformRecord:
    """What the platform saw and issued, for tests to inspect."""

    auth_requests: list[dict[str, str]] = field(default_factory=list)
    id_tokens: list[str] = field(default_factory=list)
    token_grants: list[TokenGrant] = field(default_factory=list)
    token_refusals: list[str] = field(default_factory=list)
    scores: list[ScorePost] = field(default_factory=list)
    service_calls: list[ServiceCall] = field(default_factory=list)
    deep_linking_returns: list[DeepLinkingReturn] = field(default_factory=list)


DEFAULT_USERS = (
    PlatformUser("learner-1", "Lee Learner", "lee@example.org", (LEARNER_ROLE,)),
    PlatformUser(
        "instructor-1", "Ida Instructor", "ida@example.org", (INSTRUCTOR_ROLE,)
    ),
)


def _rsa_pem_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    return private_pem.decode("ascii"), public_pem.decode("ascii")


class _PackageRequest(PlatformRequest):  # type: ignore[misc]
    """The package's request view, built from values read beforehand.

    The package's ``build_metadata`` is synchronous, while Starlette reads
    bodies asynchronously, so :func:`_read_request` reads first.
    """

    def build_metadata(self, request: TRequest) -> TRequest:
        return request


async def _read_request(request: Request) -> tuple[_PackageRequest, bytes]:
    body = await request.body()
    content_type = request.headers.get("content-type")
    form: dict[str, str] = {}
    # Parsed here: Starlette's own form parser needs python-multipart.
    if content_type and content_type.split(";")[0].strip() in _FORM_TYPES:
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    try:
        parsed_json = json.loads(body) if body and not form else None
    except ValueError:
        parsed_json = None

    metadata: TRequest = {
        "method": request.method,
        "form_data": form,
        "get_data": dict(request.query_params),
        "headers": request.headers,
        "content_type": content_type,
        "path": request.url.path,
        "json": parsed_json,
    }

    return _PackageRequest(metadata), body


def _paging_numbers(query: Mapping[str, Any]) -> dict[str, Any]:
    """``query`` with ``page`` and ``limit`` as numbers when they are digits.

    Workaround: the package's service handlers read ``page`` back from the
    query and add 1 to it (``service_connector``: ``page + 1``), which fails
    with a TypeError for the string every HTTP query gives, so any listing
    of three pages or more would answer 500 on its second page.
    """
    numbers = dict(query)
    for name in ("page", "limit"):
        value = numbers.get(name)
        if isinstance(value, str) and value.isdigit():
            numbers[name] = int(value)

    return numbers


def _page(items: Sequence[dict[str, Any]], page: int, limit: int | None) -> Any:
    """One page of ``items`` in the package's page shape (``TPage``)."""
    if limit is None:
        return {"content": [dict(item) for item in items], "has_next": False}

    start = (page - 1) * limit
    return {
        "content": [dict(item) for item in items[start : start + limit]],
        "has_next": start + limit < len(items),
    }


def _query_of_url(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def _http_answer(answer: ServiceAnswer, *, link_header: bool = True) -> Response:
    """The package's service answer as HTTP, as its Django adapter writes it.

    ``wrap_json_resp`` sends a page's ``content`` (else the whole result) as
    JSON with the service's media type, the result's ``next`` in a ``Link``
    header from ``generate_next_link``, and an error as ``{"error": ...}``.
    ``link_header=False`` leaves the header out, so the answer is the result
    exactly as the service built it, ``next`` in the body only. A 204 goes
    without a body (Django's adapter would send ``null``, which HTTP does
    not allow there).
    """
    headers = {"content-type": answer.media_type}
    if not 200 <= answer.code < 300:
        return Response(
            json.dumps({"error": answer.message}), answer.code, headers=headers
        )
    if answer.code == 204:
        return Response(status_code=204)

    result = answer.result
    data = result
    if isinstance(result, dict) and "content" in result:
        data = result["content"]
    if link_header and isinstance(result, dict) and result.get("next"):
        headers["link"] = generate_next_link(result["next"])

    return Response(json.dumps(data), answer.code, headers=headers)


class _PlatformConf(LTI1P3PlatformConfAbstract):  # type: ignore[misc]
    """The package's platform configuration over one registration.

    The package keeps per-call state (the JWT header it is checking) on this
    object, so the harness builds one per request around a shared
    registration, which caches the tool's key set once fetched.
    """

    def init_platform_config(self, **kwargs: Any) -> None:
        self._registration = kwargs["registration"]

    def get_registration_by_params(self, **kwargs: Any) -> PlatformRegistration:
        return self._registration

    def fetch_public_key(self, key_set_url: str) -> JWKS:
        # The package fetches with requests, which honours proxy environment
        # variables; fetching here keeps the traffic on 127.0.0.1. Choosing
        # the key by kid and checking the signature stay the package's.
        require_loopback(key_set_url)
        with httpx.Client(trust_env=False, timeout=5.0) as client:
            response = client.get(key_set_url)
        try:
            key_set: JWKS = response.json()
        except ValueError as error:
            raise platform_errors.LtiException("tool key set is not JSON") from error

        return key_set


class _OIDCLogin(OIDCLoginAbstract):  # type: ignore[misc]
    def set_lti_message_hint(self, **kwargs: Any) -> None:
        self._lti_message_hint = kwargs["lti_message_hint"]

    def get_redirect(self, url: str) -> Response:
        return RedirectResponse(url, status_code=302)


class _MessageLaunch(LTIAdvantageMessageLaunchAbstract):  # type: ignore[misc]
    """The package's launch, with claims filled from the harness's records.

    The package checks only that nonce, state and redirect_uri are present and
    that client_id matches. It does not check redirect_uri against the
    registered launch URL, nor response_type, scope, response_mode, prompt or
    login_hint; the harness records the auth request for tests to judge.

    The service claims are the package's own builders' (``set_ags``,
    ``set_nrps``, ``set_dl``); the harness only says which services the
    platform offers.
    """

    def __init__(
        self,
        request: _PackageRequest,
        conf: _PlatformConf,
        platform: IndependentPlatform,
    ) -> None:
        super().__init__(request, conf)
        self._platform = platform

    def prepare_launch(self, preflight_response: dict[str, Any]) -> None:
        platform = self._platform
        hint = preflight_response.get("lti_message_hint", "")
        user_id = platform.message_hints.get(hint)
        if user_id is None or preflight_response.get("login_hint") != user_id:
            raise platform_errors.PreflightRequestValidationException(
                "unknown lti_message_hint or login_hint"
            )

        user = platform.users[user_id]
        self.set_user_data(user.user_id, list(user.roles), user.name, user.email)
        self.set_launch_context_claim(CONTEXT_ID, context_title="Course One")
        self.set_custom_parameters_claim({"harness": "lti1p3platform"})
        if hint in platform.deep_linking_hints:
            # The package sends a deep linking request only when the
            # registration has a deep link launch URL; without one it would
            # silently send a resource link request carrying these settings.
            accept_types = platform.deep_linking_accept_types
            self.set_dl(
                platform.deep_link_return_url,
                title="Add an activity",
                description="Pick what to place in Course One",
                accept_types=set(accept_types) if accept_types else None,
                extra_data=platform.deep_linking_data,
            )
            return

        self.set_resource_link_claim(RESOURCE_LINK_ID, title="Quiz 1")
        # With lineitem alone the package's claim builder trims the scope list
        # while iterating over it and leaves a scope it meant to drop
        # (ags.py, get_lti_ags_launch_claim); line_item_container=False
        # shows that claim to the tool as the package builds it.
        self.set_ags(
            platform.lineitems_url if platform.line_item_container else None,
            platform.lineitem_url,
            allow_creating_lineitems=platform.allow_creating_lineitems,
            results_service_enabled=platform.results_service_enabled,
        )
        if platform.names_and_roles:
            self.set_nrps(platform.memberships_url)

    def render_launch_form(self, launch_data: dict[str, Any], **kwargs: Any) -> Any:
        # The package's own template (framework/templates) needs Jinja2 and
        # pkg_resources and renders without autoescaping; an escaped form of
        # the same shape is rendered here instead.
        self._platform.record.id_tokens.append(launch_data["id_token"])
        fields = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(value)}" />'
            for name, value in (
                ("id_token", launch_data["id_token"]),
                ("state", launch_data["state"]),
            )
        )
        page = (
            "<!DOCTYPE html><html><body>"
            f'<form method="POST" action="{html.escape(launch_data["launch_url"])}"'
            f' id="form">{fields}</form>'
            '<script>document.getElementById("form").submit();</script>'
            "</body></html>"
        )

        return HTMLResponse(page)


class _GradeService(AssignmentsGradesService):  # type: ignore[misc]
    """The package's AGS service over the platform's gradebook.

    The package checks the Bearer token and the method, calls these storage
    methods, and pages: it asks for ``page``/``limit`` slices and builds the
    next URL itself. ``lineitem_url`` is the line item a request is about;
    the package builds a results listing's next URL from it.
    """

    def __init__(
        self,
        request: _PackageRequest,
        conf: _PlatformConf,
        platform: IndependentPlatform,
        lineitem_url: str | None = None,
    ) -> None:
        super().__init__(
            request,
            conf,
            platform.lineitems_url,
            lineitem_url=lineitem_url or platform.lineitem_url,
            allow_creating_lineitems=platform.allow_creating_lineitems,
            results_service_enabled=platform.results_service_enabled,
        )
        self._platform = platform
        self.accepted = False

    def _find(self, line_item_id: str, query: Mapping[str, Any]) -> dict[str, Any]:
        # Like Moodle, a line item is found only with its URL's query string.
        item = self._platform.lineitems.get(line_item_id)
        if item is None or _query_of_url(item["id"]) != dict(query):
            raise platform_errors.LineItemNotFoundException()

        return item

    def find_lineitems(
        self,
        page: int = 1,
        limit: int | None = None,
        line_item_id: str | None = None,
        resource_link_id: str | None = None,
        resource_id: str | None = None,
        tag: str | None = None,
    ) -> Any:
        wanted = {
            "resourceLinkId": resource_link_id,
            "resourceId": resource_id,
            "tag": tag,
        }
        items = [
            item
            for key, item in self._platform.lineitems.items()
            if line_item_id in (None, key)
            and all(v is None or item.get(k) == v for k, v in wanted.items())
        ]

        return _page(items, page, limit)

    def find_lineitem(self, line_item_id: str) -> Any:
        assert self.request is not None
        return dict(self._find(line_item_id, self.request.get_data))

    def create_lineitem(self, creation_data: Any) -> Any:
        # The package checks nothing in the document; tests judge what came.
        return self._platform.add_lineitem(creation_data)

    def update_lineitem(self, update_data: Any) -> Any:
        assert self.request is not None
        # The package puts the path's id where the document had the line
        # item's URL; the stored item keeps its URL as its id.
        line_item_id = update_data["id"]
        item = self._find(line_item_id, self.request.get_data)
        replaced = {**update_data, "id": item["id"]}
        self._platform.lineitems[line_item_id] = replaced

        return dict(replaced)

    def delete_lineitem(self, line_item_id: str) -> None:
        assert self.request is not None
        self._find(line_item_id, self.request.get_data)
        del self._platform.lineitems[line_item_id]
        self._platform.results.pop(line_item_id, None)

    def update_score(self, line_item_id: str, score: TScore) -> UpdateScoreStatus:
        # Reached only after the package's Bearer token check passed.
        assert self.request is not None
        item = self._find(line_item_id, self.request.get_data)
        self.accepted = True
        self._platform.record_result(line_item_id, item, score)

        return UpdateScoreStatus.SUCCESS

    def get_results(
        self,
        line_item_id: str,
        page: int = 1,
        limit: int | None = None,
        user_id: str | None = None,
        **line_item_query: str,
    ) -> Any:
        # The package passes the whole query, the line item's own included.
        self._find(line_item_id, line_item_query)
        results = [
            result
            for result in self._platform.results.get(line_item_id, {}).values()
            if user_id is None or str(result.get("userId")) == user_id
        ]

        return _page(results, page, limit)


class _RosterService(NamesRoleProvisioningService):  # type: ignore[misc]
    """The package's NRPS service over the platform's roster.

    The package checks the Bearer token (for the NRPS scope), checks an
    ``rlid`` with :meth:`is_resource_link_valid`, gives members without a
    status ``Active``, pages, and names the next page in the body's ``next``
    member, and only when the request had a ``limit``.
    """

    def __init__(
        self,
        request: _PackageRequest,
        conf: _PlatformConf,
        platform: IndependentPlatform,
    ) -> None:
        super().__init__(request, conf, platform.memberships_url)
        self._platform = platform

    def get_context_by_id(self) -> Context:
        return Context(id=CONTEXT_ID, label="C1", title="Course One")

    def is_resource_link_valid(self, context_id: str, resource_link_id: str) -> bool:
        return context_id == CONTEXT_ID and resource_link_id == RESOURCE_LINK_ID

    def get_member_data_page(
        self,
        page: int = 1,
        limit: int | None = None,
        role: str | None = None,
        since: str | None = None,
        rlid: str | None = None,
    ) -> Any:
        # The package passes the whole query on, rlid included.
        members = [m for m in self._platform.roster if role in (None, *m["roles"])]

        return _page(members, page, limit)


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a JWT already verified by the package."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})

    return header, claims


def _member(user: PlatformUser) -> dict[str, Any]:
    """The roster entry of ``user``, as an integrator would store it."""
    return {
        "user_id": user.user_id,
        "roles": list(user.roles),
        "name": user.name,
        "email": user.email,
    }


class IndependentPlatform:
    """An LTI 1.3 platform whose protocol code is lti1p3platform's.

    ``base_url`` is where its server answers (from :class:`LocalServer`); it is
    also the issuer. ``tool`` holds the URLs the tool registered. The platform
    generates its own RSA key. ``record`` collects what it saw and issued.

    What the platform offers, each passed to the package's claim builders:
    ``allow_creating_lineitems`` (the ``lineitem`` scope, else
    ``lineitem.readonly``), ``results_service_enabled``,
    ``line_item_container`` (the claim's ``lineitems`` URL),
    ``names_and_roles`` (the NRPS claim), ``deep_linking_accept_types``
    (None: the package's default, every type) and ``deep_linking_data``.
    ``nrps_next_in_link_header=False`` answers membership pages without the
    ``Link`` header the package's adapter adds, with ``next`` in the body
    only, as the package's service computes it.

    ``lineitems`` (id to line item), ``results`` (line item id to user id to
    result) and ``roster`` (member entries) are the storage behind the
    package's abstract methods; tests may change them.
    """

    def __init__(
        self,
        *,
        base_url: str,
        tool: ToolEndpoints,
        client_id: str = "independent-client-1",
        deployment_id: str = "deployment-1",
        users: Sequence[PlatformUser] = (),
        allow_creating_lineitems: bool = True,
        results_service_enabled: bool = True,
        line_item_container: bool = True,
        names_and_roles: bool = True,
        nrps_next_in_link_header: bool = True,
        deep_linking_accept_types: Sequence[str] | None = None,
        deep_linking_data: dict[str, Any] | None = None,
    ) -> None:
        self.issuer = require_loopback(base_url).rstrip("/")
        self.tool = tool
        self.client_id = client_id
        self.deployment_id = deployment_id
        self.users = {user.user_id: user for user in users or DEFAULT_USERS}
        self.message_hints: dict[str, str] = {}
        self.deep_linking_hints: set[str] = set()
        self.record = PlatformRecord()
        self.allow_creating_lineitems = allow_creating_lineitems
        self.results_service_enabled = results_service_enabled
        self.line_item_container = line_item_container
        self.names_and_roles = names_and_roles
        self.nrps_next_in_link_header = nrps_next_in_link_header
        self.deep_linking_accept_types = deep_linking_accept_types
        self.deep_linking_data = deep_linking_data

        self.lineitems: dict[str, dict[str, Any]] = {
            LINE_ITEM_ID: {
                "id": self.lineitem_url,
                "label": "Quiz 1",
                "scoreMaximum": 10,
                "resourceLinkId": RESOURCE_LINK_ID,
                "resourceId": "quiz-1",
                "tag": "quiz",
            }
        }
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        self.roster: list[dict[str, Any]] = [
            _member(user) for user in self.users.values()
        ]
        self._next_line_item = int(LINE_ITEM_ID) + 1

        private_pem, public_pem = _rsa_pem_pair()
        # The package's registration has no setter for the tool's redirect
        # URI: its "launch_url" is the target_link_uri of login and id_token.
        self.registration = (
            PlatformRegistration()
            .set_iss(self.issuer)
            .set_client_id(client_id)
            .set_deployment_id(deployment_id)
            .set_launch_url(tool.target_link_uri)
            .set_oidc_login_url(tool.login_url)
            .set_tool_key_set_url(tool.jwks_url)
            .set_platform_private_key(private_pem)
            .set_platform_public_key(public_pem)
        )
        if tool.deep_linking_uri is not None:
            self.registration.set_deeplink_launch_url(tool.deep_linking_uri)

    @property
    def auth_login_url(self) -> str:
        return f"{self.issuer}/auth"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    @property
    def key_set_url(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def lineitems_url(self) -> str:
        return f"{self.issuer}/ags/lineitems"

    @property
    def lineitem_url(self) -> str:
        return f"{self.lineitems_url}/{LINE_ITEM_ID}/lineitem?{LINE_ITEM_QUERY}"

    @property
    def scores_url(self) -> str:
        """The line item's scores URL: ``/scores`` on the path, query kept."""
        return f"{self.lineitems_url}/{LINE_ITEM_ID}/lineitem/scores?{LINE_ITEM_QUERY}"

    @property
    def memberships_url(self) -> str:
        return f"{self.issuer}/nrps/contexts/{CONTEXT_ID}/memberships"

    @property
    def deep_link_return_url(self) -> str:
        return f"{self.issuer}/dl/return?{DEEP_LINKING_RETURN_QUERY}"

    def start_url(self, user_id: str, *, deep_linking: bool = False) -> str:
        """The URL that starts a launch (or deep linking request) for ``user_id``."""
        params = {"user": user_id}
        if deep_linking:
            params["message"] = _DEEP_LINKING

        return f"{self.issuer}/start?{urlencode(params)}"

    def conf(self) -> _PlatformConf:
        """A fresh package configuration over the shared registration."""
        return _PlatformConf(registration=self.registration)

    def rotate_key(self) -> None:
        """Sign with a new key from now on; tokens issued before stop passing."""
        private_pem, public_pem = _rsa_pem_pair()
        self.registration.set_platform_private_key(private_pem)
        self.registration.set_platform_public_key(public_pem)

    def add_lineitem(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """Store a new line item (its URL has no query); returns a copy."""
        line_item_id = str(self._next_line_item)
        self._next_line_item += 1
        item = {**document, "id": f"{self.lineitems_url}/{line_item_id}/lineitem"}
        self.lineitems[line_item_id] = item

        return dict(item)

    def record_result(
        self, line_item_id: str, item: Mapping[str, Any], score: Mapping[str, Any]
    ) -> None:
        """Keep ``score`` as the user's result on the line item."""
        user_id = str(score.get("userId"))
        result = {
            "id": f"{item['id'].split('?')[0]}/results/{user_id}",
            "userId": user_id,
            "resultScore": score.get("scoreGiven"),
            "resultMaximum": score.get("scoreMaximum"),
            "scoreOf": item["id"],
        }
        if "comment" in score:
            result["comment"] = score["comment"]
        self.results.setdefault(line_item_id, {})[user_id] = result

    @property
    def app(self) -> Starlette:
        """The Starlette app to serve."""
        item = "/ags/lineitems/{line_item_id}/lineitem"
        return Starlette(
            routes=[
                Route("/start", self._start, methods=["GET"]),
                Route("/auth", self._auth, methods=["GET", "POST"]),
                Route("/jwks", self._jwks, methods=["GET"]),
                Route("/token", self._token, methods=["POST"]),
                Route("/ags/lineitems", self._lineitems, methods=["GET", "POST"]),
                Route(item, self._lineitem, methods=["GET", "PUT", "DELETE"]),
                Route(f"{item}/results", self._results, methods=["GET"]),
                Route(f"{item}/scores", self._scores, methods=["POST"]),
                Route(
                    "/nrps/contexts/{context_id}/memberships",
                    self._memberships,
                    methods=["GET"],
                ),
                Route("/dl/return", self._deep_linking_return, methods=["POST"]),
            ]
        )

    async def _start(self, request: Request) -> Response:
        user_id = request.query_params.get("user", "")
        if user_id not in self.users:
            return JSONResponse({"error": "unknown user"}, status_code=404)
        deep_linking = request.query_params.get("message") == _DEEP_LINKING
        if deep_linking and self.tool.deep_linking_uri is None:
            return JSONResponse(
                {"error": "the tool registered no deep linking URL"}, status_code=404
            )

        package_request, _ = await _read_request(request)
        hint = secrets.token_urlsafe(16)
        self.message_hints[hint] = user_id
        login = _OIDCLogin(package_request, self.conf())
        login.set_lti_message_hint(lti_message_hint=hint)
        if deep_linking:
            self.deep_linking_hints.add(hint)
            login.set_deeplinking_launch_url()
        response: Response = login.initiate_login(user_id)

        return response

    async def _auth(self, request: Request) -> Response:
        package_request, _ = await _read_request(request)
        params = package_request.get_data or package_request.form_data
        self.record.auth_requests.append(dict(params))

        launch = _MessageLaunch(package_request, self.conf(), self)
        try:
            response: Response = launch.lti_launch()
        except platform_errors.PreflightRequestValidationException:
            return JSONResponse({"error": "invalid_request"}, status_code=400)

        return response

    async def _jwks(self, request: Request) -> Response:
        return JSONResponse(self.conf().get_jwks())

    async def _token(self, request: Request) -> Response:
        package_request, _ = await _read_request(request)
        form: dict[str, str] = dict(package_request.form_data)
        conf = self.conf()

        # The package's validation checks the grant type, that the form fields
        # are present, and the assertion's signature against the tool's key
        # set (by kid and alg) with exp/iat/nbf when present. It is lax: it
        # does not check client_assertion_type's value, the assertion's aud,
        # iss or sub, that exp is present, nor jti reuse. Tests judge those
        # from the recorded grant; the harness does not fix the package.
        try:
            answer = await run_in_threadpool(conf.get_access_token, form)
        except platform_errors.MissingRequiredClaim as error:
            return self._refuse_token("invalid_request", str(error))
        except platform_errors.UnsupportedGrantType:
            return self._refuse_token("unsupported_grant_type", "grant_type")
        except (
            platform_errors.LtiException,
            platform_errors.InvalidKeySetUrl,
            jwt.PyJWTError,
        ) as error:
            return self._refuse_token("invalid_client", type(error).__name__)

        header, claims = _unverified(form["client_assertion"])
        self.record.token_grants.append(
            TokenGrant(answer["access_token"], answer["scope"], form, header, claims)
        )

        return JSONResponse(dict(answer))

    def _refuse_token(self, error: str, detail: str) -> Response:
        self.record.token_refusals.append(f"{error}: {detail}")
        status = 401 if error == "invalid_client" else 400

        return JSONResponse({"error": error}, status_code=status)

    async def _scores(self, request: Request) -> Response:
        package_request, body = await _read_request(request)
        service = _GradeService(package_request, self.conf(), self)
        line_item_id = request.path_params["line_item_id"]

        # The package's token check (validate_token) raises PyJWT's errors for
        # a bad signature, a foreign audience or garbage instead of answering
        # 401; its handle_resp catches only LtiServiceException, so the harness
        # maps those errors to 401 here. Its scope check accepts a token with
        # any AGS scope (any(), not the score scope), a laxness left as is.
        try:
            answer = service.handle_resp(
                service.handle_update_score, line_item_id=line_item_id
            )
            status, message = answer.code, answer.message
        except (jwt.PyJWTError, platform_errors.LtiException) as error:
            status, message = 401, type(error).__name__

        self.record.scores.append(
            ScorePost(
                line_item_id=line_item_id,
                query=request.url.query,
                content_type=request.headers.get("content-type"),
                bearer_token=_bearer(request.headers),
                body=body,
                status=status,
                detail=message,
                accepted=service.accepted,
            )
        )

        return JSONResponse({"message": message}, status_code=status)

    async def _lineitems(self, request: Request) -> Response:
        if request.method == "POST":
            handler = "handle_create_lineitem"
        else:
            handler = "handle_get_lineitems"

        return await self._serve(
            request, lambda r: _GradeService(r, self.conf(), self), handler
        )

    async def _lineitem(self, request: Request) -> Response:
        handlers = {
            "GET": "handle_get_lineitem",
            "PUT": "handle_update_lineitem",
            "DELETE": "handle_delete_lineitem",
        }
        line_item_id = request.path_params["line_item_id"]

        return await self._serve(
            request,
            lambda r: _GradeService(r, self.conf(), self),
            handlers[request.method],
            line_item_id=line_item_id,
        )

    async def _results(self, request: Request) -> Response:
        line_item_id = request.path_params["line_item_id"]
        item = self.lineitems.get(line_item_id)
        # An integrator hands the service the URL of the line item asked
        # about; the package builds the next results page from it.
        url = item["id"] if item is not None else None

        return await self._serve(
            request,
            lambda r: _GradeService(r, self.conf(), self, lineitem_url=url),
            "handle_get_results",
            line_item_id=line_item_id,
        )

    async def _memberships(self, request: Request) -> Response:
        if request.path_params["context_id"] != CONTEXT_ID:
            return JSONResponse({"error": "unknown context"}, status_code=404)

        return await self._serve(
            request,
            lambda r: _RosterService(r, self.conf(), self),
            "handle_get_members",
            link_header=self.nrps_next_in_link_header,
        )

    async def _serve(
        self,
        request: Request,
        make_service: Callable[[_PackageRequest], BasicService],
        handler: str,
        *,
        link_header: bool = True,
        **arguments: str,
    ) -> Response:
        """Run one of the package's service handlers; record the call."""
        package_request, body = await _read_request(request)
        package_request.request["get_data"] = _paging_numbers(package_request.get_data)
        service = make_service(package_request)

        # As for scores: the package's token check raises instead of
        # answering 401 for a token it cannot verify.
        try:
            answer = service.handle_resp(getattr(service, handler), **arguments)
        except (jwt.PyJWTError, platform_errors.LtiException) as error:
            answer = ServiceAnswer(None, 401, type(error).__name__)
        response = _http_answer(answer, link_header=link_header)

        self.record.service_calls.append(
            ServiceCall(
                method=request.method,
                path=request.url.path,
                query=request.url.query,
                accept=request.headers.get("accept"),
                content_type=request.headers.get("content-type"),
                bearer_token=_bearer(request.headers),
                body=body,
                status=response.status_code,
                link=response.headers.get("link"),
            )
        )

        return response

    async def _deep_linking_return(self, request: Request) -> Response:
        package_request, _ = await _read_request(request)
        form = dict(package_request.form_data)
        conf = self.conf()
        if self.deep_linking_accept_types:
            conf.set_accepted_deeplinking_types(list(self.deep_linking_accept_types))

        # The package checks the JWT's signature (key by kid and alg from the
        # tool's key set), exp and iat, the message type, and that every item
        # is of an accepted type. It is lax: with verify_aud off it checks no
        # aud, and it checks neither iss, nonce (nor its reuse),
        # deployment_id, version nor that data came back; tests judge those
        # from the record.
        items: list[dict[str, Any]] = []
        header = claims = None
        if "JWT" not in form:
            status, detail = 400, "no JWT field"
        else:
            try:
                items = await run_in_threadpool(conf.validate_deeplinking_resp, form)
                status, detail = 200, "placed"
                header, claims = _unverified(form["JWT"])
            except (
                platform_errors.LtiException,
                platform_errors.LtiDeepLinkingResponseException,
                platform_errors.InvalidKeySetUrl,
                jwt.PyJWTError,
            ) as error:
                status, detail = 400, f"{type(error).__name__}: {error}"

        self.record.deep_linking_returns.append(
            DeepLinkingReturn(
                query=request.url.query,
                form=form,
                status=status,
                detail=detail,
                content_items=items,
                header=header,
                claims=claims,
            )
        )
        if status != 200:
            return JSONResponse({"error": detail}, status_code=status)

        return JSONResponse({"placed": len(items)})


def _bearer(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")

    return token.strip() if scheme.lower() == "bearer" else None

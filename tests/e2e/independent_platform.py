"""An LTI 1.3 platform built on lti1p3platform, to judge our tool end to end.

Our own development platform should not be the only judge of the tool, so this
harness wraps an independent implementation, the PyPI package
``lti1p3platform`` (0.1.8), in a small Starlette app. The package's code builds
the login initiation, checks the auth request, builds and signs the id_token,
validates token requests and issues and checks access tokens. The glue here
only adapts HTTP to its objects and records what the tool sent, so tests can
look at it.

Routes of :class:`IndependentPlatform`:

- ``GET /start?user=<id>``: the package's OIDC login initiation, a redirect
  to the tool's login URL.
- ``GET|POST /auth``: the package's auth request handling; answers with an
  auto-submitting form of ``id_token`` and ``state``.
- ``GET /jwks``: the package's key set.
- ``POST /token``: the package's token request validation.
- ``POST /ags/lineitems/<id>/lineitem/scores``: the package's AGS score
  handling behind its own Bearer token check. The line item URL carries a
  query string (``?type_id=1``), as Moodle's do.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lti1p3platform import exceptions as platform_errors
from lti1p3platform.ltiplatform import JWKS, LTI1P3PlatformConfAbstract
from lti1p3platform.message_launch import LTIAdvantageMessageLaunchAbstract
from lti1p3platform.oidc_login import OIDCLoginAbstract
from lti1p3platform.registration import Registration as PlatformRegistration
from lti1p3platform.request import Request as PlatformRequest
from lti1p3platform.request import TRequest
from lti1p3platform.score import TScore, UpdateScoreStatus
from lti1p3platform.service_connector import AssignmentsGradesService
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
SERVER_START_TIMEOUT = 10.0
_FORM_TYPES = ("application/x-www-form-urlencoded",)


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


@dataclass(frozen=True)
class ToolEndpoints:
    """The tool's URLs as the platform registers them."""

    login_url: str
    launch_url: str
    jwks_url: str
    target_link_uri: str

    def __post_init__(self) -> None:
        for url in (self.login_url, self.launch_url, self.jwks_url):
            require_loopback(url)
        require_loopback(self.target_link_uri)


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


@dataclass
class PlatformRecord:
    """What the platform saw and issued, for tests to inspect."""

    auth_requests: list[dict[str, str]] = field(default_factory=list)
    id_tokens: list[str] = field(default_factory=list)
    token_grants: list[TokenGrant] = field(default_factory=list)
    token_refusals: list[str] = field(default_factory=list)
    scores: list[ScorePost] = field(default_factory=list)


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
        hint = preflight_response.get("lti_message_hint", "")
        user_id = self._platform.message_hints.get(hint)
        if user_id is None or preflight_response.get("login_hint") != user_id:
            raise platform_errors.PreflightRequestValidationException(
                "unknown lti_message_hint or login_hint"
            )

        user = self._platform.users[user_id]
        self.set_user_data(user.user_id, list(user.roles), user.name, user.email)
        self.set_resource_link_claim("resource-link-1", title="Quiz 1")
        self.set_launch_context_claim("course-1", context_title="Course One")
        self.set_custom_parameters_claim({"harness": "lti1p3platform"})
        # Both lineitems and lineitem are given: with lineitem alone, the
        # package's claim builder trims the scope list while iterating over it
        # and leaves a scope it meant to drop.
        self.set_ags(self._platform.lineitems_url, self._platform.lineitem_url)

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
    """The package's AGS service; only the score post is implemented."""

    def __init__(
        self,
        request: _PackageRequest,
        conf: _PlatformConf,
        platform: IndependentPlatform,
    ) -> None:
        super().__init__(
            request, conf, platform.lineitems_url, lineitem_url=platform.lineitem_url
        )
        self.accepted = False

    def update_score(self, line_item_id: str, score: TScore) -> UpdateScoreStatus:
        # Reached only after the package's Bearer token check passed.
        # Like Moodle, the line item is found only with its query string.
        assert self.request is not None
        query = dict(parse_qsl(LINE_ITEM_QUERY))
        if line_item_id != LINE_ITEM_ID or self.request.get_data != query:
            raise platform_errors.LineItemNotFoundException()
        self.accepted = True

        return UpdateScoreStatus.SUCCESS

    def find_lineitems(self, *args: Any, **kwargs: Any) -> Any:
        raise platform_errors.LtiServiceException("not served by the harness", 501)

    def find_lineitem(self, line_item_id: str) -> Any:
        raise platform_errors.LineItemNotFoundException()

    def create_lineitem(self, creation_data: Any) -> Any:
        raise platform_errors.LtiServiceException("not served by the harness", 501)

    def update_lineitem(self, update_data: Any) -> Any:
        raise platform_errors.LtiServiceException("not served by the harness", 501)

    def delete_lineitem(self, line_item_id: str) -> None:
        raise platform_errors.LtiServiceException("not served by the harness", 501)

    def get_results(self, *args: Any, **kwargs: Any) -> Any:
        raise platform_errors.LtiServiceException("not served by the harness", 501)


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a JWT already verified by the package."""
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})

    return header, claims


class IndependentPlatform:
    """An LTI 1.3 platform whose protocol code is lti1p3platform's.

    ``base_url`` is where its server answers (from :class:`LocalServer`); it is
    also the issuer. ``tool`` holds the URLs the tool registered. The platform
    generates its own RSA key. ``record`` collects what it saw and issued.
    """

    def __init__(
        self,
        *,
        base_url: str,
        tool: ToolEndpoints,
        client_id: str = "independent-client-1",
        deployment_id: str = "deployment-1",
        users: Sequence[PlatformUser] = (),
    ) -> None:
        self.issuer = require_loopback(base_url).rstrip("/")
        self.tool = tool
        self.client_id = client_id
        self.deployment_id = deployment_id
        self.users = {user.user_id: user for user in users or DEFAULT_USERS}
        self.message_hints: dict[str, str] = {}
        self.record = PlatformRecord()

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

    def start_url(self, user_id: str) -> str:
        """The URL that starts a launch for ``user_id``."""
        return f"{self.issuer}/start?{urlencode({'user': user_id})}"

    def conf(self) -> _PlatformConf:
        """A fresh package configuration over the shared registration."""
        return _PlatformConf(registration=self.registration)

    @property
    def app(self) -> Starlette:
        """The Starlette app to serve."""
        return Starlette(
            routes=[
                Route("/start", self._start, methods=["GET"]),
                Route("/auth", self._auth, methods=["GET", "POST"]),
                Route("/jwks", self._jwks, methods=["GET"]),
                Route("/token", self._token, methods=["POST"]),
                Route(
                    "/ags/lineitems/{line_item_id}/lineitem/scores",
                    self._scores,
                    methods=["POST"],
                ),
            ]
        )

    async def _start(self, request: Request) -> Response:
        user_id = request.query_params.get("user", "")
        if user_id not in self.users:
            return JSONResponse({"error": "unknown user"}, status_code=404)

        package_request, _ = await _read_request(request)
        hint = secrets.token_urlsafe(16)
        self.message_hints[hint] = user_id
        login = _OIDCLogin(package_request, self.conf())
        login.set_lti_message_hint(lti_message_hint=hint)
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


def _bearer(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")

    return token.strip() if scheme.lower() == "bearer" else None

"""The ASGI middleware: LTI routes in front of an app, launches on its requests.

It answers the login, launch and JWKS routes itself, at the paths of the
configured URLs. A valid launch is stored under a random launch id and the
browser is sent (303) to the launch's target_link_uri with ``lti_launch=<id>``.
Any later request that carries that id, in the query or the ``X-LTI-Launch``
header, reaches the app with the launch at ``request.state.lti``. A launch id
rather than a cookie ties requests to a launch, so two launches in two tabs do
not mix and third-party cookie blocking does not break later requests.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pluggy
from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import claims as c
from . import defaults, hooks
from .ags import AGSClient
from .config import Registration, ToolConfig, load_config, origin_of
from .deep_linking import DeepLinking, DeepLinkingSettings
from .exceptions import ConfigurationError, LaunchError, StoreError
from .keys import KeyProvider
from .launch import LaunchValidator, ValidatedLaunch, nonce_key, state_key
from .login import LoginRequest, start_login, state_cookie, state_cookie_name
from .message import LTILaunch
from .nrps import NRPSClient
from .pages import render_error
from .platform_keys import PlatformKeySets
from .retries import RetryPolicy
from .storage import launch_needs_page, login_page, storage_target
from .stores.base import LaunchStore, NonceStore
from .tokens import AccessTokenClient

logger = logging.getLogger(__name__)

LAUNCH_PARAMETER = "lti_launch"
LAUNCH_HEADER = b"x-lti-launch"
MAX_FORM_FIELDS = 100
MAX_LAUNCH_ID_LENGTH = 128

Handler = Callable[[Scope, Receive], Awaitable[Response]]


def build_plugin_manager(
    plugins: Iterable[object] = (), *, load_entry_points: bool = False
) -> pluggy.PluginManager:
    """A plugin manager with our hookspecs, the defaults and ``plugins``.

    A plugin object with a ``name`` attribute is registered under that name,
    which is also the name of its settings table (``[plugins.<name>]``);
    entry-point plugins are registered under their entry point's name.
    """
    manager = pluggy.PluginManager(hooks.PROJECT_NAME)
    manager.add_hookspecs(hooks)
    manager.register(defaults)
    for plugin in plugins:
        name = getattr(plugin, "name", None)
        manager.register(plugin, name=name if isinstance(name, str) else None)
    if load_entry_points:
        manager.load_setuptools_entrypoints(hooks.PROJECT_NAME)

    return manager


def check_plugin_settings(manager: pluggy.PluginManager, config: ToolConfig) -> None:
    """Refuse ``[plugins.<name>]`` tables that no registered plugin reads.

    Without this, a Redis table whose plugin was never loaded would leave the
    tool on in-memory stores without a word.
    """
    for name in config.plugin_settings:
        if not manager.has_plugin(name):
            raise ConfigurationError(
                f"plugins.{name}",
                f"no plugin named {name!r} is registered; pass it in plugins=[...] "
                "or install it and build the middleware with load_entry_points=True",
            )


def _required(value: Any, hook: str) -> Any:
    if value is None:
        raise ConfigurationError(hook, "no plugin returned a value")
    return value


class LTIMiddleware:
    """Makes an ASGI app an LTI 1.3 tool.

    ``config`` defaults to the TOML file named by ``LTI_MIDDLEWARE_CONFIG``.
    ``plugins`` are registered with this middleware's own plugin manager;
    ``load_entry_points`` also loads the ``lti_middleware`` entry-point group.
    ``http`` is the client for platform calls (key sets, tokens, services);
    the middleware closes it, and its stores, at lifespan shutdown or
    :meth:`aclose`. ``service_retry`` is the retry policy of ``launch.ags``
    and ``launch.nrps``, built from the configuration.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: ToolConfig | None = None,
        plugins: Iterable[object] = (),
        load_entry_points: bool = False,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.config = config if config is not None else load_config()
        self.plugins = build_plugin_manager(
            plugins, load_entry_points=load_entry_points
        )
        check_plugin_settings(self.plugins, self.config)
        hook = self.plugins.hook
        self.nonces: NonceStore = _required(
            hook.lti_nonce_store(config=self.config), "lti_nonce_store"
        )
        self.launches: LaunchStore = _required(
            hook.lti_launch_store(config=self.config), "lti_launch_store"
        )
        self.keys: KeyProvider = _required(
            hook.lti_key_provider(config=self.config), "lti_key_provider"
        )

        self.clock = clock
        timeout = self.config.http_timeout
        self.http = http or httpx.AsyncClient(timeout=timeout)
        self.key_sets = PlatformKeySets(
            self.http, clock=clock, user_agent=self.config.user_agent, timeout=timeout
        )
        self.tokens = AccessTokenClient(
            key_provider=self.keys,
            http=self.http,
            store=_required(
                hook.lti_access_token_store(config=self.config),
                "lti_access_token_store",
            ),
            clock=clock,
            user_agent=self.config.user_agent,
        )
        self.service_retry = RetryPolicy.from_config(self.config)
        self._registrations = {r.key: r for r in self.config.registrations}
        self._launch_path = urlsplit(self.config.launch_url).path
        self.validator = LaunchValidator(
            config=self.config,
            key_sets=self.key_sets,
            nonces=self.nonces,
            clock=clock,
            accept_deployment=self._accept_deployment,
        )
        self._routes: dict[str, Handler] = {
            urlsplit(self.config.login_url).path: self._login,
            self._launch_path: self._launch,
            urlsplit(self.config.jwks_url).path: self._jwks,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._closing_on_shutdown(receive), send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        handler = self._routes.get(scope["path"])
        try:
            if handler is not None:
                response = await handler(scope, receive)
                await response(scope, receive, send)
                return
            scope.setdefault("state", {})["lti"] = await self._find_launch(scope)
        except StoreError as error:
            refusal = store_unavailable(error, scope["path"])
            await self._refuse(refusal, scope)(scope, receive, send)
            return
        except LaunchError as error:
            await self._refuse(error, scope)(scope, receive, send)
            return

        await self.app(scope, receive, send)

    async def aclose(self) -> None:
        """Close the HTTP client for platform calls and stores that can close."""
        await self.http.aclose()
        for store in (self.nonces, self.launches, self.tokens.store):
            close = getattr(store, "aclose", None)
            if close is not None:
                await close()

    def _closing_on_shutdown(self, receive: Receive) -> Receive:
        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.aclose()
            return message

        return wrapped

    async def _login(self, scope: Scope, receive: Receive) -> Response:
        method = scope["method"]
        if method not in ("GET", "POST"):
            raise LaunchError("method_not_allowed", f"{method} on the login route")
        # CASE-01: platforms use both GET and POST. For POST the body wins over
        # a parameter that also appears in the query string.
        params = _query(scope)
        if method == "POST":
            params.update(await self._form(scope, receive))

        login = start_login(LoginRequest.from_params(params), self.config)
        ttl = self.config.login_ttl
        try:
            await self.nonces.issue(state_key(login.state), login.record.to_json(), ttl)
            await self.nonces.issue(nonce_key(login.record.nonce), login.state, ttl)
        except StoreError as error:
            refusal = store_unavailable(error, scope["path"])
            refusal.issuer = login.record.issuer
            refusal.client_id = login.record.client_id
            raise refusal from error
        logger.debug("login for %s %s", login.record.issuer, login.record.client_id)

        target = storage_target(params)
        if target is None:
            response: Response = RedirectResponse(
                login.url, 302, headers={"Cache-Control": "no-store"}
            )
        else:
            # Platform storage draft: keep the binding in the platform's window
            # too, for browsers that will not send the cookie back.
            page = login_page(
                auth_url=login.url,
                target=target,
                auth_origin=origin_of(login.url),
                state=login.state,
                binding=login.record.binding,
            )
            response = HTMLResponse(page.html, headers=page.headers)
        response.headers.append(
            "set-cookie",
            state_cookie(
                login.cookie_name,
                login.record.binding,
                path=self._launch_path,
                max_age=int(ttl),
            ),
        )
        return response

    async def _launch(self, scope: Scope, receive: Receive) -> Response:
        if scope["method"] != "POST":
            raise LaunchError(
                "method_not_allowed",
                f"{scope['method']} on the launch route; platforms POST the id_token",
            )
        form = await self._form(scope, receive)
        cookies = _cookies(scope)
        page = launch_needs_page(form, cookies, self.config)
        if page is not None:
            # The state is not consumed: the page posts the launch again.
            return HTMLResponse(page.html, headers=page.headers)
        validated = await self.validator.validate(form, cookies)

        launch_id = secrets.token_urlsafe(32)
        await self.launches.save(
            launch_id, _launch_data(validated), self.config.launch_ttl
        )
        _log_launch(validated)

        response = RedirectResponse(
            self._landing(validated.claims, launch_id),
            303,
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )
        response.headers.append(
            "set-cookie",
            state_cookie(
                state_cookie_name(validated.state),
                "",
                path=self._launch_path,
                max_age=0,
            ),
        )
        return response

    async def _jwks(self, scope: Scope, receive: Receive) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            raise LaunchError("method_not_allowed", f"{scope['method']} on JWKS")
        return JSONResponse(
            await self.keys.public_key_set(),
            headers={"Cache-Control": "public, max-age=300"},
        )

    def _landing(self, claims: Mapping[str, Any], launch_id: str) -> str:
        target = str(claims.get(c.TARGET_LINK_URI) or self.config.landing_url)
        parts = urlsplit(target)
        if parts.path == self._launch_path:
            parts = urlsplit(str(self.config.landing_url))

        query = [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k != LAUNCH_PARAMETER
        ]
        query.append((LAUNCH_PARAMETER, launch_id))
        return urlunsplit(parts._replace(query=urlencode(query), fragment=""))

    async def _find_launch(self, scope: Scope) -> LTILaunch | None:
        launch_id = _launch_id(scope)
        if launch_id is None:
            return None

        data = await self.launches.load(launch_id)
        if data is None:
            raise LaunchError(
                "launch_not_found",
                "the launch id on this request is unknown or expired",
            )
        record = _launch_record(data)
        registration = self._registrations.get((record["issuer"], record["client_id"]))
        if registration is None:
            raise LaunchError(
                "launch_not_found", "the launch's registration is no longer configured"
            )

        return LTILaunch(
            launch_id=launch_id,
            registration=registration,
            claims=record["claims"],
            ags_factory=self._ags_for,
            nrps_factory=self._nrps_for,
            deep_linking_factory=self._deep_linking_for,
        )

    def _ags_for(self, launch: LTILaunch) -> AGSClient:
        return AGSClient(
            endpoint=launch.claims.get(c.AGS_ENDPOINT) or {},
            registration=launch.registration,
            tokens=self.tokens,
            http=self.http,
            user_id=launch.user.id,
            retry=self.service_retry,
        )

    def _nrps_for(self, launch: LTILaunch) -> NRPSClient:
        service = launch.claims.get(c.NRPS_SERVICE)
        link = launch.resource_link
        return NRPSClient(
            service=service if isinstance(service, dict) else None,
            registration=launch.registration,
            tokens=self.tokens,
            http=self.http,
            resource_link_id=link.id if link is not None else None,
            retry=self.service_retry,
        )

    def _deep_linking_for(self, launch: LTILaunch) -> DeepLinking:
        # Checked when the launch was accepted; read again from the claims.
        settings = DeepLinkingSettings.from_claim(
            launch.claims.get(c.DEEP_LINKING_SETTINGS)
        )
        return DeepLinking(
            settings=settings,
            registration=launch.registration,
            deployment_id=launch.deployment_id,
            keys=self.keys,
            clock=self.clock,
        )

    def _accept_deployment(
        self, registration: Registration, deployment_id: str
    ) -> bool:
        decision = self.plugins.hook.lti_accept_deployment(
            registration=registration, deployment_id=deployment_id
        )
        if decision is None:
            return self.config.deployment_policy == "accept"
        return bool(decision)

    async def _form(self, scope: Scope, receive: Receive) -> dict[str, str]:
        content_type = _header(scope, b"content-type").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise LaunchError(
                "request_malformed",
                f"expected an application/x-www-form-urlencoded body, got "
                f"{content_type or 'none'!r}",
            )
        body = await _read_body(receive, self.config.max_body_bytes)
        try:
            pairs = parse_qsl(
                body.decode("utf-8"),
                keep_blank_values=True,
                max_num_fields=MAX_FORM_FIELDS,
            )
        except (UnicodeDecodeError, ValueError) as error:
            raise LaunchError(
                "request_malformed", f"unreadable form: {error}"
            ) from error

        return _single_values(pairs)

    def _refuse(self, error: LaunchError, scope: Scope) -> Response:
        # Values from requests are escaped, so no one can forge log lines.
        logger.warning(
            "LTI %s refused: %s (issuer=%s client_id=%s deployment_id=%s): %s",
            loggable(scope["path"]),
            error.reason,
            loggable(error.issuer),
            loggable(error.client_id),
            loggable(error.deployment_id),
            loggable(error.detail),
        )
        accept = _header(scope, b"accept")
        custom = self.plugins.hook.lti_error_response(error=error, accept=accept)
        if custom is not None:
            response: Response = custom
            return response
        return render_error(error, accept)


def _launch_record(data: str) -> dict[str, Any]:
    """A stored launch, checked: a corrupt record is no launch, not a crash."""
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):
        record = None
    valid = (
        isinstance(record, dict)
        and isinstance(record.get("issuer"), str)
        and isinstance(record.get("client_id"), str)
        and isinstance(record.get("claims"), dict)
    )
    if not valid:
        logger.error("a stored launch record is corrupt; treating it as unknown")
        raise LaunchError("launch_not_found", "the stored launch is unreadable")

    return dict(record)


def store_unavailable(error: StoreError, path: str) -> LaunchError:
    """The refusal for a failed store: fail closed, details to the log only.

    Without the store no state, nonce or launch can be checked, so nothing
    is accepted. The store's own message may name its server; it is logged
    here and the person sees only which store failed.
    """
    logger.error("LTI %s: %s", loggable(path), loggable(error))
    return LaunchError(
        "store_unavailable",
        f"the tool's {error.store} is unavailable (details are in the tool's log)",
    )


def loggable(value: object) -> str:
    """``value`` as one printable line: control characters escaped."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _launch_data(validated: ValidatedLaunch) -> str:
    """The launch record to save: the claims go in as the platform signed them.

    They are a JSON object already parsed in full by the validator, so the
    record is valid JSON without serialising them again (a tenth of a launch).
    """
    registration = validated.registration
    claims = validated.claims_json or json.dumps(validated.claims)
    return (
        f'{{"issuer":{json.dumps(registration.issuer)},'
        f'"client_id":{json.dumps(registration.client_id)},"claims":{claims}}}'
    )


def _log_launch(validated: ValidatedLaunch) -> None:
    if not logger.isEnabledFor(logging.INFO):
        return
    logger.info(
        "launch accepted: issuer=%s client_id=%s deployment_id=%s message_type=%s",
        loggable(validated.registration.issuer),
        loggable(validated.registration.client_id),
        loggable(validated.claims.get(c.DEPLOYMENT_ID)),
        loggable(validated.claims.get(c.MESSAGE_TYPE)),
    )


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError as error:
        raise LaunchError("request_malformed", f"unreadable query: {error}") from error

    return _single_values(pairs)


def _single_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Fields as a dict; a repeated field is refused rather than guessed at."""
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in values:
            raise LaunchError("request_malformed", f"field {key!r} appears twice")
        values[key] = value

    return values


def _cookies(scope: Scope) -> dict[str, str]:
    return cookie_parser(_header(scope, b"cookie"))


def _launch_id(scope: Scope) -> str | None:
    launch_id = _header(scope, LAUNCH_HEADER) or None
    if launch_id is None:
        for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
            if key == LAUNCH_PARAMETER:
                launch_id = value
                break
    if launch_id is not None and len(launch_id) > MAX_LAUNCH_ID_LENGTH:
        raise LaunchError("launch_not_found", "the launch id is malformed")

    return launch_id


async def _read_body(receive: Receive, limit: int) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise LaunchError("request_malformed", "the client disconnected")
        body += message.get("body", b"")
        if len(body) > limit:
            raise LaunchError("request_too_large", f"body over {limit} bytes")
        if not message.get("more_body", False):
            return bytes(body)

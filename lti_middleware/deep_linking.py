"""Deep Linking 2.0: the request's settings and the signed response.

An ``LtiDeepLinkingRequest`` launch asks the tool to pick content for the
platform to place in the course. The tool answers with an
``LtiDeepLinkingResponse`` JWT that it signs itself, carried by the user's
browser in a form POST to the platform's ``deep_link_return_url`` (Deep
Linking 2.0, section 4). The items themselves are built with the classes of
:mod:`lti_middleware.content_items`, re-exported here. They are checked
against the request's settings before anything is signed: a refusal here
names the item and the setting, where a platform would show an opaque error.
"""

from __future__ import annotations

import copy
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from starlette.responses import HTMLResponse

from . import claims as c
from .config import Registration
from .content_items import (
    HTML,
    ContentItem,
    DeepLinkingError,
    Embed,
    File,
    Icon,
    IFrame,
    Image,
    LineItemSpec,
    Link,
    LTIResourceLink,
    TimeWindow,
    Window,
    check_url,
)
from .exceptions import ConfigurationError
from .keys import KeyProvider
from .pages import render_auto_post

__all__ = [
    "HTML",
    "ContentItem",
    "DeepLinking",
    "DeepLinkingError",
    "DeepLinkingSettings",
    "Embed",
    "File",
    "Icon",
    "IFrame",
    "Image",
    "LTIResourceLink",
    "LineItemSpec",
    "Link",
    "TimeWindow",
    "Window",
    "build_response_claims",
    "check_items",
]

logger = logging.getLogger(__name__)

#: Seconds a response JWT stays valid; the browser posts it at once.
DEFAULT_RESPONSE_LIFETIME = 300
_NONCE_BYTES = 24


# -- The request's settings ---------------------------------------------------


def _strings(name: str, value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be an array of strings")
    return tuple(value)


def _flag(name: str, value: object) -> bool | None:
    # The spec says boolean; the strings "true" and "false" are read as one
    # rather than refusing the launch over them.
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"{name} must be a boolean")


def _optional_text(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


@dataclass(frozen=True, kw_only=True)
class DeepLinkingSettings:
    """The ``deep_linking_settings`` claim of a deep-linking request.

    An empty ``accept_types``, ``accept_presentation_document_targets`` or
    ``accept_media_types`` means the platform did not say, and nothing is
    refused for it. ``accept_lineitem`` is None when the platform did not say
    whether it reads line items. ``data`` is the platform's opaque value, to
    be echoed unchanged; ``has_data`` tells an absent value from a null one.
    """

    deep_link_return_url: str
    accept_types: tuple[str, ...] = ()
    accept_presentation_document_targets: tuple[str, ...] = ()
    accept_media_types: tuple[str, ...] = ()
    accept_multiple: bool = False
    accept_lineitem: bool | None = None
    auto_create: bool = False
    title: str | None = None
    text: str | None = None
    data: Any = None
    has_data: bool = False
    # The platform's data as sent, serialised: what the response echoes.
    sent_data: str = field(default="null", repr=False)

    @classmethod
    def from_claim(cls, value: object) -> DeepLinkingSettings:
        """Read the claim; raises ValueError naming the member that is wrong.

        ``deep_link_return_url`` is required and must be an absolute http(s)
        URL: it becomes a form's action, so no other scheme may reach a page.
        """
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object")
        url = value.get("deep_link_return_url")
        if not isinstance(url, str) or not url:
            raise ValueError("deep_link_return_url is missing")
        check_url("deep_link_return_url", url)

        media_types = value.get("accept_media_types")
        if isinstance(media_types, str):
            # DL 2.0 gives a comma-separated list: "image/*,text/html".
            media_types = [t.strip() for t in media_types.split(",") if t.strip()]
        return cls(
            deep_link_return_url=url,
            accept_types=_strings("accept_types", value.get("accept_types")),
            accept_presentation_document_targets=_strings(
                "accept_presentation_document_targets",
                value.get("accept_presentation_document_targets"),
            ),
            accept_media_types=_strings("accept_media_types", media_types),
            accept_multiple=bool(
                _flag("accept_multiple", value.get("accept_multiple"))
            ),
            accept_lineitem=_flag("accept_lineitem", value.get("accept_lineitem")),
            auto_create=bool(_flag("auto_create", value.get("auto_create"))),
            title=_optional_text("title", value.get("title")),
            text=_optional_text("text", value.get("text")),
            data=copy.deepcopy(value.get("data")),
            has_data="data" in value,
            sent_data=json.dumps(value.get("data")),
        )

    def accepts_type(self, item_type: str) -> bool:
        """True when the platform takes items of ``item_type``."""
        return not self.accept_types or item_type in self.accept_types

    def accepts_target(self, target: str) -> bool:
        """True when the platform takes the presentation target ``target``."""
        targets = self.accept_presentation_document_targets
        return not targets or target in targets

    def accepts_media_type(self, media_type: str) -> bool:
        """True when ``media_type`` matches one accepted, ``image/*`` style."""
        if not self.accept_media_types:
            return True
        kind = media_type.split(";")[0].strip().lower()
        for accepted in (t.lower() for t in self.accept_media_types):
            if accepted in (kind, "*/*") or (
                accepted.endswith("/*") and kind.startswith(accepted[:-1])
            ):
                return True
        return False


def check_items(items: Sequence[ContentItem], settings: DeepLinkingSettings) -> None:
    """Refuse items the platform said it does not take; raises DeepLinkingError."""
    if len(items) > 1 and not settings.accept_multiple:
        raise DeepLinkingError(
            f"{len(items)} content items given; the platform accepts only one "
            "(accept_multiple is false)"
        )

    for number, item in enumerate(items, 1):
        if not isinstance(item, ContentItem):
            raise DeepLinkingError(f"item {number} is not a content item: {item!r}")
        if not settings.accepts_type(item.type):
            raise DeepLinkingError(
                f"item {number} is a {item.type!r}; the platform accepts only "
                f"{list(settings.accept_types)}"
            )
        for target in item.presentation_targets():
            if not settings.accepts_target(target):
                raise DeepLinkingError(
                    f"item {number} asks for presentation target {target!r}; the "
                    "platform accepts only "
                    f"{list(settings.accept_presentation_document_targets)}"
                )
        _check_item_settings(number, item, settings)


def _check_item_settings(
    number: int, item: ContentItem, settings: DeepLinkingSettings
) -> None:
    if isinstance(item, LTIResourceLink) and item.line_item is not None:
        if settings.accept_lineitem is False:
            raise DeepLinkingError(
                f"item {number} declares a line item; the platform ignores line "
                "items here (accept_lineitem is false)"
            )
    if isinstance(item, File) and item.media_type is not None:
        if not settings.accepts_media_type(item.media_type):
            raise DeepLinkingError(
                f"item {number} has media type {item.media_type!r}; the platform "
                f"accepts only {list(settings.accept_media_types)}"
            )


# -- The response --------------------------------------------------------------


def build_response_claims(
    *,
    registration: Registration,
    deployment_id: str,
    settings: DeepLinkingSettings,
    items: Sequence[ContentItem],
    now: float,
    lifetime: int = DEFAULT_RESPONSE_LIFETIME,
    nonce: str | None = None,
    messages: Mapping[str, str | None] | None = None,
) -> dict[str, Any]:
    """The claims of an ``LtiDeepLinkingResponse``; checks ``items`` first.

    ``iss`` is our client_id and ``aud`` the platform's issuer, one string.
    ``data`` is echoed unchanged when the request carried it. ``messages``
    holds ``msg``, ``log``, ``errormsg`` and ``errorlog`` (strings shown to
    the user or logged by the platform). Raises DeepLinkingError.
    """
    check_items(items, settings)
    issued_at = int(now)
    claims: dict[str, Any] = {
        "iss": registration.client_id,
        "aud": registration.issuer,
        "iat": issued_at,
        "exp": issued_at + lifetime,
        "nonce": nonce or secrets.token_urlsafe(_NONCE_BYTES),
        c.DEPLOYMENT_ID: deployment_id,
        c.MESSAGE_TYPE: c.DEEP_LINKING_RESPONSE,
        c.VERSION: c.LTI_VERSION,
        c.CONTENT_ITEMS: [item.to_json() for item in items],
    }
    if settings.has_data:
        # Echoed exactly as the platform sent it, even if the app changed
        # the settings object's copy since.
        claims[c.DEEP_LINKING_DATA] = json.loads(settings.sent_data)

    for name, value in (messages or {}).items():
        if name not in _MESSAGE_CLAIMS:
            raise DeepLinkingError(
                f"unknown message {name!r}; use {sorted(_MESSAGE_CLAIMS)}"
            )
        if value is None:
            continue
        if not isinstance(value, str):
            raise DeepLinkingError(f"{name} must be a string, got {value!r}")
        claims[_MESSAGE_CLAIMS[name]] = value
    return claims


_MESSAGE_CLAIMS = {
    "msg": c.DEEP_LINKING_MSG,
    "log": c.DEEP_LINKING_LOG,
    "errormsg": c.DEEP_LINKING_ERRORMSG,
    "errorlog": c.DEEP_LINKING_ERRORLOG,
}


class DeepLinking:
    """Deep linking for one launch: its settings and the response builder.

    ``launch.deep_linking`` gives one for an ``LtiDeepLinkingRequest`` launch
    (None for other launches). Build the response with :meth:`respond` or,
    for an app that renders its own pages, :meth:`response_jwt`.
    """

    def __init__(
        self,
        *,
        settings: DeepLinkingSettings,
        registration: Registration,
        deployment_id: str,
        keys: KeyProvider,
        clock: Callable[[], float] = time.time,
        lifetime: int = DEFAULT_RESPONSE_LIFETIME,
    ) -> None:
        self.settings = settings
        self.registration = registration
        self.deployment_id = deployment_id
        self._keys = keys
        self._clock = clock
        self._lifetime = lifetime

    @property
    def return_url(self) -> str:
        """Where the response goes: ``deep_link_return_url``, query included."""
        return self.settings.deep_link_return_url

    def check(self, items: Sequence[ContentItem]) -> None:
        """Raise DeepLinkingError if the platform would not take ``items``."""
        check_items(items, self.settings)

    async def response_jwt(
        self,
        items: Sequence[ContentItem] = (),
        *,
        msg: str | None = None,
        log: str | None = None,
        errormsg: str | None = None,
        errorlog: str | None = None,
    ) -> str:
        """The signed response JWT for ``items`` (possibly none).

        Signed with the key provider's signing key, whose ``kid`` must be in
        the published key set (platforms look the key up by kid). Raises
        DeepLinkingError for items the platform does not take, and
        ConfigurationError when the signing key is not published.
        """
        messages = {"msg": msg, "log": log, "errormsg": errormsg, "errorlog": errorlog}
        claims = build_response_claims(
            registration=self.registration,
            deployment_id=self.deployment_id,
            settings=self.settings,
            items=items,
            now=self._clock(),
            lifetime=self._lifetime,
            messages=messages,
        )

        key = await self._keys.signing_key()
        published = await self._keys.public_key_set()
        if key.kid not in {jwk.get("kid") for jwk in published.get("keys", [])}:
            raise ConfigurationError(
                "lti_key_provider",
                f"the signing key {key.kid!r} is not in the published key set",
            )
        logger.debug("deep linking response with %d items", len(items))

        return jwt.encode(
            claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid}
        )

    async def respond(
        self,
        items: Sequence[ContentItem] = (),
        *,
        msg: str | None = None,
        log: str | None = None,
        errormsg: str | None = None,
        errorlog: str | None = None,
    ) -> HTMLResponse:
        """A page that POSTs the signed response to the platform at once.

        The form has one field, ``JWT``; a ``<noscript>`` button sends it
        without scripts. The page sends no Referer, since its own URL carries
        the launch id. Raises as :meth:`response_jwt`.
        """
        token = await self.response_jwt(
            items, msg=msg, log=log, errormsg=errormsg, errorlog=errorlog
        )
        page, script_hash = render_auto_post(
            self.return_url, {"JWT": token}, title="Returning to the course"
        )

        return HTMLResponse(
            page,
            headers={
                "Cache-Control": "no-store",
                "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": (
                    f"default-src 'none'; script-src '{script_hash}'; "
                    "style-src 'unsafe-inline'; base-uri 'none'"
                ),
            },
        )

"""The id_token of a resource link launch, built and signed.

LTI Core 1.3 section 5.3 lists the claims of an ``LtiResourceLinkRequest``;
the deep-linking placement launches an ``LtiDeepLinkingRequest`` instead
(Deep Linking 2.0, 4.4). The token is signed RS256 with the platform key and
names it by ``kid``.
"""

from __future__ import annotations

from typing import Any

import jwt

from .. import claims
from .deep_linking import settings_claim
from .settings import DevResourceLink, DevUser, PlatformSettings

COURSE_OFFERING = "http://purl.imsglobal.org/vocab/lis/v2/course#CourseOffering"
PRODUCT_FAMILY_CODE = "lti-middleware-devplatform"


def build_claims(
    settings: PlatformSettings,
    *,
    user: DevUser,
    link: DevResourceLink,
    nonce: str,
    now: float,
) -> dict[str, Any]:
    """The claims of a launch of ``link`` by ``user``, issued at ``now``."""
    iat = int(now)
    payload: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": settings.client_id,
        "azp": settings.client_id,
        "sub": user.id,
        "iat": iat,
        "exp": iat + settings.id_token_lifetime,
        "nonce": nonce,
        "name": user.name,
        "email": user.email,
        claims.MESSAGE_TYPE: claims.RESOURCE_LINK_REQUEST,
        claims.VERSION: claims.LTI_VERSION,
        claims.DEPLOYMENT_ID: settings.deployment_id,
        claims.TARGET_LINK_URI: link.url or settings.tool_target_link_uri,
        claims.RESOURCE_LINK: {"id": link.id, "title": link.title},
        claims.ROLES: list(user.roles),
        claims.CONTEXT: {
            "id": settings.context_id,
            "label": settings.context_label,
            "title": settings.context_title,
            "type": [COURSE_OFFERING],
        },
        claims.TOOL_PLATFORM: {
            "guid": settings.issuer,
            "name": settings.platform_name,
            "product_family_code": PRODUCT_FAMILY_CODE,
        },
        claims.LAUNCH_PRESENTATION: {
            "document_target": "window",
            "return_url": settings.home_url,
            "locale": "en",
        },
        claims.CUSTOM: dict(link.custom),
        claims.AGS_ENDPOINT: {
            "scope": list(settings.ags_scopes),
            "lineitems": settings.lineitems_url,
            "lineitem": settings.line_item_url(link.line_item_id),
        },
    }
    if settings.nrps_enabled:
        payload[claims.NRPS_SERVICE] = {
            "context_memberships_url": settings.context_memberships_url,
            "service_versions": ["2.0"],
        }
    if not link.graded:
        del payload[claims.AGS_ENDPOINT]["lineitem"]
    if link.message_type == claims.DEEP_LINKING_REQUEST:
        _make_deep_linking_request(payload, settings, user=user, now=now)

    return payload


def _make_deep_linking_request(
    payload: dict[str, Any], settings: PlatformSettings, *, user: DevUser, now: float
) -> None:
    # Deep Linking 2.0, 4.4: no resource_link; deep_linking_settings instead.
    del payload[claims.RESOURCE_LINK]
    payload[claims.MESSAGE_TYPE] = claims.DEEP_LINKING_REQUEST
    payload[claims.DEEP_LINKING_SETTINGS] = settings_claim(settings, user=user, now=now)


def sign_id_token(settings: PlatformSettings, payload: dict[str, Any]) -> str:
    """Sign ``payload`` RS256 with the platform key, ``kid`` in the header."""
    key = settings.signing_key

    return jwt.encode(
        payload, key.private_key, algorithm=key.alg, headers={"kid": key.kid}
    )

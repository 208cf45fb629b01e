"""Assignment and Grade Services endpoints: line items and scores.

Every call needs ``Authorization: Bearer`` with an access token from the
token endpoint, unexpired and granted a scope the call accepts (RFC 6750).
An id_token sent as the bearer is named as such in the 401 body, since that
is a common tool mistake. Line item URLs carry ``?type_id=1`` like Moodle's,
and the scores URL must keep it: ``.../lineitem/scores?type_id=1``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import claims
from .forms import FormError, media_type, read_body
from .scores import ScoreInvalidError, parse_score
from .settings import LINE_ITEM_QUERY, TYPE_ID, DevResourceLink, PlatformSettings
from .state import PlatformState, fingerprint

logger = logging.getLogger(__name__)

READ_SCOPES = frozenset({claims.SCOPE_LINEITEM, claims.SCOPE_LINEITEM_READONLY})
SCORE_SCOPES = frozenset({claims.SCOPE_SCORE})
MAX_SCORE_BYTES = 64 * 1024


class ServiceRequestError(Exception):
    """A service call refused with a status, an error code and a reason."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> JSONResponse:
        """The refusal as JSON, with a WWW-Authenticate header on 401 and 403."""
        headers = {}
        if self.status in (401, 403):
            reason = self.description.replace('"', "'")
            headers["WWW-Authenticate"] = (
                f'Bearer error="{self.error}", error_description="{reason}"'
            )
        body = {"error": self.error, "error_description": self.description}

        return JSONResponse(body, status_code=self.status, headers=headers)


def check_bearer(
    request: Request,
    settings: PlatformSettings,
    state: PlatformState,
    accepted: frozenset[str],
) -> None:
    """Check the request's bearer token; raises ServiceRequestError.

    The token must be one the token endpoint issued, unexpired, and granted
    at least one scope in ``accepted``.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ServiceRequestError(
            401, "invalid_request", "Authorization: Bearer <access token> is required"
        )

    digest = fingerprint(token)
    if digest in state.id_tokens:
        raise ServiceRequestError(
            401,
            "invalid_token",
            "the bearer is an id_token; services need an access token from the "
            "token endpoint",
        )
    record = state.access_tokens.get(digest)
    if record is None:
        raise ServiceRequestError(
            401,
            "invalid_token",
            "the bearer is not an access token this platform issued",
        )
    if record.expires_at <= settings.clock():
        raise ServiceRequestError(401, "invalid_token", "the access token has expired")
    if not record.scopes & accepted:
        raise ServiceRequestError(
            403, "insufficient_scope", f"needs one of the scopes {sorted(accepted)}"
        )


def line_item_document(
    settings: PlatformSettings, link: DevResourceLink
) -> dict[str, Any]:
    """A line item as AGS serialises it; its ``id`` is its URL."""
    return {
        "id": settings.line_item_url(link.line_item_id),
        "label": link.line_item_label,
        "scoreMaximum": link.score_maximum,
        "resourceLinkId": link.id,
    }


async def get_line_items(
    request: Request, settings: PlatformSettings, state: PlatformState
) -> Response:
    """The line items container, filtered by ``resource_link_id`` or ``tag``."""
    try:
        _check_context(request, settings)
        if request.query_params.get("type_id") != TYPE_ID:
            raise _query_error()
        check_bearer(request, settings, state, READ_SCOPES)
    except ServiceRequestError as error:
        return error.response()

    links = list(settings.resource_links)
    wanted_link = request.query_params.get("resource_link_id")
    if wanted_link is not None:
        links = [link for link in links if link.id == wanted_link]
    if "tag" in request.query_params:
        links = []  # no line item of this platform carries a tag
    items = [line_item_document(settings, link) for link in links]

    return JSONResponse(items, media_type=claims.MEDIA_TYPE_LINEITEMS)


async def get_line_item(
    request: Request, settings: PlatformSettings, state: PlatformState
) -> Response:
    """One line item, at the URL that is its id."""
    try:
        link = _find_line_item(request, settings)
        check_bearer(request, settings, state, READ_SCOPES)
    except ServiceRequestError as error:
        return error.response()

    document = line_item_document(settings, link)

    return JSONResponse(document, media_type=claims.MEDIA_TYPE_LINEITEM)


async def post_score(
    request: Request, settings: PlatformSettings, state: PlatformState
) -> Response:
    """Accept a score for a line item; 204 whether it is kept or ignored."""
    try:
        link = _find_line_item(request, settings)
        check_bearer(request, settings, state, SCORE_SCOPES)
        score = parse_score(await _read_score_body(request), settings)
    except ServiceRequestError as error:
        state.scores_refused += 1
        return error.response()
    except ScoreInvalidError as error:
        state.scores_refused += 1
        return ServiceRequestError(400, "invalid_score", str(error)).response()

    kept = state.record_score(link.line_item_id, score)
    logger.info(
        "score for line item %s %s", link.line_item_id, "kept" if kept else "ignored"
    )

    return Response(status_code=204)


async def _read_score_body(request: Request) -> Any:
    if media_type(request) != claims.MEDIA_TYPE_SCORE:
        raise ServiceRequestError(
            415,
            "unsupported_media_type",
            f"Content-Type must be {claims.MEDIA_TYPE_SCORE}",
        )
    try:
        body = await read_body(request, MAX_SCORE_BYTES)
    except FormError as error:
        raise ServiceRequestError(413, "too_large", str(error)) from error
    try:
        return json.loads(body)
    except ValueError as error:
        raise ServiceRequestError(
            400, "invalid_json", "the body is not JSON"
        ) from error


def _check_context(request: Request, settings: PlatformSettings) -> None:
    if request.path_params.get("context_id") != settings.context_id:
        raise ServiceRequestError(404, "not_found", "no such context")


def _find_line_item(request: Request, settings: PlatformSettings) -> DevResourceLink:
    _check_context(request, settings)
    link = settings.find_line_item(str(request.path_params.get("line_item_id", "")))
    if link is None:
        raise ServiceRequestError(404, "not_found", "no such line item")
    if request.url.query != LINE_ITEM_QUERY:
        raise _query_error()

    return link


def _query_error() -> ServiceRequestError:
    return ServiceRequestError(
        400,
        "invalid_request",
        f"the query string {LINE_ITEM_QUERY!r} of the line item URL must be kept",
    )

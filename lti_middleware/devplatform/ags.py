"""Assignment and Grade Services endpoints: what they share, scores, results.

Every call needs ``Authorization: Bearer`` with an access token from the
token endpoint, unexpired and granted a scope the call accepts, compared
exactly (RFC 6750; AGS 2.0 scopes): ``lineitem`` for line item writes,
``lineitem`` or ``lineitem.readonly`` for reads, ``result.readonly`` for
results, ``score`` for scores. An id_token sent as the bearer is named as
such in the 401 body, since that is a common tool mistake. Line item URLs
carry ``?type_id=1`` like Moodle's, and the scores and results URLs must keep
it: ``.../lineitem/scores?type_id=1``. Refusals are JSON bodies with
``error`` and ``error_description``. The line item endpoints themselves are
in :mod:`.lineitems`.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import claims
from .forms import FormError, media_type, read_body
from .scores import ScoreInvalidError, parse_score
from .settings import LINE_ITEM_QUERY, TYPE_ID, PlatformSettings
from .state import LineItemRecord, PlatformState, fingerprint

logger = logging.getLogger(__name__)

READ_SCOPES = frozenset({claims.SCOPE_LINEITEM, claims.SCOPE_LINEITEM_READONLY})
WRITE_SCOPES = frozenset({claims.SCOPE_LINEITEM})
RESULT_SCOPES = frozenset({claims.SCOPE_RESULT_READONLY})
SCORE_SCOPES = frozenset({claims.SCOPE_SCORE})
MAX_DOCUMENT_BYTES = 64 * 1024
#: Entries per page of a container when the tool gives no ``limit``.
PAGE_SIZE = 10
_TOKEN_ERRORS = frozenset({"invalid_request", "invalid_token", "insufficient_scope"})


class ServiceRequestError(Exception):
    """A service call refused with a status, an error code and a reason."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def response(self) -> JSONResponse:
        """The refusal as JSON; token refusals carry WWW-Authenticate."""
        headers = {}
        if self.status in (401, 403) and self.error in _TOKEN_ERRORS:
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


def check_accept(request: Request, expected: str) -> None:
    """406 unless the Accept header, when given, admits ``expected``."""
    accept = request.headers.get("accept")
    if accept is None:
        return

    ranges = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    if ranges & {expected, "application/json", "application/*", "*/*"}:
        return
    raise ServiceRequestError(
        406, "not_acceptable", f"this answer is {expected}; Accept was {accept!r}"
    )


async def read_json(request: Request, expected: str) -> Any:
    """The request's JSON body, sent as media type ``expected``.

    Raises ServiceRequestError: 415 for another media type, 413 past
    MAX_DOCUMENT_BYTES, 400 when the body is not JSON.
    """
    if media_type(request) != expected:
        raise ServiceRequestError(
            415, "unsupported_media_type", f"Content-Type must be {expected}"
        )
    try:
        body = await read_body(request, MAX_DOCUMENT_BYTES)
    except FormError as error:
        raise ServiceRequestError(413, "too_large", str(error)) from error
    try:
        return json.loads(body)
    except ValueError as error:
        raise ServiceRequestError(
            400, "invalid_json", "the body is not JSON"
        ) from error


def read_query(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    """The query parameters, in order; ``type_id`` must be the line item's.

    A parameter given twice, or not among ``allowed`` (the spec's filters),
    is refused, so a misspelt filter is not silently ignored.
    """
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name in params:
            raise ServiceRequestError(
                400, "invalid_request", f"query parameter {name!r} given twice"
            )
        if name != "type_id" and name not in allowed:
            raise ServiceRequestError(
                400,
                "invalid_request",
                f"unknown query parameter {name!r}; expected {sorted(allowed)}",
            )
        params[name] = value
    if params.get("type_id") != TYPE_ID:
        raise query_error()

    return params


def _positive(params: dict[str, str], name: str, default: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    # ASCII digits only ("²".isdigit() is true), and short enough for int().
    if not (value.isascii() and value.isdigit() and len(value) <= 9) or int(value) < 1:
        raise ServiceRequestError(
            400, "invalid_request", f"{name} must be a whole number >= 1, got {value!r}"
        )

    return int(value)


def paged(
    entries: list[dict[str, Any]],
    params: dict[str, str],
    base: str,
    media: str,
) -> JSONResponse:
    """One page of ``entries``, with a Link header to the others.

    The page size is ``limit`` if given, else PAGE_SIZE; pages are numbered
    from 1 by ``page``. The header holds first, prev, next and last links
    (as many as apply) in one value; every link repeats the request's
    filters, so a tool can follow ``next`` as given.
    """
    size = _positive(params, "limit", PAGE_SIZE)
    page = _positive(params, "page", 1)
    last = max(1, -(-len(entries) // size))
    kept = {name: value for name, value in params.items() if name != "page"}

    def link(number: int, rel: str) -> str:
        return f'<{base}?{urlencode({**kept, "page": str(number)})}>; rel="{rel}"'

    links = [link(1, "first")]
    if 1 < page <= last + 1:
        links.append(link(page - 1, "prev"))
    if page < last:
        links.append(link(page + 1, "next"))
    links.append(link(last, "last"))
    body = entries[(page - 1) * size : page * size]

    return JSONResponse(body, media_type=media, headers={"Link": ", ".join(links)})


def query_error() -> ServiceRequestError:
    """The refusal of a URL that lost the line item's query string."""
    return ServiceRequestError(
        400,
        "invalid_request",
        f"the query string {LINE_ITEM_QUERY!r} of the line item URL must be kept",
    )


def check_context(request: Request, settings: PlatformSettings) -> None:
    """404 unless the path names this platform's course."""
    if request.path_params.get("context_id") != settings.context_id:
        raise ServiceRequestError(404, "not_found", "no such context")


def line_items(
    settings: PlatformSettings, state: PlatformState
) -> dict[str, LineItemRecord]:
    """Every line item of the course, in order of creation.

    A graded resource link's own line item is recorded the first time it is
    looked for; it lives as long as the link (it cannot be deleted). The app
    passes settings whose resource links include those placed by deep
    linking, so their line items appear here too.
    """
    for link in settings.resource_links:
        if link.graded and link.line_item_id not in state.line_items:
            state.line_items[link.line_item_id] = LineItemRecord(
                id=link.line_item_id,
                label=link.line_item_label,
                score_maximum=link.score_maximum,
                resource_link_id=link.id,
            )

    return state.line_items


def find_line_item(
    request: Request, settings: PlatformSettings, state: PlatformState
) -> LineItemRecord:
    """The line item the path names, its URL's query string kept; else raise."""
    check_context(request, settings)
    record = line_items(settings, state).get(
        str(request.path_params.get("line_item_id", ""))
    )
    if record is None:
        raise ServiceRequestError(404, "not_found", "no such line item")
    if request.url.query != LINE_ITEM_QUERY:
        raise query_error()

    return record


def line_item_document(
    settings: PlatformSettings, record: LineItemRecord
) -> dict[str, Any]:
    """A line item as AGS serialises it; its ``id`` is its URL."""
    document: dict[str, Any] = {
        "id": settings.line_item_url(record.id),
        "label": record.label,
        "scoreMaximum": record.score_maximum,
    }
    optional = {
        "resourceLinkId": record.resource_link_id,
        "resourceId": record.resource_id,
        "tag": record.tag,
        "startDateTime": record.start_date_time,
        "endDateTime": record.end_date_time,
        "gradesReleased": record.grades_released,
    }
    document.update({k: v for k, v in optional.items() if v is not None})
    document.update(record.extensions)

    return document


def service_url(settings: PlatformSettings, line_item_id: str, service: str) -> str:
    """A line item's path plus ``/scores`` or ``/results``, without query."""
    path = settings.line_item_url(line_item_id).split("?", 1)[0]
    return f"{path}/{service}"


async def post_score(
    request: Request, settings: PlatformSettings, state: PlatformState
) -> Response:
    """Accept a score for a line item; 204 whether it is kept or ignored."""
    try:
        record = find_line_item(request, settings, state)
        check_bearer(request, settings, state, SCORE_SCOPES)
        document = await read_json(request, claims.MEDIA_TYPE_SCORE)
        score = parse_score(document, settings)
    except ServiceRequestError as error:
        state.scores_refused += 1
        return error.response()
    except ScoreInvalidError as error:
        state.scores_refused += 1
        return ServiceRequestError(400, "invalid_score", str(error)).response()

    kept = state.record_score(record.id, score)
    logger.info("score for line item %s %s", record.id, "kept" if kept else "ignored")

    return Response(status_code=204)


async def get_results(
    request: Request, settings: PlatformSettings, state: PlatformState
) -> Response:
    """The results of a line item, built from its latest scores; paged."""
    try:
        check_context(request, settings)
        params = read_query(request, frozenset({"user_id", "limit", "page"}))
        record = line_items(settings, state).get(
            str(request.path_params.get("line_item_id", ""))
        )
        if record is None:
            raise ServiceRequestError(404, "not_found", "no such line item")
        check_bearer(request, settings, state, RESULT_SCOPES)
        check_accept(request, claims.MEDIA_TYPE_RESULTS)
        results = _results(settings, state, record, params.get("user_id"))
        base = service_url(settings, record.id, "results")
        return paged(results, params, base, claims.MEDIA_TYPE_RESULTS)
    except ServiceRequestError as error:
        return error.response()


def _results(
    settings: PlatformSettings,
    state: PlatformState,
    record: LineItemRecord,
    user_id: str | None,
) -> list[dict[str, Any]]:
    # Like Moodle, a result's score is scaled to the line item's maximum.
    base = service_url(settings, record.id, "results")
    results = []
    for (line_item_id, user), score in state.scores.items():
        if line_item_id != record.id or user_id not in (None, user):
            continue
        result: dict[str, Any] = {
            "id": f"{base}?{urlencode({'type_id': TYPE_ID, 'user_id': user})}",
            "scoreOf": settings.line_item_url(record.id),
            "userId": user,
            "resultMaximum": record.score_maximum,
        }
        if score.score_given is not None and score.score_maximum:
            scaled = score.score_given / score.score_maximum * record.score_maximum
            result["resultScore"] = round(scaled, 6)
        if score.comment is not None:
            result["comment"] = score.comment
        results.append(result)

    return results

"""Line item endpoints: the container (list, create) and each item (get,
replace, delete), with strict checks of the documents tools send.

AGS 2.0, line item service: ``label`` is a non-blank string and
``scoreMaximum`` a number > 0; ``resourceLinkId``, ``resourceId``, ``tag``,
``startDateTime``, ``endDateTime`` and ``gradesReleased`` are optional; other
members must be named by full URLs. As for scores, a member sent as ``null``
is refused (omit it instead). PUT replaces the whole item. The line item of
a resource link belongs to the platform: it can be changed, not deleted.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import claims
from .ags import (
    READ_SCOPES,
    WRITE_SCOPES,
    ServiceRequestError,
    check_accept,
    check_bearer,
    check_context,
    find_line_item,
    line_item_document,
    line_items,
    paged,
    read_json,
    read_query,
)
from .scores import ScoreInvalidError, parse_timestamp
from .settings import PlatformSettings
from .state import PlatformState

logger = logging.getLogger(__name__)

FILTERS = frozenset({"resource_link_id", "resource_id", "tag", "limit", "page"})
_TEXT_MEMBERS = {"resourceLinkId", "resourceId", "tag"}
_MEMBERS = frozenset(
    {
        "id",
        "label",
        "scoreMaximum",
        "startDateTime",
        "endDateTime",
        "gradesReleased",
        "submissionReview",
        *_TEXT_MEMBERS,
    }
)


def _invalid(description: str) -> ServiceRequestError:
    return ServiceRequestError(400, "invalid_line_item", description)


def parse_line_item(
    document: Any, settings: PlatformSettings, *, url: str | None
) -> dict[str, Any]:
    """The fields of a line item record from a tool's document.

    ``url`` is the item's id for a replacement, None for a creation (the
    platform assigns ids, so the document must carry none). Raises
    ServiceRequestError (400 ``invalid_line_item``) naming the broken rule.
    """
    if not isinstance(document, dict):
        raise _invalid("the line item must be a JSON object")
    for name, value in document.items():
        if name not in _MEMBERS and not name.startswith(("http://", "https://")):
            raise _invalid(
                f"unknown member {name!r}; extensions must be named by a full URL"
            )
        if value is None:
            raise _invalid(f"{name} is null; omit it instead")
    _check_id(document, url)

    fields: dict[str, Any] = {
        "label": _label(document.get("label")),
        "score_maximum": _maximum(document.get("scoreMaximum")),
    }
    for name, attribute in (
        ("resourceLinkId", "resource_link_id"),
        ("resourceId", "resource_id"),
        ("tag", "tag"),
    ):
        fields[attribute] = _text(document, name)
    link_id = fields["resource_link_id"]
    if link_id is not None and settings.find_resource_link(link_id) is None:
        raise _invalid(f"resourceLinkId {link_id!r} is not a resource link here")

    fields.update(_dates(document))
    released = document.get("gradesReleased")
    if released is not None and not isinstance(released, bool):
        raise _invalid("gradesReleased must be true or false")
    fields["grades_released"] = released
    review = document.get("submissionReview")
    if review is not None and not isinstance(review, dict):
        raise _invalid("submissionReview must be an object")
    extensions = {
        name: value for name, value in document.items() if name not in _MEMBERS
    }
    if review is not None:
        extensions["submissionReview"] = review
    fields["extensions"] = extensions

    return fields


def _check_id(document: dict[str, Any], url: str | None) -> None:
    given = document.get("id")
    if url is None and given is not None:
        raise _invalid("a new line item has no id; the platform assigns it")
    if url is not None and given is not None and given != url:
        raise _invalid(f"id {given!r} is not this line item's URL {url!r}")


def _label(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid("label is required: a non-blank string")

    return value


def _maximum(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"scoreMaximum is required: a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise _invalid(f"scoreMaximum must be > 0, got {value!r}")

    return float(value)


def _text(document: dict[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(f"{name} must be a non-empty string")

    return value


def _dates(document: dict[str, Any]) -> dict[str, str | None]:
    moments = {}
    for name in ("startDateTime", "endDateTime"):
        value = document.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise _invalid(f"{name} must be a string")
        try:
            moments[name] = parse_timestamp(name, value)
        except ScoreInvalidError as error:
            raise _invalid(str(error)) from error
    if len(moments) == 2 and moments["endDateTime"] < moments["startDateTime"]:
        raise _invalid("endDateTime is before startDateTime")

    return {
        "start_date_time": document.get("startDateTime"),
        "end_date_time": document.get("endDateTime"),
    }


async def get_line_items(
    request: Request, settings: PlatformSettings, state: PlatformState
) -> Response:
    """The line items container: filtered, paged by ``limit`` and ``page``."""
    try:
        check_context(request, settings)
        params = read_query(request, FILTERS)
        check_bearer(request, settings, state, READ_SCOPES)
        check_accept(request, claims.MEDIA_TYPE_LINEITEMS)
    except ServiceRequestError as error:
        return error.response()

    wanted = {
        "resource_link_id": params.get("resource_link_id"),
        "resource_id": params.get("resource_id"),
        "tag": params.get("tag"),
    }
    documents = [
        line_item_document(settings, record)
        for record in line_items(settings, state).values()
        if all(v is None or getattr(record, k) == v for k, v in wanted.items())
    ]
    base = settings.lineitems_url.split("?", 1)[0]
    try:
        return paged(documents, params, base, claims.MEDIA_TYPE_LINEITEMS)
    except ServiceRequestError as error:
        return error.response()


async def create_line_item(
    request: Request, settings: PlatformSettings, state: PlatformState
) -> Response:
    """Create a line item from the tool's document; 201 with the new item."""
    try:
        check_context(request, settings)
        read_query(request, frozenset())
        check_bearer(request, settings, state, WRITE_SCOPES)
        check_accept(request, claims.MEDIA_TYPE_LINEITEM)
        document = await read_json(request, claims.MEDIA_TYPE_LINEITEM)
        line_items(settings, state)  # link-owned ids are taken before a new one
        fields = parse_line_item(document, settings, url=None)
    except ServiceRequestError as error:
        return error.response()

    record = state.add_line_item(**fields, created_by_tool=True)
    logger.info("line item %s created", record.id)
    created = line_item_document(settings, record)

    return JSONResponse(
        created,
        status_code=201,
        media_type=claims.MEDIA_TYPE_LINEITEM,
        headers={"Location": created["id"]},
    )


async def get_line_item(
    request: Request, settings: PlatformSettings, state: PlatformState
) -> Response:
    """One line item, at the URL that is its id."""
    try:
        record = find_line_item(request, settings, state)
        check_bearer(request, settings, state, READ_SCOPES)
        check_accept(request, claims.MEDIA_TYPE_LINEITEM)
    except ServiceRequestError as error:
        return error.response()

    document = line_item_document(settings, record)

    return JSONResponse(document, media_type=claims.MEDIA_TYPE_LINEITEM)


async def put_line_item(
    request: Request, settings: PlatformSettings, state: PlatformState
) -> Response:
    """Replace a line item with the tool's document; 200 with the result."""
    try:
        record = find_line_item(request, settings, state)
        check_bearer(request, settings, state, WRITE_SCOPES)
        check_accept(request, claims.MEDIA_TYPE_LINEITEM)
        document = await read_json(request, claims.MEDIA_TYPE_LINEITEM)
        url = settings.line_item_url(record.id)
        fields = parse_line_item(document, settings, url=url)
    except ServiceRequestError as error:
        return error.response()

    for name, value in fields.items():
        setattr(record, name, value)
    logger.info("line item %s replaced", record.id)
    updated = line_item_document(settings, record)

    return JSONResponse(updated, media_type=claims.MEDIA_TYPE_LINEITEM)


async def delete_line_item(
    request: Request, settings: PlatformSettings, state: PlatformState
) -> Response:
    """Delete a line item a tool created, with its scores; 204."""
    try:
        record = find_line_item(request, settings, state)
        check_bearer(request, settings, state, WRITE_SCOPES)
        if not record.created_by_tool:
            raise ServiceRequestError(
                403,
                "forbidden",
                f"line item {record.id!r} is the column of resource link "
                f"{record.resource_link_id!r}; only line items a tool created "
                "can be deleted",
            )
    except ServiceRequestError as error:
        return error.response()

    state.remove_line_item(record.id)
    logger.info("line item %s deleted", record.id)

    return Response(status_code=204)

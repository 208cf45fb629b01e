"""Assignment and Grade Services 2.0: line items, results and scores.

An :class:`AGSClient` is bound to one launch: the scopes and service URLs come
from the launch's AGS claim, and calls authenticate with access tokens from an
:class:`~lti_middleware.tokens.AccessTokenClient`, never with the id_token.
Each operation asks for the one scope it needs, chosen from those the launch
granted (CASE-14); a call whose scope was not granted fails before anything
is sent. Access tokens go only to the origins of the claim's URLs, so a line
item or next-page URL elsewhere is refused. The documents themselves
(:class:`Score`, :class:`LineItem`, :class:`Result`) live in
:mod:`lti_middleware.scores`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import httpx

from .claims import (
    MEDIA_TYPE_LINEITEM,
    MEDIA_TYPE_LINEITEMS,
    MEDIA_TYPE_RESULTS,
    MEDIA_TYPE_SCORE,
    SCOPE_LINEITEM,
    SCOPE_LINEITEM_READONLY,
    SCOPE_RESULT_READONLY,
    SCOPE_SCORE,
)
from .config import Registration, origin_of
from .exceptions import (
    ScopeNotGrantedError,
    ScoreError,
    ServiceError,
    ServiceUnavailableError,
)
from .retries import RetryPolicy
from .scores import (
    ActivityProgress,
    GradingProgress,
    LineItem,
    Result,
    Score,
    filtered_url,
    format_timestamp,
    results_url,
    scores_url,
)
from .services import ServiceSession, unexpected
from .tokens import AccessTokenClient

__all__ = [
    "AGSClient",
    "ActivityProgress",
    "GradingProgress",
    "LineItem",
    "Result",
    "Score",
    "format_timestamp",
    "results_url",
    "scores_url",
]

logger = logging.getLogger(__name__)

_Item = TypeVar("_Item")


def _url_of(lineitem: str | LineItem) -> str:
    url = lineitem.id if isinstance(lineitem, LineItem) else lineitem
    if not isinstance(url, str) or not url:
        raise ServiceError(
            "this line item has no id (URL); use one the platform returned"
        )

    return url


def _granted_scopes(value: object) -> tuple[str, ...]:
    # The spec sends a list; a space-separated string is read the same way.
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list | tuple):
        return tuple(scope for scope in value if isinstance(scope, str))

    return ()


def _url_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class AGSClient:
    """Line items, results and scores for one launch.

    ``endpoint`` is the value of the launch's AGS claim
    (``https://purl.imsglobal.org/spec/lti-ags/claim/endpoint``); ``user_id``
    the launch's ``sub``, the default user for scores (None for an anonymous
    launch).

    ``retry`` bounds how calls that are safe to repeat (reads, updates,
    deletions, score posts; never a line item creation) are tried again after
    a transient failure; the defaults of
    :class:`~lti_middleware.retries.RetryPolicy` when not given.

    Every operation raises ScopeNotGrantedError before any request when the
    launch did not grant a scope it can use, ServiceError when a URL is not
    one of the launch's service origins or cannot be reached,
    ServiceUnavailableError when a call safe to repeat met transient failures
    until its retries ran out, TokenRequestError when no access token is
    issued, PlatformResponseError (with status and body) when the platform
    answers with an error or with a body that is not what the spec promises,
    and PaginationError when a listing's next links loop or pass the page cap.
    """

    def __init__(
        self,
        *,
        endpoint: Mapping[str, Any],
        registration: Registration,
        tokens: AccessTokenClient,
        http: httpx.AsyncClient,
        user_id: str | None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._scopes = _granted_scopes(endpoint.get("scope"))
        self._lineitem = _url_or_none(endpoint.get("lineitem"))
        self._lineitems = _url_or_none(endpoint.get("lineitems"))
        self._user_id = user_id
        self._session = ServiceSession(
            registration=registration,
            tokens=tokens,
            http=http,
            origins={origin_of(u) for u in (self._lineitem, self._lineitems) if u},
            service="grade service",
            retry=retry,
        )

    @property
    def scopes(self) -> tuple[str, ...]:
        """The AGS scopes the launch granted."""
        return self._scopes

    @property
    def lineitem(self) -> str | None:
        """The URL of the launch's own line item, if the platform gave one."""
        return self._lineitem

    @property
    def lineitems(self) -> str | None:
        """The URL of the context's line item container, if given."""
        return self._lineitems

    # Scores

    async def post_score(
        self,
        *,
        score_given: float | None = None,
        score_maximum: float | None = None,
        activity_progress: ActivityProgress | str = ActivityProgress.COMPLETED,
        grading_progress: GradingProgress | str = GradingProgress.FULLY_GRADED,
        user_id: str | None = None,
        comment: str | None = None,
        timestamp: datetime | None = None,
        lineitem: str | LineItem | None = None,
        scoring_user_id: str | None = None,
        started_at: datetime | None = None,
        submitted_at: datetime | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Post a score to ``lineitem`` (the launch's line item by default).

        ``user_id`` defaults to the launch's user; ``timestamp`` to now.
        Needs the ``score`` scope. Returns the platform's 2xx response.
        Raises ScoreError for an invalid score and ServiceError when there is
        no line item; all local checks run before any request. A 429, 502,
        503, 504, timeout or failed connection is retried, since a score post
        is safe to repeat; when the retries run out, ServiceUnavailableError
        keeps the score (``.score``, ``.lineitem``) to post again later with
        :meth:`send_score`.
        """
        scope = self._need(SCOPE_SCORE)
        target = self._target(lineitem, "post a score")
        user = user_id if user_id is not None else self._user_id
        if user is None:
            raise ScoreError(
                "a score needs a user_id, and this launch has no user "
                "(anonymous launch)"
            )

        score = Score(
            user_id=user,
            score_given=score_given,
            score_maximum=score_maximum,
            activity_progress=activity_progress,
            grading_progress=grading_progress,
            comment=comment,
            scoring_user_id=scoring_user_id,
            started_at=started_at,
            submitted_at=submitted_at,
            extensions=extensions or {},
            **({} if timestamp is None else {"timestamp": timestamp}),
        )

        return await self._post(score, target, scope)

    async def send_score(
        self, score: Score, *, lineitem: str | LineItem | None = None
    ) -> httpx.Response:
        """Post ``score``, built beforehand, to ``lineitem`` (the launch's by default).

        For a score kept by a ServiceUnavailableError (``error.score`` to
        ``error.lineitem``): it is sent as it is, timestamp included, so if
        the platform did take the first post, this one replaces it with the
        same values. Needs the ``score`` scope; raises as :meth:`post_score`.
        """
        scope = self._need(SCOPE_SCORE)
        target = self._target(lineitem, "post a score")

        return await self._post(score, target, scope)

    async def _post(self, score: Score, target: str, scope: str) -> httpx.Response:
        # AGS 2.0 keys a score by user and timestamp, so a repeat replaces
        # it: the one POST that is safe to try again.
        try:
            return await self._session.request(
                "POST",
                scores_url(target),
                scopes=(scope,),
                content_type=MEDIA_TYPE_SCORE,
                json=score.to_json(),
                what="score post",
                idempotent=True,
            )
        except ServiceUnavailableError as error:
            raise error.with_score(score, target) from error.__cause__

    # Line items

    async def get_lineitems(
        self,
        *,
        resource_link_id: str | None = None,
        resource_id: str | None = None,
        tag: str | None = None,
        limit: int | None = None,
    ) -> list[LineItem]:
        """The context's line items, every page, filtered as given.

        ``limit`` is the page size asked of the platform; every page is read
        all the same. Needs ``lineitem.readonly`` or ``lineitem`` (the
        read-only one when both are granted). Raises ScoreError for a filter
        that is not a non-empty string or a limit that is not >= 1, and
        ServiceError when the launch has no line item container.
        """
        scope = self._need(SCOPE_LINEITEM_READONLY, SCOPE_LINEITEM)
        url = filtered_url(
            self._container(),
            resource_link_id=resource_link_id,
            resource_id=resource_id,
            tag=tag,
            limit=limit,
        )

        return await self._list(
            url, scope, MEDIA_TYPE_LINEITEMS, "line item listing", _lineitem_from
        )

    async def get_lineitem(self, lineitem: str | LineItem) -> LineItem:
        """The line item at ``lineitem`` (its URL, or an item's ``id``).

        Needs ``lineitem.readonly`` or ``lineitem``.
        """
        scope = self._need(SCOPE_LINEITEM_READONLY, SCOPE_LINEITEM)
        url = _url_of(lineitem)

        response = await self._session.request(
            "GET", url, scopes=(scope,), accept=MEDIA_TYPE_LINEITEM, what="line item"
        )
        return self._read_lineitem(url, response, "line item")

    async def create_lineitem(
        self,
        *,
        label: str,
        score_maximum: float,
        resource_link_id: str | None = None,
        resource_id: str | None = None,
        tag: str | None = None,
        start_date_time: datetime | None = None,
        end_date_time: datetime | None = None,
        grades_released: bool | None = None,
    ) -> LineItem:
        """Create a line item in the context; returns the platform's copy.

        The returned item's ``id`` is the new line item's URL. Needs the
        ``lineitem`` scope. Raises ScoreError for a blank label, a
        ``score_maximum`` that is not > 0 or a date without a time zone. It
        is sent once, never retried: a 503 or a timeout raises at once, and
        whether the platform made the item is then unknown, so list the line
        items before creating it again.
        """
        scope = self._need(SCOPE_LINEITEM)
        container = self._container()
        item = LineItem(
            label=label,
            score_maximum=score_maximum,
            resource_link_id=resource_link_id,
            resource_id=resource_id,
            tag=tag,
            start_date_time=start_date_time,
            end_date_time=end_date_time,
            grades_released=grades_released,
        )
        document = item.to_json()

        # Never repeated: if the first POST was taken but its answer lost, a
        # second would make a second column.
        response = await self._session.request(
            "POST",
            container,
            scopes=(scope,),
            content_type=MEDIA_TYPE_LINEITEM,
            accept=MEDIA_TYPE_LINEITEM,
            json=document,
            what="line item creation",
            idempotent=False,
        )
        return self._read_lineitem(container, response, "line item creation")

    async def update_lineitem(self, item: LineItem) -> LineItem:
        """Replace the line item at ``item.id`` with ``item``; returns the result.

        AGS updates by PUT of the whole item, so members the platform sent
        and this class does not know are sent back unchanged (see
        :meth:`LineItem.to_json`). Returns the platform's copy, or ``item``
        when the platform answers with an empty body. Needs ``lineitem``.
        """
        scope = self._need(SCOPE_LINEITEM)
        url = _url_of(item)
        document = item.to_json()

        response = await self._session.request(
            "PUT",
            url,
            scopes=(scope,),
            content_type=MEDIA_TYPE_LINEITEM,
            accept=MEDIA_TYPE_LINEITEM,
            json=document,
            what="line item update",
        )
        if not response.content.strip():
            return item
        return self._read_lineitem(url, response, "line item update")

    async def delete_lineitem(self, lineitem: str | LineItem) -> None:
        """Delete the line item at ``lineitem`` (its URL, or an item's ``id``).

        Its scores and results go with it. Needs ``lineitem``.
        """
        scope = self._need(SCOPE_LINEITEM)
        url = _url_of(lineitem)

        await self._session.request(
            "DELETE", url, scopes=(scope,), what="line item deletion"
        )

    async def get_or_create_lineitem(
        self,
        *,
        label: str,
        score_maximum: float,
        resource_id: str | None = None,
        tag: str | None = None,
        resource_link_id: str | None = None,
    ) -> LineItem:
        """The one line item with this ``resource_id`` and ``tag``; made if none.

        For "one gradebook column per activity": the container is listed with
        the given filters (and filtered here again, as some platforms ignore
        filters). One match is returned as it is; with none, a line item is
        created with these values. Several matches raise ServiceError naming
        them, never a guess. Needs ``lineitem``, checked before any request.
        Two first calls running at once can both create; the next call then
        reports the duplicates.
        """
        if resource_id is None and tag is None:
            raise ScoreError("get_or_create_lineitem needs resource_id or tag")
        self._need(SCOPE_LINEITEM)

        listed = await self.get_lineitems(
            resource_id=resource_id, tag=tag, resource_link_id=resource_link_id
        )
        matches = [
            item
            for item in listed
            if (resource_id is None or item.resource_id == resource_id)
            and (tag is None or item.tag == tag)
            and (resource_link_id is None or item.resource_link_id == resource_link_id)
        ]
        if len(matches) > 1:
            ids = ", ".join(str(item.id) for item in matches)
            raise ServiceError(
                f"{len(matches)} line items match resource_id={resource_id!r} "
                f"tag={tag!r}: {ids}; delete the extra ones or pick one by id"
            )
        if matches:
            return matches[0]

        return await self.create_lineitem(
            label=label,
            score_maximum=score_maximum,
            resource_id=resource_id,
            tag=tag,
            resource_link_id=resource_link_id,
        )

    # Results

    async def get_results(
        self,
        lineitem: str | LineItem | None = None,
        *,
        user_id: str | None = None,
        limit: int | None = None,
    ) -> list[Result]:
        """The results of ``lineitem`` (the launch's by default), every page.

        Read from the line item's path plus ``/results``, its query string
        kept; ``user_id`` and ``limit`` are the spec's filters. Needs
        ``result.readonly``. Raises ServiceError when there is no line item.
        """
        scope = self._need(SCOPE_RESULT_READONLY)
        target = self._target(lineitem, "read results")
        url = filtered_url(results_url(target), user_id=user_id, limit=limit)

        return await self._list(
            url, scope, MEDIA_TYPE_RESULTS, "result listing", Result.from_json
        )

    # Helpers

    def _need(self, *candidates: str) -> str:
        """The first of ``candidates`` the launch granted, else raise."""
        for scope in candidates:
            if scope in self._scopes:
                return scope

        raise ScopeNotGrantedError(candidates[0], list(self._scopes))

    def _container(self) -> str:
        if self._lineitems is None:
            raise ServiceError(
                "the launch has no line item container (its AGS claim has no "
                "lineitems URL)"
            )

        return self._lineitems

    def _target(self, lineitem: str | LineItem | None, action: str) -> str:
        if lineitem is not None:
            return _url_of(lineitem)
        if self._lineitem is None:
            raise ServiceError(
                f"cannot {action}: the launch has no line item (its AGS claim "
                "has no lineitem); pass lineitem= with a line item URL"
            )

        return self._lineitem

    async def _list(
        self,
        url: str,
        scope: str,
        accept: str,
        what: str,
        read: Callable[[object], _Item],
    ) -> list[_Item]:
        items: list[_Item] = []
        expected = f"{what} (expected a JSON array of objects)"
        pages = self._session.pages(url, scopes=(scope,), accept=accept, what=what)
        async for response in pages:
            page_url = str(response.request.url)
            page = self._session.read_json(page_url, response, expected)
            if not isinstance(page, list):
                raise unexpected(page_url, response, expected)
            for entry in page:
                try:
                    items.append(read(entry))
                except ValueError as error:
                    problem = f"{what} ({error})"
                    raise unexpected(page_url, response, problem) from error

        return items

    def _read_lineitem(self, url: str, response: httpx.Response, what: str) -> LineItem:
        expected = f"{what} (expected a line item object)"
        document = self._session.read_json(url, response, expected)
        try:
            return _lineitem_from(document)
        except ValueError as error:
            raise unexpected(url, response, f"{what} ({error})") from error


def _lineitem_from(document: object) -> LineItem:
    """A line item read from the platform, which must carry its id (URL)."""
    item = LineItem.from_json(document)
    if item.id is None:
        raise ValueError("a line item has no id (its URL)")

    return item

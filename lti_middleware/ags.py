"""Assignment and Grade Services 2.0: scores and line items.

An :class:`AGSClient` is bound to one launch: the scopes and line item URLs
come from the launch's AGS claim, and calls authenticate with access tokens from
an :class:`~lti_middleware.tokens.AccessTokenClient`, never with the id_token.
A call whose scope the launch did not grant fails before anything is sent.
Scores are checked locally, so a payload a platform would refuse with an opaque
400 (Moodle, Blackboard) raises a :class:`ScoreError` that says what is wrong.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from .claims import (
    MEDIA_TYPE_LINEITEM,
    MEDIA_TYPE_LINEITEMS,
    MEDIA_TYPE_SCORE,
    SCOPE_LINEITEM,
    SCOPE_LINEITEM_READONLY,
    SCOPE_SCORE,
)
from .config import Registration, origin_of
from .exceptions import (
    ScopeNotGrantedError,
    ScoreError,
    ServiceError,
)
from .services import ServiceSession, unexpected
from .tokens import AccessTokenClient

__all__ = [
    "AGSClient",
    "ActivityProgress",
    "GradingProgress",
    "Score",
    "scores_url",
]

logger = logging.getLogger(__name__)


class ActivityProgress(enum.StrEnum):
    """Where the user is in the activity (AGS 2.0, score service)."""

    INITIALIZED = "Initialized"
    STARTED = "Started"
    IN_PROGRESS = "InProgress"
    SUBMITTED = "Submitted"
    COMPLETED = "Completed"


class GradingProgress(enum.StrEnum):
    """Where the tool is in grading the activity (AGS 2.0, score service)."""

    FULLY_GRADED = "FullyGraded"
    PENDING = "Pending"
    PENDING_MANUAL = "PendingManual"
    FAILED = "Failed"
    NOT_READY = "NotReady"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScoreError(f"{name} must be a number, got {value!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        raise ScoreError(f"{name} must be a finite number, got {str(value)[:40]}")

    return value


def _check_time(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise ScoreError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScoreError(
            f"{name} {value.isoformat()} has no time zone; platforms such as "
            "Blackboard refuse it. Pass an aware datetime, e.g. "
            "datetime.now(timezone.utc)"
        )

    return value


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ScoreError(f"{name} must be a non-empty string, got {value!r}")

    return value


def _is_full_url(value: object) -> bool:
    if not isinstance(value, str):
        return False

    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def format_timestamp(value: datetime) -> str:
    """``value`` in UTC, ISO 8601 with microseconds and a ``Z``.

    AGS asks for sub-second precision and a time zone; the trailing ``Z``
    is the form every platform parser we know of accepts.
    """
    utc = value.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


@dataclass(frozen=True, kw_only=True)
class Score:
    """One score for one user on one line item, checked when built.

    Raises ScoreError when: ``user_id`` is empty; ``score_given`` is not a
    finite number >= 0 or comes without ``score_maximum``; ``score_maximum``
    is not a finite number > 0; a progress value is not one the spec lists;
    a datetime has no time zone; an extension key is not a full URL.
    ``timestamp`` defaults to now, in UTC. Platforms ignore a score whose
    timestamp is not later than the last one they took for the same user and
    line item.
    """

    user_id: str
    score_given: float | None = None
    score_maximum: float | None = None
    activity_progress: ActivityProgress | str = ActivityProgress.COMPLETED
    grading_progress: GradingProgress | str = GradingProgress.FULLY_GRADED
    timestamp: datetime = field(default_factory=_utc_now)
    comment: str | None = None
    scoring_user_id: str | None = None
    started_at: datetime | None = None
    submitted_at: datetime | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_text("user_id", self.user_id)
        if self.scoring_user_id is not None:
            _check_text("scoring_user_id", self.scoring_user_id)
        if self.comment is not None and not isinstance(self.comment, str):
            raise ScoreError(f"comment must be a string, got {self.comment!r}")

        self._check_numbers()
        try:
            activity = ActivityProgress(self.activity_progress)
            grading = GradingProgress(self.grading_progress)
        except ValueError as error:
            raise ScoreError(f"{error}; expected one of the spec's values") from error
        object.__setattr__(self, "activity_progress", activity)
        object.__setattr__(self, "grading_progress", grading)

        _check_time("timestamp", self.timestamp)
        for name in ("started_at", "submitted_at"):
            if getattr(self, name) is not None:
                _check_time(name, getattr(self, name))

        extensions = dict(self.extensions)
        for key in extensions:
            if not _is_full_url(key):
                raise ScoreError(f"extension key {key!r} must be a full URL")
        object.__setattr__(self, "extensions", extensions)

    def _check_numbers(self) -> None:
        # Moodle refuses scoreGiven without scoreMaximum with one opaque 400.
        if self.score_given is not None:
            if _check_number("score_given", self.score_given) < 0:
                raise ScoreError(f"score_given must be >= 0, got {self.score_given}")
            if self.score_maximum is None:
                raise ScoreError("score_given needs score_maximum")
        if self.score_maximum is not None:
            if _check_number("score_maximum", self.score_maximum) <= 0:
                raise ScoreError(f"score_maximum must be > 0, got {self.score_maximum}")

    def to_json(self) -> dict[str, Any]:
        """The score as the AGS score media type's JSON object."""
        data: dict[str, Any] = {
            "userId": self.user_id,
            "activityProgress": str(self.activity_progress),
            "gradingProgress": str(self.grading_progress),
            "timestamp": format_timestamp(self.timestamp),
        }
        if self.score_given is not None:
            data["scoreGiven"] = self.score_given
        if self.score_maximum is not None:
            data["scoreMaximum"] = self.score_maximum
        if self.comment is not None:
            data["comment"] = self.comment
        if self.scoring_user_id is not None:
            data["scoringUserId"] = self.scoring_user_id

        submission: dict[str, str] = {}
        if self.started_at is not None:
            submission["startedAt"] = format_timestamp(self.started_at)
        if self.submitted_at is not None:
            submission["submittedAt"] = format_timestamp(self.submitted_at)
        if submission:
            data["submission"] = submission
        data.update(self.extensions)

        return data


def scores_url(lineitem_url: str) -> str:
    """The score service URL of a line item: ``/scores`` added to its path.

    The query string is kept (Moodle's line item URLs carry one), so
    ``.../lineitem?type_id=1`` gives ``.../lineitem/scores?type_id=1``.
    """
    parts = urlsplit(lineitem_url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"

    return urlunsplit(parts._replace(path=path + "scores", fragment=""))


def _with_query(url: str, params: Mapping[str, str]) -> str:
    if not params:
        return url

    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def _where(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc + parts.path


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
    """Scores and line items for one launch.

    ``endpoint`` is the value of the launch's AGS claim
    (``https://purl.imsglobal.org/spec/lti-ags/claim/endpoint``); ``user_id``
    the launch's ``sub``, the default user for scores (None for an anonymous
    launch).
    """

    def __init__(
        self,
        *,
        endpoint: Mapping[str, Any],
        registration: Registration,
        tokens: AccessTokenClient,
        http: httpx.AsyncClient,
        user_id: str | None,
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
        lineitem: str | None = None,
        scoring_user_id: str | None = None,
        started_at: datetime | None = None,
        submitted_at: datetime | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Post a score to ``lineitem`` (the launch's line item by default).

        ``user_id`` defaults to the launch's user; ``timestamp`` to now.
        Returns the platform's 2xx response. Raises ScopeNotGrantedError when
        the launch did not grant the score scope, ScoreError for an invalid
        score, ServiceError when there is no line item, TokenRequestError
        when no token is issued, and PlatformResponseError when the platform
        refuses the score. All local checks run before any request.
        """
        scope = self._need(SCOPE_SCORE)
        target = lineitem if lineitem is not None else self._lineitem
        if target is None:
            raise ServiceError(
                "cannot post a score: the launch has no line item (its AGS claim "
                "has no lineitem); pass lineitem= with a line item URL"
            )
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
            timestamp=timestamp if timestamp is not None else _utc_now(),
            comment=comment,
            scoring_user_id=scoring_user_id,
            started_at=started_at,
            submitted_at=submitted_at,
            extensions=extensions or {},
        )

        return await self._session.request(
            "POST",
            scores_url(target),
            scopes=(scope,),
            content_type=MEDIA_TYPE_SCORE,
            json=score.to_json(),
            what="score post",
        )

    async def get_lineitems(
        self,
        *,
        resource_link_id: str | None = None,
        resource_id: str | None = None,
        tag: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The context's line items, every page, filtered as given.

        Needs ``lineitem.readonly`` or ``lineitem`` (requested as granted,
        the read-only one when both are). Raises as :meth:`post_score` does,
        and ServiceError when the launch has no line item container.
        """
        scope = self._need(SCOPE_LINEITEM_READONLY, SCOPE_LINEITEM)
        container = self._container()
        filters = {
            "resource_link_id": resource_link_id,
            "resource_id": resource_id,
            "tag": tag,
            "limit": None if limit is None else str(limit),
        }
        url = _with_query(
            container, {name: value for name, value in filters.items() if value}
        )

        items: list[dict[str, Any]] = []
        pages = self._session.pages(
            url, scopes=(scope,), accept=MEDIA_TYPE_LINEITEMS, what="line item listing"
        )
        async for response in pages:
            items.extend(self._read_items(response))

        return items

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
    ) -> dict[str, Any]:
        """Create a line item in the context; returns the platform's copy.

        The returned object's ``id`` is the new line item's URL. Needs the
        ``lineitem`` scope. Raises ScoreError for a blank label or a
        ``score_maximum`` that is not > 0, and as :meth:`post_score` does.
        """
        scope = self._need(SCOPE_LINEITEM)
        container = self._container()
        item: dict[str, Any] = {"label": _check_text("label", label)}
        if _check_number("score_maximum", score_maximum) <= 0:
            raise ScoreError(f"score_maximum must be > 0, got {score_maximum}")
        item["scoreMaximum"] = score_maximum
        optional = {
            "resourceLinkId": resource_link_id,
            "resourceId": resource_id,
            "tag": tag,
        }
        item.update({name: value for name, value in optional.items() if value})
        if start_date_time is not None:
            start = _check_time("start_date_time", start_date_time)
            item["startDateTime"] = format_timestamp(start)
        if end_date_time is not None:
            end = _check_time("end_date_time", end_date_time)
            item["endDateTime"] = format_timestamp(end)

        response = await self._session.request(
            "POST",
            container,
            scopes=(scope,),
            content_type=MEDIA_TYPE_LINEITEM,
            json=item,
            accept=MEDIA_TYPE_LINEITEM,
            what="line item creation",
        )
        what = "line item creation (expected a line item object)"
        created = self._session.read_json(container, response, what)
        if not isinstance(created, dict):
            raise unexpected(container, response, what)

        return created

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

    def _read_items(self, response: httpx.Response) -> list[dict[str, Any]]:
        url = str(response.request.url)
        what = "line item listing (expected a JSON array of line items)"
        page = self._session.read_json(url, response, what)
        if not isinstance(page, list) or not all(isinstance(i, dict) for i in page):
            raise unexpected(url, response, what)

        return page

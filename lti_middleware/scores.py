"""Assignment and Grade Services 2.0 documents: scores, line items, results.

What the tool sends is checked when it is built or serialized, so a document a
platform would refuse with an opaque 400 (Moodle, Blackboard) raises a
:class:`~lti_middleware.exceptions.ScoreError` that says what is wrong. What
the platform sends is read leniently: members this module does not know stay
in ``raw``, and an optional member that is missing or malformed reads as None.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from .exceptions import ScoreError

__all__ = [
    "ActivityProgress",
    "GradingProgress",
    "LineItem",
    "Result",
    "Score",
    "filtered_url",
    "format_timestamp",
    "results_url",
    "scores_url",
]


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


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def check_number(name: str, value: object) -> float:
    """``value`` if it is a finite JSON number (not a bool), else ScoreError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScoreError(f"{name} must be a number, got {value!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        raise ScoreError(f"{name} must be a finite number, got {str(value)[:40]}")

    return value


def check_positive(name: str, value: object) -> float:
    """``value`` if it is a finite number > 0, else ScoreError."""
    number = check_number(name, value)
    if number <= 0:
        raise ScoreError(f"{name} must be > 0, got {value}")

    return number


def check_time(name: str, value: object) -> datetime:
    """``value`` if it is a datetime with a time zone, else ScoreError."""
    if not isinstance(value, datetime):
        raise ScoreError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScoreError(
            f"{name} {value.isoformat()} has no time zone; platforms such as "
            "Blackboard refuse it. Pass an aware datetime, e.g. "
            "datetime.now(timezone.utc)"
        )

    return value


def check_text(name: str, value: object) -> str:
    """``value`` if it is a string that is not blank, else ScoreError."""
    if not isinstance(value, str) or not value.strip():
        raise ScoreError(f"{name} must be a non-empty string, got {value!r}")

    return value


def is_full_url(value: object) -> bool:
    """True for an absolute http(s) URL: how AGS names extension members."""
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
    timestamp: datetime = field(default_factory=utc_now)
    comment: str | None = None
    scoring_user_id: str | None = None
    started_at: datetime | None = None
    submitted_at: datetime | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_text("user_id", self.user_id)
        if self.scoring_user_id is not None:
            check_text("scoring_user_id", self.scoring_user_id)
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

        check_time("timestamp", self.timestamp)
        for name in ("started_at", "submitted_at"):
            if getattr(self, name) is not None:
                check_time(name, getattr(self, name))

        extensions = dict(self.extensions)
        for key in extensions:
            if not is_full_url(key):
                raise ScoreError(f"extension key {key!r} must be a full URL")
        object.__setattr__(self, "extensions", extensions)

    def _check_numbers(self) -> None:
        # Moodle refuses scoreGiven without scoreMaximum with one opaque 400.
        if self.score_given is not None:
            if check_number("score_given", self.score_given) < 0:
                raise ScoreError(f"score_given must be >= 0, got {self.score_given}")
            if self.score_maximum is None:
                raise ScoreError("score_given needs score_maximum")
        if self.score_maximum is not None:
            check_positive("score_maximum", self.score_maximum)

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


# Lenient readers for what platforms send: None when absent or malformed.


def _read_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _read_number(value: object) -> float | None:
    # Some platforms send numbers as strings; "10" is read as 10.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None

    return number if math.isfinite(number) else None


def _read_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None

    # A time without a zone is ambiguous; it stays in raw only.
    return moment if moment.utcoffset() is not None else None


def _read_flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _read_user_id(value: object) -> str | None:
    # The spec sends the user's sub, a string; some platforms send a number.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)

    return _read_text(value)


_Reader = Callable[[object], Any]

#: Line item members: (attribute, JSON member, reader).
_LINEITEM_MEMBERS: tuple[tuple[str, str, _Reader], ...] = (
    ("id", "id", _read_text),
    ("label", "label", lambda value: value if isinstance(value, str) else None),
    ("score_maximum", "scoreMaximum", _read_number),
    ("resource_link_id", "resourceLinkId", _read_text),
    ("resource_id", "resourceId", _read_text),
    ("tag", "tag", _read_text),
    ("start_date_time", "startDateTime", _read_time),
    ("end_date_time", "endDateTime", _read_time),
    ("grades_released", "gradesReleased", _read_flag),
)


def _copy(document: Mapping[str, Any]) -> dict[str, Any]:
    # A plain dict, so items pickle and dataclasses.asdict() works on them.
    return dict(document)


@dataclass(frozen=True, kw_only=True)
class LineItem:
    """A gradebook column (AGS 2.0 line item).

    ``id`` is the line item's URL (None until the platform created it).
    ``raw`` is a copy of the platform's JSON object as received, unknown
    members included (treat it as read-only); :meth:`to_json` keeps them, so
    an item read, changed with :func:`dataclasses.replace` and updated loses
    nothing the platform sent.
    """

    id: str | None = None
    label: str
    score_maximum: float
    resource_link_id: str | None = None
    resource_id: str | None = None
    tag: str | None = None
    start_date_time: datetime | None = None
    end_date_time: datetime | None = None
    grades_released: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", _copy(self.raw))

    @classmethod
    def from_json(cls, document: object) -> LineItem:
        """Read a line item from the platform's JSON object.

        Raises ValueError when ``document`` is not an object or lacks a
        string ``label`` or a numeric ``scoreMaximum``; optional members that
        are missing or malformed read as None and stay in ``raw``.
        """
        if not isinstance(document, dict):
            raise ValueError(f"a line item must be a JSON object, got {document!r:.80}")
        values = {
            name: read(document.get(key)) for name, key, read in _LINEITEM_MEMBERS
        }
        if values["label"] is None:
            raise ValueError("a line item has no string label")
        if values["score_maximum"] is None:
            raise ValueError("a line item has no numeric scoreMaximum")

        return cls(**values, raw=document)

    def to_json(self) -> dict[str, Any]:
        """The line item as the line item media type's JSON object.

        Members unchanged since the item was read are sent exactly as the
        platform sent them; others from the attributes. Raises ScoreError
        when the label is blank, ``score_maximum`` is not a finite number
        > 0, a date has no time zone, or an optional text is not a string.
        """
        self._check()
        document = dict(self.raw)
        for name, key, read in _LINEITEM_MEMBERS:
            value = getattr(self, name)
            if key in document and read(document[key]) == value:
                continue
            if value is None:
                document.pop(key, None)
            elif isinstance(value, datetime):
                document[key] = format_timestamp(value)
            else:
                document[key] = value

        return document

    def _check(self) -> None:
        if self.id is not None and not is_full_url(self.id):
            raise ScoreError(f"a line item id must be its URL, got {self.id!r}")
        check_text("label", self.label)
        check_positive("score_maximum", self.score_maximum)
        for name in ("resource_link_id", "resource_id", "tag"):
            value = getattr(self, name)
            if value is not None:
                check_text(name, value)
        for name in ("start_date_time", "end_date_time"):
            if getattr(self, name) is not None:
                check_time(name, getattr(self, name))
        released = self.grades_released
        if released is not None and not isinstance(released, bool):
            raise ScoreError(f"grades_released must be a bool, got {released!r}")


@dataclass(frozen=True, kw_only=True)
class Result:
    """A user's current result on a line item (AGS 2.0 result service).

    ``result_score`` is on the scale of ``result_maximum`` (the spec's
    default maximum is 1 when the platform omits it); ``score_of`` is the
    line item's URL. ``raw`` is the platform's JSON object as received.
    """

    id: str | None
    user_id: str
    result_score: float | None = None
    result_maximum: float | None = None
    comment: str | None = None
    score_of: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", _copy(self.raw))

    @classmethod
    def from_json(cls, document: object) -> Result:
        """Read a result from the platform's JSON object.

        Raises ValueError when ``document`` is not an object or has no
        ``userId``; optional members that are missing or malformed read as
        None and stay in ``raw``.
        """
        if not isinstance(document, dict):
            raise ValueError(f"a result must be a JSON object, got {document!r:.80}")
        user_id = _read_user_id(document.get("userId"))
        if user_id is None:
            raise ValueError("a result has no userId")
        comment = document.get("comment")

        return cls(
            id=_read_text(document.get("id")),
            user_id=user_id,
            result_score=_read_number(document.get("resultScore")),
            result_maximum=_read_number(document.get("resultMaximum")),
            comment=comment if isinstance(comment, str) else None,
            score_of=_read_text(document.get("scoreOf")),
            raw=document,
        )


def _service_url(lineitem_url: str, service: str) -> str:
    parts = urlsplit(lineitem_url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"

    return urlunsplit(parts._replace(path=path + service, fragment=""))


def scores_url(lineitem_url: str) -> str:
    """The score service URL of a line item: ``/scores`` added to its path.

    The query string is kept (Moodle's line item URLs carry one), so
    ``.../lineitem?type_id=1`` gives ``.../lineitem/scores?type_id=1``.
    """
    return _service_url(lineitem_url, "scores")


def results_url(lineitem_url: str) -> str:
    """The result service URL of a line item: ``/results`` added to its path.

    The query string is kept, as for :func:`scores_url`.
    """
    return _service_url(lineitem_url, "results")


def filtered_url(url: str, *, limit: object = None, **filters: object) -> str:
    """``url`` with the spec's query filters that are given added to its query.

    ``filters`` are names such as ``resource_id`` or ``user_id`` with string
    values (None leaves a filter out); ``limit`` is a page size. The query
    string ``url`` already has is kept. Raises ScoreError for a filter that
    is not a non-empty string, or a limit that is not a whole number >= 1.
    """
    given: dict[str, str] = {}
    for name, value in filters.items():
        if value is not None:
            given[name] = check_text(name, value)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ScoreError(f"limit must be a whole number >= 1, got {limit!r}")
        given["limit"] = str(limit)
    if not given:
        return url

    parts = urlsplit(url)
    extra = urlencode(given)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))

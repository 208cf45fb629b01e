"""Strict validation of AGS score documents.

AGS 2.0, Score service: ``userId``, ``activityProgress``, ``gradingProgress``
and ``timestamp`` are required; ``scoreGiven`` needs ``scoreMaximum``;
extension members are named by full URLs. Where the spec leaves room, this
module is stricter than most platforms so that a tool passing here passes
there: a member sent as ``null`` is refused (omit it instead).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from .settings import PlatformSettings
from .state import ScoreRecord

ACTIVITY_PROGRESS = ("Initialized", "Started", "InProgress", "Submitted", "Completed")
GRADING_PROGRESS = ("FullyGraded", "Pending", "PendingManual", "Failed", "NotReady")
TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})"
)
_MEMBERS = frozenset(
    {
        "userId",
        "scoreGiven",
        "scoreMaximum",
        "comment",
        "activityProgress",
        "gradingProgress",
        "timestamp",
        "scoringUserId",
        "submission",
    }
)


class ScoreInvalidError(Exception):
    """A score document broke a rule; the message names it."""


def parse_score(document: Any, settings: PlatformSettings) -> ScoreRecord:
    """The score in ``document``; raises ScoreInvalidError."""
    if not isinstance(document, dict):
        raise ScoreInvalidError("the score must be a JSON object")
    _check_members(document)

    user_id = _text(document, "userId", required=True)
    if settings.find_user(user_id) is None:
        raise ScoreInvalidError(f"userId {user_id!r} is not a member of the context")
    given, maximum = _score_values(document)
    activity = _choice(document, "activityProgress", ACTIVITY_PROGRESS)
    grading = _choice(document, "gradingProgress", GRADING_PROGRESS)
    timestamp = _text(document, "timestamp", required=True)
    moment = parse_timestamp("timestamp", timestamp)

    _text(document, "scoringUserId", required=False)
    _check_submission(document.get("submission"))

    return ScoreRecord(
        user_id=user_id,
        score_given=given,
        score_maximum=maximum,
        comment=_text(document, "comment", required=False) or None,
        activity_progress=activity,
        grading_progress=grading,
        timestamp=timestamp,
        moment=moment,
        document=dict(document),
    )


def parse_timestamp(name: str, value: str) -> datetime:
    """An ISO 8601 date-time with a time zone offset; raises ScoreInvalidError."""
    if not TIMESTAMP.fullmatch(value):
        raise ScoreInvalidError(
            f"{name} must be ISO 8601 with a time zone, e.g. "
            f"2024-04-07T13:26:14.786Z; got {value!r}"
        )
    try:
        return datetime.fromisoformat(value)
    except ValueError as error:
        raise ScoreInvalidError(f"{name} {value!r} is not a real date") from error


def _check_members(document: dict[str, Any]) -> None:
    for name, value in document.items():
        if name not in _MEMBERS and not name.startswith(("http://", "https://")):
            raise ScoreInvalidError(
                f"unknown member {name!r}; extensions must be named by a full URL"
            )
        if value is None:
            raise ScoreInvalidError(f"{name} is null; omit it instead")


def _text(document: dict[str, Any], name: str, *, required: bool) -> str:
    value = document.get(name)
    if value is None:
        if required:
            raise ScoreInvalidError(f"{name} is required")
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ScoreInvalidError(f"{name} must be a non-empty string")

    return value


def _number(document: dict[str, Any], name: str) -> float | None:
    value = document.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScoreInvalidError(f"{name} must be a number, got {value!r}")

    return float(value)


def _score_values(document: dict[str, Any]) -> tuple[float | None, float | None]:
    given = _number(document, "scoreGiven")
    maximum = _number(document, "scoreMaximum")
    if given is not None and given < 0:
        raise ScoreInvalidError("scoreGiven must be >= 0")
    if given is not None and maximum is None:
        raise ScoreInvalidError("scoreGiven needs scoreMaximum")
    if maximum is not None and maximum <= 0:
        raise ScoreInvalidError("scoreMaximum must be > 0")

    return given, maximum


def _choice(document: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = document.get(name)
    if not isinstance(value, str) or value not in allowed:
        raise ScoreInvalidError(f"{name} must be one of {allowed}, got {value!r}")

    return value


def _check_submission(submission: Any) -> None:
    if submission is None:
        return
    if not isinstance(submission, dict):
        raise ScoreInvalidError("submission must be an object")
    for name in ("startedAt", "submittedAt"):
        value = submission.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise ScoreInvalidError(f"submission.{name} must be a string")
            parse_timestamp(f"submission.{name}", value)

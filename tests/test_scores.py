"""AGS documents: scores, line items and results, built, checked and read."""

from __future__ import annotations

import dataclasses
import math
import pickle
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from lti_middleware.exceptions import ScoreError
from lti_middleware.scores import (
    ActivityProgress,
    GradingProgress,
    LineItem,
    Result,
    Score,
    filtered_url,
    results_url,
    scores_url,
)

LINEITEM_URL = "https://lms.example.edu/api/lti/courses/5/line_items/9"
MOODLE_LINEITEM = "https://moodle.example/mod/lti/services.php/2/lineitems/7/lineitem"
TIMESTAMP = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"
)


# The score serializer (CASE-15)


def test_score_rejects_naive_timestamp() -> None:
    with pytest.raises(ScoreError, match="no time zone"):
        Score(
            user_id="u-1",
            score_given=7,
            score_maximum=10,
            timestamp=datetime(2024, 4, 7, 13, 26, 14, 786962),
        )


def test_score_default_timestamp_is_now_utc_with_offset() -> None:
    before = datetime.now(UTC)

    stamp = Score(user_id="u-1", score_given=7, score_maximum=10).to_json()["timestamp"]

    assert TIMESTAMP.match(stamp)
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0)
    assert before <= parsed <= datetime.now(UTC)


def test_score_timestamp_keeps_sub_second_precision_on_whole_seconds() -> None:
    score = Score(user_id="u-1", timestamp=datetime(2024, 4, 7, 13, 26, 14, tzinfo=UTC))

    assert score.to_json()["timestamp"] == "2024-04-07T13:26:14.000000Z"


def test_score_timestamp_with_offset_is_sent_as_the_same_instant() -> None:
    paris = timezone(timedelta(hours=2))
    score = Score(
        user_id="u-1", timestamp=datetime(2024, 4, 7, 15, 0, 0, 5, tzinfo=paris)
    )

    stamp = score.to_json()["timestamp"]

    assert stamp == "2024-04-07T13:00:00.000005Z"
    assert TIMESTAMP.match(stamp)


def test_score_given_without_maximum_fails() -> None:
    with pytest.raises(ScoreError, match="score_maximum"):
        Score(user_id="u-1", score_given=7, score_maximum=None)


@pytest.mark.parametrize(
    ("given", "maximum", "problem"),
    [
        (-1, 10, ">= 0"),
        ("7", 10, "number"),
        (True, 10, "number"),
        (math.nan, 10, "finite"),
        (math.inf, 10, "finite"),
        (7, 0, "> 0"),
        (7, -10, "> 0"),
        (7, "10", "number"),
        (None, False, "number"),
    ],
)
def test_score_numbers_are_validated(given: Any, maximum: Any, problem: str) -> None:
    with pytest.raises(ScoreError, match=problem):
        Score(user_id="u-1", score_given=given, score_maximum=maximum)


def test_score_allows_zero_and_extra_credit() -> None:
    assert (
        Score(user_id="u-1", score_given=0, score_maximum=10).to_json()["scoreGiven"]
        == 0
    )
    assert (
        Score(user_id="u-1", score_given=12.5, score_maximum=10).to_json()["scoreGiven"]
        == 12.5
    )


@pytest.mark.parametrize("user_id", ["", "   ", None, 42])
def test_score_needs_user_id(user_id: Any) -> None:
    with pytest.raises(ScoreError, match="user_id"):
        Score(user_id=user_id)


@pytest.mark.parametrize(
    ("activity", "grading"),
    [
        ("completed", "FullyGraded"),
        ("Completed", "Graded"),
        (GradingProgress.FAILED, "Failed"),
    ],
)
def test_score_progress_values_must_be_spec_values(activity: Any, grading: Any) -> None:
    with pytest.raises(ScoreError):
        Score(user_id="u-1", activity_progress=activity, grading_progress=grading)


def test_progress_enums_have_exact_spec_values() -> None:
    assert [a.value for a in ActivityProgress] == [
        "Initialized",
        "Started",
        "InProgress",
        "Submitted",
        "Completed",
    ]
    assert [g.value for g in GradingProgress] == [
        "FullyGraded",
        "Pending",
        "PendingManual",
        "Failed",
        "NotReady",
    ]


def test_score_accepts_progress_strings_and_stores_enums() -> None:
    score = Score(
        user_id="u-1", activity_progress="InProgress", grading_progress="NotReady"
    )

    assert score.activity_progress is ActivityProgress.IN_PROGRESS
    assert score.grading_progress is GradingProgress.NOT_READY


def test_score_optional_members_serialize_in_spec_names() -> None:
    started = datetime(2024, 4, 7, 12, 0, tzinfo=UTC)
    score = Score(
        user_id="u-1",
        score_given=3,
        score_maximum=4,
        comment="ok",
        scoring_user_id="teacher-9",
        started_at=started,
        submitted_at=started + timedelta(minutes=30),
        extensions={"https://tool.example/ext/attempts": 2},
    )

    body = score.to_json()

    assert body["scoringUserId"] == "teacher-9"
    assert body["submission"] == {
        "startedAt": "2024-04-07T12:00:00.000000Z",
        "submittedAt": "2024-04-07T12:30:00.000000Z",
    }
    assert body["https://tool.example/ext/attempts"] == 2
    assert body["comment"] == "ok"


def test_score_omits_absent_optional_members() -> None:
    body = Score(user_id="u-1").to_json()

    assert set(body) == {"userId", "activityProgress", "gradingProgress", "timestamp"}


@pytest.mark.parametrize("key", ["attempts", "urn:x:attempts", "/ext/attempts"])
def test_score_extension_keys_must_be_full_urls(key: str) -> None:
    with pytest.raises(ScoreError, match="full URL"):
        Score(user_id="u-1", extensions={key: 1})


def test_score_rejects_naive_submission_times() -> None:
    with pytest.raises(ScoreError, match="submitted_at"):
        Score(user_id="u-1", submitted_at=datetime(2024, 4, 7, 12, 0))


def test_score_is_frozen() -> None:
    score = Score(user_id="u-1")

    with pytest.raises(AttributeError):
        score.user_id = "u-2"  # type: ignore[misc]


# scores_url


@pytest.mark.parametrize(
    ("lineitem", "expected"),
    [
        (LINEITEM_URL, LINEITEM_URL + "/scores"),
        (LINEITEM_URL + "/", LINEITEM_URL + "/scores"),
        (MOODLE_LINEITEM + "?type_id=1", MOODLE_LINEITEM + "/scores?type_id=1"),
        (
            "https://lms.example.edu/lineitems/7/?a=1&b=2",
            "https://lms.example.edu/lineitems/7/scores?a=1&b=2",
        ),
    ],
)
def test_scores_url_adds_to_path_and_keeps_query(lineitem: str, expected: str) -> None:
    assert scores_url(lineitem) == expected


def test_results_url_adds_to_path_and_keeps_query() -> None:
    assert results_url(MOODLE_LINEITEM + "?type_id=1") == (
        MOODLE_LINEITEM + "/results?type_id=1"
    )
    assert results_url(LINEITEM_URL + "/") == LINEITEM_URL + "/results"


# Line items


def platform_item(**overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": LINEITEM_URL + "?type_id=1",
        "label": "Chapter 5 Test",
        "scoreMaximum": 60,
        "resourceLinkId": "rl-1",
        "resourceId": "quiz-231",
        "tag": "grade",
        "startDateTime": "2024-03-06T20:05:02Z",
        "endDateTime": "2024-04-06T22:05:03+02:00",
        "gradesReleased": True,
        "https://canvas.instructure.com/lti/submission_type": {"type": "none"},
    }
    item.update(overrides)
    return {k: v for k, v in item.items() if v is not DROP}


DROP = object()


def test_lineitem_reads_every_spec_member() -> None:
    item = LineItem.from_json(platform_item())

    assert item.id == LINEITEM_URL + "?type_id=1"
    assert (item.label, item.score_maximum) == ("Chapter 5 Test", 60.0)
    assert (item.resource_link_id, item.resource_id, item.tag) == (
        "rl-1",
        "quiz-231",
        "grade",
    )
    assert item.start_date_time == datetime(2024, 3, 6, 20, 5, 2, tzinfo=UTC)
    assert item.end_date_time == datetime(2024, 4, 6, 20, 5, 3, tzinfo=UTC)
    assert item.grades_released is True
    assert item.raw["https://canvas.instructure.com/lti/submission_type"] == {
        "type": "none"
    }


def test_lineitem_reads_missing_or_malformed_optional_members_as_none() -> None:
    document = platform_item(
        resourceLinkId=DROP,
        resourceId="",
        tag=7,
        startDateTime="yesterday",
        endDateTime="2024-04-06T22:05:03",
        gradesReleased="yes",
        id=DROP,
    )

    item = LineItem.from_json(document)

    assert item.id is None
    assert item.resource_link_id is None and item.resource_id is None
    assert item.tag is None and item.grades_released is None
    assert item.start_date_time is None and item.end_date_time is None
    assert item.raw["startDateTime"] == "yesterday"
    assert item.raw["tag"] == 7


def test_lineitem_reads_a_numeric_string_score_maximum() -> None:
    assert LineItem.from_json(platform_item(scoreMaximum="100")).score_maximum == 100


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ([], "JSON object"),
        ("item", "JSON object"),
        (platform_item(label=DROP), "label"),
        (platform_item(label=5), "label"),
        (platform_item(scoreMaximum=DROP), "scoreMaximum"),
        (platform_item(scoreMaximum="lots"), "scoreMaximum"),
        (platform_item(scoreMaximum=True), "scoreMaximum"),
        (platform_item(scoreMaximum="nan"), "scoreMaximum"),
    ],
)
def test_lineitem_without_its_required_members_is_refused(
    document: Any, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        LineItem.from_json(document)


def test_lineitem_round_trip_sends_unchanged_members_as_received() -> None:
    document = platform_item(scoreMaximum="60", tag=7, startDateTime="yesterday")

    assert LineItem.from_json(document).to_json() == document


def test_lineitem_changed_members_replace_raw_and_others_stay() -> None:
    item = LineItem.from_json(platform_item())

    changed = dataclasses.replace(
        item,
        label="Chapter 5 Test (retake)",
        score_maximum=50,
        tag=None,
        end_date_time=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    )
    sent = changed.to_json()

    assert sent["label"] == "Chapter 5 Test (retake)"
    assert sent["scoreMaximum"] == 50
    assert "tag" not in sent
    assert sent["endDateTime"] == "2024-05-01T12:00:00.000000Z"
    assert sent["startDateTime"] == "2024-03-06T20:05:02Z"
    assert sent["https://canvas.instructure.com/lti/submission_type"] == {
        "type": "none"
    }
    assert sent["id"] == item.id


def test_new_lineitem_serializes_only_what_is_set() -> None:
    item = LineItem(label="Essay", score_maximum=20, resource_id="essay-1")

    assert item.to_json() == {
        "label": "Essay",
        "scoreMaximum": 20,
        "resourceId": "essay-1",
    }


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"label": "  "}, "label"),
        ({"score_maximum": 0}, "score_maximum"),
        ({"score_maximum": -5}, "score_maximum"),
        ({"score_maximum": math.inf}, "finite"),
        ({"score_maximum": "10"}, "number"),
        ({"tag": ""}, "tag"),
        ({"resource_id": 5}, "resource_id"),
        ({"start_date_time": datetime(2024, 5, 1)}, "time zone"),
        ({"end_date_time": "2024-05-01T00:00:00Z"}, "datetime"),
        ({"grades_released": "yes"}, "bool"),
        ({"id": "/lineitems/9"}, "URL"),
    ],
)
def test_lineitem_is_checked_before_it_is_sent(
    values: dict[str, Any], problem: str
) -> None:
    fields: dict[str, Any] = {"label": "Quiz", "score_maximum": 10}
    fields.update(values)
    item = LineItem(**fields)

    with pytest.raises(ScoreError, match=problem):
        item.to_json()


def test_lineitem_is_frozen_hashable_picklable_and_converts_to_dict() -> None:
    item = LineItem.from_json(platform_item())

    with pytest.raises(dataclasses.FrozenInstanceError):
        item.label = "Other"  # type: ignore[misc]
    assert hash(item) == hash(LineItem.from_json(platform_item()))
    assert item == LineItem.from_json(platform_item())
    assert pickle.loads(pickle.dumps(item)) == item
    assert dataclasses.asdict(item)["raw"] == platform_item()


def test_lineitem_keeps_its_own_copy_of_the_document() -> None:
    document = platform_item()
    item = LineItem.from_json(document)

    document["label"] = "changed later"

    assert item.raw["label"] == "Chapter 5 Test"


# Results


def test_result_reads_every_spec_member() -> None:
    document = {
        "id": LINEITEM_URL + "/results/5",
        "scoreOf": LINEITEM_URL,
        "userId": "5323497",
        "resultScore": 0.83,
        "resultMaximum": 1,
        "comment": "This is exceptional work.",
        "https://example.edu/ext/attempts": 2,
    }

    result = Result.from_json(document)

    assert result.id == LINEITEM_URL + "/results/5"
    assert result.user_id == "5323497"
    assert (result.result_score, result.result_maximum) == (0.83, 1.0)
    assert result.comment == "This is exceptional work."
    assert result.score_of == LINEITEM_URL
    assert result.raw["https://example.edu/ext/attempts"] == 2


def test_result_reads_leniently() -> None:
    result = Result.from_json({"userId": 42, "resultScore": "7.5", "comment": None})

    assert result.user_id == "42"
    assert result.result_score == 7.5
    assert result.id is None and result.result_maximum is None
    assert result.comment is None and result.score_of is None


@pytest.mark.parametrize(
    "document", [{"resultScore": 1}, {"userId": ""}, {"userId": True}, ["userId"]]
)
def test_result_without_a_user_is_refused(document: Any) -> None:
    with pytest.raises(ValueError, match="userId|JSON object"):
        Result.from_json(document)


# Query filters


def test_filtered_url_appends_given_filters_and_keeps_the_query() -> None:
    url = filtered_url(
        MOODLE_LINEITEM + "?type_id=1", user_id="u 1&x", tag=None, limit=5
    )

    assert url == MOODLE_LINEITEM + "?type_id=1&user_id=u+1%26x&limit=5"
    assert filtered_url(LINEITEM_URL, tag=None) == LINEITEM_URL


@pytest.mark.parametrize(
    ("filters", "problem"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"tag": ""}, "tag"),
        ({"user_id": 5}, "user_id"),
    ],
)
def test_filtered_url_refuses_bad_filters(
    filters: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ScoreError, match=problem):
        filtered_url(LINEITEM_URL, **filters)

"""The development platform's grade services: line items, results, scopes.

The platform runs in-process through httpx.ASGITransport, driven by raw HTTP
requests built here (not by the package's AGS client), so these tests judge
the platform on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from lti_middleware import claims as c
from lti_middleware.devplatform import DevResourceLink

from .test_devplatform import DROP, PLATFORM, Clock, Dev, ToolKeys, make_settings
from .test_devplatform import score_document as make_score

CONTAINER = PLATFORM + "/ags/contexts/course-1/lineitems"
LINKS = (
    DevResourceLink("rl-1", "Quiz 1", "1", "Quiz 1", 10.0),
    DevResourceLink("rl-2", "Essay", "essay", "Essay", 20.0),
)


@pytest.fixture
async def dev() -> AsyncIterator[Dev]:
    clock = Clock()
    platform = Dev(make_settings(clock, resource_links=LINKS), clock, ToolKeys())
    yield platform
    await platform.aclose()


class Service:
    """Raw AGS requests with one access token."""

    def __init__(self, dev: Dev, token: str) -> None:
        self.dev = dev
        self.auth = {"Authorization": f"Bearer {token}"}

    async def get(self, url: str, **headers: str) -> httpx.Response:
        return await self.dev.http.get(url, headers={**self.auth, **headers})

    async def send(
        self,
        method: str,
        url: str,
        body: Any,
        content_type: str = c.MEDIA_TYPE_LINEITEM,
    ) -> httpx.Response:
        headers = {**self.auth, "Content-Type": content_type}
        if isinstance(body, str):
            return await self.dev.http.request(
                method, url, content=body.encode(), headers=headers
            )
        return await self.dev.http.request(method, url, json=body, headers=headers)

    async def delete(self, url: str) -> httpx.Response:
        return await self.dev.http.delete(url, headers=self.auth)

    async def create(self, **members: Any) -> dict[str, Any]:
        document = {"label": "Lab", "scoreMaximum": 5, **members}
        response = await self.send("POST", self.dev.settings.lineitems_url, document)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created


async def service(dev: Dev, *scopes: str) -> Service:
    return Service(dev, await dev.access_token(" ".join(scopes)))


def results_url(line_item_url: str) -> str:
    path, query = line_item_url.split("?", 1)
    return f"{path}/results?{query}"


def scores_url(line_item_url: str) -> str:
    path, query = line_item_url.split("?", 1)
    return f"{path}/scores?{query}"


def next_link(response: httpx.Response) -> str | None:
    link = response.links.get("next")
    return link["url"] if link else None


# The container


async def test_container_lists_each_resource_links_line_item(dev: Dev) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM_READONLY)

    response = await ags.get(dev.settings.lineitems_url)

    assert response.status_code == 200
    assert response.headers["content-type"] == c.MEDIA_TYPE_LINEITEMS
    assert response.json() == [
        {
            "id": CONTAINER + "/1/lineitem?type_id=1",
            "label": "Quiz 1",
            "scoreMaximum": 10.0,
            "resourceLinkId": "rl-1",
        },
        {
            "id": CONTAINER + "/essay/lineitem?type_id=1",
            "label": "Essay",
            "scoreMaximum": 20.0,
            "resourceLinkId": "rl-2",
        },
    ]


async def test_create_answers_201_with_the_item_and_lists_it(dev: Dev) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM)
    document = {
        "label": "Chapter 5 Test",
        "scoreMaximum": 60,
        "resourceLinkId": "rl-1",
        "resourceId": "quiz-231",
        "tag": "grade",
        "startDateTime": "2024-03-06T20:05:02Z",
        "endDateTime": "2024-04-06T22:05:03+02:00",
        "gradesReleased": False,
        "https://tool.example.org/ext/kind": {"weight": 2},
    }

    response = await ags.send("POST", dev.settings.lineitems_url, document)
    listed = await ags.get(dev.settings.lineitems_url + "&resource_id=quiz-231")

    assert response.status_code == 201
    assert response.headers["content-type"] == c.MEDIA_TYPE_LINEITEM
    created = response.json()
    url = CONTAINER + "/1/lineitem?type_id=1"
    assert created["id"] != url and created["id"].startswith(CONTAINER + "/")
    assert created["id"].endswith("/lineitem?type_id=1")
    assert response.headers["location"] == created["id"]
    assert created == {"id": created["id"], **document, "scoreMaximum": 60.0}
    assert listed.json() == [created]
    fetched = await ags.get(created["id"], Accept=c.MEDIA_TYPE_LINEITEM)
    assert fetched.json() == created


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"label": DROP}, "label"),
        ({"label": "   "}, "label"),
        ({"label": 7}, "label"),
        ({"scoreMaximum": DROP}, "scoreMaximum"),
        ({"scoreMaximum": 0}, "scoreMaximum"),
        ({"scoreMaximum": -1}, "scoreMaximum"),
        ({"scoreMaximum": "10"}, "scoreMaximum"),
        ({"scoreMaximum": True}, "scoreMaximum"),
        ({"id": CONTAINER + "/9/lineitem?type_id=1"}, "id"),
        ({"tag": None}, "null"),
        ({"tag": ""}, "tag"),
        ({"resourceId": 5}, "resourceId"),
        ({"resourceLinkId": "rl-9"}, "resourceLinkId"),
        ({"points": 5}, "full URL"),
        ({"startDateTime": "2024-03-06T20:05:02"}, "time zone"),
        ({"endDateTime": "tomorrow"}, "endDateTime"),
        (
            {
                "startDateTime": "2024-04-06T00:00:00Z",
                "endDateTime": "2024-03-06T00:00:00Z",
            },
            "before",
        ),
        ({"gradesReleased": "yes"}, "gradesReleased"),
        ({"submissionReview": "on"}, "submissionReview"),
    ],
)
async def test_create_refuses_an_invalid_line_item(
    dev: Dev, overrides: dict[str, Any], problem: str
) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM)
    document = {"label": "Lab", "scoreMaximum": 5, **overrides}
    document = {k: v for k, v in document.items() if v is not DROP}

    response = await ags.send("POST", dev.settings.lineitems_url, document)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "invalid_line_item"
    assert problem in response.json()["error_description"]
    listed = await ags.get(dev.settings.lineitems_url)
    assert len(listed.json()) == 2


@pytest.mark.parametrize(
    ("body", "error"), [("[1, 2]", "invalid_line_item"), ("{label", "invalid_json")]
)
async def test_create_refuses_a_body_that_is_no_line_item(
    dev: Dev, body: str, error: str
) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM)

    response = await ags.send("POST", dev.settings.lineitems_url, body)

    assert response.status_code == 400
    assert response.json()["error"] == error


@pytest.mark.parametrize(
    "content_type",
    ["application/json", c.MEDIA_TYPE_LINEITEMS, c.MEDIA_TYPE_SCORE, ""],
)
async def test_line_item_writes_need_the_line_item_media_type(
    dev: Dev, content_type: str
) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM)
    document = {"label": "Lab", "scoreMaximum": 5}
    url = dev.settings.line_item_url("1")

    created = await ags.send("POST", dev.settings.lineitems_url, document, content_type)
    replaced = await ags.send("PUT", url, document, content_type)

    assert (created.status_code, replaced.status_code) == (415, 415)
    assert created.json()["error"] == "unsupported_media_type"


async def test_a_get_that_cannot_take_json_is_406(dev: Dev) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM_READONLY)

    response = await ags.get(dev.settings.lineitems_url, Accept="text/html")
    fine = await ags.get(
        dev.settings.lineitems_url, Accept=f"{c.MEDIA_TYPE_LINEITEMS}; q=1, */*;q=0.1"
    )

    assert response.status_code == 406
    assert fine.status_code == 200


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("type_id=1&resourceLinkId=rl-1", "unknown query parameter"),
        ("type_id=1&tag=a&tag=b", "given twice"),
        ("tag=a", "type_id=1"),
        ("type_id=2", "type_id=1"),
        ("type_id=1&limit=0", "limit"),
        ("type_id=1&limit=ten", "limit"),
        ("type_id=1&page=-1", "page"),
        ("type_id=1&page=%C2%B2", "page"),
        ("type_id=1&limit=" + "9" * 5000, "limit"),
    ],
)
async def test_container_query_is_read_strictly(
    dev: Dev, query: str, problem: str
) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM_READONLY)

    response = await ags.get(f"{CONTAINER}?{query}")

    assert response.status_code == 400
    assert problem in response.json()["error_description"]


async def test_container_filters_by_link_resource_and_tag(dev: Dev) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM)
    await ags.create(resourceId="quiz-1", tag="quiz", resourceLinkId="rl-2")
    await ags.create(resourceId="quiz-2", tag="quiz")

    async def labels_and_ids(query: str) -> list[tuple[str, str | None]]:
        response = await ags.get(f"{dev.settings.lineitems_url}&{query}")
        assert response.status_code == 200, response.text
        return [(i["label"], i.get("resourceId")) for i in response.json()]

    assert await labels_and_ids("resource_link_id=rl-2") == [
        ("Essay", None),
        ("Lab", "quiz-1"),
    ]
    assert await labels_and_ids("tag=quiz") == [("Lab", "quiz-1"), ("Lab", "quiz-2")]
    assert await labels_and_ids("tag=quiz&resource_id=quiz-2") == [("Lab", "quiz-2")]
    assert await labels_and_ids("tag=other") == []


async def test_container_pages_by_ten_with_a_link_header(dev: Dev) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM)
    for number in range(11):
        await ags.create(label=f"Lab {number}")

    first = await ags.get(dev.settings.lineitems_url)
    second_url = next_link(first)
    assert second_url is not None
    second = await ags.get(second_url)

    assert [len(first.json()), len(second.json())] == [10, 3]
    assert next_link(second) is None
    assert first.links["first"]["url"] == CONTAINER + "?type_id=1&page=1"
    assert first.links["last"]["url"] == CONTAINER + "?type_id=1&page=2"
    assert second.links["prev"]["url"] == CONTAINER + "?type_id=1&page=1"
    ids = [item["id"] for item in first.json() + second.json()]
    assert len(set(ids)) == 13


async def test_container_pages_by_limit_and_keeps_the_filters(dev: Dev) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM)
    for number in range(5):
        await ags.create(label=f"Lab {number}", tag="lab")

    labels: list[str] = []
    url: str | None = dev.settings.lineitems_url + "&tag=lab&limit=2"
    requested = []
    while url is not None:
        requested.append(url)
        response = await ags.get(url)
        labels.extend(item["label"] for item in response.json())
        url = next_link(response)

    assert labels == [f"Lab {n}" for n in range(5)]
    assert len(requested) == 3
    query = parse_qs(urlsplit(requested[-1]).query)
    assert query == {"type_id": ["1"], "tag": ["lab"], "limit": ["2"], "page": ["3"]}


async def test_a_page_past_the_end_is_empty(dev: Dev) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM_READONLY)

    response = await ags.get(dev.settings.lineitems_url + "&page=7")

    assert response.status_code == 200
    assert response.json() == []
    assert next_link(response) is None


# One line item


async def test_put_replaces_the_whole_item(dev: Dev) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM)
    created = await ags.create(tag="lab", resourceId="lab-1")
    replacement = {
        "id": created["id"],
        "label": "Lab (graded)",
        "scoreMaximum": 8,
        "https://tool.example.org/ext/kind": "lab",
    }

    response = await ags.send("PUT", created["id"], replacement)
    fetched = await ags.get(created["id"])

    assert response.status_code == 200
    assert response.headers["content-type"] == c.MEDIA_TYPE_LINEITEM
    assert response.json() == {**replacement, "scoreMaximum": 8.0}
    assert fetched.json() == response.json()
    assert "tag" not in fetched.json() and "resourceId" not in fetched.json()


async def test_put_refuses_another_items_id(dev: Dev) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM)
    created = await ags.create()
    other = dev.settings.line_item_url("1")

    response = await ags.send(
        "PUT", created["id"], {"id": other, "label": "X", "scoreMaximum": 1}
    )

    assert response.status_code == 400
    assert "not this line item's URL" in response.json()["error_description"]


async def test_put_may_change_a_resource_links_own_item(dev: Dev) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM)
    url = dev.settings.line_item_url("1")

    response = await ags.send(
        "PUT",
        url,
        {"label": "Quiz 1 (new)", "scoreMaximum": 12, "resourceLinkId": "rl-1"},
    )
    page = await dev.http.get("/gradebook")

    assert response.status_code == 200
    assert "Quiz 1 (new) (max 12)" in page.text


async def test_delete_removes_a_created_item_and_its_scores(dev: Dev) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM)
    scorer = await service(dev, c.SCOPE_SCORE)
    created = await ags.create(label="Extra credit")
    posted = await scorer.send(
        "POST", scores_url(created["id"]), make_score(), c.MEDIA_TYPE_SCORE
    )
    assert posted.status_code == 204

    response = await ags.delete(created["id"])
    again = await ags.get(created["id"])
    page = await dev.http.get("/gradebook")

    assert response.status_code == 204
    assert again.status_code == 404
    assert "Extra credit" not in page.text
    assert all(key[0] != created["id"] for key in dev.app.state.platform.scores)
    assert len((await ags.get(dev.settings.lineitems_url)).json()) == 2


async def test_delete_of_a_resource_links_own_item_is_forbidden(dev: Dev) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM)

    response = await ags.delete(dev.settings.line_item_url("1"))

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert "www-authenticate" not in response.headers
    assert (await ags.get(dev.settings.line_item_url("1"))).status_code == 200


async def test_a_deleted_items_id_is_never_reused(dev: Dev) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM)
    first = await ags.create()
    await ags.delete(first["id"])

    second = await ags.create()

    assert second["id"] != first["id"]


@pytest.mark.parametrize(
    "url",
    [
        CONTAINER + "/404/lineitem?type_id=1",
        PLATFORM + "/ags/contexts/course-2/lineitems/1/lineitem?type_id=1",
    ],
)
async def test_an_unknown_line_item_is_404_for_every_method(dev: Dev, url: str) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM, c.SCOPE_RESULT_READONLY)

    answers = [
        await ags.get(url),
        await ags.send("PUT", url, {"label": "X", "scoreMaximum": 1}),
        await ags.delete(url),
        await ags.get(results_url(url)),
    ]

    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    assert all(a.json()["error"] == "not_found" for a in answers)


async def test_a_line_item_url_without_its_query_is_refused(dev: Dev) -> None:
    ags = await service(dev, c.SCOPE_LINEITEM)
    url = dev.settings.line_item_url("1").split("?", 1)[0]

    response = await ags.get(url)

    assert response.status_code == 400
    assert "type_id=1" in response.json()["error_description"]


# Scopes, compared exactly

READ = c.SCOPE_LINEITEM_READONLY
WRITE = c.SCOPE_LINEITEM
RESULTS = c.SCOPE_RESULT_READONLY
SCORE = c.SCOPE_SCORE
SCORE_TYPE = c.MEDIA_TYPE_SCORE


@pytest.mark.parametrize(
    ("operation", "scope", "allowed"),
    [
        ("list", READ, True),
        ("list", WRITE, True),
        ("list", SCORE, False),
        ("list", RESULTS, False),
        ("get", READ, True),
        ("get", WRITE, True),
        ("get", SCORE, False),
        ("create", WRITE, True),
        ("create", READ, False),
        ("put", WRITE, True),
        ("put", READ, False),
        ("delete", READ, False),
        ("delete", SCORE, False),
        ("results", RESULTS, True),
        ("results", READ, False),
        ("results", WRITE, False),
        ("score", SCORE, True),
        ("score", WRITE, False),
        ("score", RESULTS, False),
    ],
)
async def test_each_endpoint_checks_its_scopes_exactly(
    dev: Dev, operation: str, scope: str, allowed: bool
) -> None:
    ags = await service(dev, scope)
    item = dev.settings.line_item_url("1")
    document = {"label": "Quiz 1", "scoreMaximum": 10, "resourceLinkId": "rl-1"}
    calls = {
        "list": lambda: ags.get(dev.settings.lineitems_url),
        "get": lambda: ags.get(item),
        "create": lambda: ags.send("POST", dev.settings.lineitems_url, document),
        "put": lambda: ags.send("PUT", item, document),
        "delete": lambda: ags.delete(item),
        "results": lambda: ags.get(results_url(item)),
        "score": lambda: ags.send("POST", scores_url(item), make_score(), SCORE_TYPE),
    }

    response = await calls[operation]()

    if allowed:
        assert response.status_code in (200, 201, 204), response.text
    else:
        assert response.status_code == 403
        assert response.json()["error"] == "insufficient_scope"
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_line_items_need_an_access_token(dev: Dev) -> None:
    id_token = await dev.id_token()

    missing = await dev.http.get(dev.settings.lineitems_url)
    as_id_token = await dev.http.get(
        dev.settings.lineitems_url, headers={"Authorization": f"Bearer {id_token}"}
    )

    assert missing.status_code == 401
    assert as_id_token.status_code == 401
    assert "id_token" in as_id_token.json()["error_description"]


# Results


async def test_results_are_the_latest_scores_scaled_to_the_line_item(
    dev: Dev,
) -> None:
    scorer = await service(dev, SCORE)
    reader = await service(dev, RESULTS)
    url = dev.settings.line_item_url("essay")
    for user, given in (("learner-1", 7), ("learner-2", 10)):
        score = make_score(userId=user, scoreGiven=given, comment=f"for {user}")
        posted = await scorer.send("POST", scores_url(url), score, SCORE_TYPE)
        assert posted.status_code == 204
    bare = make_score(userId="instructor-1", scoreGiven=DROP, scoreMaximum=DROP)
    await scorer.send("POST", scores_url(url), bare, SCORE_TYPE)

    response = await reader.get(results_url(url), Accept=c.MEDIA_TYPE_RESULTS)

    assert response.status_code == 200
    assert response.headers["content-type"] == c.MEDIA_TYPE_RESULTS
    results = response.json()
    path = url.split("?", 1)[0]
    assert results[0] == {
        "id": f"{path}/results?type_id=1&user_id=learner-1",
        "scoreOf": url,
        "userId": "learner-1",
        "resultScore": 14.0,
        "resultMaximum": 20.0,
        "comment": "for learner-1",
    }
    assert results[1]["resultScore"] == 20.0
    assert results[2] == {
        "id": f"{path}/results?type_id=1&user_id=instructor-1",
        "scoreOf": url,
        "userId": "instructor-1",
        "resultMaximum": 20.0,
    }


async def test_results_filter_by_user_and_page_by_limit(dev: Dev) -> None:
    scorer = await service(dev, SCORE)
    reader = await service(dev, RESULTS)
    url = dev.settings.line_item_url("1")
    for user in ("learner-1", "learner-2", "instructor-1"):
        await scorer.send("POST", scores_url(url), make_score(userId=user), SCORE_TYPE)

    one = await reader.get(results_url(url) + "&user_id=learner-2")
    nobody = await reader.get(results_url(url) + "&user_id=nobody")
    first = await reader.get(results_url(url) + "&limit=2")
    second_url = next_link(first)
    assert second_url is not None
    second = await reader.get(second_url)

    assert [r["userId"] for r in one.json()] == ["learner-2"]
    assert nobody.json() == []
    assert [r["userId"] for r in first.json() + second.json()] == [
        "learner-1",
        "learner-2",
        "instructor-1",
    ]
    assert next_link(second) is None


async def test_results_query_is_read_strictly(dev: Dev) -> None:
    reader = await service(dev, RESULTS)
    url = results_url(dev.settings.line_item_url("1"))

    unknown = await reader.get(url + "&userId=learner-1")
    lost_query = await reader.get(url.split("?", 1)[0])

    assert unknown.status_code == 400
    assert lost_query.status_code == 400


async def test_scores_for_a_created_item_reach_results_and_gradebook(dev: Dev) -> None:
    ags = await service(dev, WRITE, SCORE, RESULTS)
    created = await ags.create(label="Bonus <round>", tag="bonus")

    posted = await ags.send(
        "POST", scores_url(created["id"]), make_score(scoreGiven=4), SCORE_TYPE
    )
    results = await ags.get(results_url(created["id"]))
    page = await dev.http.get("/gradebook")

    assert posted.status_code == 204
    assert [r["resultScore"] for r in results.json()] == [2.0]
    assert "Bonus &lt;round&gt; (max 5)" in page.text
    assert "tag bonus · created by the tool" in page.text
    assert "4 / 10" in page.text

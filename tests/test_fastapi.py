"""FastAPI dependencies: the launch, an optional launch, a required role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from example_apps import fastapi_app
from example_apps.quiz_app import QUESTIONS
from lti_middleware import LTILaunch
from lti_middleware import claims as c
from lti_middleware.fastapi import (
    OptionalLTILaunch,
    lti_launch,
    require_role,
    wrap_app,
)

from .conftest import (
    LINEITEM,
    TOKEN_URL,
    FakePlatform,
    StoresPlugin,
    ToolClient,
    make_tool,
    tool_config,
)

INSTRUCTOR: dict[str, Any] = {c.ROLES: [c.MEMBERSHIP_ROLE + "Instructor"]}
JSON = {"Accept": "application/json"}


def api() -> FastAPI:
    app = FastAPI()

    @app.get("/app")
    async def page(launch: Annotated[LTILaunch, Depends(lti_launch)]) -> Any:
        return {"user": launch.user.id, "launch": launch.launch_id}

    @app.get("/maybe")
    async def maybe(launch: OptionalLTILaunch) -> Any:
        return {"launch": launch.launch_id if launch else None}

    @app.get("/teach")
    async def teach(
        launch: Annotated[LTILaunch, Depends(require_role("Instructor"))],
    ) -> Any:
        return {"instructor": launch.user.id}

    return app


@asynccontextmanager
async def closing(client: ToolClient) -> AsyncIterator[ToolClient]:
    try:
        yield client
    finally:
        await client.http.aclose()
        await client.middleware.aclose()


def wrap_tool(platform: FakePlatform, app: FastAPI) -> ToolClient:
    """A ToolClient for ``app`` wrapped by :func:`wrap_app`."""
    http = httpx.AsyncClient(transport=httpx.MockTransport(platform.handle))
    middleware = wrap_app(
        app,
        config=tool_config(),
        plugins=(StoresPlugin(platform.clock),),
        http=http,
        clock=platform.clock,
    )
    return ToolClient(middleware, platform)


@pytest.fixture
async def tool(platform: FakePlatform) -> AsyncIterator[ToolClient]:
    async with closing(wrap_tool(platform, api())) as client:
        yield client


async def test_lti_launch_yields_the_requests_launch(tool: ToolClient) -> None:
    launched = await tool.launch(sub="learner-7")

    page = await tool.follow(launched)

    assert page.status_code == 200
    assert page.json()["user"] == "learner-7"
    assert page.json()["launch"] in launched.headers["location"]


async def test_route_needing_a_launch_refuses_a_request_without_one(
    tool: ToolClient,
) -> None:
    as_json = await tool.http.get("/app", headers=JSON)
    as_html = await tool.http.get("/app")

    assert as_json.status_code == 401
    assert as_json.json()["error"] == "launch_not_found"
    assert "no launch id" in as_json.json()["detail"]
    assert as_html.status_code == 401
    assert as_html.headers["content-type"].startswith("text/html")
    assert "<code>launch_not_found</code>" in as_html.text
    assert as_html.headers["cache-control"] == "no-store"


async def test_unknown_launch_id_is_refused_by_the_middleware(
    tool: ToolClient,
) -> None:
    response = await tool.http.get("/maybe?lti_launch=forged", headers=JSON)

    assert response.status_code == 401
    assert response.json()["error"] == "launch_not_found"


async def test_optional_launch_is_none_without_a_launch_id(tool: ToolClient) -> None:
    launched = await tool.launch()
    launch_id = launched.headers["location"].rsplit("lti_launch=", 1)[1]

    without = await tool.http.get("/maybe")
    with_launch = await tool.http.get("/maybe", headers={"X-LTI-Launch": launch_id})

    assert without.json() == {"launch": None}
    assert with_launch.json() == {"launch": launch_id}


async def test_require_role_refuses_a_learner_with_403(tool: ToolClient) -> None:
    launched = await tool.launch()
    location = launched.headers["location"].replace("/app?", "/teach?")

    as_json = await tool.http.get(location, headers=JSON)
    as_html = await tool.http.get(location)

    assert as_json.status_code == 403
    assert as_json.json()["error"] == "role_required"
    assert "Instructor role" in as_json.json()["detail"]
    assert as_html.status_code == 403
    assert as_html.headers["content-type"].startswith("text/html")
    assert "needs the Instructor role" in as_html.text


async def test_require_role_passes_an_instructor(tool: ToolClient) -> None:
    launched = await tool.launch(sub="teacher-1", **INSTRUCTOR)
    location = launched.headers["location"].replace("/app?", "/teach?")

    response = await tool.http.get(location)

    assert response.status_code == 200
    assert response.json() == {"instructor": "teacher-1"}


async def test_require_role_without_a_launch_is_401(tool: ToolClient) -> None:
    response = await tool.http.get("/teach", headers=JSON)

    assert response.status_code == 401
    assert response.json()["error"] == "launch_not_found"


async def test_refusal_keeps_its_status_without_the_handler(
    platform: FakePlatform,
) -> None:
    # LTIMiddleware around the app directly: FastAPI's own handler answers.
    async with closing(make_tool(platform, app=api())) as tool:
        response = await tool.http.get("/app")

        assert response.status_code == 401
        assert response.json()["detail"]["error"] == "launch_not_found"


@pytest.fixture
async def quiz(platform: FakePlatform) -> AsyncIterator[ToolClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(platform.handle))
    app = fastapi_app.create_app(
        tool_config(),
        plugins=(StoresPlugin(platform.clock),),
        http=http,
        clock=platform.clock,
        load_entry_points=False,
    )
    async with closing(ToolClient(app, platform)) as client:
        yield client


async def test_example_app_grades_the_submitted_quiz(
    quiz: ToolClient, platform: FakePlatform
) -> None:
    platform.extra[TOKEN_URL] = httpx.Response(
        200, json={"access_token": "quiz-token", "token_type": "bearer"}
    )
    platform.extra[LINEITEM + "/scores"] = httpx.Response(200)
    launched = await quiz.launch(sub="learner-3")
    location = launched.headers["location"].replace("/app?", "/submit?")
    right = {q.name: q.answer for q in QUESTIONS}

    response = await quiz.http.post(location, data=right)

    assert response.status_code == 200, response.text
    assert "You scored <strong>3/3</strong>" in response.text


async def test_example_app_results_are_for_instructors(quiz: ToolClient) -> None:
    learner = await quiz.launch()
    teacher = await quiz.launch(sub="teacher-1", **INSTRUCTOR)

    refused = await quiz.http.get(
        learner.headers["location"].replace("/app?", "/results?")
    )
    shown = await quiz.http.get(
        teacher.headers["location"].replace("/app?", "/results?")
    )

    assert refused.status_code == 403
    assert shown.status_code == 200
    assert "does not let this tool read results" in shown.text

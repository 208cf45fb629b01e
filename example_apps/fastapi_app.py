"""The quiz as a FastAPI app: launches as dependencies, a graded submit.

The pages and the scoring come from :mod:`example_apps.quiz_app`; what this
file shows is the FastAPI side: :func:`~lti_middleware.fastapi.lti_launch`
for routes that need a launch, ``OptionalLTILaunch`` for one that works
without, and :func:`~lti_middleware.fastapi.require_role` for the
instructors' results page. Run it with::

    LTI_MIDDLEWARE_CONFIG=lti.toml uvicorn --factory example_apps.fastapi_app:create_app
"""

from __future__ import annotations

import logging
from html import escape
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from starlette.responses import HTMLResponse

from example_apps.quiz_app import (
    NO_LAUNCH,
    QUESTIONS,
    SCORE_MAXIMUM,
    describe,
    explain,
    quiz_form,
    read_form,
    render,
    results,
    with_launch,
)
from lti_middleware import (
    LTILaunch,
    LTIMiddleware,
    ScoreError,
    ServiceError,
    ToolConfig,
)
from lti_middleware.fastapi import (
    OptionalLTILaunch,
    lti_launch,
    require_role,
    wrap_app,
)

logger = logging.getLogger(__name__)

Launch = Annotated[LTILaunch, Depends(lti_launch)]
InstructorLaunch = Annotated[LTILaunch, Depends(require_role("Instructor"))]


async def home(launch: OptionalLTILaunch) -> HTMLResponse:
    """The quiz for a launch; a pointer to the course without one."""
    if launch is None:
        return render("Quiz", NO_LAUNCH)

    body = describe(launch)
    if launch.roles.is_instructor:
        link = escape(with_launch("/results", launch))
        body += f'<p><a href="{link}">Results</a></p>\n'
    return render("Quiz", body + quiz_form(launch))


async def submit(request: Request, launch: Launch) -> HTMLResponse:
    """Score the answers and send the grade to the platform."""
    answers = await read_form(request)
    correct = sum(answers.get(q.name) == q.answer for q in QUESTIONS)
    result = f"{correct}/{SCORE_MAXIMUM}"

    try:
        await launch.ags.post_score(
            score_given=correct,
            score_maximum=SCORE_MAXIMUM,
            comment=f"{result} answers correct",
        )
    except (ScoreError, ServiceError) as error:
        logger.warning("grade not recorded: %s", error)
        status, advice = explain(error)
        body = (
            f"<p>You scored {result}, but <strong>the grade was not "
            f"recorded</strong>: {escape(advice)}</p>"
        )
        return render("Grade not recorded", body, status)

    again = escape(with_launch("/", launch))
    body = (
        f"<p>You scored <strong>{result}</strong>. The grade has been sent to "
        f'your course.</p>\n<p><a href="{again}">Try again</a></p>'
    )
    return render("Quiz submitted", body)


async def results_page(launch: InstructorLaunch) -> HTMLResponse:
    """This link's results, for instructors only."""
    return render("Results", describe(launch) + await results(launch))


def create_app(
    config: ToolConfig | None = None, **middleware_kwargs: Any
) -> LTIMiddleware:
    """The FastAPI quiz wrapped by the middleware.

    ``config`` defaults to the TOML file named by ``LTI_MIDDLEWARE_CONFIG``;
    ``middleware_kwargs`` go to :class:`LTIMiddleware`; installed plugins
    are loaded unless ``load_entry_points=False``.
    """
    middleware_kwargs.setdefault("load_entry_points", True)
    api = FastAPI(title="LTI quiz", openapi_url=None, docs_url=None, redoc_url=None)
    api.add_api_route("/", home, methods=["GET"])
    api.add_api_route("/submit", submit, methods=["POST"])
    api.add_api_route("/results", results_page, methods=["GET"])

    return wrap_app(api, config=config, **middleware_kwargs)

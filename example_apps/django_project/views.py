"""The quiz's views: the same quiz and grading as ``example_apps.quiz_app``.

``submit`` is a sync view and sends the grade with ``call_sync``;
``submit_async`` is an async view and uses ``call_async``. Both work under
ASGI and under WSGI. The pages are those of the Starlette quiz: its
``render``, ``describe`` and ``explain`` are reused here. Every value on a page
is escaped.
"""

from __future__ import annotations

import logging
from html import escape

from django.conf import settings  # type: ignore[import-untyped]
from django.http import HttpRequest, HttpResponse  # type: ignore[import-untyped]
from django.views.decorators.http import (  # type: ignore[import-untyped]
    require_GET,
    require_POST,
)

from example_apps import quiz_app
from example_apps.quiz_app import (
    NO_LAUNCH,
    QUESTIONS,
    SCORE_MAXIMUM,
    describe,
    explain,
    with_launch,
)
from lti_middleware import LTILaunch, ScoreError, ServiceError
from lti_middleware.django import call_async, call_sync, launch_required

logger = logging.getLogger(__name__)


def render(title: str, body: str, status: int = 200) -> HttpResponse:
    """The quiz's page for ``body`` (escaped HTML), as a Django response.

    The markup and headers are those of :func:`example_apps.quiz_app.render`;
    Django adds the ``frame-ancestors`` policy of ``LTI_FRAME_ANCESTORS``.
    """
    page = quiz_app.render(title, body, status)
    response = HttpResponse(
        bytes(page.body),
        status=page.status_code,
        content_type=page.headers["content-type"],
    )
    for header in ("cache-control", "referrer-policy"):
        response[header] = page.headers[header]
    response["Content-Security-Policy"] = (
        f"frame-ancestors {settings.LTI_FRAME_ANCESTORS}"
    )
    return response


def quiz_form(launch: LTILaunch, action: str) -> str:
    """The questions as a form posting to ``action`` with the launch id.

    The markup of :func:`example_apps.quiz_app.quiz_form`, whose action is
    always ``/submit``; this project also has ``/submit-async``.
    """
    fieldsets = []
    for question in QUESTIONS:
        options = "".join(
            f'<label><input type="radio" name="{escape(question.name)}" '
            f'value="{escape(choice)}" required> {escape(choice)}</label><br>'
            for choice in question.choices
        )
        fieldsets.append(
            f"<fieldset><legend>{escape(question.text)}</legend>{options}</fieldset>"
        )

    return (
        f'<form method="post" action="{escape(with_launch(action, launch))}">\n'
        + "\n".join(fieldsets)
        + '\n<p><button type="submit">Submit answers</button></p>\n</form>'
    )


@require_GET  # type: ignore[untyped-decorator]
def home(request: HttpRequest) -> HttpResponse:
    """The landing page: the quiz for a launch, else a pointer to the course."""
    launch: LTILaunch | None = request.lti
    if launch is None:
        return render("Quiz", NO_LAUNCH)

    action = "/submit-async" if request.GET.get("view") == "async" else "/submit"
    return render("Quiz", describe(launch) + quiz_form(launch, action))


def count_correct(request: HttpRequest) -> int:
    """The number of right answers in the submitted form."""
    return sum(request.POST.get(q.name) == q.answer for q in QUESTIONS)


async def post_grade(launch: LTILaunch, correct: int) -> None:
    """Send ``correct`` out of the quiz's maximum to the launch's line item."""
    await launch.ags.post_score(
        score_given=correct,
        score_maximum=SCORE_MAXIMUM,
        activity_progress="Completed",
        grading_progress="FullyGraded",
        comment=f"{correct}/{SCORE_MAXIMUM} answers correct",
    )


def outcome(
    launch: LTILaunch, correct: int, error: ScoreError | ServiceError | None
) -> HttpResponse:
    """The page after a submission, with or without the grade recorded."""
    result = f"{correct}/{SCORE_MAXIMUM}"
    if error is None:
        again = escape(with_launch("/", launch))
        body = (
            f"<p>You scored <strong>{result}</strong>. The grade has been sent to "
            f'your course.</p>\n<p><a href="{again}">Try again</a></p>'
        )
        return render("Quiz submitted", body)

    logger.warning("grade not recorded: %s", error)
    status, advice = explain(error)
    body = (
        f"<p>You scored {result}, but <strong>the grade was not recorded"
        f"</strong>.</p>\n<p><strong>What failed:</strong> {escape(str(error))}</p>"
        f"\n<p><strong>What to do:</strong> {escape(advice)}</p>"
    )
    return render("Grade not recorded", body, status)


@require_POST  # type: ignore[untyped-decorator]
@launch_required
def submit(request: HttpRequest) -> HttpResponse:
    """Score the answers and send the grade, from a sync view."""
    launch: LTILaunch = request.lti
    correct = count_correct(request)
    try:
        call_sync(request, post_grade(launch, correct))
    except (ScoreError, ServiceError) as error:
        return outcome(launch, correct, error)

    return outcome(launch, correct, None)


@require_POST  # type: ignore[untyped-decorator]
@launch_required
async def submit_async(request: HttpRequest) -> HttpResponse:
    """Score the answers and send the grade, from an async view."""
    launch: LTILaunch = request.lti
    correct = count_correct(request)
    try:
        await call_async(request, post_grade(launch, correct))
    except (ScoreError, ServiceError) as error:
        return outcome(launch, correct, error)

    return outcome(launch, correct, None)

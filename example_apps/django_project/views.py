"""The quiz's views: the same quiz and grading as ``example_apps.quiz_app``.

``submit`` is a sync view and sends the grade with ``call_sync``;
``submit_async`` is an async view and uses ``call_async``. Both work under
ASGI and under WSGI. Every value on a page is escaped.
"""

from __future__ import annotations

import logging
from html import escape
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET, require_POST

from example_apps.quiz_app import NO_LAUNCH, QUESTIONS, SCORE_MAXIMUM, explain
from lti_middleware import LTILaunch, ScoreError, ServiceError
from lti_middleware.django import call_async, call_sync, launch_required

logger = logging.getLogger(__name__)


def render(title: str, body: str, status: int = 200) -> HttpResponse:
    """A page around ``body``, which must already be escaped HTML."""
    html = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head>\n"
        f"<body>\n<h1>{escape(title)}</h1>\n{body}\n</body></html>\n"
    )
    response = HttpResponse(html, status=status)
    response["Cache-Control"] = "no-store"
    response["Content-Security-Policy"] = (
        f"frame-ancestors {settings.LTI_FRAME_ANCESTORS}"
    )
    return response


def with_launch(path: str, launch: LTILaunch) -> str:
    """``path`` carrying the launch id, for links and form actions."""
    return path + "?" + urlencode({"lti_launch": launch.launch_id})


def quiz_form(launch: LTILaunch, action: str) -> str:
    """The questions as a form posting to ``action`` with the launch id."""
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


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The landing page: the quiz for a launch, else a pointer to the course."""
    launch: LTILaunch | None = request.lti  # type: ignore[attr-defined]
    if launch is None:
        return render("Quiz", NO_LAUNCH)

    user = launch.user.name or launch.user.id or "an anonymous user"
    role = "instructor" if launch.roles.is_instructor else "learner"
    course = launch.context.title if launch.context is not None else None
    body = (
        f"<p>Launched by <strong>{escape(user)}</strong> ({role}) in "
        f"<em>{escape(course or 'no course')}</em>.</p>\n"
    )
    action = "/submit-async" if request.GET.get("view") == "async" else "/submit"
    return render("Quiz", body + quiz_form(launch, action))


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


def outcome(correct: int, error: ScoreError | ServiceError | None) -> HttpResponse:
    """The page after a submission, with or without the grade recorded."""
    result = f"{correct}/{SCORE_MAXIMUM}"
    if error is None:
        body = f"<p>You scored <strong>{result}</strong>. The grade has been sent.</p>"
        return render("Quiz submitted", body)

    logger.warning("grade not recorded: %s", error)
    status, advice = explain(error)
    body = (
        f"<p>You scored {result}, but <strong>the grade was not recorded"
        f"</strong>.</p>\n<p><strong>What failed:</strong> {escape(str(error))}</p>"
        f"\n<p><strong>What to do:</strong> {escape(advice)}</p>"
    )
    return render("Grade not recorded", body, status)


@require_POST
@launch_required
def submit(request: HttpRequest) -> HttpResponse:
    """Score the answers and send the grade, from a sync view."""
    launch: LTILaunch = request.lti  # type: ignore[attr-defined]
    correct = count_correct(request)
    try:
        call_sync(request, post_grade(launch, correct))
    except (ScoreError, ServiceError) as error:
        return outcome(correct, error)

    return outcome(correct, None)


@require_POST
@launch_required
async def submit_async(request: HttpRequest) -> HttpResponse:
    """Score the answers and send the grade, from an async view."""
    launch: LTILaunch = request.lti  # type: ignore[attr-defined]
    correct = count_correct(request)
    try:
        await call_async(request, post_grade(launch, correct))
    except (ScoreError, ServiceError) as error:
        return outcome(correct, error)

    return outcome(correct, None)

"""A three-question quiz graded back to the course: the model LTI tool.

The app is plain Starlette; :class:`~lti_middleware.LTIMiddleware` around it
answers the LTI routes and puts the launch on ``request.state.lti``. Point it
at any platform with a TOML file named by ``LTI_MIDDLEWARE_CONFIG``::

    LTI_MIDDLEWARE_CONFIG=lti.toml uvicorn --factory example_apps.quiz_app:create_app

Every value on a page goes through ``html.escape``: names, titles and the
platform's messages come from outside. Pages carry the launch id in their
links, so they are sent with ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from lti_middleware import (
    LTILaunch,
    LTIMiddleware,
    PlatformResponseError,
    ScopeNotGrantedError,
    ScoreError,
    ServiceError,
    TokenRequestError,
    ToolConfig,
)

logger = logging.getLogger(__name__)

MAX_FORM_BYTES = 4096
NO_LAUNCH = (
    "<p>Open this tool from your course: it needs to know who you are, which "
    "the course tells it when you click the link there.</p>"
)
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True)
class Question:
    """One multiple-choice question; ``answer`` is one of ``choices``."""

    name: str
    text: str
    choices: tuple[str, ...]
    answer: str


QUESTIONS = (
    Question(
        "q1",
        "How does the platform hand the id_token to the tool?",
        ("In a cookie", "In a form POST", "In the URL path"),
        "In a form POST",
    ),
    Question(
        "q2",
        "What does the tool send along with a grade?",
        ("The id_token", "An OAuth 2 access token", "The learner's password"),
        "An OAuth 2 access token",
    ),
    Question("q3", "Which LTI version is this launch?", ("1.1", "1.3", "2.0"), "1.3"),
)
SCORE_MAXIMUM = len(QUESTIONS)


def render(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    """A page around ``body``, which must already be escaped HTML."""
    html = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head>\n"
        f"<body>\n<h1>{escape(title)}</h1>\n{body}\n</body></html>\n"
    )
    return HTMLResponse(html, status_code, headers=_HEADERS)


def role_of(launch: LTILaunch) -> str:
    """The role the quiz cares about: instructor, learner or other."""
    if launch.roles.is_instructor:
        return "instructor"
    if launch.roles.is_learner:
        return "learner"
    return "other role"


def describe(launch: LTILaunch) -> str:
    """Who launched, from which course and link, as escaped HTML."""
    user = launch.user.name or launch.user.id or "an anonymous user"
    course = "no course"
    if launch.context is not None:
        course = launch.context.title or launch.context.label or launch.context.id
    link = "no link"
    if launch.resource_link is not None:
        link = launch.resource_link.title or launch.resource_link.id

    return (
        f"<p>Launched by <strong>{escape(user)}</strong> ({escape(role_of(launch))})"
        f" in <em>{escape(course)}</em>, link <em>{escape(link)}</em>.</p>"
    )


def quiz_form(launch: LTILaunch) -> str:
    """The questions as a form that posts to ``/submit`` with the launch id."""
    action = "/submit?" + urlencode({"lti_launch": launch.launch_id})
    fieldsets = []
    for question in QUESTIONS:
        options = "".join(
            f'<label><input type="radio" name="{escape(question.name)}" '
            f'value="{escape(choice)}" required> {escape(choice)}</label><br>'
            for choice in question.choices
        )
        legend = f"<legend>{escape(question.text)}</legend>"
        fieldsets.append(f"<fieldset>{legend}{options}</fieldset>")

    return (
        f'<form method="post" action="{escape(action)}">\n'
        + "\n".join(fieldsets)
        + '\n<p><button type="submit">Submit answers</button></p>\n</form>'
    )


async def home(request: Request) -> HTMLResponse:
    """The landing page: the quiz for a launch, a pointer to the course without."""
    launch: LTILaunch | None = getattr(request.state, "lti", None)
    if launch is None:
        return render("Quiz", NO_LAUNCH)

    note = ""
    if launch.roles.is_instructor:
        note = (
            "<p><strong>You are an instructor:</strong> grades go to learners. "
            "You may still submit to try the quiz; the score is recorded under "
            "your own name.</p>"
        )

    return render("Quiz", describe(launch) + note + quiz_form(launch))


async def submit(request: Request) -> HTMLResponse:
    """Score the answers and send the grade to the platform."""
    launch: LTILaunch | None = getattr(request.state, "lti", None)
    if launch is None:
        return render("Quiz", NO_LAUNCH, 401)

    answers = await read_form(request)
    correct = sum(answers.get(q.name) == q.answer for q in QUESTIONS)
    result = f"{correct}/{SCORE_MAXIMUM}"

    try:
        await launch.ags.post_score(
            score_given=correct,
            score_maximum=SCORE_MAXIMUM,
            activity_progress="Completed",
            grading_progress="FullyGraded",
            comment=f"{result} answers correct",
        )
    except (ScoreError, ServiceError) as error:
        logger.warning("grade not recorded: %s", error)
        status, advice = explain(error)
        body = (
            f"<p>You scored {result}, but <strong>the grade was not "
            "recorded</strong>.</p>\n"
            f"<p><strong>What failed:</strong> {escape(str(error))}</p>\n"
            f"<p><strong>What to do:</strong> {escape(advice)}</p>"
        )
        return render("Grade not recorded", body, status)

    again = "/?" + urlencode({"lti_launch": launch.launch_id})
    body = (
        f"<p>You scored <strong>{result}</strong>. The grade has been sent to "
        f'your course.</p>\n<p><a href="{escape(again)}">Try again</a></p>'
    )
    return render("Quiz submitted", body)


def explain(error: ScoreError | ServiceError) -> tuple[int, str]:
    """The status and the advice for a grade the platform did not take."""
    if isinstance(error, ScopeNotGrantedError):
        return 403, (
            "The course has not allowed this tool to send grades. Ask the course "
            "administrator to enable grade passback (Assignment and Grade "
            "Services) for this tool."
        )
    if isinstance(error, TokenRequestError):
        return 502, (
            "The platform refused the tool's request for permission to send "
            "grades. The tool's registration on the platform probably does not "
            "match its configuration (client_id, key set URL or token audience); "
            "please tell the tool's administrator."
        )
    if isinstance(error, PlatformResponseError):
        return 502, (
            "The platform refused the grade. Submit again in a moment; if it "
            "keeps failing, tell your instructor."
        )
    if isinstance(error, ScoreError):
        return 422, "The tool built an invalid grade; tell the tool's administrator."

    return 502, (
        "The tool could not reach the course's grade service, or this link has "
        "no grade column. Submit again in a moment; if it keeps failing, tell "
        "your instructor."
    )


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded body as a dict; 400 when it cannot be read."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "the answers are larger than a quiz needs")
    try:
        pairs = parse_qsl(body.decode("utf-8"), max_num_fields=2 * len(QUESTIONS))
    except (UnicodeDecodeError, ValueError) as error:
        raise HTTPException(400, "unreadable form") from error

    return dict(pairs)


def create_app(
    config: ToolConfig | None = None, **middleware_kwargs: Any
) -> LTIMiddleware:
    """The quiz wrapped by the middleware.

    ``config`` defaults to the TOML file named by ``LTI_MIDDLEWARE_CONFIG``;
    ``middleware_kwargs`` go to :class:`LTIMiddleware` (``plugins``, ``http``).
    Installed plugins are loaded, so a ``[plugins.redis]`` table in the
    configuration is all it takes to run several workers on Redis.
    """
    middleware_kwargs.setdefault("load_entry_points", True)
    app = Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/submit", submit, methods=["POST"]),
        ]
    )

    return LTIMiddleware(app, config=config, **middleware_kwargs)

"""A three-question quiz graded back to the course: the model LTI tool.

The app is plain Starlette; :class:`~lti_middleware.LTIMiddleware` around it
answers the LTI routes and puts the launch on ``request.state.lti``. Learners
take the quiz and their grade goes to the course's gradebook; instructors see
the results and the course roster, and add the quiz to a course by deep
linking. Point it at any platform with a TOML file named by
``LTI_MIDDLEWARE_CONFIG``::

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
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from lti_middleware import (
    DeepLinking,
    DeepLinkingError,
    LineItemSpec,
    LTILaunch,
    LTIMiddleware,
    LTIResourceLink,
    Member,
    PlatformResponseError,
    Result,
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

#: What deep linking places in a course: the quiz, with its gradebook column.
QUIZ_TITLE = "The LTI quiz"
QUIZ_TEXT = f"{SCORE_MAXIMUM} questions on LTI 1.3, graded out of {SCORE_MAXIMUM}."
QUIZ_CUSTOM = {"quiz": "1"}
QUIZ_COLUMN = LineItemSpec(
    label="Quiz", score_maximum=SCORE_MAXIMUM, resource_id="quiz-1", tag="quiz"
)


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


def with_launch(path: str, launch: LTILaunch) -> str:
    """``path`` carrying the launch id, for links and form actions."""
    return path + "?" + urlencode({"lti_launch": launch.launch_id})


def describe(launch: LTILaunch) -> str:
    """Who launched, from which course and link, as escaped HTML."""
    user = launch.user.name or launch.user.id or "an anonymous user"
    course = "no course"
    if launch.context is not None:
        course = launch.context.title or launch.context.label or launch.context.id
    summary = f"<strong>{escape(user)}</strong> ({escape(role_of(launch))})"
    summary += f" in <em>{escape(course)}</em>"
    if launch.resource_link is not None:
        link = launch.resource_link.title or launch.resource_link.id
        summary += f", link <em>{escape(link)}</em>"
    # Custom parameters come from the course link, e.g. one placed by deep linking.
    custom = ", ".join(f"{k}={v}" for k, v in sorted(launch.custom.items()))
    if custom:
        summary += f". Custom parameters: <code>{escape(custom)}</code>"

    return f"<p>Launched by {summary}.</p>"


def quiz_form(launch: LTILaunch) -> str:
    """The questions as a form that posts to ``/submit`` with the launch id."""
    action = with_launch("/submit", launch)
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


def picker(launch: LTILaunch, deep_linking: DeepLinking) -> str:
    """What the instructor can add to the course: the quiz, with a button."""
    action = with_launch("/deep-link", launch)
    asked = deep_linking.settings.text or "Pick what to add to the course."

    return (
        f"<p>{escape(asked)}</p>\n"
        f'<form method="post" action="{escape(action)}">\n'
        f"<p><strong>{escape(QUIZ_TITLE)}</strong>: {escape(QUIZ_TEXT)}</p>\n"
        '<p><button type="submit">Add the quiz</button></p>\n</form>'
    )


async def results(launch: LTILaunch) -> str:
    """The results in this link's gradebook column, as escaped HTML."""
    if launch.ags.lineitem is None:
        return "<p>This link has no gradebook column.</p>"
    try:
        found = await launch.ags.get_results()
    except ScopeNotGrantedError:
        return "<p>The course does not let this tool read results.</p>"
    except ServiceError as error:
        logger.warning("results not read: %s", error)
        return f"<p>The results could not be read: {escape(str(error))}</p>"

    rows = "".join(
        f"<tr><td>{escape(r.user_id)}</td><td>{escape(score_of(r))}</td>"
        f"<td>{escape(r.comment or '')}</td></tr>\n"
        for r in found
    )
    return (
        "<h2>Results</h2>\n<table><tr><th>User id</th><th>Score</th>"
        f"<th>Comment</th></tr>\n{rows}</table>"
    )


def score_of(result: Result) -> str:
    """A result as ``score/maximum``; the spec's maximum is 1 when absent."""
    if result.result_score is None:
        return "no score"
    maximum = 1.0 if result.result_maximum is None else result.result_maximum
    return f"{result.result_score:g}/{maximum:g}"


async def home(request: Request) -> Response:
    """The landing page: the quiz, the picker for deep linking, or a pointer."""
    launch: LTILaunch | None = getattr(request.state, "lti", None)
    if launch is None:
        return render("Quiz", NO_LAUNCH)
    if launch.deep_linking is not None:
        return render(
            "Add content", describe(launch) + picker(launch, launch.deep_linking)
        )

    body = describe(launch)
    if launch.roles.is_instructor:
        roster = escape(with_launch("/roster", launch))
        body += (
            "<p><strong>You are an instructor:</strong> grades go to learners. "
            "You may still submit to try the quiz; the score is recorded under "
            "your own name.</p>\n"
            f'<p><a href="{roster}">Course roster</a></p>\n' + await results(launch)
        )

    return render("Quiz", body + quiz_form(launch))


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

    again = with_launch("/", launch)
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


async def deep_link(request: Request) -> Response:
    """Answer the course's deep-linking request: place the quiz, graded."""
    launch: LTILaunch | None = getattr(request.state, "lti", None)
    if launch is None or launch.deep_linking is None:
        body = "<p>Add the quiz from your course's <em>Add content</em> page.</p>"
        return render("Add content", body, 400)

    accepts_column = launch.deep_linking.settings.accept_lineitem is not False
    quiz = LTIResourceLink(
        # No url: the platform launches the tool's registered target link URI.
        title=QUIZ_TITLE,
        text=QUIZ_TEXT,
        custom=QUIZ_CUSTOM,
        line_item=QUIZ_COLUMN if accepts_column else None,
    )
    try:
        return await launch.deep_linking.respond([quiz], msg=f"{QUIZ_TITLE} added")
    except DeepLinkingError as error:
        body = f"<p>The course does not take the quiz: {escape(str(error))}</p>"
        return render("Quiz not added", body, 422)


async def roster(request: Request) -> HTMLResponse:
    """The course's members, for instructors (Names and Role Provisioning)."""
    launch: LTILaunch | None = getattr(request.state, "lti", None)
    if launch is None:
        return render("Course roster", NO_LAUNCH, 401)
    if not launch.roles.is_instructor:
        return render("Course roster", "<p>The roster is for instructors.</p>", 403)

    try:
        members = await launch.nrps.get_members()
    except ScopeNotGrantedError:
        body = (
            "<p>The course has not shared its roster with this tool. Ask the "
            "course administrator to enable Names and Role Provisioning Services "
            "for it.</p>"
        )
        return render("Course roster", body, 403)
    except ServiceError as error:
        logger.warning("roster not read: %s", error)
        body = (
            f"<p>The roster could not be read: {escape(str(error))}</p>\n"
            "<p>Try again in a moment; if it keeps failing, tell the tool's "
            "administrator.</p>"
        )
        return render("Course roster", body, 502)

    rows = "".join(member_row(member) for member in members)
    back = escape(with_launch("/", launch))
    body = (
        f"<p>{len(members)} members in the course.</p>\n<table><tr><th>Name</th>"
        f"<th>Email</th><th>Roles</th><th>Status</th></tr>\n{rows}</table>\n"
        f'<p><a href="{back}">Back to the quiz</a></p>'
    )
    return render("Course roster", body)


def member_row(member: Member) -> str:
    """One table row: name, email, short role names and status, escaped."""
    roles = ", ".join(role.rsplit("#", 1)[-1] for role in member.roles)
    cells = (member.name or member.user_id, member.email or "", roles, member.status)
    return "<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>\n"


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
            Route("/deep-link", deep_link, methods=["POST"]),
            Route("/roster", roster, methods=["GET"]),
        ]
    )

    return LTIMiddleware(app, config=config, **middleware_kwargs)

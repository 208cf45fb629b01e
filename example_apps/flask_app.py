"""The quiz as a Flask app: the launch on ``g.lti``, a graded submit.

The pages and the scoring come from :mod:`example_apps.quiz_app`; what this
file shows is the Flask side: :func:`~lti_middleware.flask.init_app` puts
the LTI middleware in front of the app, views read ``g.lti``, and the grade,
a coroutine, is sent from a sync view with
:func:`~lti_middleware.flask.run_sync`. Run it with any WSGI server::

    LTI_MIDDLEWARE_CONFIG=lti.toml flask --app "example_apps.flask_app:create_app()" run
"""

from __future__ import annotations

import logging
from html import escape
from typing import Any

from flask import Flask, Response, g, request
from starlette.responses import HTMLResponse

from example_apps.quiz_app import (
    MAX_FORM_BYTES,
    NO_LAUNCH,
    QUESTIONS,
    SCORE_MAXIMUM,
    describe,
    explain,
    quiz_form,
    render,
    with_launch,
)
from lti_middleware import LTILaunch, ScoreError, ServiceError, ToolConfig
from lti_middleware.flask import init_app, run_sync

logger = logging.getLogger(__name__)


def page(title: str, body: str, status: int = 200) -> Response:
    """The quiz's page for ``body`` (escaped HTML), as a Flask response."""
    rendered: HTMLResponse = render(title, body, status)
    headers = {
        key: value
        for key, value in rendered.headers.items()
        if key.lower() not in ("content-length", "content-type")
    }
    return Response(
        bytes(rendered.body), rendered.status_code, headers, mimetype="text/html"
    )


def home() -> Response:
    """The quiz for a launch; a pointer to the course without one."""
    launch: LTILaunch | None = g.lti
    if launch is None:
        return page("Quiz", NO_LAUNCH)

    return page("Quiz", describe(launch) + quiz_form(launch))


def submit() -> Response:
    """Score the answers and send the grade to the platform."""
    launch: LTILaunch | None = g.lti
    if launch is None:
        return page("Quiz", NO_LAUNCH, 401)

    correct = sum(request.form.get(q.name) == q.answer for q in QUESTIONS)
    result = f"{correct}/{SCORE_MAXIMUM}"
    try:
        run_sync(
            launch.ags.post_score(
                score_given=correct,
                score_maximum=SCORE_MAXIMUM,
                comment=f"{result} answers correct",
            )
        )
    except (ScoreError, ServiceError) as error:
        logger.warning("grade not recorded: %s", error)
        status, advice = explain(error)
        body = (
            f"<p>You scored {result}, but <strong>the grade was not "
            f"recorded</strong>: {escape(advice)}</p>"
        )
        return page("Grade not recorded", body, status)

    again = escape(with_launch("/", launch))
    body = (
        f"<p>You scored <strong>{result}</strong>. The grade has been sent to "
        f'your course.</p>\n<p><a href="{again}">Try again</a></p>'
    )
    return page("Quiz submitted", body)


def create_app(config: ToolConfig | None = None, **middleware_kwargs: Any) -> Flask:
    """The Flask quiz with the LTI middleware in front of it.

    ``config`` defaults to the TOML file named by ``LTI_MIDDLEWARE_CONFIG``;
    ``middleware_kwargs`` go to :class:`~lti_middleware.wsgi.LTIWSGIMiddleware`;
    installed plugins are loaded unless ``load_entry_points=False``. The
    middleware is at ``app.extensions["lti_middleware"]``.
    """
    middleware_kwargs.setdefault("load_entry_points", True)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_FORM_BYTES
    app.add_url_rule("/", view_func=home, methods=["GET"])
    app.add_url_rule("/submit", view_func=submit, methods=["POST"])
    init_app(app, config=config, **middleware_kwargs)

    return app

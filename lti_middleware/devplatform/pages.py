"""HTML pages of the development platform.

Every value that reaches a page goes through :func:`html.escape`, attributes
included: user names, comments and tool-sent text are untrusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape
from urllib.parse import urlencode

from .settings import PlatformSettings
from .state import PlatformState

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:60em}"
    "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:.3em .6em}"
)


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n<h1>{escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def render_home(settings: PlatformSettings) -> str:
    """The user list, with a launch link per user and resource link."""
    sections = []
    for link in settings.resource_links:
        items = []
        for user in settings.users:
            query = urlencode({"user_id": user.id, "resource_link_id": link.id})
            href = f"{settings.launch_url}?{query}"
            label = f"Launch as {user.name} ({user.role_names})"
            items.append(f'<li><a href="{escape(href)}">{escape(label)}</a></li>')
        sections.append(
            f"<h2>{escape(link.title)}</h2>\n<ul>\n" + "\n".join(items) + "\n</ul>"
        )

    intro = (
        f"<p>Course {escape(settings.context_title)} "
        f"({escape(settings.context_label)}); tool client_id "
        f"<code>{escape(settings.client_id)}</code>.</p>"
    )
    gradebook = f'<p><a href="{escape(settings.gradebook_url)}">Gradebook</a></p>'

    return _page(settings.platform_name, intro + "\n".join(sections) + gradebook)


def render_gradebook(settings: PlatformSettings, state: PlatformState) -> str:
    """Each line item with every user's latest score."""
    header = (
        "<tr><th>User</th><th>Score</th><th>Comment</th><th>Activity</th>"
        "<th>Grading</th><th>Timestamp</th></tr>"
    )
    tables = []
    for link in settings.resource_links:
        rows = []
        for user in settings.users:
            score = state.scores.get((link.line_item_id, user.id))
            if score is None:
                cells: Iterable[str] = (user.name, "", "", "", "", "")
            else:
                cells = (
                    user.name,
                    _fraction(score.score_given, score.score_maximum),
                    score.comment or "",
                    score.activity_progress,
                    score.grading_progress,
                    score.timestamp,
                )
            rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells))
        title = f"{link.line_item_label} (max {link.score_maximum:g})"
        tables.append(
            f"<h2>{escape(title)}</h2>\n<table>{header}\n"
            + "\n".join(f"{row}</tr>" for row in rows)
            + "</table>"
        )
    home = f'<p><a href="{escape(settings.home_url)}">Home</a></p>'

    return _page("Gradebook", "\n".join(tables) + home)


def _fraction(given: float | None, maximum: float | None) -> str:
    if given is None:
        return ""
    if maximum is None:
        return f"{given:g}"
    return f"{given:g} / {maximum:g}"


def render_form_post(action: str, fields: Mapping[str, str], *, title: str) -> str:
    """A page whose form POSTs ``fields`` to ``action`` as soon as it loads.

    A ``<noscript>`` button lets a browser without scripts send it by hand.
    """
    inputs = "\n".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in fields.items()
    )
    body = (
        f'<form id="post" method="post" action="{escape(action)}">\n{inputs}\n'
        '<noscript><button type="submit">Continue</button></noscript>\n</form>\n'
        '<script>document.getElementById("post").submit();</script>'
    )

    return _page(title, body)


def render_error(title: str, message: str) -> str:
    """A plain error page, for errors that cannot go back to the tool."""
    return _page(title, f"<p>{escape(message)}</p>")

"""HTML pages of the development platform.

Every value that reaches a page goes through :func:`html.escape`, attributes
included: user names, comments and tool-sent text are untrusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from urllib.parse import urlencode

from .ags import line_items
from .settings import DEEP_LINKING_LINK_ID, INSTRUCTOR, DevUser, PlatformSettings
from .state import LineItemRecord, PlacedContent, PlatformState

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


def render_home(
    settings: PlatformSettings, content: Sequence[PlacedContent] = ()
) -> str:
    """The user list, with a launch link per user and resource link.

    After them: the deep-linking link for each instructor and the ``content``
    tools placed by deep linking.
    """
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
    gradebook += f'<p><a href="{escape(settings.roster_url)}">Roster</a></p>'

    sections.append(_deep_linking_section(settings, content))

    return _page(settings.platform_name, intro + "\n".join(sections) + gradebook)


def _deep_linking_section(
    settings: PlatformSettings, content: Sequence[PlacedContent]
) -> str:
    items = []
    for user in settings.users:
        if INSTRUCTOR not in user.roles:
            continue
        target = {"user_id": user.id, "resource_link_id": DEEP_LINKING_LINK_ID}
        href = f"{settings.launch_url}?{urlencode(target)}"
        label = f"Add content (deep linking) as {user.name}"
        items.append(f'<li><a href="{escape(href)}">{escape(label)}</a></li>')
    for placed in content:
        # Tool-sent HTML is shown as text, never rendered: it is untrusted.
        shown = placed.url if placed.html is None else placed.html
        items.append(
            f"<li>{escape(placed.type)}: {escape(placed.title)} "
            f"<code>{escape(shown or '')}</code></li>"
        )

    return "<h2>Course content</h2>\n<ul>\n" + "\n".join(items) + "\n</ul>"


def render_deep_linking_result(
    settings: PlatformSettings,
    placed: Sequence[str],
    *,
    msg: str | None,
    errormsg: str | None,
) -> str:
    """What a deep-linking response placed, with the tool's messages."""
    lines = [f"<li>{escape(title)}</li>" for title in placed]
    body = f"<p>{len(placed)} item(s) placed in the course.</p>"
    if lines:
        body += "\n<ul>\n" + "\n".join(lines) + "\n</ul>"
    if msg:
        body += f'\n<p class="msg">The tool says: {escape(msg)}</p>'
    if errormsg:
        body += f'\n<p class="errormsg">The tool reports: {escape(errormsg)}</p>'
    body += f'\n<p><a href="{escape(settings.home_url)}">Home</a></p>'

    return _page("Deep linking", body)


def render_gradebook(settings: PlatformSettings, state: PlatformState) -> str:
    """Each line item with every user's latest score."""
    header = (
        "<tr><th>User</th><th>Score</th><th>Comment</th><th>Activity</th>"
        "<th>Grading</th><th>Timestamp</th></tr>"
    )
    tables = []
    for item in line_items(settings, state).values():
        rows = []
        for user in settings.users:
            score = state.scores.get((item.id, user.id))
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
        title = f"{item.label} (max {item.score_maximum:g})"
        tables.append(
            f"<h2>{escape(title)}</h2>\n{_line_item_details(item)}<table>{header}\n"
            + "\n".join(f"{row}</tr>" for row in rows)
            + "</table>"
        )
    home = f'<p><a href="{escape(settings.home_url)}">Home</a></p>'

    return _page("Gradebook", "\n".join(tables) + home)


def render_roster(
    settings: PlatformSettings,
    members: Iterable[tuple[DevUser, str]],
    statuses: Iterable[str],
) -> str:
    """Each user with roles and membership status, and a form to change it."""
    choices = tuple(statuses)
    header = (
        "<tr><th>User</th><th>Email</th><th>Roles</th><th>Status</th>"
        "<th>Change</th></tr>"
    )
    rows = []
    for user, status in members:
        options = "".join(
            f'<option value="{escape(choice)}"'
            f"{' selected' if choice == status else ''}>{escape(choice)}</option>"
            for choice in choices
        )
        form = (
            f'<form method="post" action="{escape(settings.roster_url)}">'
            f'<input type="hidden" name="user_id" value="{escape(user.id)}">'
            f'<select name="status">{options}</select> '
            '<button type="submit">Save</button></form>'
        )
        cells = (user.name, user.email, user.role_names, status)
        cells_html = "".join(f"<td>{escape(c)}</td>" for c in cells)
        rows.append(f"<tr>{cells_html}<td>{form}</td></tr>")
    intro = (
        "<p>Tools read this roster from "
        f"<code>{escape(settings.context_memberships_url)}</code> (Names and Role "
        "Provisioning Services). Deleted members are left out of it and appear "
        "only in differences.</p>"
    )
    home = f'<p><a href="{escape(settings.home_url)}">Home</a></p>'

    return _page(
        "Roster", intro + f"<table>{header}\n" + "\n".join(rows) + "</table>" + home
    )


def _line_item_details(item: LineItemRecord) -> str:
    details = [
        f"{label} {value}"
        for label, value in (
            ("resource link", item.resource_link_id),
            ("resource id", item.resource_id),
            ("tag", item.tag),
        )
        if value is not None
    ]
    if item.created_by_tool:
        details.append("created by the tool")

    return f"<p>{escape(' · '.join(details))}</p>" if details else ""


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

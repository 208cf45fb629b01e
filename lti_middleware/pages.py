"""Pages the middleware serves: refusals (escaped HTML or JSON), form posts."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from html import escape

from starlette.responses import HTMLResponse, JSONResponse, Response

from .exceptions import LaunchError

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>LTI launch refused</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;
padding:0 1rem;color:#222}}code{{background:#f3f3f3;padding:0 .25rem}}
.detail{{color:#555}}</style></head>
<body><h1>The launch could not be completed</h1>
<p>{summary}</p>
<p><strong>What to do:</strong> {hint}</p>
<p class="detail">Reason code <code>{reason}</code>: {detail}</p>
</body></html>
"""

_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def wants_json(accept: str) -> bool:
    """True when the client prefers JSON over HTML."""
    accept = accept.lower()
    return "application/json" in accept and "text/html" not in accept


def error_body(error: LaunchError) -> dict[str, object]:
    """The JSON form of a refusal."""
    return {
        "error": error.reason,
        "status": error.status,
        "summary": error.summary,
        "detail": error.detail,
        "hint": error.hint,
    }


def render_error(error: LaunchError, accept: str) -> Response:
    """The default page for a refusal; every value is HTML-escaped."""
    if wants_json(accept):
        return JSONResponse(error_body(error), error.status, headers=_HEADERS)

    page = _PAGE.format(
        summary=escape(error.summary),
        hint=escape(error.hint),
        reason=escape(error.reason),
        detail=escape(error.detail),
    )
    return HTMLResponse(page, error.status, headers=_HEADERS)


_AUTO_POST_SCRIPT = 'document.getElementById("lti-post").submit();'
_AUTO_POST = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><form id="lti-post" method="post" action="{action}">
{fields}
<noscript><p>{title}</p><button type="submit">Continue</button></noscript>
</form>
<script>{script}</script>
</body></html>
"""


def render_auto_post(
    action: str, fields: Mapping[str, str], *, title: str
) -> tuple[str, str]:
    """A page whose form POSTs ``fields`` to ``action`` as it loads.

    Returns the page and the CSP source of its one script (``sha256-...``).
    Every value is HTML-escaped, so the action keeps its query string intact.
    """
    inputs = "\n".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in fields.items()
    )
    page = _AUTO_POST.format(
        title=escape(title),
        action=escape(action),
        fields=inputs,
        script=_AUTO_POST_SCRIPT,
    )
    digest = hashlib.sha256(_AUTO_POST_SCRIPT.encode("utf-8")).digest()
    return page, "sha256-" + base64.b64encode(digest).decode("ascii")

"""The course page and its platform storage, for cookieless launches.

LTI Client Side postMessages and Platform Storage drafts, platform side. The
course page embeds the tool in an iframe that launches are targeted into, and
its script answers ``lti.capabilities``, ``lti.put_data`` and ``lti.get_data``
from that frame. It answers only messages whose ``event.origin`` is the
tool's origin, and keeps values per sending origin, in the page's memory.
With ``platform_storage`` set, logins and launches carry
``lti_storage_target=_parent``: the course page is the storage frame.
"""

from __future__ import annotations

import json
import secrets
from html import escape
from urllib.parse import urlencode

from ..config import origin_of
from .settings import PlatformSettings

COURSE_PATH = "/course"
TOOL_FRAME = "tool-frame"
STORAGE_TARGET = "_parent"


def storage_params(settings: PlatformSettings) -> dict[str, str]:
    """The ``lti_storage_target`` parameter, when the platform offers storage."""
    if not settings.platform_storage:
        return {}

    return {"lti_storage_target": STORAGE_TARGET}


_RESPONDER = """var d=JSON.parse(document.getElementById("storage-data").textContent);
var stores={};
window.addEventListener("message",function(e){var m=e.data;
if(!m||typeof m!=="object"||typeof m.subject!=="string"){return;}
if(e.origin!==d.tool_origin||!e.source){return;}
var reply={subject:m.subject+".response",message_id:m.message_id};
var store=stores[e.origin]||(stores[e.origin]={});
if(m.subject==="lti.capabilities"){reply.supported_messages=[
{subject:"lti.capabilities"},{subject:"lti.put_data"},{subject:"lti.get_data"}];}
else if(m.subject==="lti.put_data"&&typeof m.key==="string"){
store[m.key]=m.value;reply.key=m.key;reply.value=m.value;}
else if(m.subject==="lti.get_data"&&typeof m.key==="string"){reply.key=m.key;
if(Object.prototype.hasOwnProperty.call(store,m.key)){reply.value=store[m.key];}
else{reply.error={code:"not_found",message:"no value for this key"};}}
else{reply.error={code:"unsupported_subject",message:"not supported"};}
document.getElementById("storage-log").textContent+=m.subject+"\\n";
e.source.postMessage(reply,e.origin);});
"""


def render_course(settings: PlatformSettings) -> tuple[str, dict[str, str]]:
    """The course page (tool iframe, launch links) and its response headers."""
    links = []
    for link in settings.resource_links:
        for user in settings.users:
            query = urlencode({"user_id": user.id, "resource_link_id": link.id})
            label = f"{link.title}: launch as {user.name} ({user.role_names})"
            links.append(
                f'<li><a href="{escape(settings.launch_url + "?" + query)}" '
                f'target="{TOOL_FRAME}">{escape(label)}</a></li>'
            )
    data = json.dumps({"tool_origin": origin_of(settings.tool_login_url)})
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    nonce = secrets.token_urlsafe(18)
    storage = "on" if settings.platform_storage else "off"
    items = "\n".join(links)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(settings.context_title)}</title></head>\n<body>\n"
        f"<h1>{escape(settings.context_title)}</h1>\n"
        f"<p>Platform storage is {storage}.</p>\n<ul>\n{items}\n</ul>\n"
        f'<iframe name="{TOOL_FRAME}" title="Tool" width="900" height="500"></iframe>\n'
        '<pre id="storage-log"></pre>\n'
        f'<script type="application/json" id="storage-data">{data}</script>\n'
        f'<script nonce="{nonce}">{_RESPONDER}</script>\n</body></html>\n'
    )
    headers = {
        "Content-Security-Policy": (
            f"default-src 'none'; script-src 'nonce-{nonce}'; "
            f"frame-src {origin_of(settings.tool_login_url)} 'self'; base-uri 'none'"
        ),
        "Cache-Control": "no-store",
    }

    return page, headers

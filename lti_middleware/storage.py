"""Cookieless launches through the platform's storage (postMessage).

LTI Client Side postMessages and Platform Storage drafts. When the login
carries ``lti_storage_target``, the login answers with a page that stores the
state's browser binding in the platform's window (``lti.put_data``) before it
goes on to the auth endpoint; the state cookie is still set, in case the
browser keeps it. A launch that arrives without that cookie is answered, state
unconsumed, with a page that reads the binding back (``lti.get_data``) and
posts it again as the ``lti_storage_binding`` field. The validator then checks
that field exactly as it checks the cookie: the state check is never skipped.

Pure protocol and page text: no ASGI. Pages carry their one script under a
CSP nonce; every embedded value is JSON inside an inert ``application/json``
block, with ``<``, ``>`` and ``&`` escaped, or HTML-escaped in attributes.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

import jwt

from .config import ToolConfig, find_registrations, origin_of
from .login import BINDING_FIELD, state_cookie_name

STORAGE_TARGET_PARAMETER = "lti_storage_target"
PARENT_TARGET = "_parent"
#: How long a page waits for the platform's answers, in milliseconds.
DEFAULT_TIMEOUT_MS = 3000

# A frame name is used as a property of window.parent.frames; keep it plain.
_FRAME_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


@dataclass(frozen=True)
class StoragePage:
    """A page to answer with: its HTML and the headers it needs."""

    html: str
    headers: dict[str, str]


def storage_target(params: Mapping[str, str]) -> str | None:
    """The ``lti_storage_target`` frame name, or None when absent or unusable."""
    target = params.get(STORAGE_TARGET_PARAMETER) or ""
    if _FRAME_NAME.fullmatch(target) is None:
        return None

    return target


def storage_key(state: str) -> str:
    """The platform storage key for ``state``: the state cookie's name."""
    return state_cookie_name(state)


def platform_origin(id_token: str, config: ToolConfig) -> str | None:
    """The OIDC auth origin of the platform that issued ``id_token``, or None.

    Read from the unverified ``iss`` and ``aud`` only to address the storage
    frame; the token is verified in full when the page posts it back, and the
    binding must still match the state's login record.
    """
    try:
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except (jwt.PyJWTError, RecursionError, ValueError):
        return None
    issuer, aud = claims.get("iss"), claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(issuer, str) or not isinstance(audiences, list):
        return None

    origins = {
        origin_of(r.auth_login_url)
        for r in find_registrations(config.registrations, issuer)
        if r.client_id in audiences
    }
    return origins.pop() if len(origins) == 1 else None


def _json_block(data: Mapping[str, Any]) -> str:
    text = json.dumps(data, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _headers(nonce: str, form_action: str) -> dict[str, str]:
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; "
        f"style-src 'nonce-{nonce}'; base-uri 'none'; form-action {form_action}"
    )
    return {
        "Content-Security-Policy": csp,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style nonce="{nonce}">body{{font:16px/1.5 system-ui,sans-serif;margin:2rem}}</style>
</head><body><p>{title}</p>{body}
<script type="application/json" id="lti-storage-data">{data}</script>
<script nonce="{nonce}">{script}</script>
</body></html>
"""

# Shared by both pages: ask the parent for capabilities, then talk to the
# storage frame with the platform's auth origin as target and sender.
_COMMON = """var d=JSON.parse(document.getElementById("lti-storage-data").textContent);
var done=false;
function frame(){if(d.target==="_parent"){return window.parent;}
try{return window.parent.frames[d.target]||null;}catch(e){return null;}}
function ask(subject,extra){var f=frame();if(!f){finish(null);return;}
var m={subject:subject,message_id:d.message_id+"-"+subject};
for(var k in extra){m[k]=extra[k];}f.postMessage(m,d.origin);}
window.addEventListener("message",function(e){var m=e.data;
if(!m||typeof m!=="object"){return;}
if(m.subject==="lti.capabilities.response"&&e.source===window.parent&&
m.message_id===d.message_id+"-lti.capabilities"){
var list=Array.isArray(m.supported_messages)?m.supported_messages:[];
var ok=list.some(function(s){return s&&s.subject===d.needs;});
if(ok){start();}else{finish(null);}return;}
if(e.origin!==d.origin||m.message_id!==d.message_id+"-"+d.needs){return;}
if(m.subject===d.needs+".response"){answer(m);}});
if(window.parent===window){finish(null);}else{
window.parent.postMessage({subject:"lti.capabilities",
message_id:d.message_id+"-lti.capabilities"},"*");
setTimeout(function(){finish(null);},d.timeout_ms);}
"""

_LOGIN_SCRIPT = (
    """function finish(){if(done){return;}done=true;window.location.replace(d.next);}
function start(){ask("lti.put_data",{key:d.key,value:d.value});}
function answer(m){finish();}
"""
    + _COMMON
)

_LAUNCH_SCRIPT = (
    """function finish(value){if(done){return;}done=true;
var form=document.getElementById("lti-storage-post");
if(typeof value==="string"&&value){var i=document.createElement("input");
i.type="hidden";i.name=d.field;i.value=value;form.appendChild(i);}
form.submit();}
function start(){ask("lti.get_data",{key:d.key});}
function answer(m){finish(m.key===d.key&&!m.error?m.value:null);}
"""
    + _COMMON
)


def login_page(
    *,
    auth_url: str,
    target: str,
    auth_origin: str,
    state: str,
    binding: str,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> StoragePage:
    """The login answer that stores ``binding`` in the platform, then redirects.

    Without an answer within ``timeout_ms`` it goes to ``auth_url`` anyway:
    the state cookie may still reach the launch.
    """
    nonce = secrets.token_urlsafe(18)
    data = {
        "next": auth_url,
        "target": target,
        "origin": auth_origin,
        "key": storage_key(state),
        "value": binding,
        "message_id": secrets.token_urlsafe(16),
        "needs": "lti.put_data",
        "timeout_ms": timeout_ms,
    }
    link = f'<noscript><a href="{escape(auth_url)}">Continue</a></noscript>'
    html = _PAGE.format(
        title="Starting the launch",
        nonce=nonce,
        body=link,
        data=_json_block(data),
        script=_LOGIN_SCRIPT,
    )
    return StoragePage(html, _headers(nonce, "'none'"))


def launch_page(
    *,
    launch_url: str,
    form: Mapping[str, str],
    target: str,
    auth_origin: str,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
) -> StoragePage:
    """The launch answer that reads the binding back and posts the launch again.

    The page re-posts ``id_token`` and ``state`` with the binding in
    :data:`BINDING_FIELD`; without an answer it re-posts them without it,
    so the launch is refused with ``state_cookie_missing`` and its page.
    """
    nonce = secrets.token_urlsafe(18)
    data = {
        "target": target,
        "origin": auth_origin,
        "key": storage_key(form["state"]),
        "field": BINDING_FIELD,
        "message_id": secrets.token_urlsafe(16),
        "needs": "lti.get_data",
        "timeout_ms": timeout_ms,
    }
    inputs = "".join(
        f'<input type="hidden" name="{name}" value="{escape(form[name])}">'
        for name in ("id_token", "state")
    )
    body = (
        f'<form id="lti-storage-post" method="post" action="{escape(launch_url)}">'
        f'{inputs}<noscript><button type="submit">Continue</button></noscript></form>'
    )
    html = _PAGE.format(
        title="Checking the launch",
        nonce=nonce,
        body=body,
        data=_json_block(data),
        script=_LAUNCH_SCRIPT,
    )
    return StoragePage(html, _headers(nonce, origin_of(launch_url)))


def launch_needs_page(
    form: Mapping[str, str], cookies: Mapping[str, str], config: ToolConfig
) -> StoragePage | None:
    """The platform-storage page for a launch without its cookie, or None.

    None (validate as usual) when the state cookie is there, the binding was
    already posted, the form lacks what the page needs, or the platform
    cannot be told from the id_token.
    """
    state, id_token = form.get("state"), form.get("id_token")
    target = storage_target(form)
    if not state or not id_token or target is None or form.get("error"):
        return None
    if state_cookie_name(state) in cookies or BINDING_FIELD in form:
        return None
    origin = platform_origin(id_token, config)
    if origin is None:
        return None

    return launch_page(
        launch_url=config.launch_url, form=form, target=target, auth_origin=origin
    )

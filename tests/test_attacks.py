"""Attack matrix (issue 6, points 1 and 4).

Each attack is refused with its exact reason code, and the wrapped app never
runs for it. A last test replays the whole matrix with every log record of the
``lti_middleware`` logger captured, and searches the logs and every response
for the tokens, keys, cookies and personal claims the attacks used.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from lti_middleware import ServiceError
from lti_middleware import claims as c
from lti_middleware.exceptions import REASONS
from lti_middleware.keys import ToolKey
from lti_middleware.login import BINDING_FIELD
from lti_middleware.storage import STORAGE_TARGET_PARAMETER

from .conftest import (
    CLIENT_ID,
    ISS,
    JWKS_URL,
    TOKEN_URL,
    TOOL_APP,
    Clock,
    FakePlatform,
    Login,
    ToolClient,
    cached_key,
    make_tool,
    registration,
    tool_config,
)

TENANT_B = "https://tenant-b.example.edu"
TENANT_B_JWKS = TENANT_B + "/jwks"
ACCESS_TOKEN = "at-5ecret-Zq81vW0pLm3nX"
SCRIPT = "<script>alert(1)</script>"
PERSONAL = ("Ada Learner", "ada@example.edu")
TARGET = c.TARGET_LINK_URI
ROLES = c.ROLES


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: object) -> str:
    return b64(json.dumps(value).encode())


class RecordingApp:
    """The wrapped app: records every request that reaches it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.launches: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.calls.append(scope["path"])
        launch = scope.get("state", {}).get("lti")
        if launch is not None:
            self.launches.append(launch)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"handler ran"})


class Lab:
    """Builds tools for attacks; keeps every secret used and every answer."""

    def __init__(self) -> None:
        self.clock = Clock(1_700_000_000.0)
        self.platform = FakePlatform(self.clock)
        self.app = RecordingApp()
        self.requests: list[httpx.Request] = []
        self.answers: list[str] = []
        self.secrets: set[str] = set(PERSONAL)
        self.tools: list[ToolClient] = []
        self.attacker = cached_key("attacker")
        self.tenant_b = cached_key("tenant-b")
        for key in (self.platform.key, self.attacker, self.tenant_b):
            self.add_key(key)
        self.platform.extra[TENANT_B_JWKS] = httpx.Response(
            200, json={"keys": [self.tenant_b.public_jwk()]}
        )
        serve = self.platform.handle

        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return serve(request)

        self.handle = handle

    def add_key(self, key: ToolKey) -> None:
        pem = key.private_pem().decode()
        self.secrets.update(line for line in pem.splitlines() if "-----" not in line)
        numbers = key.private_key.private_numbers()
        for number in (numbers.d, numbers.p, numbers.q):
            raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
            self.secrets.add(b64(raw))
            self.secrets.add(str(number))

    def add_token(self, token: str) -> str:
        self.secrets.add(token)
        for part in token.split(".")[1:]:
            if len(part) >= 16:
                self.secrets.add(part)
        return token

    def tool(self, **config: Any) -> ToolClient:
        http_platform = FakePlatform(self.clock, key=self.platform.key)
        http_platform.handle = self.handle  # type: ignore[method-assign]
        tool = make_tool(
            http_platform,
            config=tool_config(**config) if config else None,
            app=self.app,
        )
        tool.platform = self.platform
        self.tools.append(tool)
        return tool

    async def login(self, tool: ToolClient, **params: str) -> Login:
        login = await tool.login(**params)
        self.secrets.add(login.cookie_value)
        return login

    def sign(self, claims: dict[str, Any], **kw: Any) -> str:
        return self.add_token(self.platform.sign(claims, **kw))

    def answer(self, response: httpx.Response) -> httpx.Response:
        self.answers.append(str(response.headers) + "\n" + response.text)
        return response

    async def post(
        self, tool: ToolClient, form: dict[str, str], cookies: dict[str, str] | None
    ) -> httpx.Response:
        return self.answer(await tool.post_launch(form, cookies))

    async def launch_token(
        self, tool: ToolClient, token: str, login: Login
    ) -> httpx.Response:
        return self.answer(await tool.launch_token(token, login))

    def refused(self, response: httpx.Response, reason: str) -> None:
        assert response.status_code == REASONS[reason].status, response.text
        assert response.json()["error"] == reason, response.text
        assert "location" not in response.headers
        assert self.app.calls == []

    async def close(self) -> None:
        for tool in self.tools:
            await tool.http.aclose()
            await tool.middleware.aclose()


Attack = Callable[[Lab], Awaitable[None]]
ATTACKS: dict[str, Attack] = {}


def attack(function: Attack) -> Attack:
    ATTACKS[function.__name__] = function
    return function


async def signed_launch(lab: Lab, reason: str, **claims: Any) -> None:
    """Log in, sign the platform's claims with ``claims`` changed; refused."""
    tool = lab.tool()
    login = await lab.login(tool)
    token = lab.sign(lab.platform.claims(login.nonce, **claims))
    lab.refused(await lab.launch_token(tool, token, login), reason)


def platform_claims(lab: Lab, login: Login, **claims: Any) -> dict[str, Any]:
    return lab.platform.claims(login.nonce, **claims)


@attack
async def alg_none(lab: Lab) -> None:
    tool = lab.tool()
    login = await lab.login(tool)
    header = {"alg": "none", "typ": "JWT", "kid": lab.platform.key.kid}
    token = lab.add_token(f"{b64json(header)}.{b64json(platform_claims(lab, login))}.")
    lab.refused(await lab.launch_token(tool, token, login), "alg_not_allowed")


@attack
async def hs256_with_platform_public_key(lab: Lab) -> None:
    tool = lab.tool()
    login = await lab.login(tool)
    public_pem = lab.platform.key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": lab.platform.key.kid}
    signing_input = f"{b64json(header)}.{b64json(platform_claims(lab, login))}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = lab.add_token(f"{signing_input}.{b64(mac)}")
    lab.refused(await lab.launch_token(tool, token, login), "alg_not_allowed")


@attack
async def unknown_kid(lab: Lab) -> None:
    tool = lab.tool()
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login), headers={"kid": "no-such-kid"})
    lab.refused(await lab.launch_token(tool, token, login), "unknown_kid")


@attack
async def kid_injecting_a_path_or_sql(lab: Lab) -> None:
    tool = lab.tool()
    for kid in ("../../../../etc/passwd", "x' OR '1'='1' --", "a/../../jwks?x=1"):
        login = await lab.login(tool)
        token = lab.sign(platform_claims(lab, login), headers={"kid": kid})
        lab.refused(await lab.launch_token(tool, token, login), "unknown_kid")
    # The kid never shapes a URL: only the registered key set was asked for.
    assert {str(r.url) for r in lab.requests} == {JWKS_URL}


@attack
async def key_location_headers_ignored(lab: Lab) -> None:
    tool = lab.tool()
    evil = "https://evil.example/jwks"
    headers = {
        "kid": lab.attacker.kid,
        "jwk": lab.attacker.public_jwk(),
        "jku": evil,
        "x5u": evil + ".pem",
        "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
    }
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login), key=lab.attacker, headers=headers)
    lab.refused(await lab.launch_token(tool, token, login), "unknown_kid")
    # Same headers, but under the platform's kid: the signature does not verify.
    login = await lab.login(tool)
    headers["kid"] = lab.platform.key.kid
    token = lab.sign(platform_claims(lab, login), key=lab.attacker, headers=headers)
    lab.refused(await lab.launch_token(tool, token, login), "signature_invalid")
    assert {str(r.url) for r in lab.requests} == {JWKS_URL}


def two_registrations(lab: Lab) -> ToolClient:
    other = registration(
        issuer=TENANT_B, client_id="tenant-b-client", key_set_url=TENANT_B_JWKS
    )
    return lab.tool(registrations=(registration(), other))


@attack
async def valid_token_from_another_registrations_key(lab: Lab) -> None:
    tool = two_registrations(lab)
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login), key=lab.tenant_b)
    lab.refused(await lab.launch_token(tool, token, login), "unknown_kid")
    login = await lab.login(tool)
    token = lab.sign(
        platform_claims(lab, login),
        key=lab.tenant_b,
        headers={"kid": lab.platform.key.kid},
    )
    lab.refused(await lab.launch_token(tool, token, login), "signature_invalid")


@attack
async def signature_stripped(lab: Lab) -> None:
    tool = lab.tool()
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login))
    stripped = token.rsplit(".", 1)[0] + "."
    lab.refused(await lab.launch_token(tool, stripped, login), "signature_invalid")


@attack
async def signature_altered(lab: Lab) -> None:
    tool = lab.tool()
    login = await lab.login(tool)
    head, payload, signature = lab.sign(platform_claims(lab, login)).split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    altered = f"{head}.{payload}.{signature[:middle]}{flipped}{signature[middle + 1 :]}"
    lab.refused(await lab.launch_token(tool, altered, login), "signature_invalid")
    # A payload swapped under a valid signature fails the same way.
    login = await lab.login(tool)
    swapped = b64json(platform_claims(lab, login, sub="admin"))
    lab.refused(
        await lab.launch_token(tool, f"{head}.{swapped}.{signature}", login),
        "signature_invalid",
    )


@attack
async def token_for_another_client_id(lab: Lab) -> None:
    other = registration(client_id="another-client")
    tool = lab.tool(registrations=(registration(), other))
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login, aud="another-client"))
    lab.refused(await lab.launch_token(tool, token, login), "aud_mismatch")


@attack
async def expired(lab: Lab) -> None:
    now = int(lab.clock())
    await signed_launch(lab, "token_expired", iat=now - 1000, exp=now - 700)


@attack
async def not_yet_valid(lab: Lab) -> None:
    await signed_launch(lab, "token_not_yet_valid", nbf=int(lab.clock()) + 3600)


@attack
async def absurd_lifetime(lab: Lab) -> None:
    exp = int(lab.clock()) + 10 * 365 * 24 * 3600
    await signed_launch(lab, "token_lifetime_too_long", exp=exp)


@attack
async def nonce_replay_sequential(lab: Lab) -> None:
    tool = lab.tool()
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login))
    accepted = await lab.launch_token(tool, token, login)
    assert accepted.status_code == 303
    # The same POST again (a refresh, or a captured request).
    lab.refused(await lab.launch_token(tool, token, login), "state_already_used")
    # The same id_token under a fresh login of the attacker's own.
    fresh = await lab.login(tool)
    form = {"id_token": token, "state": fresh.state}
    lab.refused(await lab.post(tool, form, fresh.cookies), "nonce_replayed")
    page = await tool.follow(accepted)
    assert page.text == "handler ran"
    assert lab.app.calls == ["/app"]


@attack
async def nonce_replay_concurrent(lab: Lab) -> None:
    tool = lab.tool()
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login))
    answers = await asyncio.gather(
        *(lab.launch_token(tool, token, login) for _ in range(30))
    )
    accepted = [a for a in answers if a.status_code == 303]
    assert len(accepted) == 1
    for answer in answers:
        if answer is not accepted[0]:
            lab.refused(answer, "state_already_used")
    await tool.follow(accepted[0])
    assert lab.app.calls == ["/app"]


@attack
async def state_fixation(lab: Lab) -> None:
    tool = lab.tool()
    attacker = await lab.login(tool)
    victim = await lab.login(tool)
    token = lab.sign(platform_claims(lab, victim))
    # The attacker planted a cookie under the name of the victim's state.
    planted = {victim.cookie_name: attacker.cookie_value}
    form = {"id_token": token, "state": victim.state}
    lab.refused(await lab.post(tool, form, planted), "state_mismatch")
    # The attacker's own state and cookie carrying the victim's id_token.
    victim = await lab.login(tool)
    token = lab.sign(platform_claims(lab, victim))
    form = {"id_token": token, "state": attacker.state}
    lab.refused(await lab.post(tool, form, attacker.cookies), "nonce_mismatch")


@attack
async def login_csrf(lab: Lab) -> None:
    tool = lab.tool()
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login))
    form = {"id_token": token, "state": login.state}
    lab.refused(await lab.post(tool, form, None), "state_cookie_missing")
    # Cookieless flow (platform storage): a forged binding value is refused.
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login))
    form = {
        "id_token": token,
        "state": login.state,
        STORAGE_TARGET_PARAMETER: "post_message_forwarding",
    }
    relay = await tool.post_launch(dict(form), None, headers={"accept": "text/html"})
    assert relay.status_code == 200 and lab.app.calls == []
    form[BINDING_FIELD] = "forged-" + login.cookie_value[::-1]
    lab.refused(await lab.post(tool, form, None), "state_mismatch")


@attack
async def open_redirect_via_target_link_uri(lab: Lab) -> None:
    tool = lab.tool()
    for target in (
        "https://evil.example/steal",
        "//evil.example/steal",
        "https://tool.example.org@evil.example/",
        "javascript:alert(1)",
        "https://tool.example.org.evil.example/",
    ):
        params = {
            "iss": ISS,
            "login_hint": "u-1",
            "target_link_uri": target,
            "client_id": CLIENT_ID,
        }
        response = lab.answer(
            await tool.http.get(
                "/lti/login", params=params, headers={"accept": "application/json"}
            )
        )
        lab.refused(response, "target_link_uri_not_allowed")
        assert "set-cookie" not in response.headers
    # A login to the tool, a token that names somewhere else.
    login = await lab.login(tool)
    token = lab.sign(
        platform_claims(lab, login, **{TARGET: "https://evil.example/steal"})
    )
    lab.refused(await lab.launch_token(tool, token, login), "target_link_uri_mismatch")


@attack
async def oversized_id_token(lab: Lab) -> None:
    tool = lab.tool(max_body_bytes=512 * 1024)
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login, padding="x" * 70_000))
    lab.refused(await lab.launch_token(tool, token, login), "token_malformed")
    assert lab.requests == []


@attack
async def oversized_form_body(lab: Lab) -> None:
    tool = lab.tool()
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login))
    form = {"id_token": token, "state": login.state, "pad": "x" * 200_000}
    lab.refused(await lab.post(tool, form, login.cookies), "request_too_large")
    fields = urlencode([(f"f{i}", "1") for i in range(150)])
    response = lab.answer(
        await tool.http.post(
            "/lti/launch",
            content=fields,
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "accept": "application/json",
            },
        )
    )
    lab.refused(response, "request_malformed")
    params = {"iss": ISS, "login_hint": "u" * 5000, "target_link_uri": TOOL_APP}
    response = lab.answer(
        await tool.http.get(
            "/lti/login", params=params, headers={"accept": "application/json"}
        )
    )
    lab.refused(response, "login_parameter_invalid")
    # The login was not consumed by the refused bodies.
    accepted = await lab.launch_token(tool, token, login)
    assert accepted.status_code == 303


@attack
async def oversized_jwks(lab: Lab) -> None:
    filler = [
        {"kty": "RSA", "kid": f"k{i}", "n": "x" * 4000, "e": "AQAB"} for i in range(80)
    ]
    huge = {"keys": [lab.platform.key.public_jwk(), *filler]}
    assert len(json.dumps(huge)) > 256 * 1024
    lab.platform.extra[JWKS_URL] = httpx.Response(200, json=huge)
    tool = lab.tool()
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login))
    lab.refused(await lab.launch_token(tool, token, login), "key_set_unavailable")


@attack
async def malformed_base64(lab: Lab) -> None:
    tool = lab.tool()
    for token in ("!!!!.@@@@.####", "eyJhbGciOi.%%%%.abc", "e30", "a.b.c.d.e"):
        login = await lab.login(tool)
        lab.refused(await lab.launch_token(tool, token, login), "token_malformed")
    response = lab.answer(
        await tool.http.post(
            "/lti/launch",
            content=b"id_token=\xff\xfe&state=\x80",
            headers={
                "content-type": "application/x-www-form-urlencoded",
                "accept": "application/json",
            },
        )
    )
    lab.refused(response, "request_malformed")


@attack
async def malformed_json(lab: Lab) -> None:
    tool = lab.tool()
    login = await lab.login(tool)
    bad_header = f"{b64(b'{not json')}.{b64json({'sub': 'x'})}.c2ln"
    lab.refused(await lab.launch_token(tool, bad_header, login), "token_malformed")
    # A payload that is not JSON, validly signed by the platform.
    login = await lab.login(tool)
    token = lab.add_token(
        jwt.api_jws.encode(
            b'{"iss": "' + ISS.encode() + b'", ',
            lab.platform.key.private_key,
            algorithm="RS256",
            headers={"kid": lab.platform.key.kid},
        )
    )
    lab.refused(await lab.launch_token(tool, token, login), "token_malformed")


@attack
async def duplicate_form_fields(lab: Lab) -> None:
    tool = lab.tool()
    login = await lab.login(tool)
    good = lab.sign(platform_claims(lab, login))
    evil = lab.sign(platform_claims(lab, login, sub="admin"))
    for body in (
        urlencode([("id_token", evil), ("id_token", good), ("state", login.state)]),
        urlencode([("id_token", good), ("state", login.state), ("state", "x")]),
    ):
        cookie = f"{login.cookie_name}={login.cookie_value}"
        response = lab.answer(
            await tool.http.post(
                "/lti/launch",
                content=body,
                headers={
                    "content-type": "application/x-www-form-urlencoded",
                    "accept": "application/json",
                    "cookie": cookie,
                },
            )
        )
        lab.refused(response, "request_malformed")


@attack
async def aud_as_a_number(lab: Lab) -> None:
    await signed_launch(lab, "claim_invalid", aud=10000000000042)


@attack
async def roles_as_a_string(lab: Lab) -> None:
    await signed_launch(lab, "claim_invalid", **{ROLES: "Instructor"})


def assert_escaped(response: httpx.Response) -> None:
    assert response.headers["content-type"].startswith("text/html")
    assert "<script>" not in response.text
    assert "&lt;script&gt;" in response.text


@attack
async def script_in_claims_and_error_paths(lab: Lab) -> None:
    tool = lab.tool()
    html = {"accept": "text/html"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"iss": SCRIPT}, "iss_mismatch"),
        ({"aud": [CLIENT_ID, SCRIPT], "azp": CLIENT_ID}, "aud_untrusted"),
        ({c.DEPLOYMENT_ID: SCRIPT}, "unknown_deployment"),
        ({TARGET: TOOL_APP + "?" + SCRIPT}, "target_link_uri_mismatch"),
    ]
    for claims, reason in cases:
        login = await lab.login(tool)
        token = lab.sign(platform_claims(lab, login, **claims))
        form = {"id_token": token, "state": login.state}
        response = lab.answer(
            await tool.post_launch(form, login.cookies, headers=dict(html))
        )
        assert response.status_code == REASONS[reason].status, response.text
        assert f"<code>{reason}</code>" in response.text
        assert_escaped(response)
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login), headers={"kid": SCRIPT})
    response = lab.answer(
        await tool.post_launch(
            {"id_token": token, "state": login.state}, login.cookies, headers=html
        )
    )
    assert "<code>unknown_kid</code>" in response.text
    assert_escaped(response)
    response = lab.answer(
        await tool.http.get(
            "/lti/login",
            params={"iss": SCRIPT, "login_hint": "u", "target_link_uri": TOOL_APP},
            headers=html,
        )
    )
    assert response.status_code == 400
    assert "<code>unknown_issuer</code>" in response.text
    assert_escaped(response)
    response = lab.answer(
        await tool.post_launch(
            {"error": SCRIPT, "error_description": SCRIPT, "state": "s"},
            None,
            headers=html,
        )
    )
    assert "<code>platform_error</code>" in response.text
    assert_escaped(response)
    assert lab.app.calls == []


@attack
async def unknown_kid_flood(lab: Lab) -> None:
    tool = lab.tool()
    for _ in range(2):
        logins = [await lab.login(tool) for _ in range(50)]
        tokens = [
            lab.sign(platform_claims(lab, login), headers={"kid": f"forged-{i}"})
            for i, login in enumerate(logins)
        ]
        answers = await asyncio.gather(
            *(lab.launch_token(tool, t, g) for t, g in zip(tokens, logins, strict=True))
        )
        for answer in answers:
            lab.refused(answer, "unknown_kid")
        # Cold cache: one shared fetch; the second flood finds it fresh.
        assert lab.platform.key_set_requests == [JWKS_URL]
        assert [str(r.url) for r in lab.requests] == [JWKS_URL]


@attack
async def forged_launch_id(lab: Lab) -> None:
    tool = lab.tool()
    json_only = {"accept": "application/json"}
    for path, headers in (
        ("/app?lti_launch=" + "A" * 43, json_only),
        ("/app", {**json_only, "x-lti-launch": "guessed-launch-id"}),
        ("/app?lti_launch=" + "A" * 5000, json_only),
    ):
        response = lab.answer(await tool.http.get(path, headers=headers))
        lab.refused(response, "launch_not_found")


@pytest.fixture
async def lab() -> Any:
    lab = Lab()
    yield lab
    await lab.close()


@pytest.mark.parametrize("name", sorted(ATTACKS))
async def test_attack_is_refused_and_the_app_never_runs(lab: Lab, name: str) -> None:
    await ATTACKS[name](lab)


async def grade_with_a_failing_platform(lab: Lab) -> list[str]:
    """A valid launch posts scores: token refused, then score endpoint fails."""
    assertions: list[str] = []
    token_answers = (
        httpx.Response(401, json={"error": "invalid_client"}),
        httpx.Response(
            200,
            json={
                "access_token": ACCESS_TOKEN,
                "token_type": "Bearer",
                "expires_in": 3600,
            },
        ),
    )
    lineitem = "https://lms.example.edu/api/lti/courses/5/line_items/9/scores"

    def answer_token(request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        assertions.append(form["client_assertion"][0])
        return token_answers[min(len(assertions), 2) - 1]

    serve = lab.handle

    def handle(request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            lab.requests.append(request)
            return answer_token(request)
        if str(request.url) == lineitem:
            lab.requests.append(request)
            return httpx.Response(500, text="score store down")
        return serve(request)

    lab.handle = handle
    tool = lab.tool()
    lab.add_key(cached_key("tool"))
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login))
    await tool.follow(await lab.launch_token(tool, token, login))
    launch = lab.app.launches[0]
    messages = []
    for _ in range(2):
        with pytest.raises(ServiceError) as caught:
            await launch.ags.post_score(score_given=7, score_maximum=10)
        messages.append(str(caught.value))
    assert len(assertions) >= 2 and all(a.count(".") == 2 for a in assertions)
    assert any(
        r.headers.get("authorization") == f"Bearer {ACCESS_TOKEN}" for r in lab.requests
    )
    for assertion in assertions:
        lab.add_token(assertion)
    lab.secrets.add(ACCESS_TOKEN)
    return messages


async def test_no_secret_in_logs_or_answers_across_the_matrix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="lti_middleware")
    texts: list[str] = []
    secrets: set[str] = set()
    for name in sorted(ATTACKS):
        lab = Lab()
        try:
            await ATTACKS[name](lab)
        finally:
            await lab.close()
        texts.extend(lab.answers)
        secrets |= lab.secrets
    lab = Lab()
    try:
        texts.extend(await grade_with_a_failing_platform(lab))
    finally:
        await lab.close()
    texts.extend(lab.answers)
    secrets |= lab.secrets

    records = caplog.records
    assert any(r.name.startswith("lti_middleware") for r in records)
    assert any("refused" in r.getMessage() for r in records)
    texts.append(caplog.text)
    texts.extend(str(r.args) for r in records)
    haystack = "\n".join(texts)
    assert len(secrets) > 100
    leaked = sorted(s for s in secrets if s in haystack)
    assert leaked == []


async def test_unknown_kid_flood_while_the_key_set_fails_fetches_once(
    lab: Lab,
) -> None:
    lab.platform.key_set_down = True
    tool = lab.tool()
    for i in range(20):
        login = await lab.login(tool)
        token = lab.sign(platform_claims(lab, login), headers={"kid": f"forged-{i}"})
        lab.refused(await lab.launch_token(tool, token, login), "key_set_unavailable")
    assert len(lab.platform.key_set_requests) <= 1


async def test_unusable_token_answer_keeps_its_access_token_out_of_the_error(
    lab: Lab,
) -> None:
    serve = lab.handle
    live = "live-" + ACCESS_TOKEN

    def handle(request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            return httpx.Response(
                200,
                text=f"access_token={live}&token_type=bearer&expires_in=3600",
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
        return serve(request)

    lab.handle = handle
    tool = lab.tool()
    login = await lab.login(tool)
    token = lab.sign(platform_claims(lab, login))
    await tool.follow(await lab.launch_token(tool, token, login))
    with pytest.raises(ServiceError) as caught:
        await lab.app.launches[0].ags.post_score(score_given=7, score_maximum=10)
    assert "token request" in str(caught.value)
    assert live not in str(caught.value)

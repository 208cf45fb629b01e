"""Launches in a cross-site iframe, in real Chromium, with and without cookies.

The development platform (``https://platform.test``) shows its course page
with the quiz tool (``https://tool.test``) in an iframe; Chromium maps both
names to 127.0.0.1 and both servers speak TLS with a certificate made here.
With third-party cookies allowed the launch is bound by the state cookie;
with them blocked it is bound through the platform's storage (postMessage);
blocked and without platform storage, the person gets the explanation.
A spy in front of the tool records, per launch POST, whether the state
cookie came and what the tool answered, so each test shows which path ran.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import os
import re
import shutil
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from example_apps.demo import prepare_state
from example_apps.quiz_app import create_app
from lti_middleware import load_config
from lti_middleware.devplatform import (
    DevResourceLink,
    PlatformSettings,
    create_platform,
)
from lti_middleware.devplatform.storage import COURSE_PATH, TOOL_FRAME
from lti_middleware.login import STATE_COOKIE_PREFIX

if TYPE_CHECKING:
    from playwright.sync_api import Frame, Page

pytestmark = pytest.mark.e2e

uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = os.environ.get("LTI_TEST_CHROMIUM", "/usr/bin/chromium")
if shutil.which(CHROMIUM) is None:
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)

LOOPBACK = "127.0.0.1"
PLATFORM_HOST = "platform.test"
TOOL_HOST = "tool.test"
START_TIMEOUT = 10.0
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    f"--host-resolver-rules=MAP {PLATFORM_HOST} {LOOPBACK}, MAP {TOOL_HOST} {LOOPBACK}",
]
QUIZ_LINK = DevResourceLink("rl-1", "Quiz 1", "1", "Quiz 1", 3.0)
LEARNER_NAME = "Ben Learner"
ANSWERS = ("In a form POST", "An OAuth 2 access token", "2.0")


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path


def make_certificate(directory: Path) -> Certificate:
    """A self-signed certificate for both host names and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lti test")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName(PLATFORM_HOST), x509.DNSName(TOOL_HOST)]
    names.append(x509.IPAddress(ipaddress.ip_address(LOOPBACK)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    paths = Certificate(directory / "cert.pem", directory / "key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class _Server(uvicorn.Server):  # type: ignore[misc]
    """A uvicorn server that says when it is listening."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()

    def run_until_stopped(self, sock: socket.socket) -> None:
        try:
            self.run(sockets=[sock])
        finally:
            self.ready.set()


class TLSServer:
    """uvicorn over TLS on 127.0.0.1, in a thread; bound from construction."""

    def __init__(self, host: str) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((LOOPBACK, 0))
        self._socket.listen(64)
        self.port: int = self._socket.getsockname()[1]
        self.base_url = f"https://{host}:{self.port}"
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, app: ASGIApp, certificate: Certificate) -> None:
        config = uvicorn.Config(
            app,
            http="h11",
            ws="none",
            lifespan="on",
            log_config=None,
            access_log=False,
            ssl_certfile=str(certificate.cert),
            ssl_keyfile=str(certificate.key),
        )
        server = _Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run_until_stopped, args=(self._socket,), daemon=True
        )
        self._thread.start()
        if not server.ready.wait(START_TIMEOUT) or not server.started:
            raise RuntimeError(f"uvicorn did not start on {self.base_url}")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(START_TIMEOUT)
        self._socket.close()


class LoopbackTransport(httpx.AsyncBaseTransport):
    """Server-side calls to the test host names, sent to 127.0.0.1.

    The Host header keeps the name; TLS is checked against our certificate
    (which also names 127.0.0.1). Nothing else is reachable.
    """

    def __init__(self, certificate: Certificate) -> None:
        context = ssl.create_default_context(cafile=str(certificate.cert))
        self._inner = httpx.AsyncHTTPTransport(verify=context)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host not in (PLATFORM_HOST, TOOL_HOST):
            raise httpx.ConnectError(f"{request.url.host} is not a test host")
        request.url = request.url.copy_with(host=LOOPBACK)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class LaunchSpy:
    """Wraps the tool: each launch POST as (state cookie sent, status)."""

    app: ASGIApp
    launch_path: str
    launches: list[tuple[bool, int]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.launch_path:
            await self.app(scope, receive, send)
            return
        cookies = b"".join(v for k, v in scope["headers"] if k == b"cookie")
        has_cookie = STATE_COOKIE_PREFIX.encode() in cookies

        async def spying_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.launches.append((has_cookie, message["status"]))
            await send(message)

        await self.app(scope, receive, spying_send)


@dataclass
class ClosingPlatform:
    """Wraps the platform: closes its HTTP client when the server shuts down.

    It also serves the test's own ``pages`` (path to HTML) on the platform.
    """

    app: ASGIApp
    http: httpx.AsyncClient
    pages: dict[str, str] = field(default_factory=dict)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.pages:
            page = HTMLResponse(self.pages[scope["path"]])
            await page(scope, receive, send)
            return
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def closing() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.http.aclose()
            return message

        await self.app(scope, closing, send)


@dataclass
class Deployment:
    settings: PlatformSettings
    spy: LaunchSpy
    platform: ClosingPlatform


Start = Callable[..., Deployment]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Starts the platform and the quiz tool over TLS; stops them after."""
    certificate = make_certificate(tmp_path)
    servers: list[TLSServer] = []

    def run(*, platform_storage: bool) -> Deployment:
        tool_server, platform_server = TLSServer(TOOL_HOST), TLSServer(PLATFORM_HOST)
        servers.extend([tool_server, platform_server])
        settings = PlatformSettings.for_tool(
            tool_server.base_url,
            base_url=platform_server.base_url,
            resource_links=(QUIZ_LINK,),
        )
        settings = dataclasses.replace(settings, platform_storage=platform_storage)
        config = load_config(prepare_state(tmp_path / "state", settings))
        tool_http = httpx.AsyncClient(transport=LoopbackTransport(certificate))
        spy = LaunchSpy(create_app(config, http=tool_http), "/lti/launch")
        platform_http = httpx.AsyncClient(transport=LoopbackTransport(certificate))
        platform = create_platform(settings, http_client=platform_http)

        tool_server.start(spy, certificate)
        closing = ClosingPlatform(platform, platform_http)
        platform_server.start(closing, certificate)
        return Deployment(settings, spy, closing)

    try:
        yield run
    finally:
        for server in reversed(servers):
            server.stop()


def open_course(page: Page, d: Deployment) -> Frame:
    """Open the course page and launch the quiz into its tool frame."""
    page.goto(d.settings.base_url + COURSE_PATH)
    page.get_by_role("link", name=re.compile(f"launch as {LEARNER_NAME}")).click()
    frame = page.frame(name=TOOL_FRAME)
    assert frame is not None
    return frame


def take_quiz(page: Page, frame: Frame, d: Deployment) -> list[str]:
    """Answer (two of three right), then read the gradebook row."""
    for label in ANSWERS:
        frame.get_by_label(label).check()
    frame.get_by_role("button", name="Submit answers").click()
    frame.wait_for_url(re.compile(r"/submit\?lti_launch="))
    assert "has been sent" in frame.content()

    page.goto(d.settings.gradebook_url)
    row: str = page.get_by_role("row", name=LEARNER_NAME).inner_text()
    return row.split("\t")


def browse(
    profile: Path, *, block_cookies: bool, scenario: Callable[[Page], None]
) -> None:
    """Run ``scenario`` in a fresh Chromium profile.

    The profile's cookie setting (``cookie_controls_mode``: 0 allows
    third-party cookies, 1 blocks them) is written explicitly: Chromium's
    default differs between builds and between ordinary and incognito
    profiles. The tests' spy confirms which way the cookie went.
    """
    preferences = {
        "profile": {
            "cookie_controls_mode": 1 if block_cookies else 0,
            "block_third_party_cookies": block_cookies,
        }
    }
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Preferences").write_text(json.dumps(preferences))
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            ignore_https_errors=True,
        )
        try:
            scenario(context.pages[0] if context.pages else context.new_page())
        finally:
            context.close()


def test_cookies_allowed_launch_is_bound_by_the_cookie(
    start: Start, tmp_path: Path, artifacts: Path
) -> None:
    d = start(platform_storage=True)

    def scenario(page: Page) -> None:
        frame = open_course(page, d)
        frame.wait_for_url(re.compile(r"\?lti_launch="))
        page.screenshot(path=artifacts / "cookie-launch.png")
        assert take_quiz(page, frame, d)[1] == "2 / 3"

    browse(tmp_path / "profile", block_cookies=False, scenario=scenario)
    assert d.spy.launches == [(True, 303)]


def test_cookies_blocked_launch_is_bound_through_platform_storage(
    start: Start, tmp_path: Path, artifacts: Path
) -> None:
    d = start(platform_storage=True)

    def scenario(page: Page) -> None:
        frame = open_course(page, d)
        frame.wait_for_url(re.compile(r"\?lti_launch="))
        page.screenshot(path=artifacts / "storage-launch.png")
        log = page.locator("#storage-log").inner_text()
        assert log.split() == ["lti.capabilities", "lti.put_data"] + [
            "lti.capabilities",
            "lti.get_data",
        ]
        assert take_quiz(page, frame, d)[1] == "2 / 3"

    browse(tmp_path / "profile", block_cookies=True, scenario=scenario)
    # No cookie reached the tool: the first POST got the storage page, the
    # page's re-post carried the binding from the platform.
    assert d.spy.launches == [(False, 200), (False, 303)]


def test_cookies_blocked_without_storage_explains_the_refusal(
    start: Start, tmp_path: Path, artifacts: Path
) -> None:
    d = start(platform_storage=False)

    def scenario(page: Page) -> None:
        frame = open_course(page, d)
        frame.get_by_text("state_cookie_missing").wait_for()
        page.screenshot(path=artifacts / "explanation.png")
        assert "third-party cookies" in frame.content()
        assert "Open the tool in a new window" in frame.content()

    browse(tmp_path / "profile", block_cookies=True, scenario=scenario)
    assert d.spy.launches == [(False, 401)]


def test_top_level_launch_with_storage_target_goes_straight_on(
    start: Start, tmp_path: Path
) -> None:
    d = start(platform_storage=True)

    def scenario(page: Page) -> None:
        page.goto(d.settings.home_url)
        page.get_by_role("link", name=re.compile(f"Launch as {LEARNER_NAME}")).click()
        page.wait_for_url(re.compile(r"\?lti_launch="))
        assert page.get_by_role("heading", name="Quiz").is_visible()

    browse(tmp_path / "profile", block_cookies=True, scenario=scenario)
    # Top level, the tool's cookie is first-party: no storage page needed.
    assert d.spy.launches == [(True, 303)]


def test_storage_target_without_an_answer_falls_back_to_the_explanation(
    start: Start, tmp_path: Path, artifacts: Path
) -> None:
    # Some platforms send lti_storage_target from pages that do not answer:
    # the tool's pages wait a bounded time, then go on without storage.
    d = start(platform_storage=True)
    launch = d.settings.launch_url + "?user_id=learner-1&resource_link_id=rl-1"
    d.platform.pages["/silent-course"] = (
        f'<!DOCTYPE html><title>Silent</title><iframe name="{TOOL_FRAME}" '
        f'src="{launch}" width="900" height="500"></iframe>'
    )

    def scenario(page: Page) -> None:
        page.goto(d.settings.base_url + "/silent-course")
        frame = page.frame(name=TOOL_FRAME)
        assert frame is not None
        frame.get_by_text("state_cookie_missing").wait_for()
        page.screenshot(path=artifacts / "no-answer.png")

    browse(tmp_path / "profile", block_cookies=True, scenario=scenario)
    assert d.spy.launches == [(False, 200), (False, 401)]

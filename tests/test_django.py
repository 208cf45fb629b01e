"""Django under ASGI and WSGI: ``request.lti``, service calls, the cache stores.

The example project's settings are used; the platform is the fake one of
``conftest`` behind ``httpx.MockTransport``, so nothing leaves the process.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_apps.django_project.settings")

import django  # noqa: E402

django.setup()

from django.core.cache import caches  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import RequestFactory, override_settings  # noqa: E402

from lti_middleware import LTILaunch, ToolConfig  # noqa: E402
from lti_middleware import claims as c  # noqa: E402
from lti_middleware.django import (  # noqa: E402
    LTIRequestMiddleware,
    call_async,
    call_sync,
    get_asgi_application,
    get_wsgi_application,
    launch_of,
    launch_required,
)
from lti_middleware.django.application import (  # noqa: E402
    LOOP_STATE_KEY,
    DjangoApp,
    config_from_settings,
    plugins_from_settings,
)
from lti_middleware.django.cache import (  # noqa: E402
    DjangoCacheAccessTokenStore,
    DjangoCacheLaunchStore,
    DjangoCacheNonceStore,
    DjangoCachePlugin,
)
from lti_middleware.exceptions import StoreError  # noqa: E402
from lti_middleware.hooks import hookimpl  # noqa: E402
from lti_middleware.keys import StaticKeyProvider  # noqa: E402
from lti_middleware.testing import (  # noqa: E402
    AccessTokenStoreContract,
    LaunchStoreContract,
    NonceStoreContract,
)
from lti_middleware.wsgi import LTIWSGIMiddleware  # noqa: E402

from .conftest import (  # noqa: E402
    LINEITEM,
    TOKEN_URL,
    TOOL,
    FakePlatform,
    StoresPlugin,
    ToolClient,
    cached_key,
    tool_config,
)

HOSTS = ["tool.example.org", "127.0.0.1", "localhost"]
SCORES_URL = LINEITEM + "/scores"


# The cache stores, against Django's local-memory cache.


class TestDjangoCacheNonceStore(NonceStoreContract):
    @pytest.fixture
    def store(self) -> DjangoCacheNonceStore:
        return DjangoCacheNonceStore(caches["default"])

    @pytest.fixture
    def second_store(self) -> DjangoCacheNonceStore:
        return DjangoCacheNonceStore(caches["default"])


class TestDjangoCacheLaunchStore(LaunchStoreContract):
    @pytest.fixture
    def store(self) -> DjangoCacheLaunchStore:
        return DjangoCacheLaunchStore(caches["default"])

    @pytest.fixture
    def second_store(self) -> DjangoCacheLaunchStore:
        return DjangoCacheLaunchStore(caches["default"])


class TestDjangoCacheAccessTokenStore(AccessTokenStoreContract):
    @pytest.fixture
    def store(self) -> DjangoCacheAccessTokenStore:
        return DjangoCacheAccessTokenStore(caches["default"], lock_wait=5.0)

    @pytest.fixture
    def second_store(self) -> DjangoCacheAccessTokenStore:
        return DjangoCacheAccessTokenStore(caches["default"], lock_wait=5.0)


class BrokenCache:
    """A cache whose backend is down."""

    def set(self, *args: Any) -> None:
        raise ConnectionError("cache server at 10.0.0.9 refused")

    def get(self, *args: Any) -> None:
        raise ConnectionError("cache server at 10.0.0.9 refused")


async def test_cache_store_failure_is_a_store_error_naming_the_store() -> None:
    store = DjangoCacheLaunchStore(BrokenCache())

    with pytest.raises(StoreError) as failure:
        await store.load("launch-1")

    assert failure.value.store == "django cache launch store"
    assert isinstance(failure.value.__cause__, ConnectionError)


async def test_cache_keys_are_hashed_under_the_prefix() -> None:
    store = DjangoCacheNonceStore(caches["default"], prefix="tool-a:")
    await store.issue("state: with spaces and ünïcode", "v", 60)

    key = store.key("record", "state: with spaces and ünïcode")

    assert key.startswith("tool-a:record:")
    assert len(key) == len("tool-a:record:") + 64
    assert await caches["default"].aget(key) == "v"


class KeysPlugin:
    """The tool's signing key, and nothing else."""

    @hookimpl
    def lti_key_provider(self, config: ToolConfig) -> StaticKeyProvider:
        return StaticKeyProvider([cached_key("tool")])


def test_cache_plugin_gives_the_middleware_its_stores() -> None:
    plugin = DjangoCachePlugin(prefix="p:")
    app = get_asgi_application(config=tool_config(), plugins=[KeysPlugin(), plugin])

    assert isinstance(app.nonces, DjangoCacheNonceStore)
    assert isinstance(app.launches, DjangoCacheLaunchStore)
    assert isinstance(app.tokens.store, DjangoCacheAccessTokenStore)
    assert app.nonces.prefix == "p:"


# Settings.


def test_config_setting_takes_a_tool_config() -> None:
    config = tool_config()
    with override_settings(LTI_CONFIG=config):
        assert config_from_settings() is config


def test_config_setting_takes_a_toml_path(tmp_path: Path) -> None:
    path = tmp_path / "lti.toml"
    path.write_text(
        '[tool]\nlogin_url = "https://t.example/lti/login"\n'
        'launch_url = "https://t.example/lti/launch"\n'
        'jwks_url = "https://t.example/lti/jwks"\n'
        '[[platforms]]\nissuer = "https://lms.example"\nclient_id = "c"\n'
        'deployment_ids = ["d"]\nauth_login_url = "https://lms.example/auth"\n'
        'token_url = "https://lms.example/token"\n'
        'key_set_url = "https://lms.example/jwks"\n'
    )
    with override_settings(LTI_CONFIG=path):
        config = config_from_settings()

    assert config.launch_url == "https://t.example/lti/launch"


def test_config_setting_of_another_type_is_refused() -> None:
    with (
        override_settings(LTI_CONFIG={"tool": {}}),
        pytest.raises(ImproperlyConfigured, match="LTI_CONFIG must be"),
    ):
        config_from_settings()


def test_plugins_setting_imports_dotted_paths() -> None:
    own = DjangoCachePlugin()
    paths = ["lti_middleware.django.cache.plugin", own]
    with override_settings(LTI_PLUGINS=paths):
        plugins = plugins_from_settings()

    from lti_middleware.django.cache import plugin

    assert plugins == [plugin, own]


def test_plugins_setting_must_be_a_list() -> None:
    with (
        override_settings(LTI_PLUGINS="lti_middleware.django.cache.plugin"),
        pytest.raises(ImproperlyConfigured),
    ):
        plugins_from_settings()


# The Django middleware and the decorator, with Django's RequestFactory.


def fake_launch() -> LTILaunch:
    return LTILaunch(
        launch_id="id-1",
        registration=tool_config().registrations[0],
        claims={"sub": "user-1", c.ROLES: [c.MEMBERSHIP_ROLE + "Learner"]},
        ags_factory=lambda launch: None,  # type: ignore[arg-type,return-value]
        nrps_factory=lambda launch: None,  # type: ignore[arg-type,return-value]
        deep_linking_factory=lambda launch: None,  # type: ignore[arg-type,return-value]
    )


def echo_user(request: HttpRequest) -> HttpResponse:
    launch = request.lti  # type: ignore[attr-defined]
    return HttpResponse("none" if launch is None else launch.user.id)


def test_middleware_reads_the_launch_from_the_asgi_scope() -> None:
    request = RequestFactory().get("/")
    request.scope = {"type": "http", "state": {"lti": fake_launch()}}

    response = LTIRequestMiddleware(echo_user)(request)

    assert response.content == b"user-1"


def test_middleware_reads_the_launch_from_the_a2wsgi_environ() -> None:
    request = RequestFactory().get("/")
    request.environ["asgi.scope"] = {"state": {"lti": fake_launch()}}

    response = LTIRequestMiddleware(echo_user)(request)

    assert response.content == b"user-1"


@pytest.mark.parametrize(
    "state", [None, {}, {"lti": None}, {"lti": "not a launch"}], ids=repr
)
def test_middleware_sets_none_without_a_launch(state: Any) -> None:
    request = RequestFactory().get("/")
    if state is not None:
        request.environ["asgi.scope"] = {"state": state}

    response = LTIRequestMiddleware(echo_user)(request)

    assert response.content == b"none"
    assert launch_of(request) is None


async def test_middleware_in_an_async_stack() -> None:
    async def view(request: HttpRequest) -> HttpResponse:
        return echo_user(request)

    middleware = LTIRequestMiddleware(view)
    request = RequestFactory().get("/")
    request.scope = {"state": {"lti": fake_launch()}}

    assert asyncio.iscoroutinefunction(middleware)
    response = await middleware(request)
    assert response.content == b"user-1"


def test_launch_required_refuses_without_a_launch_and_skips_csrf() -> None:
    view = launch_required(echo_user)
    request = RequestFactory().post("/")
    request.lti = None  # type: ignore[attr-defined]
    launched = RequestFactory().post("/")
    launched.lti = fake_launch()  # type: ignore[attr-defined]

    assert view(request).status_code == 401
    assert view(launched).content == b"user-1"
    assert view.csrf_exempt is True  # type: ignore[attr-defined]


def test_project_pages_are_the_starlette_quizs() -> None:
    from example_apps import quiz_app
    from example_apps.django_project import views

    launch = fake_launch()
    request = RequestFactory().get("/")
    request.lti = launch  # type: ignore[attr-defined]
    bare = RequestFactory().get("/")
    bare.lti = None  # type: ignore[attr-defined]
    quiz = quiz_app.render(
        "Quiz", quiz_app.describe(launch) + quiz_app.quiz_form(launch)
    )

    page = views.home(request)
    no_launch = views.home(bare)

    assert page.content == bytes(quiz.body)
    assert page["referrer-policy"] == "no-referrer"
    assert page["cache-control"] == "no-store"
    assert no_launch.content == bytes(quiz_app.render("Quiz", quiz_app.NO_LAUNCH).body)


async def test_launch_required_on_an_async_view() -> None:
    async def view(request: HttpRequest) -> HttpResponse:
        return echo_user(request)

    wrapped = launch_required(view)
    request = RequestFactory().post("/")
    request.lti = None  # type: ignore[attr-defined]
    launched = RequestFactory().post("/")
    launched.lti = fake_launch()  # type: ignore[attr-defined]

    assert asyncio.iscoroutinefunction(wrapped)
    assert (await wrapped(request)).status_code == 401
    assert (await wrapped(launched)).content == b"user-1"


# Service calls on the middleware's loop.


async def answer() -> int:
    await asyncio.sleep(0)
    return 42


async def test_call_sync_runs_on_the_loop_from_a_worker_thread() -> None:
    loop = asyncio.get_running_loop()
    request = RequestFactory().get("/")
    request.scope = {"state": {LOOP_STATE_KEY: loop}}

    result = await asyncio.to_thread(call_sync, request, answer())

    assert result == 42


async def test_call_sync_on_the_loop_itself_is_refused() -> None:
    request = RequestFactory().get("/")
    request.scope = {"state": {LOOP_STATE_KEY: asyncio.get_running_loop()}}

    with pytest.raises(RuntimeError, match="use call_async"):
        call_sync(request, answer())


def test_call_sync_without_the_middleware_says_how_to_serve() -> None:
    coroutine = answer()
    with pytest.raises(RuntimeError, match="get_asgi_application"):
        call_sync(RequestFactory().get("/"), coroutine)
    coroutine.close()


async def test_call_async_awaits_on_its_own_loop() -> None:
    request = RequestFactory().get("/")
    request.scope = {"state": {LOOP_STATE_KEY: asyncio.get_running_loop()}}

    assert await call_async(request, answer()) == 42


def test_call_async_from_another_loop_hands_over(other_loop: Any) -> None:
    request = RequestFactory().get("/")
    request.scope = {"state": {LOOP_STATE_KEY: other_loop}}
    seen: list[asyncio.AbstractEventLoop] = []

    async def where() -> int:
        seen.append(asyncio.get_running_loop())
        return 7

    assert asyncio.run(call_async(request, where())) == 7
    assert seen == [other_loop]


@pytest.fixture
def other_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own, as a2wsgi's does."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


# Lifespan: Django's handler does not speak it, the wrapper answers.


async def test_lifespan_is_answered_and_closes_the_middleware() -> None:
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(404))
    )
    app = get_asgi_application(config=tool_config(), plugins=[KeysPlugin()], http=http)
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[Any] = []

    async def receive() -> Any:
        return next(messages)

    async def send(message: Any) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)

    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert http.is_closed
    assert isinstance(app.app, DjangoApp)


# The example project, launched and graded in process.


class ScoringPlatform(FakePlatform):
    """The fake platform, with a token endpoint and a scores URL."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scores: list[dict[str, Any]] = []
        self.token_requests = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url == TOKEN_URL:
            self.token_requests += 1
            token = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 600}
            return httpx.Response(200, json=token)
        if url == SCORES_URL and request.method == "POST":
            self.scores.append(json.loads(request.content))
            return httpx.Response(200)
        return super().handle(request)


@pytest.fixture
def scoring_platform(clock: Any) -> ScoringPlatform:
    return ScoringPlatform(clock)


def platform_http(platform: FakePlatform) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(platform.handle))


@pytest.fixture
async def asgi_tool(scoring_platform: ScoringPlatform) -> AsyncIterator[ToolClient]:
    app = get_asgi_application(
        config=tool_config(),
        plugins=[StoresPlugin(scoring_platform.clock)],
        http=platform_http(scoring_platform),
        clock=scoring_platform.clock,
    )
    tool = ToolClient(app, scoring_platform)
    with override_settings(ALLOWED_HOSTS=HOSTS):
        yield tool
    await tool.http.aclose()
    await app.aclose()


def quiz_answers(correct: int) -> dict[str, str]:
    from example_apps.quiz_app import QUESTIONS

    chosen = {}
    for index, question in enumerate(QUESTIONS):
        wrong = next(choice for choice in question.choices if choice != question.answer)
        chosen[question.name] = question.answer if index < correct else wrong
    return chosen


@pytest.mark.parametrize("view", ["sync", "async"])
async def test_asgi_launch_reaches_the_view_and_grades(
    asgi_tool: ToolClient, scoring_platform: ScoringPlatform, view: str
) -> None:
    target = TOOL + "/?view=" + view
    login = await asgi_tool.login(target_link_uri=target)
    response = await asgi_tool.launch(login, **{c.TARGET_LINK_URI: target})
    page = await asgi_tool.follow(response)
    launch_id = parse_qs(urlsplit(response.headers["location"]).query)["lti_launch"][0]
    path = "/submit" if view == "sync" else "/submit-async"

    result = await asgi_tool.http.post(
        f"{path}?lti_launch={launch_id}", data=quiz_answers(2)
    )

    assert page.status_code == 200
    assert "<strong>Ada Learner</strong> (learner)" in page.text
    assert f'action="{path}?lti_launch={launch_id}"' in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "x-frame-options" not in page.headers
    assert result.status_code == 200, result.text
    assert "You scored <strong>2/3</strong>" in result.text
    assert f'<a href="/?lti_launch={launch_id}">Try again</a>' in result.text
    (score,) = scoring_platform.scores
    assert (score["scoreGiven"], score["scoreMaximum"]) == (2, 3)
    assert score["userId"] == "user-1"


async def test_asgi_post_without_a_launch_is_401_not_a_csrf_403(
    asgi_tool: ToolClient, scoring_platform: ScoringPlatform
) -> None:
    result = await asgi_tool.http.post("/submit", data=quiz_answers(3))

    assert result.status_code == 401
    assert scoring_platform.scores == []


async def test_asgi_unknown_launch_never_reaches_django(
    asgi_tool: ToolClient,
) -> None:
    result = await asgi_tool.http.get(
        "/?lti_launch=forged", headers={"Accept": "application/json"}
    )
    home = await asgi_tool.http.get("/")

    assert result.status_code == 401
    assert result.json()["error"] == "launch_not_found"
    assert home.status_code == 200
    assert "Open this tool from your course" in home.text


@pytest.fixture
def wsgi_tool(
    scoring_platform: ScoringPlatform,
) -> Iterator[tuple[httpx.Client, LTIWSGIMiddleware]]:
    application = get_wsgi_application(
        config=tool_config(),
        plugins=[StoresPlugin(scoring_platform.clock)],
        http=platform_http(scoring_platform),
        clock=scoring_platform.clock,
    )
    client = httpx.Client(transport=httpx.WSGITransport(app=application), base_url=TOOL)
    with override_settings(ALLOWED_HOSTS=HOSTS), client:
        yield client, application
    application.close()


@pytest.mark.parametrize("view", ["sync", "async"])
def test_wsgi_launch_reaches_the_view_and_grades(
    wsgi_tool: tuple[httpx.Client, LTIWSGIMiddleware],
    scoring_platform: ScoringPlatform,
    view: str,
) -> None:
    client, _ = wsgi_tool
    login = client.get(
        "/lti/login",
        params={
            "iss": scoring_platform.claims("n")["iss"],
            "login_hint": "u-1",
            "target_link_uri": TOOL + "/?view=" + view,
            "client_id": scoring_platform.claims("n")["aud"],
        },
    )
    assert login.status_code == 302, login.text
    query = parse_qs(urlsplit(login.headers["location"]).query)
    cookie = login.headers["set-cookie"].split(";")[0]
    claims = scoring_platform.claims(
        query["nonce"][0], **{c.TARGET_LINK_URI: TOOL + "/?view=" + view}
    )
    form = {"id_token": scoring_platform.sign(claims), "state": query["state"][0]}
    client.cookies.clear()

    launched = client.post("/lti/launch", data=form, headers={"Cookie": cookie})
    page = client.get(launched.headers["location"])
    launch_id = parse_qs(urlsplit(launched.headers["location"]).query)["lti_launch"]
    path = "/submit" if view == "sync" else "/submit-async"
    result = client.post(f"{path}?lti_launch={launch_id[0]}", data=quiz_answers(3))

    assert launched.status_code == 303, launched.text
    assert "<strong>Ada Learner</strong> (learner)" in page.text
    assert result.status_code == 200, result.text
    assert "You scored <strong>3/3</strong>" in result.text
    (score,) = scoring_platform.scores
    assert score["scoreGiven"] == 3
    assert scoring_platform.token_requests == 1


def test_wsgi_unknown_launch_is_refused(
    wsgi_tool: tuple[httpx.Client, LTIWSGIMiddleware],
) -> None:
    client, _ = wsgi_tool

    result = client.post(
        "/submit?lti_launch=forged",
        data=quiz_answers(3),
        headers={"Accept": "application/json"},
    )

    assert result.status_code == 401
    assert result.json()["error"] == "launch_not_found"


async def test_launch_and_grade_with_the_django_cache_stores(
    scoring_platform: ScoringPlatform,
) -> None:
    plugin = DjangoCachePlugin(prefix="cache-e2e:")
    app = get_asgi_application(
        config=tool_config(),
        plugins=[KeysPlugin(), plugin],
        http=platform_http(scoring_platform),
        clock=scoring_platform.clock,
    )
    tool = ToolClient(app, scoring_platform)
    login = await tool.login(target_link_uri=TOOL + "/")

    with override_settings(ALLOWED_HOSTS=HOSTS):
        launched = await tool.launch(login, **{c.TARGET_LINK_URI: TOOL + "/"})
        replay = await tool.launch(login, **{c.TARGET_LINK_URI: TOOL + "/"})
        location = launched.headers["location"]
        launch_id = parse_qs(urlsplit(location).query)["lti_launch"][0]
        result = await tool.http.post(
            f"/submit?lti_launch={launch_id}", data=quiz_answers(1)
        )
    await tool.http.aclose()
    await app.aclose()

    assert launched.status_code == 303, launched.text
    assert replay.json()["error"] == "state_already_used"
    assert await app.launches.load(launch_id) is not None
    assert result.status_code == 200, result.text
    assert [s["scoreGiven"] for s in scoring_platform.scores] == [1]

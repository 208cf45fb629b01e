"""The middleware around an app: launches on later requests, JWKS, error pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from starlette.responses import PlainTextResponse

from lti_middleware import LTIMiddleware, hookimpl
from lti_middleware import claims as c
from lti_middleware.exceptions import ConfigurationError, LaunchError, StoreError

from .conftest import (
    ISS,
    TOOL_APP,
    FakePlatform,
    StoresPlugin,
    ToolClient,
    cached_key,
    inner_app,
    make_tool,
    tool_config,
)
from .test_launch import assert_refused


def launch_id_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["lti_launch"][0]


async def test_later_requests_find_their_launch(tool: ToolClient) -> None:
    response = await tool.launch()
    launch_id = launch_id_of(response.headers["location"])

    by_query = await tool.http.get("/app", params={"lti_launch": launch_id})
    by_header = await tool.http.post("/app", headers={"X-LTI-Launch": launch_id})

    assert by_query.json()["launch"] == launch_id
    assert by_header.status_code == 405  # the app's own answer: the launch passed
    assert (await tool.http.get("/", headers={"X-LTI-Launch": launch_id})).json()[
        "user"
    ] == "user-1"


async def test_two_launches_in_two_tabs_do_not_mix(tool: ToolClient) -> None:
    learner = await tool.launch(sub="learner-1")
    teacher = await tool.launch(
        sub="teacher-1", **{c.ROLES: [c.MEMBERSHIP_ROLE + "Instructor"]}
    )

    tab_a = (await tool.follow(learner)).json()
    tab_b = (await tool.follow(teacher)).json()
    tab_a_again = (await tool.follow(learner)).json()

    assert (tab_a["user"], tab_a["instructor"]) == ("learner-1", False)
    assert (tab_b["user"], tab_b["instructor"]) == ("teacher-1", True)
    assert tab_a_again == tab_a


async def test_requests_without_launch_reach_the_app_with_none(
    tool: ToolClient,
) -> None:
    response = await tool.http.get("/app")
    assert response.json() == {"launch": None}


async def test_unknown_launch_id_refused(tool: ToolClient) -> None:
    response = await tool.http.get(
        "/app", params={"lti_launch": "forged"}, headers={"accept": "application/json"}
    )
    assert_refused(response, "launch_not_found")


async def test_expired_launch_refused(tool: ToolClient, platform: FakePlatform) -> None:
    response = await tool.launch()
    platform.clock.now += tool.middleware.config.launch_ttl + 1
    followed = await tool.follow(response, headers={"accept": "application/json"})
    assert_refused(followed, "launch_not_found")


async def test_refusal_page_is_html_by_default(tool: ToolClient) -> None:
    response = await tool.http.get("/app", params={"lti_launch": "<b>x</b>"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert "launch_not_found" in response.text
    assert "Go back to the course" in response.text
    assert response.headers["cache-control"] == "no-store"


class ErrorPagePlugin:
    @hookimpl
    def lti_error_response(self, error: LaunchError, accept: str) -> Any:
        return PlainTextResponse(f"custom {error.reason}", status_code=error.status)


async def test_error_hook_renders_the_apps_own_page(platform: FakePlatform) -> None:
    tool = make_tool(platform, plugins=(ErrorPagePlugin(),))
    response = await tool.http.get("/app", params={"lti_launch": "nope"})
    assert (response.status_code, response.text) == (401, "custom launch_not_found")


async def test_jwks_route_publishes_public_members_only(tool: ToolClient) -> None:
    response = await tool.http.get("/lti/jwks")

    keys = response.json()["keys"]
    assert [set(k) for k in keys] == [{"kty", "n", "e", "kid", "alg", "use"}]
    assert keys[0]["kid"] == cached_key("tool").kid
    assert keys[0]["use"] == "sig" and keys[0]["alg"] == "RS256"


async def test_jwks_route_refuses_post(tool: ToolClient) -> None:
    response = await tool.http.post("/lti/jwks", headers={"accept": "application/json"})
    assert_refused(response, "method_not_allowed")


async def test_launch_object_exposes_typed_claims(platform: FakePlatform) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["launch"] = scope["state"]["lti"]
        await PlainTextResponse("ok")(scope, receive, send)

    tool = make_tool(platform, app=app)
    await tool.follow(await tool.launch())

    launch = seen["launch"]
    assert launch.user.name == "Ada Learner" and launch.user.email == "ada@example.edu"
    assert launch.context.title == "Biology" and launch.context.label == "BIO101"
    assert launch.resource_link.title == "Quiz 1"
    assert launch.presentation.document_target == "iframe"
    assert launch.platform.guid == "lms-guid"
    assert launch.issuer == "https://lms.example.edu"
    assert launch.message_type == c.RESOURCE_LINK_REQUEST
    assert launch.claims["name"] == "Ada Learner"
    assert "Ada" not in repr(launch)
    with pytest.raises(TypeError):
        launch.claims["sub"] = "someone-else"


class CountingNonceStore:
    def __init__(self) -> None:
        from lti_middleware.stores.memory import MemoryNonceStore

        self.inner = MemoryNonceStore()
        self.calls: list[str] = []

    async def issue(self, key: str, value: str, ttl: float) -> None:
        self.calls.append("issue " + key.split(":")[0])
        await self.inner.issue(key, value, ttl)

    async def consume(self, key: str, remember_for: float) -> Any:
        self.calls.append("consume " + key.split(":")[0])
        return await self.inner.consume(key, remember_for)


class CustomStorePlugin:
    def __init__(self) -> None:
        self.store = CountingNonceStore()

    @hookimpl
    def lti_nonce_store(self, config: Any) -> CountingNonceStore:
        return self.store


async def test_custom_store_plugin_is_used(platform: FakePlatform) -> None:
    plugin = CustomStorePlugin()
    # A plugin registered after the test stores takes precedence (LIFO).
    tool = make_tool(platform, plugins=(plugin,))

    assert (await tool.launch()).status_code == 303
    assert plugin.store.calls == [
        "issue state",
        "issue nonce",
        "consume state",
        "consume nonce",
    ]


def test_tool_without_keys_fails_at_start_up_naming_the_key() -> None:
    with pytest.raises(ConfigurationError) as error:
        LTIMiddleware(inner_app(), config=tool_config())
    assert error.value.key == "tool.private_key_files"


async def test_landing_keeps_target_query_and_replaces_stale_launch_id(
    tool: ToolClient,
) -> None:
    target = TOOL_APP + "?lti_launch=old&x=1"
    login = await tool.login(target_link_uri=target)
    response = await tool.launch(login, **{c.TARGET_LINK_URI: target})

    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["x"] == ["1"]
    assert query["lti_launch"] != ["old"] and len(query["lti_launch"]) == 1


async def test_launch_id_is_not_guessable(tool: ToolClient) -> None:
    ids = {launch_id_of((await tool.launch()).headers["location"]) for _ in range(5)}
    assert len(ids) == 5
    assert all(len(i) >= 43 for i in ids)


async def test_id_token_is_not_kept_with_the_launch(
    tool: ToolClient, platform: FakePlatform
) -> None:
    login = await tool.login()
    token = platform.sign(platform.claims(login.nonce))
    response = await tool.launch_token(token, login)

    stored = await tool.middleware.launches.load(
        launch_id_of(response.headers["location"])
    )
    assert stored is not None
    assert token not in stored
    assert jwt.get_unverified_header(token)["kid"] not in stored


class BrokenStore:
    async def issue(self, key: str, value: str, ttl: float) -> None:
        raise StoreError("nonce store 'broken' is unreachable")

    async def consume(self, key: str, remember_for: float) -> Any:
        raise StoreError("nonce store 'broken' is unreachable")


class BrokenStorePlugin:
    @hookimpl
    def lti_nonce_store(self, config: Any) -> BrokenStore:
        return BrokenStore()


async def test_store_failure_fails_closed_with_503(platform: FakePlatform) -> None:
    tool = make_tool(platform, plugins=(BrokenStorePlugin(),))

    response = await tool.http.get(
        "/lti/login",
        params={"iss": ISS, "login_hint": "h", "target_link_uri": TOOL_APP},
        headers={"accept": "application/json"},
    )

    body = assert_refused(response, "store_unavailable")
    assert "state store is unavailable" in body["detail"]
    assert "broken" not in response.text
    assert "location" not in response.headers


def test_memory_store_warns_when_several_workers_seem_to_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from .conftest import StoresPlugin

    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    config = tool_config()
    keys_only = StoresPlugin(lambda: 0.0)
    with caplog.at_level("WARNING", logger="lti_middleware"):
        LTIMiddleware(inner_app(), config=config, plugins=[KeysOnly(keys_only.keys)])

    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "WEB_CONCURRENCY is 4" in warnings[0]
    assert "[plugins.redis]" in warnings[0]


def test_memory_store_is_quiet_for_one_worker(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from .conftest import StoresPlugin

    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    keys = StoresPlugin(lambda: 0.0).keys
    with caplog.at_level("WARNING", logger="lti_middleware"):
        LTIMiddleware(inner_app(), config=tool_config(), plugins=[KeysOnly(keys)])

    assert [r for r in caplog.records if r.levelname == "WARNING"] == []


class KeysOnly:
    def __init__(self, keys: Any) -> None:
        self.keys = keys

    @hookimpl
    def lti_key_provider(self, config: Any) -> Any:
        return self.keys


def test_settings_table_without_its_plugin_fails_at_start_up() -> None:
    config = tool_config(plugin_settings={"redis": {"url": "redis://127.0.0.1"}})
    keys = KeysOnly(StoresPlugin(lambda: 0.0).keys)

    with pytest.raises(ConfigurationError) as error:
        LTIMiddleware(inner_app(), config=config, plugins=[keys])

    assert error.value.key == "plugins.redis"
    assert "load_entry_points=True" in str(error.value)


@pytest.mark.parametrize("stored", ["{}", "[]", "null", "not json", '{"issuer": 1}'])
async def test_corrupt_launch_record_is_not_found_not_a_crash(
    tool: ToolClient, stored: str
) -> None:
    await tool.middleware.launches.save("corrupt", stored, 60)

    response = await tool.http.get(
        "/app", params={"lti_launch": "corrupt"}, headers={"accept": "application/json"}
    )

    assert_refused(response, "launch_not_found")

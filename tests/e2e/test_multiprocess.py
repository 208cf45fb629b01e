"""The quiz app as two server processes sharing one Redis, behind one tool URL.

Processes A and B run the same configuration: the tool's URLs name A's port,
and chosen requests go to B's port with A's Host header, as a load balancer
would send them. The middleware routes by path, so B answers them as the same
tool. The development platform serves in this process. A real Redis at
127.0.0.1:6379 holds the state, under a key prefix of this module's own.

Without ``[plugins.redis]`` the same two processes show what the README warns
about: a login kept by A is unknown to B. Under ``uvicorn --workers 2`` the
in-memory stores say so at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from lti_middleware.devplatform import PlatformSettings

from .lti_steps import (
    QUIZ_LINK,
    Platform,
    answers,
    error_of,
    launch_id_of,
    launch_request,
    log_in,
    post_launch,
    write_tool_config,
)
from .processes import ChildProcess, free_port, jwks_url, quiz_app, require_redis_at

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/0"
MEMORY_WARNING = "keeps login state and nonces in this process's memory"
STARTED = "Application startup complete."
REPLAYS = 20


@dataclass
class Cluster:
    """The platform and two processes of the tool, A and B."""

    platform: Platform
    a: str
    b: str
    processes: tuple[ChildProcess, ChildProcess]

    @property
    def settings(self) -> PlatformSettings:
        return self.platform.settings

    def on(self, origin: str, url: str) -> tuple[str, dict[str, str]]:
        """``url`` sent to ``origin`` instead, keeping its Host header."""
        parts = urlsplit(url)
        moved = parts._replace(netloc=urlsplit(origin).netloc).geturl()
        return moved, {"Host": parts.netloc}


@contextlib.contextmanager
def running_cluster(
    directory: Path, plugins: Mapping[str, Mapping[str, str | float]]
) -> Iterator[Cluster]:
    """Platform, then A and B started side by side; all stopped on exit."""
    port_a, port_b = free_port(), free_port()
    platform = Platform(f"http://127.0.0.1:{port_a}")
    started: list[ChildProcess] = []
    try:
        config = write_tool_config(directory, platform.settings, plugins)
        for name, port in (("tool-A", port_a), ("tool-B", port_b)):
            started.append(quiz_app(name, config, port))
        for child, port in zip(started, (port_a, port_b), strict=True):
            child.wait_until_answering(jwks_url(port))

        yield Cluster(
            platform,
            f"http://127.0.0.1:{port_a}",
            f"http://127.0.0.1:{port_b}",
            (started[0], started[1]),
        )
    finally:
        for child in started:
            child.stop()
        platform.stop()


@pytest.fixture(scope="module")
def redis_prefix() -> Iterator[str]:
    """A key prefix of this module's own; its keys are deleted afterwards."""
    require_redis_at(REDIS_URL)
    prefix = f"lti-test-multiprocess-{secrets.token_hex(8)}:"
    yield prefix

    with redis.Redis.from_url(REDIS_URL, socket_timeout=5.0) as client:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, redis_prefix: str
) -> Iterator[Cluster]:
    plugins = {"redis": {"url": REDIS_URL, "prefix": redis_prefix}}
    with running_cluster(tmp_path_factory.mktemp("redis-cluster"), plugins) as c:
        yield c


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    with redis.Redis.from_url(REDIS_URL, socket_timeout=5.0) as client:
        yield client


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    # trust_env=False: no proxy from the environment may see this traffic.
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        yield client


def test_login_on_a_launch_on_b_then_replay_on_a_is_refused(
    cluster: Cluster,
    browser: httpx.Client,
    redis_client: redis.Redis,
    redis_prefix: str,
) -> None:
    form = log_in(browser, cluster.settings, "learner-1")
    assert urlsplit(form.action).netloc == urlsplit(cluster.a).netloc

    launched = post_launch(browser, form, to=cluster.b)
    launch_id = launch_id_of(launched)
    landing = launched.headers["location"]
    page = browser.get(landing)
    replay = post_launch(browser, form, to=cluster.a)

    assert landing.startswith(cluster.a + "/?")
    assert page.status_code == 200, page.text
    assert "Ben Learner</strong> (learner)" in page.text
    assert f"/submit?lti_launch={launch_id}" in page.text
    hashed = hashlib.sha256(launch_id.encode()).hexdigest()
    assert redis_client.exists(f"{redis_prefix}launch:{hashed}") == 1
    assert replay.status_code == 400
    assert "location" not in replay.headers
    assert error_of(replay) == "state_already_used"


async def test_score_posts_from_both_processes_share_one_access_token(
    cluster: Cluster,
    browser: httpx.Client,
    redis_client: redis.Redis,
    redis_prefix: str,
) -> None:
    # Whatever an earlier test cached, this test starts with no token.
    for key in redis_client.scan_iter(match=f"{redis_prefix}token*"):
        redis_client.delete(key)
    before = cluster.platform.stats(browser)
    first = launch_id_of(
        post_launch(browser, log_in(browser, cluster.settings, "learner-1"))
    )
    second = launch_id_of(
        post_launch(
            browser, log_in(browser, cluster.settings, "learner-2"), to=cluster.b
        )
    )
    # Two submits per launch, one on each process, all at once.
    posts = [
        (launch_id, origin, correct)
        for launch_id, correct in ((first, 3), (second, 1))
        for origin in (cluster.a, cluster.b)
    ]

    async with httpx.AsyncClient(trust_env=False, timeout=20.0) as client:

        async def submit(launch_id: str, origin: str, correct: int) -> httpx.Response:
            url, headers = cluster.on(
                origin, f"{cluster.a}/submit?lti_launch={launch_id}"
            )
            return await client.post(url, data=answers(correct), headers=headers)

        results = await asyncio.gather(*(submit(*post) for post in posts))

    after = cluster.platform.stats(browser)
    for result, (_, _, correct) in zip(results, posts, strict=True):
        assert result.status_code == 200, result.text
        assert f"You scored <strong>{correct}/3</strong>" in result.text
    assert after["token_requests"] - before["token_requests"] == 1
    assert after["tokens_issued"] - before["tokens_issued"] == 1
    assert after["scores_received"] - before["scores_received"] == len(posts)
    scores = cluster.platform.state.scores
    assert scores[(QUIZ_LINK.line_item_id, "learner-1")].score_given == 3.0
    assert scores[(QUIZ_LINK.line_item_id, "learner-2")].score_given == 1.0


async def test_concurrent_replays_across_both_processes_one_succeeds(
    cluster: Cluster, browser: httpx.Client
) -> None:
    form = log_in(browser, cluster.settings, "learner-2")
    targets = [(cluster.a, cluster.b)[index % 2] for index in range(REPLAYS)]

    async with httpx.AsyncClient(trust_env=False, timeout=20.0) as client:

        async def send(origin: str) -> httpx.Response:
            url, headers = launch_request(form, to=origin)
            return await client.post(url, data=form.fields, headers=headers)

        responses = await asyncio.gather(*(send(origin) for origin in targets))

    accepted = [r for r in responses if r.status_code == 303]
    refused = [r for r in responses if r.status_code != 303]
    assert len(accepted) == 1, [r.status_code for r in responses]
    assert [r.status_code for r in refused] == [400] * (REPLAYS - 1)
    assert {error_of(r) for r in refused} == {"state_already_used"}
    page = browser.get(accepted[0].headers["location"])
    assert page.status_code == 200
    assert "Chloé Learner</strong> (learner)" in page.text


def test_memory_stores_lose_a_login_across_processes(
    tmp_path: Path, browser: httpx.Client
) -> None:
    # What the README warns about, and why [plugins.redis] is needed.
    with running_cluster(tmp_path, {}) as memory:
        form = log_in(browser, memory.settings, "learner-1")

        on_b = post_launch(browser, form, to=memory.b)
        on_a = post_launch(browser, form, to=memory.a)

        outputs = [child.output for child in memory.processes]

    assert on_b.status_code == 400
    assert error_of(on_b) == "state_unknown"
    # The login is kept where it began: A, which issued it, accepts it.
    assert on_a.status_code == 303, on_a.text
    # One process each: no start-up warning about several workers.
    assert all(MEMORY_WARNING not in output for output in outputs)


def test_several_workers_on_memory_stores_warn_at_start_up(tmp_path: Path) -> None:
    port = free_port()
    settings = PlatformSettings.for_tool(
        f"http://127.0.0.1:{port}", base_url=f"http://127.0.0.1:{free_port()}"
    )
    config = write_tool_config(tmp_path, settings)
    child = quiz_app("tool-workers", config, port, workers=2)
    try:
        warned = child.wait_for_output(MEMORY_WARNING, timeout=20.0)
        child.wait_until_answering(jwks_url(port))
    finally:
        child.stop()

    assert warned, child.output
    assert "spawned by a worker manager (uvicorn --workers)" in child.output
    assert "Configure a shared store ([plugins.redis]) or run one worker" in (
        child.output
    )


def test_several_workers_on_redis_start_without_the_warning(
    tmp_path: Path, redis_prefix: str
) -> None:
    port = free_port()
    settings = PlatformSettings.for_tool(
        f"http://127.0.0.1:{port}", base_url=f"http://127.0.0.1:{free_port()}"
    )
    plugins = {"redis": {"url": REDIS_URL, "prefix": redis_prefix}}
    config = write_tool_config(tmp_path, settings, plugins)
    child = quiz_app("tool-workers-redis", config, port, workers=2)
    try:
        # Each worker builds the app, and so would warn, before this line.
        started = child.wait_for_output(STARTED, timeout=20.0, count=2)
        child.wait_until_answering(jwks_url(port))
    finally:
        child.stop()

    assert started, child.output
    assert MEMORY_WARNING not in child.output

"""What the Redis stores cost and what they save: launches/s and token requests.

Prints two comparisons, side by side in one run, so the noise of a shared
machine hits both sides alike:

1. Launch validation throughput with the in-memory stores and with the Redis
   stores. The tool (the middleware around a tiny app) and the development
   platform run in this process, joined by httpx's ASGI transport; both setups
   launch in alternating order, round after round, and the median launches/s
   of each and their ratio are printed. "Tool side" counts only the two
   requests the middleware answers (login and launch POST, with every Redis
   round trip); "whole flow" adds the platform's pages and id_token signing.
2. Token requests per N concurrent score posts across two worker processes.
   The development platform is served by uvicorn on 127.0.0.1; each worker
   process builds its own LTIMiddleware, launches once, then sends N/2 score
   posts through the middleware at once (asyncio.gather). With the Redis token
   store, shared under one prefix, the workers should make one token request
   between them; with an in-memory token store each process asks alone (2).

Needs a Redis server (``--redis``, default redis://127.0.0.1:6379/0). Every key
is written under a prefix unique to the run and deleted at the end; the worker
processes and the server are stopped before the script exits.

Run: ``python benchmarks/stores_and_workers.py [--rounds 5] [--posts 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import queue
import re
import secrets
import socket
import statistics
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from html import unescape
from typing import Any

import httpx
import redis
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from lti_middleware import (
    LTIMiddleware,
    Registration,
    ToolConfig,
    generate_key,
    hookimpl,
)
from lti_middleware.devplatform.app import create_platform
from lti_middleware.devplatform.settings import LAUNCH_PATH, PlatformSettings
from lti_middleware.keys import StaticKeyProvider, ToolKey, load_key
from lti_middleware.redis_plugin import plugin as redis_plugin
from lti_middleware.stores.memory import MemoryAccessTokenStore

TOOL = "http://localhost:8000"
IN_PROCESS_PLATFORM = "http://localhost:8001"
HOST = "127.0.0.1"
DEFAULT_REDIS = f"redis://{HOST}:6379/0"
#: Seconds any one step of the two-process run may take before we give up.
STEP_TIMEOUT = 60.0
JSON = {"accept": "application/json"}
_FIELD = re.compile(r'name="(id_token|state)" value="([^"]*)"')


class Router(httpx.AsyncBaseTransport):
    """Sends each request to the transport that owns its origin; no other."""

    def __init__(self) -> None:
        self.routes: dict[str, httpx.AsyncBaseTransport] = {}

    def add(self, origin: str, transport: httpx.AsyncBaseTransport) -> None:
        self.routes[origin] = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = f"{request.url.scheme}://{request.url.netloc.decode()}"
        transport = self.routes.get(origin)
        if transport is None:
            raise httpx.ConnectError(f"no route to {origin} in this benchmark")
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        for transport in self.routes.values():
            await transport.aclose()


class Keys:
    """Supplies the tool's signing key."""

    def __init__(self, key: ToolKey) -> None:
        self.provider = StaticKeyProvider([key])

    @hookimpl
    def lti_key_provider(self, config: ToolConfig) -> StaticKeyProvider:
        return self.provider


class ProcessTokenCache:
    """Keeps access tokens in this process's memory, whatever else is set."""

    @hookimpl(tryfirst=True)
    def lti_access_token_store(self, config: ToolConfig) -> MemoryAccessTokenStore:
        return MemoryAccessTokenStore()


async def grade(request: Request) -> PlainTextResponse:
    await request.state.lti.ags.post_score(score_given=7, score_maximum=10)
    return PlainTextResponse("graded")


def tool_config(
    settings: PlatformSettings, redis_url: str | None, prefix: str
) -> ToolConfig:
    plugin_settings = {}
    if redis_url is not None:
        plugin_settings["redis"] = {"url": redis_url, "prefix": prefix}
    registration = Registration(
        issuer=settings.issuer,
        client_id=settings.client_id,
        deployment_ids=(settings.deployment_id,),
        auth_login_url=settings.auth_login_url,
        token_url=settings.token_url,
        key_set_url=settings.key_set_url,
    )

    return ToolConfig(
        login_url=TOOL + "/lti/login",
        launch_url=TOOL + "/lti/launch",
        jwks_url=TOOL + "/lti/jwks",
        registrations=(registration,),
        plugin_settings=plugin_settings,
    )


def build_tool(
    config: ToolConfig, key: ToolKey, router: Router, *, memory_tokens: bool = False
) -> LTIMiddleware:
    plugins: list[object] = [Keys(key)]
    if "redis" in config.plugin_settings:
        plugins.append(redis_plugin)
    if memory_tokens:
        plugins.append(ProcessTokenCache())
    app = Starlette(routes=[Route("/", grade, methods=["GET"])])
    http = httpx.AsyncClient(transport=router, timeout=STEP_TIMEOUT)

    return LTIMiddleware(app, config=config, plugins=plugins, http=http)


async def launch(
    browser: httpx.AsyncClient, platform: str, user_id: str
) -> tuple[str, float]:
    """One browser launch: the landing URL and the seconds the tool took."""
    response = await browser.get(platform + LAUNCH_PATH, params={"user_id": user_id})
    started = time.perf_counter()
    login = await browser.get(response.headers["location"])
    tool_seconds = time.perf_counter() - started
    # httpx keeps Secure cookies off plain http; carry the state cookie by hand.
    cookie = login.headers["set-cookie"].split(";")[0]
    form_page = await browser.get(login.headers["location"])
    fields = {name: unescape(value) for name, value in _FIELD.findall(form_page.text)}
    started = time.perf_counter()
    landed = await browser.post(
        TOOL + "/lti/launch", data=fields, headers={"cookie": cookie}
    )
    tool_seconds += time.perf_counter() - started
    browser.cookies.clear()
    if landed.status_code != 303:
        raise SystemExit(f"launch failed: {landed.status_code} {landed.text[:300]}")

    return landed.headers["location"], tool_seconds


# 1. Launch throughput, memory vs Redis, in one process.


class LaunchSetup:
    """A tool and a platform in this process, joined by ASGI transports."""

    def __init__(self, redis_url: str | None, prefix: str) -> None:
        router = Router()
        settings = PlatformSettings.for_tool(TOOL, base_url=IN_PROCESS_PLATFORM)
        self.platform = create_platform(
            settings, http_client=httpx.AsyncClient(transport=router)
        )
        config = tool_config(settings, redis_url, prefix)
        self.tool = build_tool(config, generate_key(), router)
        self.redis_commands = 0
        for store in (self.tool.nonces, self.tool.launches):
            client = getattr(store, "client", None)
            if client is not None:
                client.execute_command = self._counted(client.execute_command)
        router.add(TOOL, httpx.ASGITransport(app=self.tool))
        router.add(IN_PROCESS_PLATFORM, httpx.ASGITransport(app=self.platform))
        self.browser = httpx.AsyncClient(transport=router)

    def _counted(self, execute: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*args: Any, **options: Any) -> Any:
            self.redis_commands += 1
            return await execute(*args, **options)

        return counted

    async def run(self, launches: int) -> tuple[float, float]:
        """Launches per second: tool side, whole flow."""
        tool_seconds = 0.0
        started = time.perf_counter()
        for _ in range(launches):
            _, seconds = await launch(self.browser, IN_PROCESS_PLATFORM, "learner-1")
            tool_seconds += seconds
        whole = time.perf_counter() - started

        return launches / tool_seconds, launches / whole

    async def aclose(self) -> None:
        await self.tool.aclose()
        await self.browser.aclose()


async def launch_throughput(
    redis_url: str, prefix: str, rounds: int, launches: int
) -> tuple[dict[str, list[tuple[float, float]]], float]:
    setups = {
        "memory": LaunchSetup(None, prefix),
        "redis": LaunchSetup(redis_url, prefix),
    }
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
    try:
        # Warm up: the platform key set fetch and the Redis connections.
        for setup in setups.values():
            await setup.run(3)
            setup.redis_commands = 0
        for round_number in range(rounds):
            # Alternate who goes first, so drift over the run hits both.
            order = list(setups) if round_number % 2 == 0 else list(setups)[::-1]
            for name in order:
                figures[name].append(await setups[name].run(launches))
    finally:
        for setup in setups.values():
            await setup.aclose()
    per_launch = setups["redis"].redis_commands / (rounds * launches)

    return figures, per_launch


# 2. Token requests across two worker processes.


def worker_main(
    name: str,
    user_id: str,
    platform: str,
    pem: bytes,
    redis_url: str,
    prefix: str,
    memory_tokens: bool,
    posts: int,
    barrier: Any,
    results: Any,
) -> None:
    """A worker process: launch once, wait for the others, post ``posts`` scores."""
    try:
        outcome = asyncio.run(
            worker(
                user_id, platform, pem, redis_url, prefix, memory_tokens, posts, barrier
            )
        )
        results.put({"worker": name, **outcome})
    except BaseException:
        barrier.abort()
        results.put({"worker": name, "error": traceback.format_exc()})


async def worker(
    user_id: str,
    platform: str,
    pem: bytes,
    redis_url: str,
    prefix: str,
    memory_tokens: bool,
    posts: int,
    barrier: Any,
) -> dict[str, Any]:
    logged = LogCollector.install()
    settings = PlatformSettings.for_tool(TOOL, base_url=platform)
    router = Router()
    tool = build_tool(
        tool_config(settings, redis_url, prefix),
        load_key(pem),
        router,
        memory_tokens=memory_tokens,
    )
    router.add(TOOL, httpx.ASGITransport(app=tool))
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    router.add(platform, httpx.AsyncHTTPTransport(limits=limits))
    browser = httpx.AsyncClient(transport=router, timeout=STEP_TIMEOUT)
    try:
        landing, _ = await launch(browser, platform, user_id)
        # Everyone launched: start the score posts in both processes together.
        await asyncio.to_thread(barrier.wait, STEP_TIMEOUT)
        started = time.perf_counter()
        answers = await asyncio.gather(
            *(browser.get(landing, headers=JSON) for _ in range(posts))
        )
        elapsed = time.perf_counter() - started
    finally:
        await browser.aclose()
        await tool.aclose()
    failures = Counter(refusal(answer) for answer in answers if answer.text != "graded")

    return {
        "graded": posts - failures.total(),
        "seconds": elapsed,
        "failures": dict(failures),
        "logged": dict(logged.messages),
    }


def refusal(answer: httpx.Response) -> str:
    """One line saying why the middleware or the app refused a post."""
    try:
        body = answer.json()
        return f"{answer.status_code} {body['error']}: {body['detail']}"[:240]
    except (ValueError, KeyError, TypeError):
        return f"{answer.status_code} {answer.text[:200]}"


class LogCollector(logging.Handler):
    """Counts the library's log messages instead of printing each one."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages[f"{record.levelname} {record.getMessage()[:240]}"] += 1

    @classmethod
    def install(cls) -> LogCollector:
        collector = cls()
        library = logging.getLogger("lti_middleware")
        library.addHandler(collector)
        library.propagate = False
        return collector


def serve_key_set(key: ToolKey, jwks_url: str) -> httpx.AsyncClient:
    """The platform's client for the tool's key set, answered in process."""

    def answer(request: httpx.Request) -> httpx.Response:
        if str(request.url) != jwks_url:
            return httpx.Response(404)
        return httpx.Response(200, json={"keys": [key.public_jwk()]})

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


async def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def in_thread(call: Callable[[], Any], what: str) -> Any:
    try:
        return await asyncio.to_thread(call)
    except threading.BrokenBarrierError:
        raise SystemExit(f"a worker failed before {what}") from None
    except queue.Empty:
        raise SystemExit(f"no answer from a worker before {what}") from None


async def two_workers(
    redis_url: str, prefix: str, posts: int, *, memory_tokens: bool
) -> dict[str, Any]:
    """Serve the platform, run two worker processes, count what it received."""
    listener = socket.socket()
    listener.bind((HOST, 0))
    platform_url = f"http://{HOST}:{listener.getsockname()[1]}"
    settings = PlatformSettings.for_tool(TOOL, base_url=platform_url)
    key = generate_key()
    platform = create_platform(
        settings, http_client=serve_key_set(key, settings.tool_jwks_url)
    )
    server = uvicorn.Server(
        uvicorn.Config(platform, log_level="warning", access_log=False, lifespan="off")
    )
    serving = asyncio.create_task(server.serve(sockets=[listener]))

    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(3)
    results = spawn.Queue()
    share = [posts // 2, posts - posts // 2]
    workers = [
        spawn.Process(
            target=worker_main,
            name=f"bench-worker-{index}",
            args=(
                f"worker {index + 1}",
                f"learner-{index + 1}",
                platform_url,
                key.private_pem(),
                redis_url,
                prefix,
                memory_tokens,
                share[index],
                barrier,
                results,
            ),
        )
        for index in range(2)
    ]
    try:
        await until(lambda: server.started, "the platform server")
        for process in workers:
            process.start()
        await in_thread(lambda: barrier.wait(STEP_TIMEOUT), "the score posts")
        outcomes = [
            await in_thread(lambda: results.get(timeout=STEP_TIMEOUT), "the end")
            for _ in workers
        ]
    except SystemExit:
        for _ in workers:
            try:
                outcome = results.get(timeout=5)
            except queue.Empty:
                break
            if "error" in outcome:
                print(f"{outcome['worker']} failed:\n{outcome['error']}")
        raise
    finally:
        for process in workers:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join()
        server.should_exit = True
        await serving
        listener.close()

    for outcome in outcomes:
        if "error" in outcome:
            raise SystemExit(f"{outcome['worker']} failed:\n{outcome['error']}")
    state = platform.state.platform

    failures: Counter[str] = Counter()
    logged: Counter[str] = Counter()
    for outcome in outcomes:
        failures.update(outcome["failures"])
        logged.update(outcome["logged"])

    return {
        "token_requests": len(state.token_requests),
        "scores_received": state.scores_received,
        "graded": sum(outcome["graded"] for outcome in outcomes),
        "wall": max(outcome["seconds"] for outcome in outcomes),
        "failures": failures,
        "logged": logged,
    }


# Reporting.


def report_launches(
    figures: dict[str, list[tuple[float, float]]],
    commands: float,
    rounds: int,
    launches: int,
) -> None:
    print(
        f"1. Launch validation, memory vs Redis stores: {rounds} rounds x "
        f"{launches} launches each, one at a time, interleaved"
    )
    print(f"  {'median launches/s':<26}{'memory':>10}{'redis':>10}{'redis/memory':>14}")
    labels = ("tool side (login+launch)", "whole flow (5 requests)")
    for index, label in enumerate(labels):
        memory = statistics.median(f[index] for f in figures["memory"])
        shared = statistics.median(f[index] for f in figures["redis"])
        print(f"  {label:<26}{memory:>10.1f}{shared:>10.1f}{shared / memory:>14.2f}")
    per_round = [
        f"{r[0] / m[0]:.2f}"
        for m, r in zip(figures["memory"], figures["redis"], strict=True)
    ]
    print(f"  tool-side ratio per round: {' '.join(per_round)}")
    print(f"  Redis commands per launch: {commands:.1f}")


def report_workers(figures: dict[str, dict[str, Any]], posts: int) -> bool:
    """Print the two-process figures; True when every target was met."""
    print(
        f"2. Token requests for {posts} concurrent score posts: 2 worker processes "
        f"x {posts // 2}, platform on uvicorn at {HOST}"
    )
    columns = {"redis": "redis (shared)", "memory": "memory (each)"}
    print(f"  {'token store':<26}" + "".join(f"{c:>16}" for c in columns.values()))
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("token requests made", lambda f: f"{f['token_requests']}"),
        ("scores received", lambda f: f"{f['scores_received']}"),
        ("posts refused by the tool", lambda f: f"{f['failures'].total()}"),
        ("wall time, slowest worker", lambda f: f"{f['wall']:.2f} s"),
        ("score posts/s", lambda f: f"{f['scores_received'] / f['wall']:.0f}"),
    ]
    for label, show in rows:
        cells = "".join(f"{show(figures[c]):>16}" for c in columns)
        print(f"  {label:<26}{cells}")
    print(f"  targets: 1 and 2 token requests, {posts} scores received in each run")

    for column in columns:
        for what, tally in (("refused", "failures"), ("logged", "logged")):
            for text, count in figures[column][tally].most_common(3):
                print(f"  {column}: {count} x {what}: {text}")
    expected_tokens = {"redis": 1, "memory": 2}

    return all(
        figures[c]["token_requests"] == expected_tokens[c]
        and figures[c]["scores_received"] == posts
        for c in columns
    )


def delete_keys(redis_url: str, prefix: str) -> int:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()

    return len(keys)


def check_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        raise SystemExit(f"no Redis answers at {redis_url}: {error}") from None
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--launches", type=int, default=40, help="per setup per round")
    parser.add_argument("--posts", type=int, default=1000, help="across both workers")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help="server URL")
    args = parser.parse_args()
    if args.rounds < 1 or args.launches < 1 or args.posts < 2:
        parser.error("--rounds and --launches must be >= 1, --posts >= 2")

    check_redis(args.redis)
    prefix = f"lti-bench-{secrets.token_hex(6)}:"
    started = time.perf_counter()
    try:
        figures, commands = asyncio.run(
            launch_throughput(args.redis, prefix + "l-", args.rounds, args.launches)
        )
        report_launches(figures, commands, args.rounds, args.launches)
        print()
        workers = {
            "redis": asyncio.run(
                two_workers(args.redis, prefix + "w-", args.posts, memory_tokens=False)
            ),
            "memory": asyncio.run(
                two_workers(args.redis, prefix + "m-", args.posts, memory_tokens=True)
            ),
        }
        met = report_workers(workers, args.posts)
    finally:
        deleted = delete_keys(args.redis, prefix)
        print(
            f"\n{deleted} Redis keys under {prefix!r} deleted; "
            f"{time.perf_counter() - started:.1f} s in all"
        )

    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

"""Child processes for end-to-end tests: servers started, awaited and stopped.

:class:`ChildProcess` runs a command with its output (stdout and stderr) read
line by line by a thread, so a test can wait for a line to appear, and a
chatty server never blocks on a full pipe. :class:`RedisServer` is a
throw-away ``redis-server`` on a free port of 127.0.0.1, which a test may
stop, restart on the same port, or pause. Everything binds 127.0.0.1 only.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
import redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# Between two readiness probes we wait for new output, at most this long.
PROBE_INTERVAL = 0.05
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
#: Set (as in CI) to make a missing Redis fail the Redis tests, not skip them.
REQUIRE_REDIS = "LTI_TEST_REQUIRE_REDIS"


class ServerStartError(RuntimeError):
    """A child process exited early or never became ready; carries its output."""


def skip_without_redis(message: str) -> NoReturn:
    """Skip the test saying ``message``; fail instead when Redis is required."""
    if os.environ.get(REQUIRE_REDIS):
        pytest.fail(message)
    pytest.skip(message)


def require_redis_at(url: str) -> None:
    """Skip (or fail, see REQUIRE_REDIS) unless a Redis answers PING at ``url``."""
    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        client.ping()
    except redis.RedisError as error:
        skip_without_redis(f"no Redis answers at {url} ({error}); start redis-server")
    finally:
        client.close()


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
    return port


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without proxies or worker hints, plus ``extra``.

    Children talk to 127.0.0.1 only: no proxy variable may send their
    traffic elsewhere, and a WEB_CONCURRENCY of the caller must not change
    what the tool believes about its workers.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in _PROXY_VARIABLES
        and name not in ("WEB_CONCURRENCY", "LTI_MIDDLEWARE_CONFIG")
    }
    env["NO_PROXY"] = env["no_proxy"] = f"{LOOPBACK},localhost"
    env.update(extra or {})
    return env


class ChildProcess:
    """A command running in its own session, its output collected as it comes."""

    def __init__(
        self, name: str, command: Sequence[str], *, env: Mapping[str, str]
    ) -> None:
        self.name = name
        self.command = list(command)
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        # A session of its own: uvicorn --workers children can be reached as
        # one group if the parent does not stop them.
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(
            target=self._read, name=f"output-{name}", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    @property
    def output(self) -> str:
        """Everything the process wrote so far, stdout and stderr interleaved."""
        with self._changed:
            return "".join(self._lines)

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        for line in stream:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for_output(self, text: str, timeout: float, *, count: int = 1) -> bool:
        """Whether ``text`` appears ``count`` times within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while "".join(self._lines).count(text) < count:
                remaining = deadline - time.monotonic()
                if self._ended or remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def wait_until(self, probe: Callable[[], bool], what: str) -> None:
        """Call ``probe`` until it returns True, within START_TIMEOUT.

        Raises ServerStartError, with the output so far, when the process
        exits first or the deadline passes.
        """
        deadline = time.monotonic() + START_TIMEOUT
        while not probe():
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"{self.name} exited with {self.process.returncode} before "
                    f"{what}:\n{self.output}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServerStartError(
                    f"{self.name}: no {what} within {START_TIMEOUT} s:\n{self.output}"
                )
            with self._changed:
                self._changed.wait(min(PROBE_INTERVAL, remaining))

    def wait_until_answering(self, url: str) -> None:
        """Poll ``GET url`` until it answers below 500."""

        def answers() -> bool:
            try:
                response = httpx.get(url, timeout=2.0, trust_env=False)
            except httpx.TransportError:
                return False
            return response.status_code < 500

        self.wait_until(answers, f"answer from {url}")

    def send_signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to this process only."""
        self.process.send_signal(sig)

    def stop(self) -> None:
        """Terminate, wait, kill if needed, close the pipe; safe to call twice."""
        if self.process.poll() is None:
            # A paused process acts on SIGTERM only once it runs again.
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.process.wait(STOP_TIMEOUT)
        self._reader.join(STOP_TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def _kill_group(self) -> None:
        # The group holds this process and the children it started, no other.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            self.process.kill()


def uvicorn_command(port: int, *, workers: int = 1) -> list[str]:
    """The quiz app under uvicorn on 127.0.0.1:``port``."""
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "example_apps.quiz_app:create_app",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--no-access-log",
    ]
    if workers > 1:
        command += ["--workers", str(workers)]
    return command


def quiz_app(
    name: str, config_path: Path, port: int, *, workers: int = 1
) -> ChildProcess:
    """The quiz app starting as its own process, configured by ``config_path``.

    Returns at once; wait with ``wait_until_answering(jwks_url(port))``.
    """
    return ChildProcess(
        name,
        uvicorn_command(port, workers=workers),
        env=child_environment({"LTI_MIDDLEWARE_CONFIG": str(config_path)}),
    )


def jwks_url(port: int) -> str:
    """The quiz app's key set URL on ``port``: it answers once the app is up."""
    return f"http://{LOOPBACK}:{port}/lti/jwks"


class RedisServer:
    """A ``redis-server`` of the test's own, with a password, on a free port."""

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            skip_without_redis("redis-server is not on PATH")
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self.child: ChildProcess | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """The URL a client connects with, password included."""
        return f"redis://:{self.password}@{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        """Start (or start again, on the same port, empty); returns once PING works."""
        self.starts += 1
        command = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            LOOPBACK,
            "--requirepass",
            self.password,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
        ]
        self.child = ChildProcess(
            f"redis-server-{self.starts}", command, env=child_environment()
        )
        try:
            self.child.wait_until(self.answers_ping, "PING answer")
        except BaseException:
            self.child.stop()
            raise

    def answers_ping(self) -> bool:
        """Whether the server answers PING within a second."""
        client = self.client(timeout=1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def client(self, timeout: float = 2.0) -> redis.Redis:
        """A synchronous client for looking at the server's keys."""
        return redis.Redis.from_url(
            self.url, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def stop(self) -> None:
        """Terminate the server (its data is gone: nothing is saved)."""
        if self.child is not None:
            self.child.stop()
            self.child = None

    def pause(self) -> None:
        """SIGSTOP: the server keeps its socket but answers nothing."""
        assert self.child is not None
        self.child.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.child is not None
        self.child.send_signal(signal.SIGCONT)


class ClosingClient:
    """Wraps an ASGI app; closes ``http`` when the server shuts the app down.

    The client then closes in the server's own event loop, where its
    connections were made.
    """

    def __init__(self, app: ASGIApp, http: httpx.AsyncClient) -> None:
        self.app = app
        self.http = http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def wrapped() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.http.aclose()
            return message

        await self.app(scope, wrapped, send)

"""Helpers for benchmark scripts that run real servers on 127.0.0.1.

- :func:`start_server`: an ASGI app factory served by ``python -m uvicorn``
  with one worker, in a subprocess on a free port, stopped by its PID;
- :func:`send_all`: a small HTTP/1.1 load generator over asyncio streams, a
  fixed number of keep-alive connections each sending one request at a time,
  every request timed on its own (cheaper per request than an HTTP client
  library, so the server, not the generator, sets the pace);
- :func:`asgi_call`: one request straight into an ASGI app, with no HTTP;
- :class:`Signer`: RS256 signing of many JWTs in a pool of processes;
- :class:`LogCounter`: a logger's warnings counted, not printed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import uvicorn

from lti_middleware.keys import ToolKey, load_key

HOST = "127.0.0.1"
#: Seconds a server may take to listen, and a request to be answered.
START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0
#: The environment variable that tells a served app its port.
PORT_ENV = "BENCH_PORT"
#: JWTs per task handed to a signing process.
SIGN_CHUNK = 250


class LogCounter(logging.Handler):
    """Counts a logger's warnings instead of printing each one."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.WARNING)
        self.messages: Counter[str] = Counter()
        self.logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages[f"{record.levelname} {record.getMessage()[:200]}"] += 1

    @classmethod
    def install(cls, name: str) -> LogCounter:
        counter = cls(name)
        counter.logger.addHandler(counter)
        counter.logger.propagate = False
        return counter

    def remove(self) -> None:
        self.logger.removeHandler(self)
        self.logger.propagate = True


def progress(message: str) -> None:
    """A progress line on stderr, so stdout keeps only the figures."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100)[pct - 1]


def rss_bytes() -> int:
    """This process's resident set size, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# --- servers in subprocesses --------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def http_flavour() -> str:
    """What uvicorn's ``auto`` picks here: its HTTP parser and event loop."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn {uvicorn.__version__}, {http}, {loop} loop"


class ServerStartError(RuntimeError):
    """A server did not listen in time; the message carries its log."""


@dataclass
class Server:
    """A uvicorn subprocess with one worker."""

    app: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server process has used."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM to its PID; SIGKILL if it has not exited after 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-20:])


def _listening(process: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
        except OSError:
            time.sleep(0.05)
            continue
        # Another process may hold the port; then ours exits on its own.
        time.sleep(0.2)
        return process.poll() is None

    return False


def start_server(
    app: str,
    *,
    app_dir: Path,
    env: Mapping[str, str],
    log: Path,
    port: int | None = None,
) -> Server:
    """Serve ``app`` (``module:factory``) with one uvicorn worker on 127.0.0.1.

    ``env`` is added to this process's environment, with ``BENCH_PORT`` set
    to the port. Without ``port`` a free one is chosen, and chosen again if
    another process takes it first. Raises ServerStartError, with the
    server's log, when it does not start.
    """
    for _ in range(3):
        chosen = port or free_port()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            app,
            "--app-dir",
            str(app_dir),
            "--host",
            HOST,
            "--port",
            str(chosen),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        with log.open("wb") as output:
            process = subprocess.Popen(
                command,
                env={**os.environ, **env, PORT_ENV: str(chosen)},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        server = Server(app, chosen, process, log)
        if _listening(process, chosen):
            return server
        server.stop()
        if port is not None:
            break

    raise ServerStartError(
        f"{app} did not start on {HOST}; its log:\n{server.log_tail()}"
    )


# --- a small HTTP/1.1 load generator ------------------------------------------


@dataclass
class Answer:
    """A response: status, headers (names lower case) and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        for key, value in self.headers:
            if key == name:
                return value
        return ""

    def cookie_header(self) -> str:
        """The cookies this answer sets, as a Cookie request header."""
        pairs = [v.split(";", 1)[0] for k, v in self.headers if k == "set-cookie"]
        return "; ".join(pairs)

    def describe(self) -> str:
        text = self.body[:160].decode("utf-8", "replace").replace("\n", " ")
        return f"{self.status} {self.header('location')[:60]} {text}".strip()


def http_request(
    method: str,
    port: int,
    target: str,
    *,
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """The bytes of one HTTP/1.1 request to 127.0.0.1:``port``."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {HOST}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")

    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = None

    async def send(self, request: bytes) -> Answer:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)

        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = []
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers.append((name.strip().lower(), value.strip()))
        answer = Answer(int(status_line.split(" ", 2)[1]), headers, b"")
        answer.body = await self._body(answer)

        if answer.header("connection").lower() == "close":
            await self.close()
        return answer

    async def _body(self, answer: Answer) -> bytes:
        assert self.reader is not None
        length = answer.header("content-length")
        if length:
            return await self.reader.readexactly(int(length))
        if answer.header("transfer-encoding").lower() != "chunked":
            return b""

        body = bytearray()
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            if size == 0:
                await self.reader.readline()
                return bytes(body)
            body += await self.reader.readexactly(size)
            await self.reader.readexactly(2)


@dataclass
class Run:
    """What :func:`send_all` saw: wall seconds, and per request its latency."""

    seconds: float
    latencies: list[float]
    answers: list[Answer]


async def send_all(port: int, requests: list[bytes], in_flight: int) -> Run:
    """Send every request, ``in_flight`` at a time; time each one.

    The connections are opened before the clock starts. A request that
    fails at the socket gets an Answer with status 0 and the error as body.
    """
    connections = [Connection(port) for _ in range(min(in_flight, len(requests)))]
    for connection in connections:
        await connection.open()
    latencies = [0.0] * len(requests)
    answers = [Answer(0, [], b"")] * len(requests)
    work = iter(enumerate(requests))

    async def worker(connection: Connection) -> None:
        # Every worker pulls from the one iterator, so none sits idle.
        for index, request in work:
            started = time.perf_counter()
            try:
                answers[index] = await asyncio.wait_for(
                    connection.send(request), REQUEST_TIMEOUT
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
                answers[index] = Answer(0, [], repr(error).encode())
                await connection.close()
            latencies[index] = time.perf_counter() - started

    started = time.perf_counter()
    await asyncio.gather(*(worker(connection) for connection in connections))
    seconds = time.perf_counter() - started
    for connection in connections:
        await connection.close()

    return Run(seconds, latencies, answers)


# --- in process -----------------------------------------------------------------


async def asgi_call(
    app: Any,
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes = b"",
    headers: Iterable[tuple[str, str]] = (),
) -> Answer:
    """One request straight into an ASGI app: no HTTP, no client."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": (HOST, 50000),
        "server": ("localhost", 8000),
    }
    delivered = False
    answer = Answer(0, [], b"")
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Mapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = [
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in message.get("headers", [])
            ]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    answer.body = b"".join(chunks)
    return answer


# --- JWT signing in worker processes ------------------------------------------

_signing_key: ToolKey | None = None


def _load_signing_key(pem: bytes) -> None:
    global _signing_key
    _signing_key = load_key(pem)


def _sign(batch: list[dict[str, Any]]) -> list[str]:
    key = _signing_key
    assert key is not None, "the signing process has no key"
    headers = {"kid": key.kid}
    return [
        jwt.encode(claims, key.private_key, algorithm="RS256", headers=headers)
        for claims in batch
    ]


class Signer:
    """Signs JWTs RS256 with ``key`` (its kid in the header) in processes.

    RSA-2048 signing costs about 0.3 ms; two processes keep up with launches
    validated in a third. :meth:`close` stops them.
    """

    def __init__(self, key: ToolKey, processes: int = 2) -> None:
        self.pool = ProcessPoolExecutor(
            processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_load_signing_key,
            initargs=(key.private_pem(),),
        )

    async def sign(self, batch: list[dict[str, Any]]) -> list[str]:
        """The signed JWTs of ``batch``, in order."""
        loop = asyncio.get_running_loop()
        chunks = [
            batch[start : start + SIGN_CHUNK]
            for start in range(0, len(batch), SIGN_CHUNK)
        ]
        signed = await asyncio.gather(
            *(loop.run_in_executor(self.pool, _sign, chunk) for chunk in chunks)
        )
        return [token for chunk in signed for token in chunk]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

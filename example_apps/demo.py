"""One command, one whole LTI round trip: ``python -m example_apps.demo``.

Runs the development platform and the quiz app in one process and walks
through them the way a browser would: a learner's launch and graded
submission; then, as the instructor, deep linking the quiz into the course,
a learner's launch of the placed link graded in its new column, the
instructor's view of the results and the tool's roster page. It prints one
line per step, then keeps both serving so you can try it in a browser. With
``--once`` it exits after the walk-through: 0 when every step worked.

State lives in ``.demo/`` (``--state-dir``): the tool's private key, made
once and reused, and ``lti.toml``, the tool configuration written from the
platform's settings on every run. The quiz app also runs on its own with it::

    LTI_MIDDLEWARE_CONFIG=.demo/lti.toml uvicorn --factory \\
        example_apps.quiz_app:create_app --host 127.0.0.1 --port 8000

URLs say ``localhost``, not 127.0.0.1: browsers treat http://localhost as a
secure context and keep the tool's ``Secure`` state cookie there. Both
servers listen on 127.0.0.1 only, and the demo's HTTP clients connect over
IPv4 only, so a name lookup giving ::1 cannot send them anywhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import uvicorn
from starlette.types import ASGIApp

from lti_middleware import LTIMiddleware, generate_key, load_config
from lti_middleware.devplatform import (
    INSTRUCTOR,
    LEARNER,
    DevResourceLink,
    DevUser,
    PlatformSettings,
    create_platform,
    tool_registration_toml,
)
from lti_middleware.devplatform.settings import DEEP_LINKING_LINK_ID

from .quiz_app import (
    QUESTIONS,
    QUIZ_COLUMN,
    QUIZ_CUSTOM,
    QUIZ_TITLE,
    SCORE_MAXIMUM,
    create_app,
)

HOST = "127.0.0.1"
PUBLIC_HOST = "localhost"
DEFAULT_TOOL_PORT = 8000
DEFAULT_PLATFORM_PORT = 8001
DEFAULT_STATE_DIR = Path(".demo")
KEY_FILE = "tool-key.pem"
CONFIG_FILE = "lti.toml"
HTTP_TIMEOUT = 10.0
START_TIMEOUT = 10.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The course's first link, configured on the platform.
QUIZ_1 = DevResourceLink("rl-1", "Quiz 1", "1", "Quiz 1", float(SCORE_MAXIMUM))

#: Gradebook headings: Quiz 1's column, and the one deep linking asks for.
QUIZ_1_COLUMN = f"{QUIZ_1.line_item_label} (max {QUIZ_1.score_maximum:g})"
NEW_COLUMN = f"{QUIZ_COLUMN.label or QUIZ_TITLE} (max {QUIZ_COLUMN.score_maximum:g})"

Report = Callable[[str], None]


class StartError(Exception):
    """The servers did not start."""


class WalkThroughError(Exception):
    """A step of the walk-through did not give what it should; says which."""


class DemoServer(uvicorn.Server):
    """A uvicorn server that shares its event loop and leaves signals to us."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Two servers run in one loop; the demo stops both on one signal.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(
        prog="python -m example_apps.demo",
        description="Run the development platform and the quiz tool, and try a "
        "launch and a grade end to end.",
    )
    parser.add_argument("--once", action="store_true", help="exit after the check")
    parser.add_argument("--tool-port", type=int, default=DEFAULT_TOOL_PORT)
    parser.add_argument("--platform-port", type=int, default=DEFAULT_PLATFORM_PORT)
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="where the tool key and configuration are kept (default: .demo)",
    )

    return parser.parse_args(argv)


def platform_settings(tool_port: int, platform_port: int) -> PlatformSettings:
    """The platform, registering the quiz at ``localhost:<tool_port>``."""
    return PlatformSettings.for_tool(
        f"http://{PUBLIC_HOST}:{tool_port}",
        base_url=f"http://{PUBLIC_HOST}:{platform_port}",
        resource_links=(QUIZ_1,),
    )


def tool_config_toml(settings: PlatformSettings, key_file: str) -> str:
    """The tool's TOML configuration, its URLs taken from ``settings``."""
    # A JSON string is a valid TOML basic string.
    return (
        "# Written by python -m example_apps.demo on every run.\n"
        "[tool]\n"
        f"login_url = {json.dumps(settings.tool_login_url)}\n"
        f"launch_url = {json.dumps(settings.tool_redirect_uris[0])}\n"
        f"jwks_url = {json.dumps(settings.tool_jwks_url)}\n"
        f"private_key_files = [{json.dumps(key_file)}]\n\n"
        + tool_registration_toml(settings)
    )


def prepare_state(state_dir: Path, settings: PlatformSettings) -> Path:
    """Make the key (first run only) and write the config; returns its path."""
    state_dir.mkdir(parents=True, exist_ok=True)
    key_path = state_dir / KEY_FILE
    if not key_path.exists():
        # Readable by its owner only, from before the secret is written.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(generate_key().private_pem())

    config_path = state_dir / CONFIG_FILE
    config_path.write_text(tool_config_toml(settings, KEY_FILE), encoding="utf-8")

    return config_path


def listen_on(*ports: int) -> list[socket.socket]:
    """TCP sockets bound to 127.0.0.1 at ``ports`` (0 picks a free port).

    Raises OSError naming the port that could not be bound; sockets bound
    before it are closed.
    """
    sockets: list[socket.socket] = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sockets.append(sock)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, port))
        except OSError as error:
            for opened in sockets:
                opened.close()
            raise OSError(f"cannot listen on {HOST}:{port}: {error}") from error

    return sockets


def ipv4_client() -> httpx.AsyncClient:
    """An HTTP client that reaches localhost over IPv4 and ignores proxies."""
    transport = httpx.AsyncHTTPTransport(local_address=HOST)
    return httpx.AsyncClient(transport=transport, trust_env=False, timeout=HTTP_TIMEOUT)


class _Page(HTMLParser):
    """Links, forms and table rows of a page: what the walk-through reads.

    Each table row is kept with the text of the ``<h2>`` heading above it.
    """

    def __init__(self, html: str) -> None:
        super().__init__()
        self.links: list[str] = []
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.rows: list[tuple[str, list[str]]] = []
        self._heading = ""
        self._text: list[str] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "a" and "href" in values:
            self.links.append(values["href"])
        elif tag == "form":
            self.forms.append((values.get("action", ""), {}))
        elif tag == "input" and values.get("type") == "hidden" and self.forms:
            self.forms[-1][1][values.get("name", "")] = values.get("value", "")
        elif tag == "tr":
            self.rows.append((self._heading, []))
        elif tag in ("td", "h2"):
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if self._text is None:
            return
        text = "".join(self._text).strip()
        if tag == "td" and self.rows:
            self.rows[-1][1].append(text)
            self._text = None
        elif tag == "h2":
            self._heading = text
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def _excerpt(response: httpx.Response) -> str:
    text = re.sub(r"<[^>]*>", " ", response.text)
    return " ".join(unescape(text).split())[:300]


def expect(response: httpx.Response, status: int, step: str) -> httpx.Response:
    """``response`` if its status is ``status``; else raise WalkThroughError."""
    if response.status_code != status:
        raise WalkThroughError(
            f"{step}: expected HTTP {status}, got {response.status_code}: "
            f"{_excerpt(response)}"
        )

    return response


def first_form(response: httpx.Response, step: str) -> tuple[str, dict[str, str]]:
    """The absolute action and hidden fields of the page's first form."""
    forms = _Page(response.text).forms
    if not forms:
        raise WalkThroughError(f"{step}: no form on the page: {_excerpt(response)}")
    action, fields = forms[0]

    return urljoin(str(response.url), action), fields


def table(page: httpx.Response, heading: str | None = None) -> list[list[str]]:
    """The data rows of the tables under the ``<h2>`` ``heading`` (None: all)."""
    rows = _Page(page.text).rows
    return [cells for above, cells in rows if cells and heading in (None, above)]


async def launch(
    browser: httpx.AsyncClient,
    settings: PlatformSettings,
    user: DevUser,
    link_id: str = QUIZ_1.id,
    page: str = "quiz page",
) -> httpx.Response:
    """A browser's launch of link ``link_id`` as ``user``; the tool's ``page``.

    The tool's state cookie is ``Secure``. Browsers send it to http://localhost,
    httpx does not, so it is carried by hand to the launch.
    """
    home = expect(await browser.get(settings.home_url), 200, "platform home page")
    link = next(
        (h for h in _Page(home.text).links if _launch_of(h) == (user.id, link_id)),
        None,
    )
    if link is None:
        raise WalkThroughError(
            f"platform home page: no launch link for {user.id} and {link_id}"
        )

    start = expect(await browser.get(link), 302, "platform launch link")
    login = expect(
        await browser.get(start.headers["location"]), 302, "tool login (OIDC)"
    )
    cookie = "; ".join(f"{c.name}={c.value}" for c in login.cookies.jar)
    auth = expect(
        await browser.get(login.headers["location"]), 200, "platform auth endpoint"
    )
    action, fields = first_form(auth, "platform auth endpoint")
    if "id_token" not in fields:
        raise WalkThroughError(
            f"platform auth endpoint answered {fields.get('error')!r}: "
            f"{fields.get('error_description')}"
        )

    posted = await browser.post(action, data=fields, headers={"Cookie": cookie})
    landing = expect(posted, 303, "tool launch").headers["location"]

    return expect(await browser.get(landing), 200, page)


def _launch_of(href: str) -> tuple[str | None, str | None]:
    """The user and resource link ids a platform launch link names."""
    query = parse_qs(urlsplit(href).query)
    user = query.get("user_id", [None])[0]
    return user, query.get("resource_link_id", [None])[0]


def read_launch_line(quiz: httpx.Response) -> tuple[str, str]:
    """The user's name and role as the quiz page shows them."""
    found = re.search(r"Launched by <strong>(.*?)</strong> \((.*?)\)", quiz.text)
    if found is None:
        raise WalkThroughError(f"quiz page: no launch summary: {_excerpt(quiz)}")

    return unescape(found[1]), unescape(found[2])


def grade_of(gradebook: httpx.Response, user: DevUser, column: str) -> str:
    """The score ``column`` lists for ``user``, e.g. ``2/3``; ``""`` for none."""
    for row in table(gradebook, column):
        if row[0] == user.name:
            return row[1].replace(" ", "")

    raise WalkThroughError(f"gradebook: no row for {user.name} in {column!r}")


async def submit(browser: httpx.AsyncClient, quiz: httpx.Response, correct: int) -> str:
    """Answer the first ``correct`` questions right; returns ``correct/max``."""
    action, _ = first_form(quiz, "quiz page")
    answers = {}
    for number, question in enumerate(QUESTIONS):
        wrong = next(c for c in question.choices if c != question.answer)
        answers[question.name] = question.answer if number < correct else wrong
    result = expect(await browser.post(action, data=answers), 200, "quiz submit")
    expected = f"{correct}/{SCORE_MAXIMUM}"
    if expected not in result.text:
        raise WalkThroughError(f"quiz submit: expected {expected}: {_excerpt(result)}")

    return expected


async def walk_through(
    browser: httpx.AsyncClient,
    settings: PlatformSettings,
    tool: LTIMiddleware,
    report: Report | None = None,
) -> list[str]:
    """Every step of the demo; returns one line per step, also passed to ``report``.

    Raises WalkThroughError naming the step that did not give what it should.
    """
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if report is not None:
            report(line)

    await grade_a_learner(browser, settings, tool, say)
    link_id = await place_the_quiz(browser, settings, say)
    learner = await grade_the_placed_quiz(browser, settings, link_id, say)
    await review_as_instructor(browser, settings, link_id, learner, say)

    return lines


async def grade_a_learner(
    browser: httpx.AsyncClient,
    settings: PlatformSettings,
    tool: LTIMiddleware,
    say: Report,
) -> None:
    """Launch Quiz 1 as a learner, answer 2 of 3 right, check the gradebook."""
    user = next(u for u in settings.users if LEARNER in u.roles)
    quiz = await launch(browser, settings, user)
    name, role = read_launch_line(quiz)
    say(f"launch ok ({name}, {role})")

    expected = await submit(browser, quiz, 2)
    gradebook = expect(await browser.get(settings.gradebook_url), 200, "gradebook")
    grade = grade_of(gradebook, user, QUIZ_1_COLUMN)
    if grade != expected:
        raise WalkThroughError(f"gradebook shows {grade!r}, expected {expected}")
    say(f"score {expected} posted; gradebook shows {grade}")

    stats = expect(await browser.get(settings.stats_url), 200, "stats").json()
    say(
        f"token requests: {stats['token_requests']} "
        f"({stats['tokens_issued']} access token issued)"
    )
    say(
        f"key set fetches: the tool fetched the platform's "
        f"{tool.key_sets.fetch_count}, the platform fetched the tool's "
        f"{stats['tool_jwks_fetches']}"
    )


async def place_the_quiz(
    browser: httpx.AsyncClient, settings: PlatformSettings, say: Report
) -> str:
    """As the instructor, add the quiz by deep linking; returns the new link's id."""
    instructor = _instructor(settings)
    step = "tool picker"
    picker = await launch(browser, settings, instructor, DEEP_LINKING_LINK_ID, step)
    if QUIZ_TITLE not in unescape(picker.text):
        raise WalkThroughError(
            f"{step}: {QUIZ_TITLE!r} not offered: {_excerpt(picker)}"
        )
    say(f"deep linking started as {instructor.name}; the tool offers {QUIZ_TITLE!r}")

    action, _ = first_form(picker, step)
    step = "tool deep linking response"
    answer = expect(await browser.post(action), 200, step)
    action, fields = first_form(answer, step)
    if list(fields) != ["JWT"]:
        raise WalkThroughError(f"{step}: expected one field, JWT; got {list(fields)}")
    step = "platform deep linking return"
    placed = expect(await browser.post(action, data=fields), 200, step)
    if "1 item(s) placed" not in placed.text:
        raise WalkThroughError(f"{step}: nothing placed: {_excerpt(placed)}")
    say("quiz picked; the tool's signed JWT went back to the platform: 1 item placed")

    home = expect(await browser.get(settings.home_url), 200, "platform home page")
    known = {link.id for link in settings.resource_links} | {DEEP_LINKING_LINK_ID}
    linked = {_launch_of(href)[1] for href in _Page(home.text).links}
    new = sorted(link for link in linked - known if link is not None)
    if len(new) != 1:
        raise WalkThroughError(f"platform home page: expected one new link, got {new}")
    gradebook = expect(await browser.get(settings.gradebook_url), 200, "gradebook")
    if not table(gradebook, NEW_COLUMN):
        raise WalkThroughError(f"gradebook: no column {NEW_COLUMN!r}")
    say(f"platform placed link {new[0]} with gradebook column {NEW_COLUMN!r}")

    return new[0]


async def grade_the_placed_quiz(
    browser: httpx.AsyncClient, settings: PlatformSettings, link_id: str, say: Report
) -> DevUser:
    """Launch the placed link as a learner, answer all right; returns the learner."""
    learner = [u for u in settings.users if LEARNER in u.roles][-1]
    quiz = await launch(browser, settings, learner, link_id)
    custom = ", ".join(f"{k}={v}" for k, v in sorted(QUIZ_CUSTOM.items()))
    found = re.search(r"Custom parameters: <code>(.*?)</code>", quiz.text)
    if found is None or unescape(found[1]) != custom:
        raise WalkThroughError(
            f"placed link: custom {custom} missing: {_excerpt(quiz)}"
        )
    say(f"placed link launched as {learner.name}; custom parameters arrived: {custom}")

    expected = await submit(browser, quiz, len(QUESTIONS))
    gradebook = expect(await browser.get(settings.gradebook_url), 200, "gradebook")
    grade = grade_of(gradebook, learner, NEW_COLUMN)
    elsewhere = grade_of(gradebook, learner, QUIZ_1_COLUMN)
    if grade != expected or elsewhere:
        raise WalkThroughError(
            f"gradebook shows {grade!r} in {NEW_COLUMN!r} (expected {expected}) "
            f"and {elsewhere!r} in Quiz 1 (expected none)"
        )
    say(f"score {expected} posted; the new column shows {grade}")

    return learner


async def review_as_instructor(
    browser: httpx.AsyncClient,
    settings: PlatformSettings,
    link_id: str,
    learner: DevUser,
    say: Report,
) -> None:
    """The instructor's view of the placed link: its results, then the roster."""
    step = "instructor view"
    view = await launch(browser, settings, _instructor(settings), link_id, step)
    results = [row[:2] for row in table(view, "Results")]
    score = f"{len(QUESTIONS)}/{SCORE_MAXIMUM}"
    if results != [[learner.id, score]]:
        raise WalkThroughError(f"{step}: expected {learner.id} {score}, got {results}")
    say(f"instructor view lists the new column's result: {learner.id} {score}")

    href = next((h for h in _Page(view.text).links if "/roster?" in h), None)
    if href is None:
        raise WalkThroughError(f"{step}: no roster link: {_excerpt(view)}")
    roster = await browser.get(urljoin(str(view.url), href))
    members = table(expect(roster, 200, "roster page"))
    if len(members) != len(settings.users):
        raise WalkThroughError(
            f"roster page: {len(members)} members, expected {len(settings.users)}"
        )
    names = ", ".join(row[0] for row in members)
    say(f"roster page lists {len(members)} members: {names}")


def _instructor(settings: PlatformSettings) -> DevUser:
    return next(u for u in settings.users if INSTRUCTOR in u.roles)


def _server(app: ASGIApp) -> DemoServer:
    config = uvicorn.Config(
        app, http="h11", ws="none", log_level="warning", access_log=False
    )
    return DemoServer(config)


@contextlib.asynccontextmanager
async def serving(*apps: tuple[ASGIApp, socket.socket]) -> AsyncIterator[None]:
    """Serve each app on its socket for the duration of the block.

    Raises StartError when the servers have not started within START_TIMEOUT.
    """
    servers = [_server(app) for app, _ in apps]
    tasks = [
        asyncio.create_task(server.serve(sockets=[sock]))
        for server, (_, sock) in zip(servers, apps, strict=True)
    ]
    try:
        ready = asyncio.gather(*(server.ready.wait() for server in servers))
        try:
            await asyncio.wait_for(ready, START_TIMEOUT)
        except TimeoutError:
            message = f"the servers did not start in {START_TIMEOUT:g} s"
            raise StartError(message) from None
        yield
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)


async def run(args: argparse.Namespace) -> int:
    """Serve, walk through, report; returns the exit code."""
    try:
        tool_socket, platform_socket = listen_on(args.tool_port, args.platform_port)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    settings = platform_settings(
        tool_socket.getsockname()[1], platform_socket.getsockname()[1]
    )
    config_path = prepare_state(args.state_dir, settings)
    platform_http = ipv4_client()
    platform = create_platform(settings, http_client=platform_http)
    # The middleware closes its client when the server shuts down.
    tool = create_app(load_config(config_path), http=ipv4_client())

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with serving((platform, platform_socket), (tool, tool_socket)):
            print(
                f"Development platform  {settings.home_url}\n"
                f"Quiz tool             {settings.tool_target_link_uri}"
                f"  (configuration {config_path})\n",
                flush=True,
            )
            return await _report(settings, tool, stop, once=args.once)
    except StartError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
        await platform_http.aclose()


async def _report(
    settings: PlatformSettings, tool: LTIMiddleware, stop: asyncio.Event, *, once: bool
) -> int:
    print("Walk-through:", flush=True)
    async with ipv4_client() as browser:
        walk = asyncio.create_task(walk_through(browser, settings, tool, _print_step))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({walk, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not walk.done():
            walk.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await walk
            print("interrupted", file=sys.stderr)
            return 130

    try:
        walk.result()
    except (WalkThroughError, httpx.HTTPError) as error:
        print(f"walk-through failed: {error}", file=sys.stderr)
        return 1

    if once:
        return 0

    print(
        f"\nOpen {settings.home_url} in a browser: click Launch, or Add content "
        "as the instructor.\nPress Ctrl-C to stop.",
        flush=True,
    )
    await stop.wait()
    return 0


def _print_step(line: str) -> None:
    print(f"  {line}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

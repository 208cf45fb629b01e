"""The demo as a person uses it: real Chromium, the platform page, the quiz.

Runs ``python -m example_apps.demo`` as its own process, then drives Debian's
Chromium with Playwright: click Launch on the development platform, answer the
quiz, and read the grade in the platform's gradebook; or, as the instructor,
add the quiz by deep linking (the tool's response page posts itself back to
the platform) and grade a learner's launch of the placed link in its new
column. The browser itself decides whether to keep and send the tool's
Secure, SameSite=None state cookie, and whether to run the auto-post script
the tool's Content-Security-Policy allows.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("LTI_TEST_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api")
if shutil.which(CHROMIUM) is None:
    pytest.skip(
        f"no Chromium at {CHROMIUM}: install Debian's chromium (.ci/run does)",
        allow_module_level=True,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    """The demo serving on free ports; yields the platform's home URL."""
    tool_port, platform_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "example_apps.demo",
            "--tool-port",
            str(tool_port),
            "--platform-port",
            str(platform_port),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith("Open "):
                break
        else:
            pytest.fail("the demo stopped before serving:\n" + "".join(seen))
        yield f"http://localhost:{platform_port}/"
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stdout is not None:
            process.stdout.close()


def _launch_link(page: Page, link_id: str, user: str) -> Locator:
    """The home page's link launching resource link ``link_id`` as ``user``.

    The demo's walk-through has already placed a link, so names repeat.
    """
    links = page.locator(f'a[href*="resource_link_id={link_id}"]')
    return links.filter(has_text=f"Launch as {user} (")


def _gradebook_row(page: Page, link_id: str, user: str) -> list[str]:
    """The cells of ``user``'s row in the gradebook column of ``link_id``."""
    details = page.get_by_text(re.compile(rf"^resource link {re.escape(link_id)}\b"))
    column = details.locator("xpath=following-sibling::table[1]")
    row: str = column.get_by_role("row", name=user).inner_text()
    return row.split("\t")


def test_person_launches_answers_and_sees_the_grade(demo: str) -> None:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.goto(demo)
            _launch_link(page, "rl-1", "Chloé Learner").click()

            page.wait_for_url(re.compile(r"/\?lti_launch="))
            assert page.get_by_role("heading", name="Quiz").is_visible()
            assert "Chloé Learner" in page.content()
            # Two right answers and one wrong: a grade of 2 out of 3.
            for label in ("In a form POST", "An OAuth 2 access token", "2.0"):
                page.get_by_label(label).check()
            page.get_by_role("button", name="Submit answers").click()
            page.wait_for_url(re.compile(r"/submit\?lti_launch="))
            assert "has been sent" in page.content()

            page.goto(demo + "gradebook")
            cells = _gradebook_row(page, "rl-1", "Chloé Learner")
            assert cells[1:5] == [
                "2 / 3",
                "2/3 answers correct",
                "Completed",
                "FullyGraded",
            ]
        finally:
            browser.close()


def _resource_link_ids(page: Page) -> set[str]:
    """The resource link ids the platform's launch links on ``page`` name."""
    hrefs = page.locator("a").evaluate_all("links => links.map(a => a.href)")
    ids = set()
    for href in hrefs:
        ids.update(parse_qs(urlsplit(href).query).get("resource_link_id", []))
    return ids


def test_instructor_places_the_quiz_that_a_learner_takes(
    demo: str, artifacts: Path
) -> None:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.goto(demo)
            before = _resource_link_ids(page)
            page.get_by_role(
                "link", name="Add content (deep linking) as Ada Instructor"
            ).click()

            page.wait_for_url(re.compile(r"/\?lti_launch="))
            assert page.get_by_role("heading", name="Add content").is_visible()
            page.get_by_role("button", name="Add the quiz").click()
            # The tool's page posts the signed response to the platform itself.
            page.wait_for_url(re.compile(r"/deep-linking/return\?"))
            assert page.get_by_text("1 item(s) placed in the course.").is_visible()
            assert page.get_by_text("The tool says: The LTI quiz added").is_visible()

            page.get_by_role("link", name="Home").click()
            page.wait_for_url(demo)
            (placed,) = _resource_link_ids(page) - before
            _launch_link(page, placed, "Ben Learner").click()
            page.wait_for_url(re.compile(r"/\?lti_launch="))
            assert page.get_by_text("Custom parameters: quiz=1").is_visible()
            # One right answer and two wrong: a grade of 1 out of 3.
            for label in ("In a form POST", "The id_token", "2.0"):
                page.get_by_label(label).check()
            page.get_by_role("button", name="Submit answers").click()
            page.wait_for_url(re.compile(r"/submit\?lti_launch="))
            assert "has been sent" in page.content()

            page.goto(demo + "gradebook")
            assert _gradebook_row(page, placed, "Ben Learner")[1:5] == [
                "1 / 3",
                "1/3 answers correct",
                "Completed",
                "FullyGraded",
            ]
            screenshot = artifacts / "gradebook.png"
            page.screenshot(path=str(screenshot), full_page=True)
            print(f"gradebook screenshot: {screenshot}")
            assert screenshot.read_bytes().startswith(b"\x89PNG")
        finally:
            browser.close()

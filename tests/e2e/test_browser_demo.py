"""The demo as a person uses it: real Chromium, the platform page, the quiz.

Runs ``python -m example_apps.demo`` as its own process, then drives Debian's
Chromium with Playwright: click Launch on the development platform, answer the
quiz, and read the grade in the platform's gradebook. The browser itself
decides whether to keep and send the tool's Secure, SameSite=None state cookie.
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

import pytest

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


def test_person_launches_answers_and_sees_the_grade(demo: str) -> None:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            page.goto(demo)
            page.get_by_role("link", name="Launch as Chloé Learner").click()

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
            row = page.get_by_role("row", name="Chloé Learner").inner_text()
            cells = row.split("\t")
            assert cells[1:5] == [
                "2 / 3",
                "2/3 answers correct",
                "Completed",
                "FullyGraded",
            ]
        finally:
            browser.close()
